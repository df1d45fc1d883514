"""One GRPO step, timed and split, against TRL's GRPOTrainer; rollout tokens/s against transformers' generate.

    .venv/bin/python bench/grpo_step.py                       # SFT'd tiny model, math+code, 8 prompts x 8, 128 tokens
    .venv/bin/python bench/grpo_step.py --warmup 1 --steps 2 --parts rollout     # a quick look at one part
    .venv/bin/python bench/grpo_step.py --parts native,trl --runs 5               # the step against TRL only
    .venv/bin/python bench/grpo_step.py --preset 0.6B --parts native,trl --prompts 2 --group-size 4 \
        --max-new-tokens 64 --runs 1 --warmup 0 --steps 1 --train-zero-advantage   # vocab 151,936: minutes a step

Everything is measured in one run on the same model, prompts (the toy RL split of --domains), group, lengths and
sampling (temperature 1, no top-k/top-p, stop at <|im_end|>), and written as a Markdown table with the ratios.

Every figure is the median [min-max] over repeats: --runs runs of each trainer, interleaved (native, vLLM, TRL,
native, ...) so that a machine that gets busier during the bench slows all alike, each run the mean of its measured
steps; --repeats interleaved calls of each rollout engine. A ratio is taken within a repeat (a run and the TRL
run beside it), then summarised the same way.
- native, vllm: `train_grpo.py` in a subprocess, as a user runs it, for --warmup + --steps steps; the measured
  steps' `time/*` columns of its metrics.jsonl are the split (generate, reward, logprob, train, sync), and they tile
  train_step, so their sum is the step. With the native engine, and with vLLM when it imports. "samples computed" is
  the share of the step's samples its update ran forward and backward (train/computed_fraction: those of advantage
  0 are skipped where their gradient is exactly 0; --train-zero-advantage computes them all, as TRL does).
- TRL: `GRPOTrainer` on the same checkpoint, configured to the same maths (GRPO loss aggregated per sequence, clip
  0.2/0.28, beta 0 so no reference model, one optimizer step per batch of 64 completions, AdamW lr 2e-5, betas
  0.9/0.98, weight decay 0.1, constant lr, CPU, fp32, no gradient checkpointing). Its reward function scores with the
  same rewards.ScorePool as m2rl, so the reward column is the same work on both sides. TRL is benchmark-only and has a
  venv of its own (it must not touch .venv): this file re-runs itself there with --trl-worker.
      python3 -m venv /tmp/trl-venv && /tmp/trl-venv/bin/pip install torch==2.13.0 trl==1.16.0 transformers==5.19.0 .
  (the trailing `.` installs this repo's runtime dependencies, which the reward function needs). A TRL step is the
  wall time between consecutive `on_step_end` callbacks (the whole cycle, logging included); its split comes from
  TRL's own profiling blocks (`transformers.generate`, `_calculate_rewards`, `_prepare_inputs`), which TRL only
  forwards to wandb/mlflow/trackio and which are collected here instead.
- Rollout: one step's sequences (--prompts prompts drawn with --seed, x --group-size) from transformers' `generate`
  (fp32, sdpa), rollout.py's native engine and, when vLLM imports, its vLLM engine with train_grpo's settings (dtype
  auto, which runs this fp32 checkpoint in bf16; 1 GiB of KV cache; eager); one untimed call each, then --repeats timed
  calls, interleaved. tokens/s = generated tokens (up to and including the stop token) / wall time of a call. The
  vLLM engine gives torch back its thread count after start.

Each trainer's peak RSS is its process's high-water mark (os.wait4's ru_maxrss: the largest process of its
tree, which is the trainer itself; the scoring workers fork from rewards.ScorePool's forkserver, which holds no model),
beside its step time: the memory a step needs. Both update on one padded micro-batch of all the step's sequences:
train_grpo's default on CPU (--micro-batch 16, no packing), TRL's per_device_train_batch_size = prompts x group.
--preset builds, once, into --work, a random-weight checkpoint of that Qwen3 shape (model.PRESETS; fp32, as both
trainers generate and train) carrying the real Qwen3 tokenizer from ../shared/peer/qwen3-tokenizer: at vocab
151,936 the (tokens x vocab) logits are what a trainer's memory and time go to, which the tiny model's 512 hide.

The checkpoint carries no Jinja chat template (tokenizer.py renders Qwen3's format in Python, tested equal to the
official template), so TRL gets each prompt already rendered: the same token ids m2rl trains on.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import rewards  # noqa: E402
from data.record import load_records  # noqa: E402
from files import read_jsonl, write_atomic  # noqa: E402
from model import PRESETS, from_preset, save_model  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

DEFAULT_MODEL = ROOT / "data/tiny-sft"  # the embedded SFT'd tiny model docs/benchmarks.md's numbers were measured with
QWEN3_TOKENIZER = ROOT.parent / "shared/peer/qwen3-tokenizer"  # the real one, vocab 151,936, read in place
PARTS = ("native", "vllm", "trl", "rollout")  # train_grpo.py with either engine, TRL, the rollout engines
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default=str(DEFAULT_MODEL), help="an HF Qwen3 checkpoint directory")
parser.add_argument("--preset", choices=[p for p in PRESETS if p != "tiny"],
                    help="instead of --model: a random-weight checkpoint of this Qwen3 shape with the real tokenizer, "
                         "built once into --work")
parser.add_argument("--work", default="/tmp/m2rl-bench-grpo-step", help="where --preset's checkpoint is built")
parser.add_argument("--domains", default="math,code", help="the toy RL splits the prompts come from")
parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
parser.add_argument("--group-size", type=int, default=8, help="samples per prompt (the group)")
parser.add_argument("--max-new-tokens", type=int, default=128)
parser.add_argument("--lr", type=float, default=2e-5)
parser.add_argument("--warmup", type=int, default=2, help="steps run before the measured ones, not counted")
parser.add_argument("--steps", type=int, default=8, help="measured steps")
parser.add_argument("--runs", type=int, default=3,
                    help="runs of each trainer, interleaved (native, vLLM, TRL, native, ...)")
parser.add_argument("--repeats", type=int, default=3, help="timed rollout calls per engine, interleaved")
parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, from " + ",".join(PARTS))
parser.add_argument("--trl-python", default="/tmp/trl-venv/bin/python", help="python of the venv holding TRL")
parser.add_argument("--out", default=str(ROOT / "bench/results/grpo_step.md"))
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--train-zero-advantage", action="store_true",
                    help="train_grpo.py's flag: forward and backward every sample, as TRL does, not only those of "
                         "advantage != 0 (the same update); a random --preset model scores 0 everywhere, where "
                         "skipping would leave its update nothing to compute")
parser.add_argument("--trl-worker", metavar="JSON", help=argparse.SUPPRESS)  # internal: run TRL here, write JSON


def main(args):
    if args.preset:
        args.model = str(preset_checkpoint(args.preset, Path(args.work)))
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        raise SystemExit(f"--parts {args.parts!r}: choose from {', '.join(PARTS)}")
    load = os.getloadavg()[0]
    trainers, skipped = [], []
    vllm_missing = vllm_unavailable()
    if "native" in parts:
        trainers.append(("native", lambda out: m2rl_steps(args, "native", out)))
    if "vllm" in parts and vllm_missing:
        skipped.append(f"m2rl with the vLLM engine: {vllm_missing}")
    elif "vllm" in parts:
        trainers.append(("vllm", lambda out: m2rl_steps(args, "vllm", out)))
    if "trl" in parts:
        if Path(args.trl_python).exists():
            trainers.append(("trl", lambda out: trl_steps(args, out)))
        else:
            skipped.append(f"TRL: no {args.trl_python} (make the venv as in this file's docstring, or pass "
                           f"--trl-python)")
    runs = {name: [] for name, _ in trainers}  # one summary per run, in run order
    with tempfile.TemporaryDirectory() as tmp:
        # interleaved, so that a machine that gets busier or quieter during the bench moves every trainer alike
        for r in range(args.runs if trainers else 0):
            for name, run in trainers:
                runs[name].append(run(Path(tmp) / f"{name}-{r}"))
    rollout_rows = []
    if "rollout" in parts:
        rollout_rows = rollout_throughput(args, vllm_missing, skipped)
    table = report(args, list(runs.values()), rollout_rows, skipped, load)
    print(table)
    out = Path(args.out)
    write_atomic(out, table)
    print(f"written to {out}")


def preset_checkpoint(preset: str, work: Path) -> Path:
    """The random-weight checkpoint of `preset`'s shape with the real Qwen3 tokenizer, built on first use."""
    directory = work / f"qwen3-{preset.lower()}-random"
    if (directory / "config.json").exists():
        return directory
    if not QWEN3_TOKENIZER.exists():
        raise SystemExit(f"--preset {preset}: {QWEN3_TOKENIZER} is missing (the real Qwen3 tokenizer, ../shared/peer)")
    print(f"building {directory} (random weights, fp32)", flush=True)
    # atomic, tokenizer files included (copied from source_dir): a killed build leaves no directory to reuse
    # fp32 on disk: the native engine runs the checkpoint's dtype, so both trainers generate and train in fp32
    save_model(from_preset(preset), directory, source_dir=QWEN3_TOKENIZER)
    return directory


