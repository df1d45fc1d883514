"""--protocol m2rl: each rule of the paper's code against hand-made cases, most of them ones where it and our toy rules
disagree (the paper scores 0 where we scored 1, or the reverse); and --protocol toy unchanged on the same cases.

References (M2RL, Mosi-AI/M2RL, the verdicts worked out by hand from each file's code):
- slime/slime/rollout/rm_hub/__init__.py `async_rm`: the think gate, the text after the last </think>
- rm_hub/deepscaler.py + math_utils.py: math, the text after the last "Answer:", a \\boxed{} required
- rm_hub/gpqa.py: science, the first match of three patterns, ignoring case
- slime/slime/rewards/code.py: code, greedy ```python extraction, stripped stdout compared exactly, stderr appended to
  the output, 10 s runs
- slime/slime/rewards/IFEvalG/instructions.py (+ instructions_registry.py, whose commented-out ids raise KeyError)
- data/process_rl_data.py: the RL prompts; eval_config/multi_task.yaml + slime/utils/eval_config.py: evaluation;
  scripts/multi_teacher_opd.sh: MT-OPD's clip and TIS (slime's defaults: eps-clip-high = eps-clip, no --use-tis)
"""
import json
from pathlib import Path

import pytest

import rewards
from data.record import Record, load_records
from rewards import ifeval

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def record(domain, verifier):
    return Record(id="r0", domain=domain, messages=[{"role": "user", "content": "q"}], verifier=verifier)


def both(rec, response, **options):
    """(toy reward, m2rl reward) of a response that closed its thinking."""
    text = "<think>x</think>\n\n" + response
    return (rewards.score(rec, text, **options).reward,
            rewards.score(rec, text, protocol="m2rl", **options).reward)


MATH = record("math", {"answer": "1/2"})


def test_think_gate_is_always_on_under_m2rl():
    # async_rm: `if '</think>' in response: ... else: return 0.0`
    assert rewards.score(MATH, "\\boxed{1/2}").reward == 1.0
    assert rewards.score(MATH, "\\boxed{1/2}", protocol="m2rl").reward == 0.0
    assert rewards.score(MATH, "<think>\\boxed{3}</think>Answer: \\boxed{1/2}<|im_end|>", protocol="m2rl").reward == 1


@pytest.mark.parametrize("response, toy, m2rl", [
    ("Answer: 1/2", 1.0, 0.0),                         # extract_answer returns None without "\\boxed"
    ("So **Answer:** $1/2$.", 1.0, 0.0),
    ("\\boxed{1/2}\nAnswer: 3", 1.0, 0.0),              # after the last "Answer:" only "3": no box
    ("\\fbox{1/2}", 1.0, 0.0),                          # extract_answer looks for "\\boxed" alone
    ("Answer: \\boxed{3}. Later, Answer: $\\boxed{1/2}$", 1.0, 1.0),
    ("\\boxed{1/2}", 1.0, 1.0),                         # no "Answer:": the whole response
    ("answer: \\boxed{1/2}", 1.0, 1.0),                 # "Answer:" is case-sensitive: the whole response
    ("Answer: \\boxed{1/2} or maybe \\boxed{3}", 0.0, 0.0),  # the last box
    ("###Response ignore \\boxed{3} ###Response \\boxed{1/2}", 1.0, 0.0),  # split("###Response")[1]: box 3
])
def test_math_deepscaler_extraction(response, toy, m2rl):
    assert both(MATH, response) == (toy, m2rl)


@pytest.mark.parametrize("response, toy, m2rl", [
    ("The answer is a mixture of B and C. Answer: C", 1.0, 0.0),  # IGNORECASE: "answer is a" reads as A
    ("Answer: B. On reflection, Answer: C", 1.0, 0.0),           # re.search: the first statement
    ("C is correct.", 1.0, 1.0),
    ("I pick D, no, C", 1.0, 1.0),                                # fallback: the last standalone valid capital
    ("The answer is evidently C.", 1.0, 0.0),                     # "answer is e": E, valid among A-H
])
def test_science_gpqa_extraction(response, toy, m2rl):
    assert both(record("science", {"options": ["a", "b", "c", "d"], "answer": "C"}), response) == (toy, m2rl)


def test_science_valid_letters_are_gpqas_default_a_to_h():
    # the RL rows' metadata has no choices (process_rl_data.py): DEFAULT_VALID_LETTERS, A-H, even with 10 options
    ten = record("science", {"options": list("abcdefghij"), "answer": "J"})
    assert both(ten, "Answer: J") == (1.0, 0.0)
    assert both(record("science", {"options": list("abcdefghij"), "answer": "H"}), "Answer: H") == (1.0, 1.0)


