"""analysis/self_verify.py (analyze.py self-verify): each model judges its own responses, outcome vs process.

References: the metrics against counts worked out by hand (a mixed set, an all-correct and an all-wrong set, a judge
that always says "incorrect", no responses) and the Agresti-Coull formula written out; the verdict parser against
a table of 24 replies and the verdict each must give; the claims against hand-made averages; the pipeline against a
scripted judge whose every verdict is known in advance (so the metrics are too), and end to end on two tiny
checkpoints whose reported numbers are recomputed from the files evaluate.py and self-verify wrote.
"""
import json
import math
from pathlib import Path

import pytest

import analyze
import evaluate
from analysis import self_verify
from model import TINY_DIR, from_preset, save_model
from rollout import Sample
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: more threads only fight each other


# -----------------------------------------------------------------------------
# Metrics by hand


def agresti_coull_variance(hits: int, total: int) -> float:
    p = (hits + 2) / (total + 4)
    return p * (1 - p) / (total + 4)


def test_metrics_on_a_mixed_set_by_hand():
    # 3 correct responses: judged correct, incorrect, unparsable -> recall 1/3; 2 wrong: judged incorrect, correct
    # -> recall 1/2. Hits 2 of 5; balanced (1/3 + 1/2) / 2 = 5/12; one unparsable of 5.
    m = self_verify.judging_metrics([True, True, True, False, False], [True, False, None, False, True])
    assert m["confusion"] == {"correct": {"correct": 1, "incorrect": 1, "unparsable": 1},
                              "incorrect": {"correct": 1, "incorrect": 1, "unparsable": 0}}
    assert m["responses"] == 5 and m["classes"] == ["correct", "incorrect"]
    assert math.isclose(m["accuracy"], 2 / 5) and math.isclose(m["unparsable_rate"], 1 / 5)
    assert math.isclose(m["recall_correct"], 1 / 3) and math.isclose(m["recall_incorrect"], 1 / 2)
    assert math.isclose(m["balanced_accuracy"], 5 / 12)
    se = 0.5 * math.sqrt(agresti_coull_variance(1, 3) + agresti_coull_variance(1, 2))
    assert math.isclose(m["balanced_stderr"], se)


def test_a_constant_judge_is_accurate_on_skewed_sets_but_not_balanced():
    # 9 of 10 responses wrong, the judge always says "incorrect": 90% accurate, 50% balanced (chance)
    m = self_verify.judging_metrics([True] + [False] * 9, [False] * 10)
    assert math.isclose(m["accuracy"], 0.9) and m["balanced_accuracy"] == 0.5
    assert m["recall_correct"] == 0.0 and m["recall_incorrect"] == 1.0


def test_all_correct_and_all_wrong_sets_use_the_present_class_alone():
    # all correct, 2 of 4 judged so: balanced = recall on the correct ones = 1/2; no division by the empty class
    m = self_verify.judging_metrics([True] * 4, [True, True, False, None])
    assert m["classes"] == ["correct"] and m["recall_incorrect"] is None
    assert m["balanced_accuracy"] == 0.5 and m["accuracy"] == 0.5 and m["unparsable_rate"] == 0.25
    assert math.isclose(m["balanced_stderr"], math.sqrt(agresti_coull_variance(2, 4)))
    # all wrong, every one judged correct: 0 accurate, 0 balanced, and the standard error is still not 0
    m = self_verify.judging_metrics([False] * 3, [True] * 3)
    assert m["classes"] == ["incorrect"] and m["recall_correct"] is None
    assert m["accuracy"] == 0.0 and m["balanced_accuracy"] == 0.0
    assert math.isclose(m["balanced_stderr"], math.sqrt(agresti_coull_variance(0, 3))) and m["balanced_stderr"] > 0
    # no responses at all: every rate is None
    m = self_verify.judging_metrics([], [])
    assert m["responses"] == 0 and m["classes"] == []
    assert all(m[k] is None for k in ("accuracy", "balanced_accuracy", "balanced_stderr", "unparsable_rate"))


# -----------------------------------------------------------------------------
# Verdict parsing: the last \boxed{ after the last </think> decides, and must hold one of the two words


