"""recipes/: every stage of the paper's study runs in DRY_RUN mode with tiny stand-ins (the embedded SFT model for
every checkpoint, the toy data for the paper's): each script's flags parse, every input it names opens, and its
plan prints for 8 ranks — so a recipe cannot rot between GPU runs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_SFT = ROOT / "data" / "tiny-sft"
STAGES = [("1_sft.sh",), ("2_grpo.sh", "math"), ("2_grpo.sh", "if"), ("2_grpo.sh", "mixed"), ("3_mtopd.sh",),
          ("4_merge.sh",), ("5_evaluate.sh",)]


def stand_ins(runs: Path, stage: str) -> dict:
    """RUNS with every checkpoint the stages before `stage` would have written, each the embedded SFT model."""
    for name in ["sft", "mtopd", *(f"grpo_{d}" for d in ("math", "code", "science", "if", "mixed"))]:
        (runs / name).mkdir()
        (runs / name / "latest").symlink_to(TINY_SFT)
    if stage == "5_evaluate.sh":
        for method in ("average", "task_arithmetic", "ties", "ties_dare", "ta_dare", "sce"):
            (runs / f"merge_{method}").symlink_to(TINY_SFT)
    return {"DRY_RUN": "1", "NGPU": "8", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "RUNS": str(runs),
            "BASE": str(TINY_SFT), "SFT": str(TINY_SFT), "BLEND": str(ROOT / "data/blends/toy_sft.json"),
            "RL_DATA": str(ROOT / "data/toy/rl"), "BENCH_DIR": str(ROOT / "data/bench"),
            "BENCHMARKS": "toy_math toy_code toy_science toy_if"}


@pytest.mark.parametrize("stage", STAGES, ids=[" ".join(s) for s in STAGES])
def test_recipe_dry_run(stage, tmp_path):
    runs = tmp_path
    env = stand_ins(runs, stage[0])
    before = sorted(p.name for p in runs.iterdir())
    result = subprocess.run(["bash", str(ROOT / "recipes" / stage[0]), *stage[1:]], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, **env}, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "plan" in result.stdout  # each script's --dry-run prints its plan
    if stage[0] in ("2_grpo.sh", "3_mtopd.sh"):
        assert "over 8 ranks" in result.stdout
    assert sorted(p.name for p in runs.iterdir()) == before  # a dry run writes nothing