def vllm_unavailable() -> str | None:
    """Why the vLLM rows are skipped, or None."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # a broken install raises more than ImportError
        return f"`import vllm` failed ({type(e).__name__}: {e})"
    return None


# ---------------------------------------------------------------------------------------------------------------
# m2rl: train_grpo.py as a user runs it


def m2rl_steps(args, engine: str, out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "train_grpo.py"), "--model", args.model, "--domains", args.domains,
           "--engine", engine, "--steps", str(args.warmup + args.steps), "--eval-every", "0",
           "--prompts-per-step", str(args.prompts), "--group-size", str(args.group_size), "--max-response-len",
           str(args.max_new_tokens), "--lr", str(args.lr), "--seed", str(args.seed), "--out", str(out)]
    if args.preset:  # train_grpo defaults to the toy prompts for the embedded tiny model only: name them
        cmd += ["--data", *(str(ROOT / f"data/toy/rl/{d}.jsonl") for d in args.domains.split(","))]
    if args.train_zero_advantage:
        cmd.append("--train-zero-advantage")
    rss = run_logged(cmd, out.with_suffix(".log"), f"m2rl ({engine} engine)")
    metrics = [row for _, row in read_jsonl(out / "metrics.jsonl")][args.warmup:]
    shutil.rmtree(out)  # its checkpoint, ~10 GB at the 0.6B shape: --runs of them would fill the disk
    rows = []
    for m in metrics:
        split = {k: m[f"time/{k}_s"] for k in ("generate", "reward", "logprob", "train", "sync")}
        rows.append({"step": sum(split.values()), "generate": split["generate"], "reward": split["reward"],
                     "train": split["train"], "other": split["logprob"] + split["sync"],
                     "computed": m["train/computed_fraction"],
                     "response_len": m["rollout/all/response_len"], "reward_mean": m["reward/all/mean"]})
    return summary(f"m2rl train_grpo.py, {engine} engine", "logprob + weight sync", rows, rss, args)


def trl_steps(args, out: Path) -> dict:
    out.mkdir()
    cmd = [args.trl_python, __file__, "--trl-worker", str(out / "trl.json"), "--model", args.model, "--domains",
           args.domains, "--prompts", str(args.prompts), "--group-size", str(args.group_size), "--max-new-tokens",
           str(args.max_new_tokens), "--lr", str(args.lr), "--warmup", str(args.warmup), "--steps", str(args.steps),
           "--seed", str(args.seed)]
    rss = run_logged(cmd, out / "trl.log", "TRL GRPOTrainer")
    worker = json.loads((out / "trl.json").read_text())
    return summary(worker["name"], "tokenise, decode, advantages", worker["rows"], rss, args)


def summary(name: str, other_is: str, rows: list[dict], peak_rss_gib: float, args) -> dict:
    """The mean of each per-step column; rollout tokens/s over all measured steps; the run's peak RSS."""
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    tokens = sum(r["response_len"] for r in rows) * args.prompts * args.group_size
    return {"name": name, "other_is": other_is, **mean, "rollout_tps": tokens / sum(r["generate"] for r in rows),
            "peak_rss_gib": peak_rss_gib}


