"""What a training run shows: the live line on its progress bar, the in-loop evaluation table, and the curves PNG it
writes into --out, all checked on tiny real runs (train_grpo.py from the embedded tiny SFT model, train_sft.py on the
tiny preset) against their own metrics.jsonl; and curves.py drawing several run directories overlaid."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

import curves
from data.record import load_records, write_records
from train_grpo import eval_table, live_line
from train_sft import live_line as sft_live_line

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DOMAINS = ["math", "code", "science", "if"]
TINY = ["--prompts-per-step", "4", "--group-size", "2", "--max-response-len", "32", "--lr", "1e-4",
        "--reward-workers", "1", "--steps", "2"]


def train(script, out, *args):
    done = subprocess.run([sys.executable, str(ROOT / script), "--out", str(out), *args], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The four domains with the KL term on, evaluated at every step: every kind of panel and of line."""
    out = tmp_path_factory.mktemp("runs") / "mixed"
    return out, train("train_grpo.py", out, *TINY, "--domains", ",".join(DOMAINS), "--kl-coef", "0.01",
                      "--eval-every", "1", "--eval-prompts", "2")


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """One domain, no in-loop evaluation: a single-domain expert beside the mixed run."""
    out = tmp_path_factory.mktemp("runs") / "math"
    return out, train("train_grpo.py", out, *TINY, "--domains", "math", "--eval-every", "0")


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def last_line(stderr):
    """The bar as tqdm left it (carriage returns in a terminal, new lines elsewhere)."""
    return [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()][-1]