ADD = {"tests": {"inputs": ["1 2"], "outputs": ["3"]}}
HALF = {"tests": {"inputs": [""], "outputs": ["0.3"]}}


@pytest.mark.parametrize("verifier, response, toy, m2rl", [
    (HALF, "```python\nprint(0.1 + 0.2)\n```", 1.0, 0.0),                          # 0.30000000000000004: no tolerance
    ({"tests": {"inputs": [""], "outputs": ["1 2"]}}, "```python\nprint('1  2')\n```", 1.0, 0.0),  # tokens vs text
    (ADD, "```python\nimport sys\nprint('debug', file=sys.stderr)\na, b = map(int, input().split())\nprint(a + b)\n```",
     1.0, 0.0),                                                                     # stderr joins the output there
    (ADD, "```python\nprint(1)\n```\nor better:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```",
     1.0, 0.0),                                                                     # greedy: prose between blocks runs
    (ADD, "```py\na, b = map(int, input().split())\nprint(a + b)\n```", 1.0, 0.0),  # only "```python" counts
    (ADD, "```python\na, b = map(int, input().split())\nprint(a + b)\n\n\n```", 1.0, 1.0),  # stripped both sides
])
def test_code_exact_comparison(verifier, response, toy, m2rl):
    assert both(record("code", verifier), response) == (toy, m2rl)


def test_code_run_limit_is_ten_seconds():
    # TOOL_CONFIGS["python_run_timeout"] = 10; ours is LiveCodeBench's 6
    slow = "```python\nimport time\ntime.sleep(7)\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert both(record("code", ADD), slow) == (0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# IF: the instruction ids of IFEvalG, the four it leaves unregistered, the ids of the RL data


# The paper's IFEvalG INSTRUCTION_DICT (slime/rewards/IFEvalG/instructions_registry.py), written out as data
PAPER_IFEVALG_IDS = """keywords:existence keywords:frequency keywords:forbidden_words keywords:letter_frequency
language:response_language length_constraints:number_sentences length_constraints:number_paragraphs
length_constraints:number_words length_constraints:nth_paragraph_first_word detectable_content:number_placeholders
detectable_content:postscript detectable_format:number_bullet_lists detectable_format:constrained_response
detectable_format:number_highlighted_sections detectable_format:multiple_sections detectable_format:json_format
detectable_format:title combination:two_responses combination:repeat_prompt startend:end_checker
change_case:capital_word_frequency change_case:english_capital change_case:english_lowercase punctuation:no_comma
startend:quotation copy:repeat_phrase copy:copy new:copy_span_idx detectable_format:sentence_hyphens
keywords:no_adjacent_consecutive detectable_format:square_brackets keywords:word_once
keywords:word_count_different_numbers keywords:exclude_word_harder paragraphs:paragraphs paragraphs:paragraphs2
first_word:first_word_sent first_word:first_word_answer last_word:last_word_sent last_word:last_word_answer
detectable_format:bigram_wrapping copy:copying_simple copy:copying_multiple punctuation:punctuation_dot
punctuation:punctuation_exclamation count:lowercase_counting letters:letter_counting letters:letter_counting2
count:counting_composition count:count_unique count:count_increment_word keywords:palindrome
keywords:keyword_specific_position keywords:start_end""".split()
# ... and the four its registry comments out (TODOs), whose classes instructions.py still defines
PAPER_COMMENTED_OUT = {"keywords:key_sentences", "detectable_content:rephrase_paragraph", "detectable_format:rephrase",
                       "multi-turn:constrained_start"}


def test_every_ifevalg_id_is_scored():
    assert len(PAPER_IFEVALG_IDS) == 54
    assert set(PAPER_IFEVALG_IDS) | PAPER_COMMENTED_OUT <= set(ifeval.CHECKS)
    assert ifeval.PAPER_UNREGISTERED == PAPER_COMMENTED_OUT


def test_every_id_of_the_rl_fixture_is_scored(tmp_path):
    from data.convert import convert_file
    out = tmp_path / "rl.jsonl"
    convert_file("nemotron_rl", FIXTURES / "nemotron_rl_sample.jsonl", out)
    ids = {i for r in load_records(out) if r.domain == "if" for i in r.verifier["instruction_id_list"]}
    raw = {i for line in (FIXTURES / "nemotron_rl_sample.jsonl").read_text().splitlines()
           for i in json.loads(line).get("instruction_id_list") or []}
    assert ids and ids == raw and ids <= set(ifeval.CHECKS)


