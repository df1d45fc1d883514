"""merge.py against mergekit: wall time and peak RSS on the same merges of 4 random Qwen3-0.6B-shaped checkpoints,
and each time as a multiple of the I/O floor.

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
TIES (the paper's default, three read passes) has no counterpart in mergekit: it is timed against mergekit's TIES, the
one TIES mergekit has.

The I/O floor is what moving the merge's bytes costs on this machine, measured here: reading every input file from the
page cache into a buffer and writing the output's bytes to a file in --work (no fsync; neither tool syncs). Each tool,
and the floor, runs as its own process, one at a time, with the inputs already in the page cache, --repeats rounds,
interleaved (every tool once per round), so that load on a shared machine falls on all of them alike; the table gives
the median wall time with [min–max] over the rounds, and the largest peak RSS (GNU time's %M for that process).
"""
import argparse
import json
import os
import statistics
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
p.add_argument("--repeats", type=int, default=3, help="rounds, each running every tool once (interleaved)")
p.add_argument("--methods", nargs="+", default=["average", "task_arithmetic", "ties (per tensor)", "ties (model-wide)"],
               help="the rows to run (a mergekit merge shared by two rows runs once per round)")
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


def io_floor(output_bytes: int):
    """Seconds to read every input file from the page cache into one buffer and write output_bytes from it to a file:
    the bytes any merge of these checkpoints must move, at this machine's copy bandwidth."""
    buffer = memoryview(bytearray(1 << 26))
    start = time.perf_counter()
    for file in sorted(work.glob("*/*.safetensors")):
        if file.parent.name in ("base", *LABELS):
            with open(file, "rb", buffering=0) as f:
                while f.readinto(buffer):
                    pass
    with open(work / "floor.bin", "wb", buffering=0) as f:
        for start_byte in range(0, output_bytes, len(buffer)):
            f.write(buffer[:min(len(buffer), output_bytes - start_byte)])
    seconds = time.perf_counter() - start
    (work / "floor.bin").unlink()
    return seconds


def spread(values):
    return dict(median=statistics.median(values), min=min(values), max=max(values))


n_params = make_checkpoints()
warm_page_cache()
input_bytes = sum(f.stat().st_size for label in ("base", *LABELS) for f in (work / label).glob("*.safetensors"))
output_bytes = sum(f.stat().st_size for f in (work / "base").glob("*.safetensors"))  # the merge keeps the base's dtype
ours_models = ["--models", *(f"{label}={work / label}" for label in LABELS)]
rows = {  # name: (our merge.py flags, the mergekit merge_method it is timed against, whether the outputs should agree)
    "average": (["--method=average"], "linear", True),
    "task_arithmetic": (["--method=task_arithmetic"], "task_arithmetic", True),
    "ties (per tensor)": (["--method=ties", "--ties-scope=tensor"], "ties", True),
    "ties (model-wide)": (["--method=ties", "--ties-scope=model"], "ties", False),
}
unknown = set(args.methods) - set(rows)
if unknown:
    raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {list(rows)}")
rows = {name: rows[name] for name in args.methods}
tools = {}  # tool -> (command, its output directory)
for name, (flags, mk_method, _) in rows.items():
    ours_dir = work / f"out-ours-{name.replace(' (', '-').rstrip(')')}"
    tools[f"ours: {name}"] = ([sys.executable, REPO / "merge.py", f"--base={work / 'base'}", *ours_models, *flags,
                              f"--out={ours_dir}"], ours_dir)
    config = work / f"mergekit-{mk_method}.yml"
    config.write_text(mergekit_config(mk_method))
    tools[f"mergekit: {mk_method}"] = ([args.mergekit, config, work / f"out-mergekit-{mk_method}"],
                                       work / f"out-mergekit-{mk_method}")
out.mkdir(parents=True, exist_ok=True)
results = dict(preset=args.preset, params=n_params, models=len(LABELS), threads=torch.get_num_threads(),
               omp_num_threads=os.environ.get("OMP_NUM_THREADS"), repeats=args.repeats, input_bytes=input_bytes,
               output_bytes=output_bytes, load_before=os.getloadavg(), rows={})
seconds, rss, floor = {tool: [] for tool in tools}, {tool: [] for tool in tools}, []
for round_ in range(args.repeats):
    floor.append(io_floor(output_bytes))
    for tool, (cmd, _) in tools.items():
        wall, peak = timed(cmd, work / "tool.log")
        seconds[tool].append(wall)
        rss[tool].append(peak)
        print(f"round {round_ + 1}/{args.repeats}: {tool} {wall:.1f} s, {peak:.2f} GiB", flush=True)
results["io_floor_s"] = spread(floor)
results["copy_gb_per_s"] = (input_bytes + output_bytes) / 1e9 / statistics.median(floor)
for name, (flags, mk_method, agree) in rows.items():
    ours, theirs = f"ours: {name}", f"mergekit: {mk_method}"
    row = dict(ours_s=spread(seconds[ours]), ours_rss_gib=max(rss[ours]), mergekit_method=mk_method,
               mergekit_s=spread(seconds[theirs]), mergekit_rss_gib=max(rss[theirs]))
    row["time_ratio"] = spread([a / b for a, b in zip(seconds[ours], seconds[theirs])])  # per round: same load
    row["rss_ratio"] = row["ours_rss_gib"] / row["mergekit_rss_gib"]
    row["floor_multiple"] = spread([a / b for a, b in zip(seconds[ours], floor)])
    if agree:
        row["max_abs_diff"], row["frac_entries_differ"] = compare(tools[ours][1], tools[theirs][1])
    results["rows"][name] = row
results["load_after"] = os.getloadavg()

write_atomic(out / "merge_bench.json", json.dumps(results, indent=2))
print(f"\n{args.preset} ({n_params / 1e9:.2f}B params) x {len(LABELS)} models, bf16, {results['threads']} threads, "
      f"load average {results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}; I/O floor "
      f"{(input_bytes + output_bytes) / 1e9:.2f} GB in {results['io_floor_s']['median']:.2f} s "
      f"[{results['io_floor_s']['min']:.2f}-{results['io_floor_s']['max']:.2f}] "
      f"({results['copy_gb_per_s']:.1f} GB/s); median [min-max] over {args.repeats} rounds; ratios ours / mergekit")


def fmt(x):
    return f"{x['median']:.1f} [{x['min']:.1f}-{x['max']:.1f}]"


print("| merge | ours s | mergekit s (method) | time ratio | x I/O floor | ours peak RSS | mergekit peak RSS | RSS ratio "
      "| outputs |")
print("|---|---|---|---|---|---|---|---|---|")
for name, r in results["rows"].items():
    outputs = (f"max |diff| {r['max_abs_diff']:.1e}, {r['frac_entries_differ']:.1e} of entries differ"
               if "max_abs_diff" in r else "other maths (model-wide trim)")
    ratio = r["time_ratio"]
    print(f"| {name} | {fmt(r['ours_s'])} | {fmt(r['mergekit_s'])} ({r['mergekit_method']}) | {ratio['median']:.2f} "
          f"[{ratio['min']:.2f}-{ratio['max']:.2f}] | {fmt(r['floor_multiple'])} | {r['ours_rss_gib']:.2f} GiB | "
          f"{r['mergekit_rss_gib']:.2f} GiB | {r['rss_ratio']:.2f} | {outputs} |")
