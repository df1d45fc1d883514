r"""self-verify: self-discrimination (the paper's Table 7): each model, as a generative reward model, judges its own
  responses of evaluate.py's samples/<model>/<benchmark>.jsonl, in two modes (templates: JUDGE_TEMPLATES)
    outcome  shown the problem and the final answer: the text after the last </think>, what the verifier graded
    process  shown the problem, the reasoning (the think block) and the final answer
  The problem is the prompt's last user turn, loaded as evaluate.py loaded it (the settings in --eval's args.json).
  The judge must end with \boxed{correct} or \boxed{incorrect}: after its last </think>, the last `\boxed{` decides
  and must hold one of the two words (case aside); anything else is unparsable, counted, and a miss. The truth is the
  verifier's (reward 1 = correct). Per (model, benchmark, mode), with r_c, r_i the recalls on the correct and on the
  incorrect responses:  accuracy;  balanced accuracy = (r_c + r_i) / 2;  the unparsable rate. Balanced, because
  base rates differ between models and benchmarks: a judge that always says "incorrect" is 90% accurate on a set
  10% correct, and 50% balanced. With one class absent (all correct, all wrong) it is that class's recall alone,
  flagged †; nothing divides by zero. Judging is greedy unless --temperature. Against --sft, the paper's claims
  (IF RL sharpens outcome judging; math and code RL sharpen process judging; multi-task RL improves both: models
  named if, math, code and --multi) are checked on the mean over benchmarks: Δ ± se, holds when Δ > 2 se.
"""
import json
import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from matplotlib.figure import Figure
from tqdm import tqdm

from analysis.evaluated import evaluated_rows
from benchmarks import BenchmarkError, fill, load_benchmarks
from cli import label_pairs
from curves import save_figure
from files import write_atomic
from model import SamplingParams
from report import bars, pct, table
from rollout import open_engine
from tokenizer import Tokenizer, split_reasoning

MODES = ("outcome", "process")
# The two templates differ only in what they show, so outcome vs process isolates seeing the reasoning. Fields are
# filled in one pass (benchmarks.fill): a `{x}` in a problem or a response stays as written.
INSTRUCTION = ("A response is correct when its final answer solves the problem and follows every instruction given in "
               "it. End your reply with your verdict, exactly \\boxed{correct} or \\boxed{incorrect}.")
JUDGE_TEMPLATES = {
    "outcome": ("Below are a problem and the final answer a model gave to it. Judge whether the final answer is "
                "correct.\n\n## Problem\n{problem}\n\n## Final answer\n{answer}\n\n" + INSTRUCTION),
    "process": ("Below are a problem and a model's whole solution to it: its reasoning, then its final answer. Check "
                "the reasoning step by step, then judge whether the final answer is correct.\n\n## Problem\n{problem}"
                "\n\n## Reasoning\n{reasoning}\n\n## Final answer\n{answer}\n\n" + INSTRUCTION),
}
VERDICTS = {"correct": True, "incorrect": False}
CLAIMS = [  # the paper's self-verification findings: (claim, model, modes), each against the SFT model
    ("IF RL sharpens outcome judging", "if", ["outcome"]),
    ("math RL sharpens process judging", "math", ["process"]),
    ("code RL sharpens process judging", "code", ["process"]),
    ("multi-task RL improves both", None, ["outcome", "process"]),  # None: the --multi model
]


@dataclass(frozen=True)
class JudgeSettings:
    """How each model judges (analyze.py self-verify's flags of the same names)."""
    limit: int | None  # the first N items of each benchmark, each with all its samples (None: all)
    temperature: float  # 0 = greedy
    max_new_tokens: int  # the judge's budget: its thinking and verdict
    thinking: bool  # Qwen3's thinking mode for the judge
    engine: str  # native or vllm
    engine_dtype: str  # vLLM's compute dtype: auto (vLLM's rule), bfloat16 or float32
    batch_size: int  # judge prompts per engine call
    seed: int


