"""Peak RSS per rank while a trainer builds and loads its model, at the real Qwen3-0.6B shape on 2 ranks (gloo, CPU).

    .venv/bin/python bench/load_rss.py            # about a minute on 2 cores; prints a table, writes load_rss.json

A random-weight checkpoint of the Qwen3-0.6B shape (PRESETS["0.6B"]: hidden 1024, 28 layers, 16 q / 8 kv heads of
128, intermediate 3072, vocab 151,936, tied) is written once as a bf16 HF directory in --work, tensor by tensor. Then
each loading path runs under `torchrun --nproc_per_node 2`, each in fresh processes (a peak is a process's
lifetime maximum):
  sharded  dist.load_sharded, what the trainers do: meta device, fully_shard, each rank reads only its rows;
  full     the path before it: model.load_model builds the whole fp32 model on every rank, then fully_shard.
Each rank reports VmRSS after `import torch` and the process group (the floor every trainer pays before any
model), and VmHWM (/proc/self/status, the peak resident set) after loading, against the full fp32 model's bytes.
The target (issue 17.6): the sharded peak under 0.6x the full fp32 model, i.e. half the weights plus what is in
flight.

Measured here (2 ranks, gloo):
  Qwen3-0.6B (full fp32 model 2.22 GiB): sharded peak 1.48 GiB a rank = 0.26 floor (torch, gloo and the modules
    dist.py imports) + 1.11 shard + 0.10 of modules fully_shard imports on first use (torch._dynamo, Triton, sympy)
    + ~0.01 in flight: 0.55x above the floor, 0.67x in all; the full path peaks at 2.66 GiB (1.20x).
  Qwen3-4B (--preset 4B --modes sharded, full fp32 model 14.99 GiB): 7.89 GiB a rank = 0.26 floor + 7.49 shard +
    the same imports: 0.53x in all. The floor is the process's, not the model's: 0.12x of the 0.6B model, 0.02x of 4B.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from model import PRESETS, Qwen3Config, Qwen3ForCausalLM, load_model, save_checkpoint  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--preset", default="0.6B", choices=["0.6B", "4B"], help="the model shape (model.PRESETS)")
parser.add_argument("--work", help="the checkpoint (made once, reused; default /tmp/m2rl-qwen3-PRESET-random-bf16)")
parser.add_argument("--out", default="runs/bench/load_rss.json")
parser.add_argument("--modes", default="sharded,full", help="comma-separated: sharded, full")
parser.add_argument("--nproc", type=int, default=2)
GIB = 2**30


def main(args):
    config = Qwen3Config(**PRESETS[args.preset])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen3ForCausalLM(config).state_dict().items()}
    full_fp32 = sum(s.numel() for k, s in shapes.items() if k != "lm_head.weight") * 4  # tied: one copy
    work = Path(args.work or f"/tmp/m2rl-qwen3-{args.preset.lower()}-random-bf16")
    if not (work / "config.json").exists():
        gen = torch.Generator().manual_seed(0)
        save_checkpoint(work, ((k, (torch.ones(s) if k.endswith("norm.weight") else
                                    torch.randn(s, generator=gen) * config.initializer_range).to(torch.bfloat16))
                               for k, s in shapes.items()), config)
    results = []
    for mode in args.modes.split(","):
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                              str(args.nproc), __file__, "--rank-side", str(work), mode],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT, capture_output=True,
                             text=True)
        if run.returncode:
            raise SystemExit(f"{mode}: torchrun failed:\n{run.stderr[-3000:]}")
        results += [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    lines = [f"Qwen3-{args.preset} shape, {full_fp32 / 4e6:.1f}M parameters: full fp32 model {full_fp32 / GIB:.3f} GiB; "
             f"{args.nproc} ranks (gloo, CPU)",
             "| path | rank | RSS after import + init | peak RSS (VmHWM) | peak / full fp32 "
             "| (peak - floor) / full fp32 | local shard | load s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['rank']} | {r['floor'] / GIB:.3f} GiB | {r['peak'] / GIB:.3f} GiB | "
                     f"{r['peak'] / full_fp32:.2f}x | {(r['peak'] - r['floor']) / full_fp32:.2f}x | "
                     f"{r['local'] / GIB:.3f} GiB | {r['seconds']:.1f} |")
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"full_fp32_bytes": full_fp32, "ranks": results}, indent=2))


def kib(key: str) -> int:
    """A /proc/self/status line (VmRSS, VmHWM), in bytes."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def rank_side(work, mode):
    import dist as m2rl_dist

    rank, world, device = m2rl_dist.init()
    floor = kib("VmRSS")
    t0 = time.perf_counter()
    if mode == "sharded":
        model = m2rl_dist.load_sharded(work, device, bf16=False)
    else:
        model = m2rl_dist.shard(load_model(work, device, torch.float32), bf16=False)
    seconds = time.perf_counter() - t0
    local = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    mine = {"mode": mode, "rank": rank, "floor": floor, "peak": kib("VmHWM"), "local": local, "seconds": seconds}
    everyone = m2rl_dist.gather(mine)  # a collective: every rank takes part
    if rank == 0:
        print("\n".join(json.dumps(r) for r in everyone))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-side"]:
        rank_side(*sys.argv[2:4])
    else:
        main(parser.parse_args())
