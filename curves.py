"""Training curves from metrics.jsonl: one panel per quantity, one line per run, drawn as one PNG.

    python curves.py runs/grpo                                   # one run
    python curves.py runs/math runs/code runs/science runs/if runs/mixed --out curves.png   # overlaid per panel

The panels, each drawn only where some run logged its key: reward and response length per domain (the step's
rollouts, then the in-loop evaluation's), the loss terms (loss, KL, MT-OPD's reverse KL per domain, clip fraction,
gradient norm), entropy, the learning rate, throughput, and the time split of a step (generate / reward / logprob /
train / sync for GRPO, the whole step for SFT). Both trainers write OUT/curves.png with draw_run: train_grpo.py at each
evaluation, train_sft.py with each checkpoint, both at the end. Runs are read from their metrics.jsonl only, never from
logs.
"""
import argparse
import io
import math
import re
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cli import HelpFormatter
from files import JSONLError, read_jsonl, write_atomic

# (title, pattern over metrics keys), in the order drawn: a title with "{}" makes one panel per value of the pattern's
# group (a domain: "all", then by name); one without puts every matching key in one panel (the time split)
PANELS = [
    ("reward/{}/mean", r"reward/([^/]+)/mean"),
    ("rollout/{}/response_len", r"rollout/([^/]+)/response_len"),
    ("eval/{}/reward", r"eval/([^/]+)/reward"),
    ("eval/{}/response_len", r"eval/([^/]+)/response_len"),
    ("train/loss", r"train/loss"),
    ("train/kl", r"train/kl"),
    ("opd/{}/reverse_kl", r"opd/([^/]+)/reverse_kl"),
    ("train/clip_fraction", r"train/clip_fraction"),
    ("train/grad_norm", r"train/grad_norm"),
    ("train/entropy", r"train/entropy"),
    ("train/lr", r"train/lr"),
    ("rollout/tokens_per_s", r"rollout/tokens_per_s"),
    ("train/tokens_per_s", r"train/tokens_per_s"),
    ("time/*_s (seconds per step)", r"time/(.+)_s"),
]
COLUMNS = 4
LINESTYLES = ("-", "--", ":", "-.")
parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
parser.add_argument("runs", nargs="+", help="run directories (each holding a metrics.jsonl), labelled as given")
parser.add_argument("--out", default="curves.png", help="the PNG to write (replaced atomically)")


def read_metrics(run_dir) -> list[dict]:
    """The rows of RUN/metrics.jsonl. A torn last line is skipped: a live run may be halfway through writing it."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (give a run directory of train_grpo.py or train_sft.py)")
    try:
        return [row for _, row in read_jsonl(path, torn_tail=True)]
    except JSONLError as e:
        raise SystemExit(str(e)) from None


def panels(keys) -> list[tuple[str, list[str]]]:
    """[(title, keys drawn in it)] for the PANELS present among `keys`; a panel of several keys lists them in the
    order given (the trainers log a step's times in the order the step spends them)."""
    out = []
    for title, pattern in PANELS:
        matched = {}
        for key in keys:
            if m := re.fullmatch(pattern, key):
                matched.setdefault(m.group(1) if m.groups() else None, []).append(key)
        if "{}" not in title:
            out += [(title, [k for ks in matched.values() for k in ks])] if matched else []
        else:
            ordered = sorted(matched.items(), key=lambda group: (group[0] != "all", group[0]))
            out += [(title.format(group), ks) for group, ks in ordered]
    return out


def figure(runs: dict[str, list[dict]]) -> Figure:
    """One panel per quantity that some run logged, a line per (run, key) over the steps that logged it."""
    found = panels(dict.fromkeys(k for rows in runs.values() for row in rows for k in row))
    if not found:
        raise SystemExit(f"no curve to draw: none of {', '.join(runs)} logged a key of curves.PANELS")
    n_rows = math.ceil(len(found) / COLUMNS)
    fig = Figure(figsize=(4.0 * COLUMNS, 2.8 * n_rows), layout="constrained")  # matplotlib's OO API: no pyplot
    axes = fig.subplots(n_rows, COLUMNS, squeeze=False).flatten()
    for ax, (title, keys) in zip(axes, found):
        for r, (run, rows) in enumerate(runs.items()):
            for k, key in enumerate(keys):
                points = [(row["step"], row[key]) for row in rows if key in row]
                if not points:
                    continue
                # a run keeps its colour in every panel; in a panel of several keys the key sets the colour, the run
                # the line style
                label = run if len(keys) == 1 else key if len(runs) == 1 else f"{run}: {key}"
                style = ({"color": f"C{r}"} if len(keys) == 1
                         else {"color": f"C{k}", "linestyle": LINESTYLES[r % len(LINESTYLES)]})
                # few points (a short run, the evaluations) would draw a line too thin to see, or nothing at all
                ax.plot(*zip(*points), label=label, marker="." if len(points) < 50 else None, **style)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        if len(ax.lines) > 1 or len(runs) > 1:
            ax.legend(fontsize=6)
    for ax in axes[len(found):]:
        ax.remove()
    return fig


def save_figure(fig, path: Path):
    """A matplotlib figure as PNG, atomically."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    write_atomic(path, png.getvalue())


def draw(runs: dict[str, list[dict]], path: Path) -> list[str]:
    """figure(runs) written atomically as a PNG at `path`; returns the titles of the panels drawn."""
    fig = figure(runs)
    save_figure(fig, Path(path))
    return [ax.get_title() for ax in fig.axes]


def draw_run(run_dir) -> list[str]:
    """RUN/curves.png from RUN/metrics.jsonl, labelled by the directory's name: what the trainers call."""
    run_dir = Path(run_dir)
    return draw({run_dir.name: read_metrics(run_dir)}, run_dir / "curves.png")


if __name__ == "__main__":
    args = parser.parse_args()
    titles = draw({run: read_metrics(run) for run in args.runs}, Path(args.out))
    print(f"{args.out}: {len(titles)} panels ({', '.join(titles)})")