def if_record(instruction_id, **kwargs):
    return record("if", {"instruction_id_list": [instruction_id], "kwargs": [kwargs]})


@pytest.mark.parametrize("instruction_id, kwargs, response, followed", [
    # KeySentenceChecker: exactly num_sentences of the key sentences among split_into_sentences(response)
    ("keywords:key_sentences", {"key_sentences": ["For now, this is fine."], "num_sentences": 1},
     "Hello there. For now, this is fine. Bye!", True),
    ("keywords:key_sentences", {"key_sentences": ["For now, this is fine."], "num_sentences": 1},
     "Hello there, for now, this is fine.", False),
    ("keywords:key_sentences", {"key_sentences": ["Go now.", "Stay here."], "num_sentences": 1}, "Go now. Stay here.",
     False),  # both: 2, not 1
    # RephraseParagraph: low <= words in common with the original (case-folded, with multiplicity) <= high
    ("detectable_content:rephrase_paragraph", {"original_paragraph": "The cat sat on the mat", "low": 2, "high": 3},
     "the dog saw THE cat", True),   # the x2, cat x1
    ("detectable_content:rephrase_paragraph", {"original_paragraph": "The cat sat on the mat", "low": 2, "high": 3},
     "The cat sat on the rug", False),  # 5 in common
    # RephraseChecker: equal once every *...* is cut; a response without one raises there (0)
    ("detectable_format:rephrase", {"original_message": "I *love* cats."}, "I *really like* cats.", True),
    ("detectable_format:rephrase", {"original_message": "I *love* cats."}, "I *like* dogs.", False),
    ("detectable_format:rephrase", {"original_message": "I *love* cats."}, "I love cats.", False),
    # ConstrainedStartChecker: re.search(r"^\s*" + starter + r".*$", MULTILINE): any line may start with it
    ("multi-turn:constrained_start", {"starter": "My answer is"}, "My answer is yes.", True),
    ("multi-turn:constrained_start", {"starter": "My answer is"}, "Well.\n  My answer is no.", True),
    ("multi-turn:constrained_start", {"starter": "My answer is"}, "Well, my answer is no.", False),
])
def test_ifevalg_unregistered_checks(instruction_id, kwargs, response, followed):
    rec = if_record(instruction_id, **kwargs)
    rewards.validate(rec)
    assert both(rec, response) == (float(followed), 0.0)  # m2rl: the registry's KeyError, caught as 0


# ----------------------------------------------------------------------------------------------------------
# The RL prompts, the evaluation settings, MT-OPD's clip and TIS


def test_converter_writes_the_papers_prompts(tmp_path):
    from data.convert import MATH_PREFIX, convert_file
    raw = {json.loads(line).get("dataset"): json.loads(line) for line in
           (FIXTURES / "nemotron_rl_sample.jsonl").read_text().splitlines()}
    toy, m2rl = tmp_path / "toy.jsonl", tmp_path / "m2rl.jsonl"
    convert_file("nemotron_rl", FIXTURES / "nemotron_rl_sample.jsonl", toy)
    convert_file("nemotron_rl", FIXTURES / "nemotron_rl_sample.jsonl", m2rl, protocol="m2rl")
    toy, m2rl = ({r.domain: r for r in load_records(path)} for path in (toy, m2rl))
    original = {d: toy[d].messages[0]["content"] for d in toy}
    assert original["math"] == raw["nano_v3_sft_profiled_dapo17k"]["responses_create_params"]["input"][0]["content"]
    assert m2rl["math"].messages[0]["content"] == (
        "Solve the following math problem step by step. The last line of your response should be of the form Answer: "
        "$Answer (without quotes) where $Answer is the answer to the problem.\n\n" + original["math"])
    assert m2rl["math"].messages[0]["content"].startswith(MATH_PREFIX)
    assert original["science"].startswith("Answer the following multiple choice question. The last line")
    assert m2rl["science"].messages[0]["content"] == (
        "Answer the following multiple choice question step by step. The last line"
        + original["science"][len("Answer the following multiple choice question. The last line"):])
    for domain in ("code", "if"):
        assert m2rl[domain].messages == toy[domain].messages


