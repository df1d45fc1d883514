"""analysis/gains.py (analyze.py gains) on hand-written evaluation files.

References: per-item gains, their union and cosines computed by hand from the rewards written.
"""
import json
import math
from pathlib import Path

import pytest

import analyze

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: more threads only fight each other


def eval_file(path: Path, rewards: dict, **extra):
    """evaluate.py's per-sample JSONL: {item id: [reward of each sample]}, plus fields a newer writer may add."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "sample": j, "text": "...", "finish_reason": "stop", "tokens": 3,
                                        "reward": r, "info": {}, **extra}) + "\n"
                            for i, rs in rewards.items() for j, r in enumerate(rs)))


def test_gain_consistency_by_hand(tmp_path):
    """Per item acc = mean reward; gain = max(acc − acc_sft, 0); union = max over the experts; cosine by hand."""
    ev = tmp_path / "eval" / "samples"
    acc = {  # two benchmarks, K = 2: accuracies 0, 0.5, 1
        "sft":   {"b1": {"i1": [0, 0], "i2": [1, 0], "i3": [1, 1]}, "b2": {"j1": [0, 0]}},
        "math":  {"b1": {"i1": [1, 1], "i2": [1, 0], "i3": [0, 0]}, "b2": {"j1": [0, 0]}},  # gains 1, 0, 0 | 0
        "code":  {"b1": {"i1": [1, 0], "i2": [1, 1], "i3": [1, 1]}, "b2": {"j1": [1, 0]}},  # .5, .5, 0 | .5
        "multi": {"b1": {"i1": [1, 1], "i2": [1, 1], "i3": [1, 1]}, "b2": {"j1": [1, 0]}},  # 1, .5, 0 | .5 = union
        "ties":  {"b1": {"i1": [0, 0], "i2": [1, 1], "i3": [0, 0]}, "b2": {"j1": [1, 1]}},  # 0, .5, 0 | 1
    }
    for model, benches in acc.items():
        for bench, rewards in benches.items():
            eval_file(ev / model / f"{bench}.jsonl", rewards, added_by_a_newer_evaluate={"x": 1})
    analyze.main(["gains", f"--eval={tmp_path / 'eval'}", "--sft=sft", "--experts", "math", "code",
                  "--combined", "multi", "ties", f"--out={tmp_path / 'out'}"])
    report = json.loads((tmp_path / "out" / "gains.json").read_text())
    # union = (1, .5, 0 | .5); ties = (0, .5, 0 | 1)
    assert report["benchmarks"] == ["b1", "b2"]
    assert report["consistency"]["multi"] == pytest.approx({"b1": 1.0, "b2": 1.0, "all": 1.0})
    assert report["consistency"]["ties"]["b1"] == pytest.approx(0.25 / (math.sqrt(1.25) * 0.5))
    assert report["consistency"]["ties"]["b2"] == pytest.approx(1.0)
    assert report["consistency"]["ties"]["all"] == pytest.approx((0.25 + 0.5) / (math.sqrt(1.5) * math.sqrt(1.25)))
    assert report["gained_items"]["union"] == {"b1": 2, "b2": 1, "all": 3}
    assert report["accuracy"]["code"]["b1"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert (tmp_path / "out" / "plots" / "gains.png").exists()
    for names in (["b2", "b1"], ["b2,b1"]):  # --benchmarks by space or comma, in the order given
        analyze.main(["gains", f"--eval={tmp_path / 'eval'}", "--sft=sft", "--experts", "math", "code",
                      "--combined", "ties", "--benchmarks", *names, f"--out={tmp_path / 'picked'}"])
        picked = json.loads((tmp_path / "picked" / "gains.json").read_text())
        assert picked["benchmarks"] == ["b2", "b1"] and picked["consistency"]["ties"]["b2"] == pytest.approx(1.0)


def test_sample_reader_names_file_line_and_key(tmp_path):
    ev = tmp_path / "eval" / "samples"
    eval_file(ev / "sft" / "b.jsonl", {"i1": [1.0], "i2": [0.0]})
    bad = ev / "math" / "b.jsonl"
    eval_file(bad, {"i1": [1.0], "i2": [0.0]})
    lines = bad.read_text().splitlines()
    bad.write_text(lines[0] + "\n" + json.dumps({"id": "i2", "sample": 0, "text": "no reward"}) + "\n")
    argv = ["gains", f"--eval={tmp_path / 'eval'}", "--experts", "math", "--combined", "math",
            f"--out={tmp_path / 'out'}"]
    with pytest.raises(SystemExit, match=r"math/b.jsonl:2: key 'reward' missing"):
        analyze.main(argv)
    bad.write_text(lines[0] + "\n" + json.dumps({"id": "i2", "sample": 0, "reward": "1"}) + "\n")
    with pytest.raises(SystemExit, match=r"math/b.jsonl:2: key 'reward' is '1'"):
        analyze.main(argv)
    bad.write_text(lines[0] + "\n")
    with pytest.raises(SystemExit, match=r"math/b.jsonl: its items differ from the SFT model's \(1 missing, e.g. "
                                         r"\['i2'\]"):
        analyze.main(argv)