VERDICT_TABLE = [
    ("\\boxed{correct}", True),
    ("\\boxed{incorrect}", False),
    ("The answer 27 is right.\n\n\\boxed{correct}", True),
    ("Verdict: \\boxed{incorrect}.", False),
    ("\\boxed{ Correct }", True),  # case and surrounding spaces aside
    ("\\boxed{INCORRECT}", False),
    ("<think>\nlet me check 5-2=3, 3*9=27\n</think>\n\n\\boxed{correct}", True),
    ("<think>\nlooks wrong\n</think>\n\n\\boxed{incorrect}", False),
    ("\\boxed{incorrect} ... on second thought \\boxed{correct}", True),  # the last one wins
    ("\\boxed{correct} no wait, \\boxed{incorrect}", False),
    ("<think>\n\\boxed{incorrect}\n</think>\n\n\\boxed{correct}", True),  # the thinking does not count
    ("<think>\nit is \\boxed{correct}\n</think>\n\nI cannot tell.", None),  # a verdict only inside the thinking
    ("", None),
    ("correct", None),  # no box
    ("Verdict: correct", None),
    ("The final answer is correct.", None),
    ("\\boxed{27}", None),  # a math answer, not a verdict
    ("\\boxed{yes}", None),
    ("\\boxed{\\text{correct}}", None),  # a nested brace is another word
    ("\\boxed{correct", None),  # never closed
    ("\\boxed{correct} and then \\boxed{maybe}", None),  # the last box decides, and it is no verdict
    ("\\boxed{correctly}", None),
    ("\\boxed{not correct}", None),
    ("\\boxed {correct}", None),  # not the format
    ("\\boxed{}", None),
]


@pytest.mark.parametrize("reply, verdict", VERDICT_TABLE)
def test_parse_verdict(reply, verdict):
    assert self_verify.parse_verdict(reply) is verdict


def test_the_verdict_table_covers_both_verdicts_and_unparsable():
    verdicts = [v for _, v in VERDICT_TABLE]
    assert len(VERDICT_TABLE) >= 20 and {True, False, None} == set(verdicts)


# -----------------------------------------------------------------------------
# Prompts and claims


def test_outcome_shows_the_final_answer_and_process_the_reasoning_too():
    problem = "Compute {x} + 1 where x = 2."  # braces in a problem stay as written
    response = "<think>\nx is 2, so 2+1=3.\n</think>\n\nA: \\boxed{3}"
    outcome, process = (self_verify.judge_prompt(mode, problem, response) for mode in self_verify.MODES)
    for prompt in (outcome, process):
        assert problem in prompt and "A: \\boxed{3}" in prompt and "<think>" not in prompt and "</think>" not in prompt
        assert prompt.endswith("exactly \\boxed{correct} or \\boxed{incorrect}.")
    assert "2+1=3" not in outcome and "## Reasoning\nx is 2, so 2+1=3.\n\n## Final answer\nA: \\boxed{3}" in process
    # no think block: the whole response is the final answer (as rewards/ grades it), and the reasoning is none
    assert "## Reasoning\n(none)\n\n## Final answer\n42" in self_verify.judge_prompt("process", problem, "42")


def mean_cell(balanced, stderr):
    return {"balanced_accuracy": balanced, "balanced_stderr": stderr, "benchmarks": 2}


def test_claims_by_hand():
    average = {"sft": {"outcome": mean_cell(0.60, 0.02), "process": mean_cell(0.60, 0.02)},
               "if": {"outcome": mean_cell(0.70, 0.02), "process": mean_cell(0.50, 0.02)},  # Δ +10 > 2 se = 5.7
               "math": {"outcome": mean_cell(0.60, 0.02), "process": mean_cell(0.63, 0.02)},  # Δ +3 < 5.7: noise
               "rl-multi": {"outcome": mean_cell(0.70, 0.02), "process": mean_cell(0.50, 0.02)}}  # −10 in process
    claims = {c["model"]: c for c in self_verify.check_claims(average, "sft", "rl-multi")}
    assert claims["if"]["verdict"] == "holds"
    assert math.isclose(claims["if"]["deltas"]["outcome"]["delta"], 0.10)
    assert math.isclose(claims["if"]["deltas"]["outcome"]["stderr"], math.sqrt(2) * 0.02)
    assert claims["math"]["verdict"] == "within noise"
    assert claims["code"]["verdict"] == "not evaluated" and claims["code"]["deltas"] == {}
    assert claims["rl-multi"]["verdict"] == "contradicted" and set(claims["rl-multi"]["deltas"]) == {"outcome",
                                                                                                   "process"}
    # with no SFT model judged, nothing can be checked
    assert {c["verdict"] for c in self_verify.check_claims(average, "base", "rl-multi")} == {"not evaluated"}