def png_size(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(path).shape  # decodes the whole image: a truncated file fails here
    return width, height


def series(ax):
    """{label: [(step, value)]} of the lines drawn in a panel."""
    return {line.get_label(): [tuple(p) for p in line.get_xydata()] for line in ax.lines}


def test_a_grpo_run_draws_a_panel_per_logged_quantity_with_its_metrics(mixed):
    out, _ = mixed
    logged = rows(out)
    titles = curves.draw({"mixed": logged}, out / "redrawn.png")
    # reference: the run's flags - its domains, KL on, evaluated - and the keys its metrics.jsonl holds
    step_domains = {k.split("/")[1] for row in logged for k in row if k.startswith("reward/") and k.endswith("/mean")}
    assert step_domains <= {"all", *DOMAINS} and len(step_domains) > 2
    expected = ({f"reward/{d}/mean" for d in step_domains} | {f"rollout/{d}/response_len" for d in step_domains}
                | {f"eval/{d}/{m}" for d in ["all", *DOMAINS] for m in ("reward", "response_len")}
                | {"train/loss", "train/kl", "train/entropy", "train/clip_fraction", "train/grad_norm",
                   "rollout/tokens_per_s"})
    assert expected <= set(titles)
    assert titles.index("reward/all/mean") < titles.index(f"reward/{sorted(step_domains - {'all'})[0]}/mean")

    # the PNG the run wrote itself holds as many panels: 4 a row of 4.0 x 2.8 inches at save_figure's 120 dpi
    assert png_size(out / "curves.png") == (4 * 480, -(-len(titles) // 4) * 336)
    assert not list(out.glob(".curves.png.*"))  # written through a temporary file, renamed

    fig = curves.figure({"mixed": logged})
    panels = {ax.get_title(): ax for ax in fig.axes}
    for title in expected:  # every line is its key's values in metrics.jsonl, at the steps that logged it
        assert series(panels[title]) == {"mixed": [(r["step"], r[title]) for r in logged if title in r]}, title
    timed = [k for k in logged[1] if k.startswith("time/")]
    assert len(timed) == 5 and list(series(panels["time/*_s (seconds per step)"])) == timed  # the step's order


def test_the_command_overlays_several_runs_per_panel(mixed, expert, tmp_path):
    (mixed_dir, _), (expert_dir, _) = mixed, expert
    done = subprocess.run([sys.executable, str(ROOT / "curves.py"), str(mixed_dir), str(expert_dir), "--out",
                           str(tmp_path / "both.png")], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fig = curves.figure({str(mixed_dir): rows(mixed_dir), str(expert_dir): rows(expert_dir)})
    titles = [ax.get_title() for ax in fig.axes]
    assert done.stdout.strip() == f"{tmp_path / 'both.png'}: {len(titles)} panels ({', '.join(titles)})"
    assert png_size(tmp_path / "both.png") == (4 * 480, -(-len(titles) // 4) * 336)
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert list(series(panels["reward/math/mean"])) == [str(mixed_dir), str(expert_dir)]
    assert {line.get_label(): line.get_color() for line in panels["reward/math/mean"].lines} == {
        str(mixed_dir): "C0", str(expert_dir): "C1"}  # a run keeps its colour in every panel
    assert list(series(panels["eval/math/reward"])) == [str(mixed_dir)]  # the expert never evaluated
    assert list(series(panels["train/kl"])) == [str(mixed_dir)]  # nor had a KL term
    assert series(panels["reward/math/mean"])[str(expert_dir)] == [(r["step"], r["reward/math/mean"])
                                                                  for r in rows(expert_dir)]


def test_the_live_line_and_the_eval_table_are_what_the_run_printed(mixed):
    out, done = mixed
    logged = rows(out)
    last = logged[-1]
    line = live_line(last)
    for d in DOMAINS:
        if f"reward/{d}/mean" in last:
            assert f"{d} {last[f'reward/{d}/mean']:.2f}" in line
    assert f"reward {last['reward/all/mean']:.2f} (" in line and f"clip {last['train/clip_fraction']:.3f}" in line
    assert "kl " in line and "loss" not in line and f"gen {last['time/generate_s']:.1f}s" in line
    # the terminal's last bar: tqdm's progress and ETA, then this very line, within 160 columns
    bar = last_line(done.stderr)
    assert bar.startswith("grpo 2/2 [") and bar.endswith(line + "]") and len(bar) <= 160, bar

    # each evaluation (steps 0, 1, 2) printed as a table whose cells read back as the row's values
    for row in logged:
        table = eval_table(row)
        assert table in done.stdout
        head, *body = table.splitlines()
        metrics = head.split()[4:]  # "eval at step N" then the metrics
        assert sorted(metrics) == ["response_len", "reward"]
        assert [cells.split()[0] for cells in body] == ["all", *sorted(DOMAINS)]
        for cells in body:
            domain, *values = cells.split()
            assert [float(v) for v in values] == pytest.approx([row[f"eval/{domain}/{m}"] for m in metrics], abs=5e-4)


def test_an_sft_run_draws_its_curves_and_shows_loss_lr_and_throughput(tmp_path):
    data = tmp_path / "sft.jsonl"
    write_records(data, [r for d in DOMAINS for r in load_records(ROOT / f"data/toy/sft/{d}.jsonl")[:4]])
    done = train("train_sft.py", tmp_path / "sft", "--data", str(data), "--seq-len", "128", "--batch-rows", "2",
                 "--micro-rows", "2", "--max-steps", "2")
    logged = rows(tmp_path / "sft")
    titles = curves.draw({"sft": logged}, tmp_path / "redrawn.png")
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "time/*_s (seconds per step)"} <= set(
        titles)
    assert png_size(tmp_path / "sft" / "curves.png") == png_size(tmp_path / "redrawn.png")
    line = sft_live_line(logged[-1])
    assert line == (f"loss {logged[-1]['train/loss']:.4f}, lr {logged[-1]['train/lr']:.2e}, "
                    f"{logged[-1]['train/tokens_per_s']:,.0f} tok/s")
    assert last_line(done.stderr).endswith(line + "]")


def test_metrics_are_read_whole_but_a_live_run_s_torn_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "train/lo')
    assert curves.read_metrics(tmp_path) == [{"step": 1, "train/loss": 2.0}]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/lo\n{"step": 2, "train/loss": 2.0}\n')
    with pytest.raises(SystemExit, match=f"{tmp_path / 'metrics.jsonl'}:1: not valid JSON"):
        curves.read_metrics(tmp_path)
    with pytest.raises(SystemExit, match="no such file"):
        curves.read_metrics(tmp_path / "missing")
