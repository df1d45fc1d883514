"""Native generation (model.generate) against transformers' generate on the same tiny model, measured in one run.

    .venv/bin/python bench/generate.py            # batch 64, 128 new tokens, tiny preset, greedy, CPU

Both decode exactly --new-tokens tokens per row (no early stop) from the same left-padded prompts. After one warm-up
call each, the engines run in turns (native, native compiled, transformers, native, ...) --repeats times, so that
load from other processes slows all alike; the figure is generated tokens per second of wall time, median [min-max]
over the repeats, and the ratio native / transformers of the medians beside the range of the per-turn ratios (each
turn's calls ran back to back). The same ratios in process CPU time are less sensitive to other processes sharing
the cores (time slicing does not count; cache contention still does). The native engine runs twice: eager, and with its
decode step compiled (generate(compile=True); the compile is paid in the warm-up call, whose time is printed). The
greedy tokens are compared with transformers' as a check that all did the same work.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model import SamplingParams, from_preset, generate, save_model  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="tiny")
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--new-tokens", type=int, default=128)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--threads", type=int, default=torch.get_num_threads())
args = parser.parse_args()
torch.set_num_threads(args.threads)

import transformers  # noqa: E402  (a benchmark-only peer)

model = from_preset(args.preset, seed=0).eval()
gen = torch.Generator().manual_seed(0)
prompts = [torch.randint(5, model.config.vocab_size, (int(n),), generator=gen).tolist()
           for n in torch.randint(8, 48, (args.batch,), generator=gen)]

with tempfile.TemporaryDirectory() as d:
    save_model(model, d)
    hf = transformers.Qwen3ForCausalLM.from_pretrained(d, attn_implementation="sdpa").eval()

L = max(map(len, prompts))
input_ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
attention_mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])


def run_native(compile=False):
    out = generate(model, prompts, SamplingParams(max_new_tokens=args.new_tokens, temperature=0), compile=compile)
    return [o["token_ids"] for o in out]


def run_transformers():
    with torch.no_grad():
        out = hf.generate(input_ids, attention_mask=attention_mask, max_new_tokens=args.new_tokens,
                          min_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[:, L:].tolist()


peer = f"transformers {transformers.__version__}"
engines = {"native": run_native, "native, compiled decode step": lambda: run_native(compile=True),
           peer: run_transformers}
tokens = {}
for name, fn in engines.items():  # warm-up: first-call costs (allocator, lazy init, the compile)
    t0 = time.perf_counter()
    tokens[name] = fn()
    print(f"warm-up {name}: {time.perf_counter() - t0:.1f} s")
seconds, cpu = {name: [] for name in engines}, {name: [] for name in engines}
for _ in range(args.repeats):
    for name, fn in engines.items():
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        seconds[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - c0)

n = args.batch * args.new_tokens
print(f"preset {args.preset}, batch {args.batch}, {args.new_tokens} new tokens, {args.threads} threads, "
      f"{args.repeats} interleaved repeats: median [min-max]; ratios of medians [range over turns]")
print("| engine | tokens/s (wall) | vs transformers (wall) | vs transformers (process CPU time) "
      "| greedy rows identical to transformers' |")
print("|---|---|---|---|---|")
for name, s in seconds.items():
    turns = [p / t for t, p in zip(s, seconds[peer])]
    cpu_turns = [p / t for t, p in zip(cpu[name], cpu[peer])]
    same = sum(a == b for a, b in zip(tokens[name], tokens[peer]))
    print(f"| {name} | {n / statistics.median(s):,.0f} [{n / max(s):,.0f}-{n / min(s):,.0f}] "
          f"| {statistics.median(seconds[peer]) / statistics.median(s):.2f}x [{min(turns):.2f}-{max(turns):.2f}] "
          f"| {statistics.median(cpu[peer]) / statistics.median(cpu[name]):.2f}x "
          f"[{min(cpu_turns):.2f}-{max(cpu_turns):.2f}] | {same}/{args.batch} |")