def self_verify(models: dict, eval_dir: str, benchmarks: list | None, sft: str, multi: str, settings: JudgeSettings,
                out: Path) -> tuple[dict, str]:
    """Each model ({name: HF dir}, named as in evaluate.py's --out `eval_dir`) judges its own responses to the
    benchmarks given (default: every one evaluated for the first model), in both modes; the paper's claims are
    checked for the models named if, math, code and `multi` against `sft`. Returns the report and its Markdown
    section; every judge reply goes to out/self-verify/<model>/<benchmark>.jsonl, the plot to out/plots."""
    samples = Path(eval_dir) / "samples"
    first = next(iter(models))
    if benchmarks is None:
        benchmarks = sorted(p.stem for p in (samples / first).glob("*.jsonl"))
    if not benchmarks:
        raise SystemExit(f"{samples / first}: no benchmark evaluated for {first!r}; run evaluate.py --models "
                         f"{first}=DIR ... --out {eval_dir}, or pass --eval")
    problems = eval_problems(Path(eval_dir), benchmarks)
    cells = {}
    for name, path in models.items():
        responses = {b: read_responses(samples / name / f"{b}.jsonl", problems[b], settings.limit)
                     for b in benchmarks}
        tokenizer = Tokenizer.from_dir(path)
        engine = open_engine(path, settings.engine, settings.batch_size, dtype=settings.engine_dtype)
        cells[name] = {}
        with tqdm(total=len(MODES) * sum(map(len, responses.values())), desc=f"self-verify {name}") as bar:
            for b in benchmarks:
                judged, cells[name][b] = [], {}
                for mode in MODES:
                    sampling = SamplingParams(max_new_tokens=settings.max_new_tokens,
                                              temperature=settings.temperature,
                                              seed=zlib.crc32(f"{settings.seed}/{name}/{b}/{mode}".encode()),
                                              stop_token_ids=[tokenizer.im_end_id, tokenizer.pad_id])
                    replies = judge(engine, tokenizer, responses[b], problems[b], mode, sampling, settings.thinking,
                                    settings.batch_size, bar)
                    verdicts = [parse_verdict(r.text) for r in replies]
                    cells[name][b][mode] = judging_metrics([row["reward"] == 1.0 for row in responses[b]], verdicts)
                    judged += [{"id": row["id"], "sample": row["sample"], "reward": row["reward"], "mode": mode,
                                "verdict": None if v is None else "correct" if v else "incorrect", "judge": r.text,
                                "finish_reason": r.finish_reason, "tokens": len(r.response_ids)}
                               for row, r, v in zip(responses[b], replies, verdicts)]
                write_atomic(out / "self-verify" / name / f"{b}.jsonl", "".join(json.dumps(j) + "\n" for j in judged))
        engine.close()  # one judge in memory at a time

    average = {m: {mode: mean_over_benchmarks([cells[m][b][mode] for b in benchmarks]) for mode in MODES}
               for m in models}
    report = {"models": models, "eval": eval_dir, "benchmarks": benchmarks, "modes": list(MODES),
              "templates": JUDGE_TEMPLATES, "temperature": settings.temperature,
              "max_new_tokens": settings.max_new_tokens, "thinking": settings.thinking, "cells": cells,
              "average": average, "sft": sft, "multi": multi, "claims": check_claims(average, sft, multi)}
    self_verify_plot(out / "plots" / "self-verify.png", report)
    return report, self_verify_markdown(report, [(b, mode) for b in benchmarks for mode in MODES])


def eval_problems(eval_dir: Path, benchmarks: list) -> dict:
    """{benchmark: {item id: the problem as asked, the prompt's last user turn}}, loaded as evaluate.py loaded them:
    with the settings in its args.json (data dir, paths, templates, windows, seed)."""
    path = eval_dir / "args.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: self-verify reads the problems as evaluate.py loaded them, from the "
                         f"args.json it writes in its --out; pass that directory as --eval")
    settings = json.loads(path.read_text())
    try:
        loaded = load_benchmarks(benchmarks, settings["data_dir"], label_pairs(settings["path"], "--path"),
                                 label_pairs(settings["window"], "--window"), settings["template"], settings["seed"])
    except BenchmarkError as e:
        raise SystemExit(str(e)) from None
    return {b: {r.id: r.messages[-1]["content"] for r in loaded[b].records} for b in benchmarks}


def read_responses(path: Path, problems: dict, limit: int | None) -> list[dict]:
    """evaluate.py's samples/<model>/<benchmark>.jsonl -> its rows (id, sample, text, reward), those of the first
    `limit` items when given. Every id must be one of the benchmark's problems."""
    rows, items = [], set()
    for where, row in evaluated_rows(path, (("id", str), ("sample", int), ("text", str), ("reward", (int, float)))):
        if row["id"] not in problems:
            raise SystemExit(f"{where}: item {row['id']!r} is not in the benchmark as evaluate.py's args.json loads "
                             f"it; evaluate again with the current data, or restore the data it was evaluated on")
        items.add(row["id"])
        if limit is not None and len(items) > limit:
            break
        rows.append(row)
    return rows