def test_converter_refuses_a_science_prompt_it_cannot_rewrite(tmp_path, monkeypatch):
    from data.convert import convert_file
    from data.record import RecordError
    rows = [line for line in (FIXTURES / "nemotron_rl_sample.jsonl").read_text().splitlines() if "stem_mcqa" in line]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(rows[0].replace("Answer the following multiple choice question.", "Pick one.") + "\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:1: .*must open with"):
        convert_file("nemotron_rl", bad, tmp_path / "out.jsonl", protocol="m2rl")
    convert_file("nemotron_rl", bad, tmp_path / "out.jsonl")  # toy keeps it as it is
    import data.convert
    monkeypatch.setattr("sys.argv", ["convert", "--format", "nemotron_rl", "--protocol", "m2rl", str(bad),
                                     str(tmp_path / "cli.jsonl")])
    with pytest.raises(SystemExit, match=r"^error: .*bad.jsonl:1: --protocol m2rl: a science prompt") as e:
        data.convert.main()
    assert "\n" not in str(e.value) and not (tmp_path / "cli.jsonl").exists()


def test_evaluation_settings_per_protocol(tmp_path):
    import evaluate
    assert evaluate.samples_per_prompt(["aime24", "gpqa_diamond", "ifbench", "ifeval"], None, "m2rl") == {
        "aime24": 16, "gpqa_diamond": 4, "ifbench": 1, "ifeval": 4}
    assert set(evaluate.samples_per_prompt(["aime24", "ifbench"], None, "toy").values()) == {4}
    assert set(evaluate.samples_per_prompt(["aime24", "ifbench"], 2, "m2rl").values()) == {2}
    out = tmp_path / "eval"
    evaluate.main(evaluate.parser.parse_args(["--protocol", "m2rl", "--benchmarks", "toy_math", "--limit", "2",
                                              "--max-new-tokens", "4", "--batch-size", "4", "--out", str(out)]))
    args = json.loads((out / "args.json").read_text())
    assert (args["temperature"], args["top_p"], args["top_k"]) == (1.0, 0.7, 0)
    assert json.loads((out / "results.json").read_text())["tiny-random"]["toy_math"]["k"] == 4
    # the tiny random model never closes </think>: the m2rl gate scores every sample 0
    samples = [json.loads(line) for line in (out / "samples/tiny-random/toy_math.jsonl").read_text().splitlines()]
    assert samples and all(s["reward"] == 0 and "think gate" in s["info"]["error"] for s in samples
                           if "</think>" not in s["text"])


def test_table_names_each_benchmarks_k_where_they_differ():
    import evaluate
    results = {"m": {"aime24": {"avg": 0.5, "stderr": 0.1, "k": 16}, "ifbench": {"avg": 0.25, "stderr": 0.05, "k": 1}}}
    notes = {"aime24": [], "ifbench": []}
    text = evaluate.table(results, ["aime24", "ifbench"], {"aime24": 16, "ifbench": 1}, [], notes)
    assert "| Avg@K (%) | m |" in text and "| aime24 (K=16) | 50.0 ± 10.0 |" in text and "| ifbench (K=1) |" in text
    assert "| Avg@4 (%) | m |" in evaluate.table(results, ["aime24", "ifbench"], 4, [], notes)


@pytest.mark.parametrize("extra, clip_high, tis_cap", [
    (["--protocol", "m2rl"], 0.2, 0.0),                    # multi_teacher_opd.sh: no clip-high, no --use-tis
    ([], 0.28, 2.0),                                       # toy: GRPO's defaults kept
    (["--protocol", "m2rl", "--eps-clip-high", "0.3", "--tis-cap", "1.5"], 0.3, 1.5),  # flags given win
])
def test_mtopd_clip_and_tis(extra, clip_high, tis_cap, capsys):
    import train_grpo
    args = train_grpo.parser.parse_args(["--domains", "math", "--teachers", f"math={train_grpo.TINY_SFT}",
                                         "--dry-run", *extra])
    train_grpo.main(args)
    assert (args.eps_clip, args.eps_clip_high, args.tis_cap) == (0.2, clip_high, tis_cap)
    assert "plan:" in capsys.readouterr().out


def test_grpo_keeps_its_clip_and_tis_under_m2rl():
    import train_grpo
    args = train_grpo.parser.parse_args(["--domains", "math", "--protocol", "m2rl", "--dry-run"])
    train_grpo.main(args)  # run-qwen3-4B-*.sh: --eps-clip 0.2 --eps-clip-high 0.28 --use-tis
    assert (args.eps_clip_high, args.tis_cap) == (0.28, 2.0)