def test_mean_over_benchmarks_skips_those_without_a_number():
    cells = [mean_cell(0.5, 0.03), mean_cell(0.9, 0.04), mean_cell(None, None)]
    m = self_verify.mean_over_benchmarks(cells)
    assert math.isclose(m["balanced_accuracy"], 0.7) and math.isclose(m["balanced_stderr"], 0.025)
    assert m["benchmarks"] == 2


# -----------------------------------------------------------------------------
# The pipeline with a scripted judge: every verdict known in advance


def evaluation_by_hand(root: Path, model: str, bench: str, rows: list[dict]) -> Path:
    """An evaluate.py --out in its real format: args.json (its parser's defaults) and the per-sample JSONL."""
    (root / "samples" / model).mkdir(parents=True, exist_ok=True)
    (root / "args.json").write_text(json.dumps(vars(evaluate.parser.parse_args(["--out", str(root)]))))
    (root / "samples" / model / f"{bench}.jsonl").write_text("".join(
        json.dumps({"finish_reason": "stop", "tokens": 9, "info": {}, **row}) + "\n" for row in rows))
    return root


class ScriptedJudge:
    """Reads the marker the reasoning carries when the prompt shows it (process) and judges perfectly; without it
    (outcome) says "correct"; gives no verdict for the response answering \\boxed{3}. Replies come back in reverse
    order: they must be matched to their prompts by id, not by position."""

    def __init__(self):
        self.tokenizer, self.calls, self.closed = Tokenizer.from_dir(TINY_DIR), [], False

    def close(self):  # analyze closes every engine it opened before the next opens
        self.closed = True

    def generate(self, prompts, n, sampling):
        self.calls.append(len(prompts))
        replies = []
        for rid, ids in prompts:
            prompt = self.tokenizer.decode(ids)
            if "\\boxed{3}" in prompt:
                text = "<think>\nhmm\n</think>\n\nI cannot tell."
            elif "checked: wrong" in prompt:
                text = "<think>\nthe check failed\n</think>\n\n\\boxed{incorrect}"
            else:
                text = "\\boxed{correct}"
            replies.append(Sample(rid, ids, [1], [0.0], text, "stop"))
        return replies[::-1]


def test_scripted_judge_gives_the_metrics_known_in_advance(tmp_path, monkeypatch):
    rewards = [[1, 0], [0, 0], [1, 1], [0, 1], [1, 0]]  # items 0-4 x 2 samples; --limit 4 keeps items 0-3
    rows = [{"id": f"toy-math-eval-{i:04d}", "sample": j, "reward": float(r),
             "text": f"<think>\nchecked: {'right' if r else 'wrong'}\n</think>\n\nA: \\boxed{{{2 * i + j}}}"}
            for i, item in enumerate(rewards) for j, r in enumerate(item)]
    evaluation_by_hand(tmp_path / "eval", "judge", "toy_math", rows)
    judge = ScriptedJudge()
    monkeypatch.setattr(self_verify, "open_engine", lambda path, kind, batch_size, dtype: judge)
    analyze.main(["self-verify", f"--eval={tmp_path / 'eval'}", f"--models=judge={TINY_DIR}", "--limit=4",
                  "--batch-size=3", f"--out={tmp_path / 'out'}"])

    assert judge.calls == [3, 3, 2, 3, 3, 2]  # 8 responses per mode, 3 per engine call
    cells = json.loads((tmp_path / "out" / "self-verify.json").read_text())["cells"]["judge"]["toy_math"]
    # 4 correct and 4 wrong responses; the one answering \boxed{3} (item 1, sample 1) is wrong and gets no verdict.
    # process: every correct one judged correct, 3 of the 4 wrong ones incorrect -> (1 + 3/4) / 2
    process = cells["process"]
    assert process["confusion"] == {"correct": {"correct": 4, "incorrect": 0, "unparsable": 0},
                                    "incorrect": {"correct": 0, "incorrect": 3, "unparsable": 1}}
    assert process["accuracy"] == 7 / 8 and process["balanced_accuracy"] == 0.875
    # outcome: the marker is hidden, so every parsable verdict is "correct" -> (1 + 0) / 2, accuracy 4 / 8
    outcome = cells["outcome"]
    assert outcome["confusion"] == {"correct": {"correct": 4, "incorrect": 0, "unparsable": 0},
                                    "incorrect": {"correct": 3, "incorrect": 0, "unparsable": 1}}
    assert outcome["accuracy"] == 0.5 and outcome["balanced_accuracy"] == 0.5
    assert outcome["unparsable_rate"] == process["unparsable_rate"] == 1 / 8

    judged = [json.loads(line) for line in (tmp_path / "out/self-verify/judge/toy_math.jsonl").read_text().splitlines()]
    assert [(j["mode"], j["id"][-1], j["sample"]) for j in judged] == [
        (mode, str(i), j) for mode in self_verify.MODES for i in range(4) for j in range(2)]
    expected = {("process", 0.0): "incorrect", ("process", 1.0): "correct", ("outcome", 0.0): "correct",
                ("outcome", 1.0): "correct"}
    for j in judged:
        unparsable = j["id"].endswith("1") and j["sample"] == 1
        assert j["verdict"] == (None if unparsable else expected[j["mode"], j["reward"]])


