"""rewards.ScorePool's worker directories (/tmp/m2rl-score-*): none left behind by a pool that is killed (the next
pool removes them) or never closed (removed at interpreter exit), and a live pool's are kept.

Reference: the filesystem, looked at from outside the process that owned the directories.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import rewards

ROOT = Path(__file__).resolve().parents[1]
OWNER = """import os, signal, sys
sys.path.insert(0, {root!r})
import rewards
pool = rewards.ScorePool(workers=1)
print("\\n".join(worker.scratch for worker in pool.workers), flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)  # as a GRPO run killed mid-step: nothing of ours runs any more
"""


def run_owner(tmp_path: Path, how: str) -> list[Path]:
    script = tmp_path / "owner.py"
    script.write_text(OWNER.format(root=str(ROOT)))
    run = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120)
    dirs = [Path(line) for line in run.stdout.split()]
    assert len(dirs) == 1 and all(d.name.startswith("m2rl-score-") for d in dirs), (run.stdout, run.stderr)
    return dirs


def test_a_killed_pools_directories_are_removed_by_the_next_pool(tmp_path):
    dirs = run_owner(tmp_path, "kill")
    assert all(d.is_dir() for d in dirs)  # what a killed run leaves
    live = Path(tempfile.mkdtemp(prefix=f"m2rl-score-{os.getpid()}-"))  # a live owner's: ours
    try:
        with rewards.ScorePool(workers=1):
            assert not any(d.exists() for d in dirs)
            assert live.is_dir()
    finally:
        live.rmdir()


def test_a_pool_never_closed_leaves_nothing_at_exit(tmp_path):
    dirs = run_owner(tmp_path, "exit")
    assert not any(d.exists() for d in dirs)