def run_logged(cmd, log: Path, what: str) -> float:
    """Run cmd to completion; its peak RSS in GiB."""
    print(f"{what}: {' '.join(cmd)}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as f:
        child = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        # wait4 rather than getrusage(RUSAGE_CHILDREN), whose ru_maxrss is the largest of ALL children so far: this
        # child's own high-water mark (the max over its tree's processes, not their sum), in KiB on Linux
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{what} failed (exit {child.returncode}); the end of its log:\n{tail}")
    return usage.ru_maxrss / 2**20


# ---------------------------------------------------------------------------------------------------------------
# TRL: runs in the TRL venv (--trl-worker), never imported into .venv


def trl_worker(args):
    import datasets
    import transformers
    import trl
    from trl.extras.profiling import ProfilingContext

    # TRL times its own blocks but only forwards the durations to wandb/mlflow/trackio: keep them instead
    blocks = []  # (global step at entry, block name, seconds)
    ProfilingContext._log_metrics = lambda self, seconds: blocks.append((self.step, self.name, seconds))

    class StepClock(transformers.TrainerCallback):
        def __init__(self):
            self.ends, self.logs = [], []

        def on_train_begin(self, *_, **__):
            self.ends.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "reward" in logs:  # one training log per step (logging_steps=1)
                self.logs.append(logs)

    tokenizer = Tokenizer.from_dir(args.model)
    records = {r.id: r for r in toy_records(args.domains)}
    dataset = datasets.Dataset.from_list([
        {"prompt": tokenizer.render_chat(r.messages, add_generation_prompt=True), "record_id": r.id}
        for r in records.values()])
    pool = rewards.ScorePool()  # as train_grpo: one worker per core

    def toy_reward(completions, record_id, **_):
        return [s.reward for s in pool.score([records[i] for i in record_id], completions)]

    config = trl.GRPOConfig(
        output_dir=str(Path(args.trl_worker).parent / "trainer"), use_cpu=True, bf16=False,
        gradient_checkpointing=False, per_device_train_batch_size=args.prompts * args.group_size,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.0, loss_type="grpo", epsilon=0.2, epsilon_high=0.28,  # train_grpo's defaults
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.1, adam_beta1=0.9,
        adam_beta2=0.98, max_grad_norm=1.0, max_steps=args.warmup + args.steps, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=args.seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    clock = StepClock()
    trainer = trl.GRPOTrainer(model=model, reward_funcs=toy_reward, args=config, train_dataset=dataset,
                              processing_class=transformers.AutoTokenizer.from_pretrained(args.model),
                              callbacks=[clock])
    trainer.train()
    pool.close()

    def seconds_in(name, i):  # TRL's profiling block `name` during the step that starts at global step i
        return sum(s for step, block, s in blocks if step == i and block == f"GRPOTrainer.{name}")

    rows = []
    for i in range(args.warmup, args.warmup + args.steps):
        step = clock.ends[i + 1] - clock.ends[i]
        generate, reward = seconds_in("transformers.generate", i), seconds_in("_calculate_rewards", i)
        prepare = seconds_in("_prepare_inputs", i)  # generate + reward + tokenising, decoding, advantages
        rows.append({"step": step, "generate": generate, "reward": reward,
                     "train": step - prepare,  # the loss forward, backward, optimizer step, logging
                     "other": prepare - generate - reward, "computed": 1.0,  # TRL trains on every sample
                     "response_len": clock.logs[i]["completions/mean_length"],
                     "reward_mean": clock.logs[i]["reward"]})
    name = f"TRL {trl.__version__} GRPOTrainer (transformers {transformers.__version__} generate)"
    Path(args.trl_worker).write_text(json.dumps({"name": name, "rows": rows}))


# ---------------------------------------------------------------------------------------------------------------
# Rollout throughput: one step's 64 sequences


def rollout_throughput(args, vllm_missing, skipped) -> list[dict]:
    import transformers

    from model import SamplingParams
    from rollout import open_engine

    tokenizer = Tokenizer.from_dir(args.model)
    records = toy_records(args.domains)
    picked = [records[i] for i in torch.randperm(len(records), generator=torch.Generator().manual_seed(args.seed))
              [:args.prompts].tolist()]
    prompts = [(r.id, tokenizer.encode_chat(r.messages, add_generation_prompt=True)) for r in picked]
    stop = [tokenizer.im_end_id, tokenizer.pad_id]
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=args.seed,
                              stop_token_ids=stop)

    hf = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                           attn_implementation="sdpa").eval()
    rows = [ids for _, ids in prompts for _ in range(args.group_size)]
    L = max(map(len, rows))
    input_ids = torch.tensor([[tokenizer.pad_id] * (L - len(r)) + r for r in rows])  # (B, L) left-padded
    attention_mask = (torch.arange(L)[None, :] >= torch.tensor([L - len(r) for r in rows])[:, None]).long()

    @torch.no_grad()
    def run_transformers() -> int:
        out = hf.generate(input_ids, attention_mask=attention_mask, do_sample=True, temperature=1.0, top_k=0,
                          top_p=1.0, max_new_tokens=args.max_new_tokens, eos_token_id=stop,
                          pad_token_id=tokenizer.pad_id)[:, L:]  # (B, generated)
        finished = torch.isin(out, torch.tensor(stop))
        # tokens up to and including the first stop token, as the engines count them
        return int(torch.where(finished.any(1), finished.int().argmax(1) + 1, out.shape[1]).sum())

    engines = {f"transformers {transformers.__version__} generate (fp32, sdpa)": run_transformers}
    native = open_engine(args.model, "native", batch_size=args.prompts * args.group_size)
    engines["m2rl native engine (fp32)"] = lambda: sum(len(s.response_ids) for s in
                                                       native.generate(prompts, args.group_size, sampling))
    if vllm_missing:
        skipped.append(f"rollout with vLLM: {vllm_missing}")
    else:
        import vllm
        engine = open_engine(args.model, "vllm", seed=args.seed, max_model_len=L + args.max_new_tokens)
        dtype = str(engine.llm.model_config.dtype).removeprefix("torch.")
        engines[f"m2rl vLLM engine (vllm {vllm.__version__}, {dtype})"] = lambda: sum(
            len(s.response_ids) for s in engine.generate(prompts, args.group_size, sampling))

    calls = {name: [] for name in engines}  # (tokens, seconds) per timed call
    for fn in engines.values():
        fn()  # warm-up: allocator, caches, first-call costs
    for _ in range(args.repeats):
        for name, fn in engines.items():
            tick = time.perf_counter()
            tokens = fn()
            calls[name].append((tokens, time.perf_counter() - tick))
    return [{"name": name, "tokens": sum(t for t, _ in calls[name]) / args.repeats,
             "seconds": [s for _, s in calls[name]], "tps": [t / s for t, s in calls[name]]} for name in engines]


