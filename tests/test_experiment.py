"""experiment.py --quick end to end on CPU: every table, JSON and figure exists, the tables agree with the stages'
own outputs (the independent references: evaluate.py's results.json for the accuracy matrix, the stage ledger
stages.json for the compute table), and a rerun skips every stage."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("math", "code", "science", "if")
BENCHMARKS = [f"toy_{d}" for d in DOMAINS]
MODELS = ["sft", *DOMAINS, "rl-multi", "average", "task_arithmetic", "ties", "ties_dare", "ta_dare", "sce", "mt-opd"]


def experiment(out: Path) -> str:
    # --quick made smaller still: the test checks the plumbing, not what the runs learn. One step per RL run (each
    # still evaluates before and after it), MT-OPD's 2 x 2 prompts give each of the four domains one, and 2 prompts
    # per benchmark for each of the 14 models
    done = subprocess.run([sys.executable, str(ROOT / "experiment.py"), "--quick", "--steps", "1", "--multi-steps", "1",
                           "--opd-steps", "1", "--prompts-per-step", "2", "--eval-prompts", "2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    return out, experiment(out)


def test_accuracy_matrix_is_evaluate_results(run):
    out, _ = run
    matrix = json.loads((out / "results/accuracy.json").read_text())
    evaluated = json.loads((out / "eval/seed0/results.json").read_text())
    assert list(matrix) == MODELS
    for model in MODELS:
        for b in BENCHMARKS:
            assert matrix[model][b]["mean"] == pytest.approx(100 * evaluated[model][b]["avg"])
        assert matrix[model]["Avg."]["mean"] == pytest.approx(statistics.fmean(matrix[model][b]["mean"]
                                                                               for b in BENCHMARKS))
    markdown = (out / "results/results.md").read_text()
    assert "Merge methods vs mixing" in markdown and "| ties_dare |" in markdown


def test_compute_share_is_multi_over_sum_of_singles(run):
    out, _ = run
    stages = json.loads((out / "stages.json").read_text())
    cost = json.loads((out / "results/compute.json").read_text())
    singles = sum(stages[f"rl-{d}/seed0"]["cpu_s"] for d in DOMAINS)
    assert singles > 0
    assert cost["separate (sum of singles)"]["mean"] == pytest.approx(singles)
    assert cost["multi share of separate"]["mean"] == pytest.approx(stages["rl-multi/seed0"]["cpu_s"] / singles)
    assert cost["separate + ties"]["mean"] == pytest.approx(singles + stages["merge-ties/seed0"]["cpu_s"])


def test_opd_table_is_metrics_and_accuracy(run):
    out, _ = run
    rows = json.loads((out / "results/opd.json").read_text())
    matrix = json.loads((out / "results/accuracy.json").read_text())
    logged = [json.loads(line) for line in (out / "mt-opd/seed0/metrics.jsonl").read_text().splitlines()]
    for d in DOMAINS:
        kl = [r[f"opd/{d}/reverse_kl"] for r in logged if f"opd/{d}/reverse_kl" in r]
        first, last = (statistics.fmean(kl[:5]), statistics.fmean(kl[-5:])) if kl else (None, None)  # None: not sampled
        assert rows[d]["reverse_kl_first"] == pytest.approx(first) and rows[d]["reverse_kl_last"] == pytest.approx(last)
        sft, teacher, student = (matrix[m][f"toy_{d}"]["mean"] for m in ("sft", d, "mt-opd"))
        expected = (student - sft) / (teacher - sft) if teacher > sft else None
        assert rows[d]["recovered"] == pytest.approx(expected)


def test_figures_exist(run):
    out, _ = run
    for name in ("training_curves", "weights_jaccard", "weights_cosine", "gains"):
        assert (out / f"results/figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_rerun_skips_every_stage(run):
    out, first = run
    ledger = (out / "stages.json").read_text()
    again = experiment(out)
    assert "[run]" not in again
    assert again.count("[skip]") == first.count("[run]") == len(json.loads(ledger))
    assert (out / "stages.json").read_text() == ledger
