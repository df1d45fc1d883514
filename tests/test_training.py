"""training.py: what the two trainers share. Their runs (tests/test_train_sft.py, tests/test_train_grpo_run.py)
exercise open_run's resume rules end to end; here, metrics.jsonl's repair on resume."""
import json
import re

import pytest

from training import Metrics


def test_metrics_drops_a_torn_last_line_and_names_the_file_of_a_bad_one_elsewhere(tmp_path, capsys):
    """A run that died mid-write (a full disk) leaves a torn last line; every resume then failed with a
    JSONDecodeError naming no file (issue 18.7). Reference: the lines written whole, as json.dumps wrote them."""
    path = tmp_path / "metrics.jsonl"
    whole = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in (1, 2, 3)]
    path.write_text("\n".join(whole) + "\n" + whole[0][:9])
    Metrics(path, keep_below=2)
    assert path.read_text().splitlines() == whole[:2]
    assert f"{path}:4: dropped a torn last line" in capsys.readouterr().out

    path.write_text(whole[0] + "\n" + whole[1][:9] + "\n" + whole[2] + "\n")
    with pytest.raises(SystemExit, match=re.escape(f"{path}:2: not valid JSON")):
        Metrics(path, keep_below=3)
