"""train_sft.py: 2 ranks (torchrun, gloo) follow the 1-process loss curve, and a SIGKILLed run resumes exactly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data.record import load_records, write_records
from model import TINY_DIR
from tokenizer import Tokenizer
from train_sft import pack, tokenize

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores: one thread each
ARGS = ["--seq-len", "128", "--batch-rows", "4", "--lr", "2e-3", "--warmup", "0.2", "--seed", "1"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sft.jsonl"
    records = [r for d in ("math", "code", "science", "if") for r in load_records(ROOT / f"data/toy/sft/{d}.jsonl")[:12]]
    write_records(path, records)
    return path


def run(cmd, out, data, *extra):
    return subprocess.run([*cmd, str(ROOT / "train_sft.py"), "--data", str(data), "--out", str(out), *ARGS, *extra],
                          env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)


def curve(out, key="train/loss"):
    return [json.loads(l)[key] for l in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_mask_targets_are_exactly_the_assistant_turn():
    """Reference: the chat template's assistant body, rendered as text (think block, answer, <|im_end|>)."""
    tok = Tokenizer.from_dir(TINY_DIR)
    record = load_records(ROOT / "data/toy/sft/math.jsonl")[0]
    ids, targets = tokenize(record, tok, enable_thinking=True)
    body = f"<think>\n{record.response['reasoning_content'].strip()}\n</think>\n\n{record.response['content']}<|im_end|>"
    assert tok.decode([t for t in targets if t != -100]) == body
    assert targets[-1] == -100 and len(ids) == len(targets)
    rows = pack([(ids, targets)] * 3, seq_len=len(ids) * 2 + 5, pad_id=tok.pad_id, seed=0)
    assert rows.shape == (2, 3, len(ids) * 2 + 5)
    assert rows[0, 1].tolist() == list(range(len(ids))) * 2 + list(range(5))  # positions restart per document


def test_two_ranks_follow_the_single_process_curve(small_data, tmp_path):
    one = run([sys.executable], tmp_path / "one", small_data, "--micro-rows", "1", "--epochs", "0.5")
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"], tmp_path / "two", small_data,
              "--micro-rows", "1", "--epochs", "0.5")
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = curve(tmp_path / "one"), curve(tmp_path / "two")
    assert len(a) == len(b) >= 3
    assert a[-1] < a[0]  # it learns
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-4 * max(a)


def test_sigkill_then_resume_gives_the_uninterrupted_losses_exactly(small_data, tmp_path, sigkill_when):
    steps = ["--epochs", "1", "--micro-rows", "2", "--save-every", "2"]
    full = run([sys.executable], tmp_path / "full", small_data, *steps)
    assert full.returncode == 0, full.stderr[-3000:]

    out = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "train_sft.py"), "--data", str(small_data), "--out", str(out), *ARGS, *steps]
    sigkill_when(cmd, out / "step_0000002" / "trainer_state", env=ENV, cwd=ROOT)
    assert (out / "step_0000002" / "trainer_state").exists()
    resumed = run([sys.executable], out, small_data, *steps)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert curve(out) == curve(tmp_path / "full")
    assert (out / "latest").resolve() == sorted(out.glob("step_*"))[-1]  # the final checkpoint
    assert curve(out, "train/grad_norm") == curve(tmp_path / "full", "train/grad_norm")