def judge(engine, tokenizer, rows: list, problems: dict, mode: str, sampling, thinking: bool, batch_size: int,
          bar) -> list:
    """One judge reply (a Sample) per response row, in order; engine calls of `batch_size` prompts."""
    prompts = [(str(i), tokenizer.encode_chat([{"role": "user", "content": judge_prompt(
        mode, problems[row["id"]], row["text"])}], add_generation_prompt=True, enable_thinking=thinking))
               for i, row in enumerate(rows)]
    replies = [None] * len(rows)
    for c in range(0, len(prompts), batch_size):
        for reply in engine.generate(prompts[c:c + batch_size], 1, replace(sampling, seed=sampling.seed + c)):
            replies[int(reply.record_id)] = reply
        bar.update(len(prompts[c:c + batch_size]))
    return replies


def judge_prompt(mode: str, problem: str, response: str) -> str:
    """The judge's user turn. The response is split where rewards/ splits it: the final answer is the text after the
    last </think> (what the verifier graded), the reasoning the think block before it."""
    reasoning, answer = split_reasoning({"content": response})
    return fill(JUDGE_TEMPLATES[mode], problem=problem, reasoning=reasoning.strip() or "(none)",
                answer=answer.strip() or "(none)")


def parse_verdict(text: str) -> bool | None:
    """The judge's reply -> True (judged correct), False (judged incorrect) or None (unparsable). Read where rewards/
    reads an answer, after the last </think>; there the last `\\boxed{` decides, and its box must hold exactly
    `correct` or `incorrect` (case and surrounding spaces aside). Anything else is unparsable: no box, a box never
    closed, another word (`\\boxed{yes}`, `\\boxed{\\text{correct}}`), a verdict only inside the thinking."""
    _, answer = split_reasoning({"content": text})
    start = answer.rfind("\\boxed{")
    if start < 0:
        return None
    body = answer[start + len("\\boxed{"):]
    end = body.find("}")
    return VERDICTS.get(body[:end].strip().lower()) if end >= 0 else None


def judging_metrics(truths: list[bool], verdicts: list) -> dict:
    """Verdicts (True, False, None = unparsable) against the verifier's truths (reward 1 = correct). An unparsable
    verdict is a miss. With recall r_c on the correct responses and r_i on the incorrect ones:
      accuracy = hits / responses;  balanced accuracy = (r_c + r_i) / 2
    When one class is absent (all correct, all wrong), the balanced accuracy is the present class's recall, and
    `classes` names that class alone; with no responses every rate is None. The standard error treats responses as
    independent, with Agresti-Coull per class (never 0 at a recall of 0 or 1): an under-estimate when K > 1 samples
    of one problem are judged, as they are correlated."""
    confusion = {truth: {"correct": 0, "incorrect": 0, "unparsable": 0} for truth in VERDICTS}
    for truth, verdict in zip(truths, verdicts, strict=True):
        said = "unparsable" if verdict is None else "correct" if verdict else "incorrect"
        confusion["correct" if truth else "incorrect"][said] += 1
    recall, variance = {}, {}
    for truth, row in confusion.items():
        total = sum(row.values())
        if total:
            recall[truth] = row[truth] / total
            p = (row[truth] + 2) / (total + 4)
            variance[truth] = p * (1 - p) / (total + 4)
    n = len(truths)
    return {"responses": n, "confusion": confusion, "classes": list(recall),
            "accuracy": (confusion["correct"]["correct"] + confusion["incorrect"]["incorrect"]) / n if n else None,
            "recall_correct": recall.get("correct"), "recall_incorrect": recall.get("incorrect"),
            "balanced_accuracy": sum(recall.values()) / len(recall) if recall else None,
            "balanced_stderr": math.sqrt(sum(variance.values())) / len(variance) if variance else None,
            "unparsable_rate": sum(row["unparsable"] for row in confusion.values()) / n if n else None}


