"""The toy-study tables of docs/toy-study.md are the committed run's numbers (study/, written by `make experiment`)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ["toy_math", "toy_code", "toy_science", "toy_if"]
ROWS = {"SFT": "sft", "RL math": "math", "RL code": "code", "RL science": "science", "RL IF": "if",
        "RL multi": "rl-multi", "Average": "average", "Task arithmetic": "task_arithmetic", "TIES": "ties",
        "TIES+DARE": "ties_dare", "TA+DARE": "ta_dare", "SCE": "sce", "MT-OPD": "mt-opd"}


def test_docs_accuracy_tables_match_study_accuracy_json():
    matrix = json.loads((ROOT / "study/accuracy.json").read_text())
    section = (ROOT / "docs/toy-study.md").read_text().split("## What the toy study shows")[1].split("\n## ")[0]
    checked = 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in ROWS:
            continue
        numbers = [float(re.sub(r"[*]", "", c).split("±")[0]) for c in cells[1:6]]  # four benchmarks + Avg.
        expected = [matrix[ROWS[cells[0]]][b]["mean"] for b in [*BENCHMARKS, "Avg."]]
        assert numbers == [round(x, 1) for x in expected], cells[0]
        checked += 1
    assert checked == 6 + 8  # the model table (SFT, four experts, multi) and the merge table (multi, 6 merges, MT-OPD)
