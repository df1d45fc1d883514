"""The toy M2RL study end to end: mix or merge, on the embedded tiny model and the toy data, on a CPU.

    python experiment.py                      # the default study (make experiment)
    python experiment.py --quick --out /tmp/x # a smoke test: a few steps, few prompts, greedy, one process
    python experiment.py --seeds 3            # the RL stages three times: mean ± std in every table

It starts from the embedded SFT model data/tiny-sft (`make tiny-sft` remakes it) and runs the existing scripts as
subprocesses, stage by stage, per seed s:
    rl-<d>/seed<s>        train_grpo.py --domains d, for d in math, code, science, if     (separate training)
    rl-multi/seed<s>      train_grpo.py --domains math,code,science,if, same per-step batch, twice the steps
                                                                                          (mixed multi-task)
    merge/seed<s>/<m>     merge.py of the four experts, m in average ... sce              (the paper's six merges)
    mt-opd/seed<s>        train_grpo.py --teachers the four experts, twice the prompts x 4 samples
                                                                                          (multi-teacher OPD)
    eval/seed<s>          evaluate.py: every model on every toy benchmark, Avg@K
    analysis/seed<s>      analyze.py weights, gains and (unless --quick) kl
then writes results/: the accuracy matrix, the merge-method comparison, MT-OPD against its teachers, the compute-cost
table, the training curves (the paper's Fig. 2) and the analysis heatmaps. A stage whose output exists is skipped, so
a rerun resumes where an interrupted one stopped; a failing stage stops the run with its command and the tail of its
log.

Compute cost: the CPU seconds (user + system) of each stage's process tree, from getrusage(RUSAGE_CHILDREN) around
it, kept in stages.json so that a resumed run still knows what skipped stages cost. The paper's headline is the
multi-task run's share of separate training (33.2% of the GPU hours); ours is CPU-s(rl-multi) / sum_d CPU-s(rl-d).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from matplotlib.figure import Figure

from cli import HelpFormatter
from curves import save_figure
from files import read_jsonl, write_atomic
from merge_methods import METHODS
from report import table as markdown_table
from rewards import DOMAINS

ROOT = Path(__file__).resolve().parent
SFT = ROOT / "data/tiny-sft"
MERGES = tuple(METHODS)  # the registry of merge_methods.py: the paper's six merges
BENCHMARKS = [f"toy_{d}" for d in DOMAINS]
STAGES = ("rl", "multi", "merge", "opd", "eval", "analyze")
# (default, --quick): the default is sized for ~1 hour on a 2-core CPU, --quick for a few minutes
SIZES = {"steps": (60, 4), "eval_prompts": (400, 20), "k": (2, 1), "temperature": (0.6, 0.0),
         "ranks": (2, 1), "eval_every": (10, 2), "train_eval_prompts": (100, 8)}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
parser.add_argument("--out", default="runs/experiment",
                    help="the stages' directories (rl-<d>, merge, eval, ...) and results/; a stage whose output "
                         "exists is skipped, so a rerun resumes")
parser.add_argument("--quick", action="store_true", help="smoke-test sizes (see SIZES); no KL analysis")
parser.add_argument("--seeds", type=int, default=1, help="repeats of the RL stages (and all that follows them)")
parser.add_argument("--steps", type=int, help="GRPO steps of each single-domain run (default 60; --quick 4)")
# The paper's budgets (M2RL README, training-setting table): single-task runs 200 steps of 128 prompts x 16 samples,
# the multi-task run 400 steps of the same batch, MT-OPD 200 steps of 256 prompts x 4 samples
parser.add_argument("--multi-steps", type=float, default=2.0,
                    help="the multi-task run's steps as a multiple of --steps, at the same per-step batch (the "
                         "paper's 400 vs 200)")
parser.add_argument("--opd-steps", type=int, help="MT-OPD steps, at twice the prompts and 4 samples each, as in the "
                                                  "paper (default: --steps)")
parser.add_argument("--prompts-per-step", type=int, default=8, help="every RL run's per-step batch, over all ranks")
parser.add_argument("--eval-prompts", type=int,
                    help="evaluated prompts per toy benchmark (default 400: docs/toy-notes.md, 200 measure only to "
                         "+-3.5 points; --quick 20)")
parser.add_argument("--k", type=int, help="samples per prompt for Avg@K (default 2; --quick 1)")
parser.add_argument("--temperature", type=float, help="evaluation sampling (default 0.6, Qwen3's; --quick 0: greedy)")
parser.add_argument("--ranks", type=int, help="torchrun processes per RL run, one thread each (default 2; --quick 1)")
parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))


def main(args):
    for key, (default, quick) in SIZES.items():
        if getattr(args, key, None) is None:
            setattr(args, key, quick if args.quick else default)
    args.multi_steps = max(1, round(args.multi_steps * args.steps))
    args.opd_steps = args.opd_steps or args.steps
    out = Path(args.out)
    write_atomic(out / "experiment_args.json", json.dumps(vars(args), indent=2))
    print(json.dumps(vars(args)))
    print(f"starting from the embedded SFT model {SFT.relative_to(ROOT)} (make tiny-sft remakes it)")
    ledger = Ledger(out / "stages.json")
    stages = args.stages.split(",")
    for seed in range(args.seeds):
        run_seed(out, seed, stages, ledger, args)
    report(out, ledger, args)


def run_seed(out: Path, seed: int, stages: list[str], ledger, args):
    """Every stage of one seed, in dependency order; each skipped when its output exists."""
    s = f"seed{seed}"
    experts = {d: out / f"rl-{d}" / s / "latest" for d in DOMAINS}
    multi = out / "rl-multi" / s / "latest"
    merges = {m: out / "merge" / s / m for m in MERGES}
    opd = out / "mt-opd" / s / "latest"
    models = {"sft": SFT, **experts, "rl-multi": multi, **merges, "mt-opd": opd}
    if "rl" in stages:
        for d in DOMAINS:
            ledger.run(f"rl-{d}/{s}", experts[d], grpo(out / f"rl-{d}" / s, d, args.steps, seed, args), args.ranks)
    if "multi" in stages:
        ledger.run(f"rl-multi/{s}", multi, grpo(out / "rl-multi" / s, ",".join(DOMAINS), args.multi_steps, seed,
                                                 args), args.ranks)
    if "merge" in stages:
        for m in MERGES:
            ledger.run(f"merge-{m}/{s}", merges[m] / "config.json", [
                "merge.py", "--base", str(SFT), "--models", *[f"{d}={p}" for d, p in experts.items()], "--method", m,
                "--seed", str(seed), "--out", str(merges[m])])
    if "opd" in stages:
        command = grpo(out / "mt-opd" / s, ",".join(DOMAINS), args.opd_steps, seed, args,
                       prompts=2 * args.prompts_per_step) + ["--teachers", *(f"{d}={p}" for d, p in experts.items())]
        ledger.run(f"mt-opd/{s}", opd, command, args.ranks)
    evaluated = out / "eval" / s
    if "eval" in stages:
        ledger.run(f"eval/{s}", evaluated / "results.json", [
            "evaluate.py", "--models", *[f"{name}={p}" for name, p in models.items()], "--benchmarks",
            ",".join(BENCHMARKS), "--limit", str(args.eval_prompts), "--k", str(args.k), "--temperature",
            str(args.temperature), "--engine", "native", "--seed", str(seed), "--out", str(evaluated)])
    analysis = out / "analysis" / s
    if "analyze" in stages:
        # the weight analysis projects every checkpoint (10-25 CPU-s each): --quick keeps the paper's Fig. 3 pair,
        # the experts and the multi-task model
        analysed = [*DOMAINS, "rl-multi"] if args.quick else [name for name in models if name != "sft"]
        ledger.run(f"analyze-weights/{s}", analysis / "weights.json", [
            "analyze.py", "weights", "--base", str(SFT), "--seed", str(seed), "--out", str(analysis), "--models",
            *[f"{name}={models[name]}" for name in analysed]])
        ledger.run(f"analyze-gains/{s}", analysis / "gains.json", [
            "analyze.py", "gains", "--eval", str(evaluated), "--sft", "sft", "--experts", *DOMAINS, "--combined",
            "rl-multi", *MERGES, "mt-opd", "--out", str(analysis)])
        if not args.quick:
            ledger.run(f"analyze-kl/{s}", analysis / "kl.json", [
                "analyze.py", "kl", "--experts", *[f"{d}={p}" for d, p in experts.items()], "--multi",
                f"rl-multi={multi}", "--eval", str(evaluated), "--engine", "native", "--seed", str(seed),
                "--out", str(analysis)])


def grpo(out: Path, domains: str, steps: int, seed: int, args, prompts: int | None = None) -> list[str]:
    """One train_grpo.py run; every RL run gets the same per-step batch, so steps measure the same work."""
    return ["train_grpo.py", "--domains", domains, "--steps", str(steps), "--prompts-per-step",
            str(prompts or args.prompts_per_step), "--eval-every", str(args.eval_every), "--eval-prompts",
            str(args.train_eval_prompts), "--seed", str(seed), "--out", str(out)]


class Ledger:
    """Runs stages as subprocesses and records what each cost, in stages.json: {stage: {cpu_s, wall_s, command}}."""

    def __init__(self, path: Path):
        self.path = path
        self.stages = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, done: Path, command: list[str], ranks: int = 1):
        if done.exists():
            print(f"[skip] {name}: {done} exists")
            return
        # several ranks go through torchrun, one thread each (as make demo); one process gets every core
        if ranks > 1:
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
        else:
            launch, env = [sys.executable], {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}
        command = launch + command
        log = self.path.parent / "logs" / f"{name.replace('/', '.')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[run]  {name}: {' '.join(command)}", flush=True)
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        with open(log, "w") as f:
            code = subprocess.run(command, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - start
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"stage {name} failed (exit {code}):\n  {' '.join(command)}\n--- last lines of {log} "
                             f"---\n{tail}\nFix the cause and rerun experiment.py: finished stages are skipped.")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.stages[name] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "command": command}
        write_atomic(self.path, json.dumps(self.stages, indent=2))
        print(f"[done] {name}: {cpu:.0f} CPU-s, {wall:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# results/: tables (Markdown + JSON) and figures, from the stages' own outputs


def report(out: Path, ledger: Ledger, args):
    results = out / "results"
    seeds = [f"seed{s}" for s in range(args.seeds)]
    evals = [out / "eval" / s / "results.json" for s in seeds]
    sections = [f"# The toy M2RL study ({args.seeds} seed(s){', --quick' if args.quick else ''})\n"]
    if all(p.exists() for p in evals):
        matrix = accuracy_matrix([json.loads(p.read_text()) for p in evals])
        write_atomic(results / "accuracy.json", json.dumps(matrix, indent=2))
        rows = list(matrix)
        sections.append(table(f"Avg@{args.k} (%), models x toy benchmarks", matrix, rows))
        sections.append(table("Merge methods vs mixing (%)", matrix, ["rl-multi", *MERGES, "mt-opd"]))
        distillation = opd_recovery(out, seeds, matrix)
        if distillation:
            write_atomic(results / "opd.json", json.dumps(distillation, indent=2))
            sections.append(opd_table(distillation))
    cost = compute_cost(ledger.stages, seeds)
    if cost:
        write_atomic(results / "compute.json", json.dumps(cost, indent=2))
        sections.append(cost_table(cost))
    training_curves(out, seeds, results / "figures" / "training_curves.png")
    for figure in ("weights_jaccard", "weights_cosine", "weights_density", "kl", "gains"):
        source = out / "analysis" / seeds[0] / "plots" / f"{figure}.png"  # the first seed's: one picture per analysis
        if source.exists():
            write_atomic(results / "figures" / f"{figure}.png", source.read_bytes())
    summary = out / "analysis" / seeds[0] / "summary.md"
    if summary.exists():
        sections.append(f"## Analyses ({seeds[0]})\n\n" + summary.read_text())
    write_atomic(results / "results.md", "\n".join(sections))
    print("\n".join(sections))
    print(f"results in {results}")


def accuracy_matrix(per_seed: list[dict]) -> dict:
    """{model: {benchmark | "Avg.": {mean, std, seeds}}}, a benchmark's also with stderr: Avg. of a seed is the mean
    over the benchmarks of that seed's row, so Avg.'s mean is the mean of the row's means. std is the sample std over
    seeds (0 for one)."""
    matrix = {}
    for model in per_seed[0]:
        rows = [[100 * seed[model][b]["avg"] for b in BENCHMARKS] for seed in per_seed]  # (seeds, benchmarks)
        cells = {b: [row[i] for row in rows] for i, b in enumerate(BENCHMARKS)}
        cells["Avg."] = [sum(row) / len(row) for row in rows]
        matrix[model] = {b: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                             "seeds": v} for b, v in cells.items()}
        for b in BENCHMARKS:  # the standard error over prompts, each seed's, averaged: the noise of one evaluation
            matrix[model][b]["stderr"] = statistics.fmean(100 * seed[model][b]["stderr"] for seed in per_seed)
    return matrix


def table(title: str, matrix: dict, models: list[str]) -> str:
    """mean ± std over seeds; with one seed, mean ± the standard error over prompts (Avg.: the mean alone)."""
    columns = [*BENCHMARKS, "Avg."]
    seeds = len(matrix[models[0]]["Avg."]["seeds"])
    spread = "std over seeds" if seeds > 1 else "standard error over prompts"

    def cell(c):
        if seeds > 1:
            return f"{c['mean']:.1f} ± {c['std']:.1f}"
        return f"{c['mean']:.1f} ± {c['stderr']:.1f}" if "stderr" in c else f"{c['mean']:.1f}"
    return markdown_table([f"{title}, ± {spread}", *columns], [[m, *(cell(matrix[m][c]) for c in columns)]
                                                               for m in models])


KL_WINDOW = 5


def opd_recovery(out: Path, seeds: list[str], matrix: dict) -> dict:
    """Per domain, MT-OPD against its teacher (the domain's expert): the sampled reverse KL to the teacher over the
    first and the last KL_WINDOW steps that sampled the domain (one step's few samples are noisy; mean over seeds),
    and the share of the teacher's gain over SFT that the student recovers,
    (opd - sft) / (teacher - sft), on the domain's own benchmark."""
    if not all((out / "mt-opd" / s / "metrics.jsonl").exists() for s in seeds):
        return {}
    rows = {}
    for d in DOMAINS:
        _, kl = curve([out / "mt-opd" / s / "metrics.jsonl" for s in seeds], f"opd/{d}/reverse_kl")
        sft, teacher, student = (matrix[m][f"toy_{d}"]["mean"] for m in ("sft", d, "mt-opd"))
        rows[d] = {"reverse_kl_first": statistics.fmean(kl[:KL_WINDOW]) if kl else None,
                   "reverse_kl_last": statistics.fmean(kl[-KL_WINDOW:]) if kl else None,
                   "sft": sft, "teacher": teacher, "mt-opd": student,
                   "recovered": (student - sft) / (teacher - sft) if teacher > sft else None}
    return rows


def opd_table(rows: dict) -> str:
    body = []
    for d, r in rows.items():
        share = "n/a (teacher <= SFT)" if r["recovered"] is None else f"{100 * r['recovered']:.0f}%"
        first, last = (f"{x:.4f}" if x is not None else "n/a" for x in (r["reverse_kl_first"], r["reverse_kl_last"]))
        body.append([d, first, last, f"{r['sft']:.1f}", f"{r['teacher']:.1f}", f"{r['mt-opd']:.1f}", share])
    return markdown_table(["MT-OPD per domain", f"reverse KL, first {KL_WINDOW} steps", f"last {KL_WINDOW}", "SFT (%)",
                           "teacher (%)", "MT-OPD (%)", "share of the teacher's gain"], body)


def compute_cost(stages: dict, seeds: list[str]) -> dict:
    """CPU-seconds per paradigm, the mean over seeds. Separate training is the four single-domain runs; a merge or
    MT-OPD costs separate training plus its own stage; mixing is the one multi-task run."""
    def cpu(name):
        return stages.get(name, {}).get("cpu_s")
    per_seed = []
    for s in seeds:
        singles = [cpu(f"rl-{d}/{s}") for d in DOMAINS]
        multi = cpu(f"rl-multi/{s}")
        if None in singles or multi is None:
            continue
        row = {**{f"rl-{d}": c for d, c in zip(DOMAINS, singles)}, "separate (sum of singles)": sum(singles),
               "rl-multi": multi}
        for m in MERGES:
            if cpu(f"merge-{m}/{s}") is not None:
                row[f"separate + {m}"] = sum(singles) + cpu(f"merge-{m}/{s}")
        if cpu(f"mt-opd/{s}") is not None:
            row["separate + mt-opd"] = sum(singles) + cpu(f"mt-opd/{s}")
        row["multi share of separate"] = multi / sum(singles)
        per_seed.append(row)
    if not per_seed:
        return {}
    keys = [k for k in per_seed[0] if all(k in row for row in per_seed)]
    return {k: {"mean": statistics.fmean(r[k] for r in per_seed),
                "std": statistics.stdev(r[k] for r in per_seed) if len(per_seed) > 1 else 0.0,
                "seeds": [r[k] for r in per_seed]} for k in keys}


def cost_table(cost: dict) -> str:
    rows = [[k, f"{v['mean']:.0f} ± {v['std']:.0f}"] for k, v in cost.items() if k != "multi share of separate"]
    share = cost["multi share of separate"]
    rows.append(["multi share of separate",
                 f"{100 * share['mean']:.1f}% ± {100 * share['std']:.1f} (paper: 33.2% of GPU hours)"])
    return markdown_table(["paradigm", "CPU-seconds"], rows)


def training_curves(out: Path, seeds: list[str], path: Path):
    """The paper's Fig. 2: per domain, the training reward and the held-out greedy reward against the step, of the
    domain's single-task run and of the multi-task run (mean over seeds)."""
    fig = Figure(figsize=(4.0 * len(DOMAINS), 3.5))
    for ax, d in zip(fig.subplots(1, len(DOMAINS)), DOMAINS):
        for run, color in ((f"rl-{d}", "tab:blue"), ("rl-multi", "tab:orange")):
            for key, style in ((f"reward/{d}/mean", "-"), (f"eval/{d}/reward", "--")):
                steps, values = curve([out / run / s / "metrics.jsonl" for s in seeds], key)
                if steps:
                    ax.plot(steps, values, style, color=color, label=f"{run} {key.split('/')[0]}")
        ax.set_title(d)
        ax.set_xlabel("step")
        ax.set_ylabel("reward")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def curve(files: list[Path], key: str) -> tuple[list, list]:
    """(steps, mean over files) of a metric, at the steps every file logged it."""
    series = []
    for f in files:
        if not f.exists():
            return [], []
        series.append({r["step"]: r[key] for _, r in read_jsonl(f) if key in r})
    steps = sorted(set.intersection(*(set(s) for s in series)))
    return steps, [statistics.fmean(s[step] for s in series) for step in steps]


if __name__ == "__main__":
    main(parser.parse_args())
