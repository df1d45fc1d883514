"""merge.py against mergekit: wall time and peak RSS on the same merges of 4 random Qwen3-0.6B-shaped checkpoints.

    .venv/bin/python bench/merge.py                      # writes runs/bench/merge/merge_bench.json, prints a table

mergekit is a benchmark-only dependency, kept out of our venv (it pins its own transformers):
    python -m venv /tmp/mergekit-venv
    /tmp/mergekit-venv/bin/pip install torch==2.13.0 mergekit==0.1.5   # torch first, so pip takes the CPU wheel

The checkpoints (base + math/code/science/if, bf16, ~1.2 GB each) are generated once into --work and reused. mergekit's
defaults differ from ours, so it is configured to the same maths: fp32 arithmetic and bf16 output (dtype/out_dtype),
linear with normalize (our average), task_arithmetic with normalize off and λ 1 (a sum), ties with density 0.2, weight 1,
normalize on (the disjoint mean) — against our --ties-scope tensor, since mergekit trims per tensor. Each pair's outputs
are compared tensor by tensor: TIES differs only where magnitudes tie at the threshold and by one entry per tensor
(MergeLM's kthvalue rule keeps |δ| ≥ the k-th smallest, mergekit's argsort keeps exactly ⌊density · n⌋). Our model-wide
TIES (the paper's default, three read passes) has no mergekit counterpart and is timed alone. Each tool runs as its own
process, one at a time, with the inputs already in the page cache, --repeats times, alternating the tools; the fastest
wall time and the largest peak RSS (GNU time's %M for that process) are reported, since other jobs on a shared machine
only ever add time.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from files import write_atomic  # noqa: E402
from model import PRESETS, CheckpointReader, Qwen3Config, Qwen3ForCausalLM, save_checkpoint  # noqa: E402
from rewards import DOMAINS  # noqa: E402

LABELS = tuple(DOMAINS)  # one model per domain, as the study merges
TOKENIZER = REPO.parent / "shared" / "peer" / "qwen3-tokenizer"  # the real Qwen3 tokenizer, copied into the checkpoints

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--work", default="/tmp/m2rl-merge-bench", help="where the input checkpoints and merge outputs go")
p.add_argument("--out", default="runs/bench/merge", help="where merge_bench.json goes")
p.add_argument("--preset", default="0.6B", choices=tuple(PRESETS))
p.add_argument("--mergekit", default="/tmp/mergekit-venv/bin/mergekit-yaml")
p.add_argument("--repeats", type=int, default=2, help="runs per tool, interleaved; the fastest is reported")
args = p.parse_args()
work, out = Path(args.work), Path(args.out)
if not Path(args.mergekit).exists():
    raise SystemExit(f"{args.mergekit} not found: install mergekit in its own venv as this file's docstring shows, "
                     "or point --mergekit at mergekit-yaml")


def make_checkpoints():
    """Base: N(0, 0.02) linears/embedding, norms at 1 (as init_weights). Model `label`: base + N(0, 0.002), dense, in
    bf16 — every tensor generated and written one at a time, seeded by its name."""
    cfg = Qwen3Config(**PRESETS[args.preset], dtype="bfloat16")
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in Qwen3ForCausalLM(cfg).named_parameters()}  # a tied head appears once

    def tensors(label):
        for name, shape in shapes.items():
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            theta = torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape, generator=gen) * 0.02
            if label != "base":
                gen = torch.Generator().manual_seed(zlib.crc32(f"{label}/{name}".encode()))
                theta += torch.randn(shape, generator=gen) * 0.002
            yield name, theta.to(torch.bfloat16)

    for label in ("base", *LABELS):
        if not (work / label / "config.json").exists():
            print(f"writing {work / label}")
            save_checkpoint(work / label, tensors(label), cfg, source_dir=TOKENIZER if TOKENIZER.exists() else None)
    return sum(s.numel() for s in shapes.values())


def mergekit_config(method: str) -> str:
    density = ", density: 0.2" if method == "ties" else ""
    models = "\n".join(f"  - model: {work / label}\n    parameters: {{weight: 1.0{density}}}" for label in LABELS)
    base = "" if method == "linear" else f"base_model: {work / 'base'}\n"
    params = {"linear": "{normalize: true}", "task_arithmetic": "{normalize: false, lambda: 1.0}",
              "ties": "{normalize: true, lambda: 1.0}"}[method]
    return (f"merge_method: {method}\n{base}models:\n{models}\nparameters: {params}\n"
            "dtype: float32\nout_dtype: bfloat16\n")


def timed(cmd, log: Path):
    """Run cmd under GNU time; returns (wall seconds, peak RSS in GiB) of that process alone. (ru_maxrss from our own
    wait4 would be wrong: a forked child starts with this process's resident set, and exec keeps that peak.)"""
    rss = log.with_suffix(".rss")
    with open(log, "w") as f:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss, *cmd], stdout=f, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed; see {log}")
    return wall, int(rss.read_text().split()[-1]) / 2**20  # %M is in KiB