def test_errors_name_the_file_and_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="args.json not found"):
        analyze.main(["self-verify", f"--eval={tmp_path}", f"--models=m={TINY_DIR}", "--benchmarks=toy_math",
                      f"--out={tmp_path / 'out'}"])
    rows = [{"id": "toy-math-eval-0000", "sample": 0, "reward": 1.0, "text": "27"},
            {"id": "no-such-item", "sample": 0, "reward": 0.0, "text": "3"}]
    evaluation_by_hand(tmp_path / "eval", "m", "toy_math", rows)
    with pytest.raises(SystemExit, match=r"toy_math.jsonl:2: item 'no-such-item' is not in the benchmark"):
        analyze.main(["self-verify", f"--eval={tmp_path / 'eval'}", f"--models=m={TINY_DIR}",
                      f"--out={tmp_path / 'out'}"])


# -----------------------------------------------------------------------------
# End to end: two tiny checkpoints, evaluate.py's real output


def test_end_to_end_two_tiny_checkpoints(tmp_path):
    models = {}
    for name, seed in (("a", 1), ("b", 2)):
        save_model(from_preset("tiny", seed), tmp_path / name, source_dir=TINY_DIR)
        models[name] = tmp_path / name
    evaluate.main(evaluate.parser.parse_args([
        "--models", *(f"{m}={d}" for m, d in models.items()), "--benchmarks", "toy_math,toy_if", "--limit", "2",
        "--k", "2", "--max-new-tokens", "8", "--engine", "native", "--out", str(tmp_path / "eval")]))
    out = tmp_path / "out"
    analyze.main(["self-verify", f"--eval={tmp_path / 'eval'}", "--models", *(f"{m}={d}" for m, d in models.items()),
                  "--sft=a", "--multi=b", "--max-new-tokens=12", "--engine=native", f"--out={out}"])

    report = json.loads((out / "self-verify.json").read_text())
    assert report["benchmarks"] == ["toy_if", "toy_math"]  # every benchmark evaluated for the first model
    for m in models:
        for bench in report["benchmarks"]:
            samples = [json.loads(line) for line in (tmp_path / f"eval/samples/{m}/{bench}.jsonl").read_text()
                       .splitlines()]
            judged = [json.loads(line) for line in (out / f"self-verify/{m}/{bench}.jsonl").read_text().splitlines()]
            assert len(judged) == 2 * len(samples) == 8
            for mode in self_verify.MODES:
                rows = [j for j in judged if j["mode"] == mode]
                assert [(j["id"], j["sample"], j["reward"]) for j in rows] == [
                    (s["id"], s["sample"], s["reward"]) for s in samples]
                verdicts = [self_verify.parse_verdict(j["judge"]) for j in rows]  # the verdicts recorded are re-parsed
                assert [j["verdict"] for j in rows] == [None if v is None else "correct" if v else "incorrect"
                                                        for v in verdicts]
                assert all(j["tokens"] <= 12 for j in rows)
                assert report["cells"][m][bench][mode] == self_verify.judging_metrics(
                    [s["reward"] == 1.0 for s in samples], verdicts)
    assert [c["model"] for c in report["claims"]] == ["if", "math", "code", "b"]
    assert report["claims"][-1]["verdict"] != "not evaluated"  # b against a, in both modes

    markdown = (out / "self-verify.md").read_text()
    assert "| model | toy_if outcome | toy_if process | toy_math outcome | toy_math process | avg outcome | avg " \
           "process |" in markdown and "- multi-task RL improves both (b vs a): outcome " in markdown
    assert "## Self-verification" in (out / "summary.md").read_text()
    assert (out / "plots" / "self-verify.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