def toy_records(domains: str):
    return [r for d in domains.split(",") for r in load_records(ROOT / f"data/toy/rl/{d}.jsonl")]


# ---------------------------------------------------------------------------------------------------------------
# The report


def spread(values: list[float], fmt: str = ".2f") -> str:
    """median [min-max]: the figure and how far repeated measurements of it moved."""
    values = sorted(values)
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return f"{median:{fmt}} [{values[0]:{fmt}}-{values[-1]:{fmt}}]" if len(values) > 1 else f"{median:{fmt}}"


def report(args, runs: list[list[dict]], rollout_rows, skipped, load_before) -> str:
    """runs: per trainer, its runs' summaries (each the mean of that run's measured steps)."""
    lines = ["# GRPO step and rollout throughput (`bench/grpo_step.py`)", "",
             f"Model `{args.model}`, prompts from the toy RL split of {args.domains}, {args.prompts} prompts x "
             f"{args.group_size} samples, up to {args.max_new_tokens} new tokens, temperature 1; "
             f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores, load average {load_before:.1f} before "
             f"and {os.getloadavg()[0]:.1f} after (other jobs on the machine slow every number here; compare ratios "
             f"within one run only). Figures are median [min-max] over the repeats.", ""]
    if runs:
        import memory
        from model import Qwen3Config
        n = memory.parameter_count(Qwen3Config.from_dir(args.model))
        lines += [f"Both trainers hold the fp32 weights, their gradients and AdamW's two moments: 16 bytes x {n:,} "
                  f"parameters = {16 * n / 2**30:.2f} GiB, the floor under either's peak RSS.", ""]
        trl = next((r for r in runs if r[0]["name"].startswith("TRL")), None)
        lines += [f"## One GRPO step: {args.runs} interleaved runs of each trainer, each the mean of {args.steps} "
                  f"steps after {args.warmup} warm-up", "",
                  "| trainer | step s | generate s | reward s | train s | other s (what) | samples computed | "
                  "response tokens | rollout tok/s | mean reward | step / TRL's (per run) | peak RSS GiB | "
                  "peak RSS / TRL's (per run) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            column = {key: [run[key] for run in r] for key in r[0] if key not in ("name", "other_is")}
            ratio = spread([a["step"] / b["step"] for a, b in zip(r, trl)]) + "x" if trl else "-"
            rss_ratio = spread([a["peak_rss_gib"] / b["peak_rss_gib"] for a, b in zip(r, trl)]) + "x" if trl else "-"
            lines.append(f"| {r[0]['name']} | {spread(column['step'])} | {spread(column['generate'])} | "
                         f"{spread(column['reward'])} | {spread(column['train'])} | {spread(column['other'])} "
                         f"({r[0]['other_is']}) | {spread(column['computed'])} | "
                         f"{spread(column['response_len'], '.1f')} | "
                         f"{spread(column['rollout_tps'], ',.0f')} | {spread(column['reward_mean'], '.3f')} | "
                         f"{ratio} | {spread(column['peak_rss_gib'])} | {rss_ratio} |")
        lines.append("")
    if rollout_rows:
        base = rollout_rows[0]["tps"]
        lines += [f"## Rollout: {args.prompts * args.group_size} sequences, {args.repeats} interleaved calls per "
                  f"engine after one warm-up", "",
                  "| engine | tokens per call | s per call | tokens/s | tokens/s over transformers' (per call) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['tokens']:,.0f} | {spread(r['seconds'])} | {spread(r['tps'], ',.0f')} | "
                  f"{spread([a / b for a, b in zip(r['tps'], base)])}x |" for r in rollout_rows]
        lines.append("")
    lines += [f"Skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parsed = parser.parse_args()
    if parsed.trl_worker:
        trl_worker(parsed)
    else:
        main(parsed)