def compare(ours: Path, theirs: Path):
    """max |ours − theirs| and the fraction of entries that differ, over every tensor we wrote."""
    a, b = CheckpointReader(ours), CheckpointReader(theirs)
    worst, differ, total = 0.0, 0, 0
    for name in a.names():
        x, y = a.get(name).float(), b.get(name).float()
        worst = max(worst, (x - y).abs().max().item())
        differ += (x != y).sum().item()
        total += x.numel()
    return worst, differ / total


def warm_page_cache():
    for file in work.glob("*/*.safetensors"):
        with open(file, "rb") as f:
            while f.read(1 << 26):
                pass


n_params = make_checkpoints()
warm_page_cache()
ours_models = ["--models", *(f"{label}={work / label}" for label in LABELS)]
runs = {  # name: (our merge.py flags, mergekit merge_method or None)
    "average": (["--method=average"], "linear"),
    "task_arithmetic": (["--method=task_arithmetic"], "task_arithmetic"),
    "ties (per tensor)": (["--method=ties", "--ties-scope=tensor"], "ties"),
    "ties (model-wide)": (["--method=ties", "--ties-scope=model"], None),
}
out.mkdir(parents=True, exist_ok=True)
results = dict(preset=args.preset, params=n_params, models=len(LABELS), threads=torch.get_num_threads(),
               repeats=args.repeats, load_before=os.getloadavg(), runs={})
for name, (flags, mk_method) in runs.items():
    ours_dir, mk_dir = work / "out-ours", work / "out-mergekit"
    ours_cmd = [sys.executable, REPO / "merge.py", f"--base={work / 'base'}", *ours_models, *flags, f"--out={ours_dir}"]
    if mk_method:
        config = work / f"mergekit-{mk_method}.yml"
        config.write_text(mergekit_config(mk_method))
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(timed(ours_cmd, work / "ours.log"))
        if mk_method:
            theirs.append(timed([args.mergekit, config, mk_dir], work / "mergekit.log"))
    row = dict(ours_s=min(t for t, _ in ours), ours_rss_gib=max(m for _, m in ours))
    if mk_method:
        row.update(mergekit_s=min(t for t, _ in theirs), mergekit_rss_gib=max(m for _, m in theirs))
        row["time_ratio"] = row["mergekit_s"] / row["ours_s"]
        row["rss_ratio"] = row["mergekit_rss_gib"] / row["ours_rss_gib"]
        row["max_abs_diff"], row["frac_entries_differ"] = compare(ours_dir, mk_dir)
    results["runs"][name] = row
    print(name, json.dumps(row))
results["load_after"] = os.getloadavg()

write_atomic(out / "merge_bench.json", json.dumps(results, indent=2))
print(f"\n{args.preset} ({n_params / 1e9:.2f}B params) x {len(LABELS)} models, bf16, {results['threads']} threads, "
      f"load average {results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}")
print(f"{'method':<20}{'merge.py':>10}{'mergekit':>10}{'speed-up':>10}{'RSS ours':>10}{'mergekit':>10}{'ratio':>7}"
      f"{'max|diff|':>11}{'differ':>9}")
for name, r in results["runs"].items():
    mk = (f"{r['mergekit_s']:>9.1f}s{r['time_ratio']:>9.2f}x" if "mergekit_s" in r else f"{'-':>10}{'-':>10}")
    rss = (f"{r['mergekit_rss_gib']:>8.2f}G{r['rss_ratio']:>6.2f}x{r['max_abs_diff']:>11.2e}"
           f"{r['frac_entries_differ']:>9.1e}" if "mergekit_s" in r else "")
    print(f"{name:<20}{r['ours_s']:>9.1f}s{mk}{r['ours_rss_gib']:>9.2f}G{rss}")