def mean_over_benchmarks(cells: list) -> dict:
    """The mean balanced accuracy over the benchmarks that have one, with the standard error of a mean of
    independent terms, sqrt(sum se²) / B."""
    rated = [c for c in cells if c["balanced_accuracy"] is not None]
    if not rated:
        return {"balanced_accuracy": None, "balanced_stderr": None, "benchmarks": 0}
    return {"balanced_accuracy": sum(c["balanced_accuracy"] for c in rated) / len(rated),
            "balanced_stderr": math.sqrt(sum(c["balanced_stderr"] ** 2 for c in rated)) / len(rated),
            "benchmarks": len(rated)}


def check_claims(average: dict, sft: str, multi: str) -> list:
    """Each claim's Δ = mean balanced accuracy of the model − the SFT model's, per mode, with the standard error of a
    difference of independent estimates. Verdict: "holds" when every Δ > 2 se, "contradicted" when any Δ < −2 se,
    "within noise" otherwise, "not evaluated" when the model (or the SFT model) was not judged."""
    claims = []
    for claim, model, modes in CLAIMS:
        model = model or multi
        deltas = {}
        for mode in modes:
            a, b = average.get(model, {}).get(mode), average.get(sft, {}).get(mode)
            if model != sft and a and b and a["balanced_accuracy"] is not None and b["balanced_accuracy"] is not None:
                deltas[mode] = {"delta": a["balanced_accuracy"] - b["balanced_accuracy"],
                                "stderr": math.hypot(a["balanced_stderr"], b["balanced_stderr"])}
        if len(deltas) < len(modes):
            verdict = "not evaluated"
        elif all(d["delta"] > 2 * d["stderr"] for d in deltas.values()):
            verdict = "holds"
        elif any(d["delta"] < -2 * d["stderr"] for d in deltas.values()):
            verdict = "contradicted"
        else:
            verdict = "within noise"
        claims.append({"claim": claim, "model": model, "deltas": deltas, "verdict": verdict})
    return claims


def self_verify_plot(path: Path, report: dict):
    """One panel per mode: the benchmarks and their average along x, a bar per model, chance (0.5) dashed."""
    groups = [*report["benchmarks"], "avg"]
    fig = Figure(figsize=(2 * max(4.0, 0.4 * len(groups) * (len(report["models"]) + 1)), 4.0))
    for ax, mode in zip(fig.subplots(1, len(MODES), sharey=True), MODES):
        bars(ax, groups, {m: [report["cells"][m][b][mode]["balanced_accuracy"] for b in report["benchmarks"]]
                          + [report["average"][m][mode]["balanced_accuracy"]] for m in report["models"]})
        ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{mode}: judged shown the {'final answer' if mode == 'outcome' else 'reasoning too'}")
    fig.axes[0].set_ylabel("balanced accuracy (chance 0.5, dashed)")
    fig.suptitle("self-verification: each model judging its own responses")
    save_figure(fig, path)


def self_verify_markdown(report: dict, columns: list) -> str:
    cells, average, models = report["cells"], report["average"], list(report["models"])

    def balanced(c):
        return pct(c["balanced_accuracy"]) + ("†" if len(c["classes"]) == 1 else "")

    header = ["model", *(f"{b} {mode}" for b, mode in columns)]
    claims = [f"- {c['claim']} ({c['model']} vs {report['sft']}): " + (", ".join(
        f"{mode} {100 * d['delta']:+.1f} ± {100 * d['stderr']:.1f}" for mode, d in c["deltas"].items())
        or "no numbers") + f" → **{c['verdict']}**" for c in report["claims"]]
    return "\n".join([
        "## Self-verification: each model judges its own responses", "",
        "Balanced accuracy (%) against the verifiers: the mean of the recall on correct and on incorrect responses "
        "(chance 50), an unparsable verdict counted as a miss. outcome: the judge sees the problem and the final "
        "answer; process: also the reasoning. † one class only (all responses correct, or all wrong): the recall on "
        "it alone.", "",
        table([*header, *(f"avg {mode}" for mode in MODES)],
              [[m, *(balanced(cells[m][b][mode]) for b, mode in columns),
                *(pct(average[m][mode]["balanced_accuracy"]) for mode in MODES)] for m in models]),
        "Accuracy (%) / unparsable verdicts (%) (responses judged):", "",
        table(header, [[m, *(f"{pct(c['accuracy'])} / {pct(c['unparsable_rate'])} ({c['responses']})"
                             for c in (cells[m][b][mode] for b, mode in columns))] for m in models]),
        f"The paper's claims, Δ mean balanced accuracy against {report['sft']} in points ± standard error "
        "(holds: every Δ > 2 se):", "", *claims]) + "\n"
