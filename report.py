"""Reports: Markdown tables and numbers as the scripts print them, and the charts of the analyses.

`table` is the one Markdown table writer (evaluate.py's, experiment.py's and the analyses' tables); the figures use
matplotlib's object-oriented API (Figure, not pyplot: no global state) and are saved by curves.save_figure."""
import math
from pathlib import Path

from matplotlib.figure import Figure

from curves import save_figure
from files import write_atomic


def fmt(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def table(header: list, rows: list, align: str | None = None) -> str:
    """A Markdown table: the header row, the separator, a line per row (cells as str() writes them). `align` has a
    letter per column, l or r (numbers read best right-aligned); default all left."""
    align = align or "l" * len(header)
    lines = ["| " + " | ".join(header) + " |", "".join("|---:" if a == "r" else "|---" for a in align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]) + "\n"


def write_summary(path: Path, title: str, sections: list[Path]):
    """The Markdown files of `sections` that exist, in order, joined under one title."""
    write_atomic(path, f"# {title}\n\n" + "\n".join(s.read_text() for s in sections if s.exists()))


def heatmap(ax, values, cols, rows, notes=None, vmin=None, vmax=None, cmap="viridis"):
    """values[i][j] for row i, column j (None shown blank); notes, when given, are the cells' texts."""
    image = ax.imshow([[math.nan if v is None else v for v in row] for row in values], vmin=vmin, vmax=vmax,
                      cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, notes[i][j] if notes else fmt(v, 2), ha="center", va="center", fontsize=7,
                    bbox=dict(facecolor="white", alpha=0.6, linewidth=0, pad=1))
    return image


def bar_chart(path: Path, title: str, groups: list, series: dict, ylabel: str):
    """One group of bars per entry of `groups`, one bar per series (None drawn as a gap)."""
    fig = Figure(figsize=(max(6.0, 0.4 * len(groups) * (len(series) + 1)), 4.0))
    ax = fig.subplots()
    bars(ax, groups, series)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save_figure(fig, path)


def bars(ax, groups: list, series: dict):
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(groups))]
        ax.bar(xs, [math.nan if v is None else v for v in values], width, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.legend(fontsize=7)
