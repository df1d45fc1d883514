"""train_sft.py: the loss mask, the packing stream, 2 ranks (torchrun, gloo) follow the 1-process loss curve, and a
SIGKILLed run resumes exactly."""
import json
import os
import subprocess
import sys
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from data.blend import realise
from data.record import load_records, write_records
from model import TINY_DIR
from tokenizer import Tokenizer
from train_sft import count_tokens, files_blend, packed_rows, row_of, tokenize

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


def test_a_row_is_its_documents_end_to_end_with_positions_restarting(small_data):
    """Reference: tokenize() of the file's records, concatenated by hand."""
    tok, records = Tokenizer.from_dir(TINY_DIR), load_records(small_data)
    blend = realise(files_blend([str(small_data)]))
    docs = [tokenize(records[i], tok, True) for i in (5, 0, 17)]
    seq_len = sum(len(ids) for ids, _ in docs) + 7
    ids, positions, targets = row_of([5, 0, 17], blend, tok, True, seq_len)
    assert ids == [t for d, _ in docs for t in d] + [tok.pad_id] * 7
    assert positions == [p for d, _ in docs for p in range(len(d))] + list(range(7))
    assert targets == [t for _, d in docs for t in d] + [-100] * 7
    cut = row_of([5], blend, tok, True, 10)  # a document longer than a row is cut to it
    assert cut == [docs[0][0][:10], list(range(10)), docs[0][1][:10]]


def test_packed_rows_greedy_every_document_once_per_epoch_and_resumable_at_any_row():
    """Reference: plain-Python checks over the stream - per epoch a Counter of the items equals their copies, each
    row fits and was closed only because the next document did not, and restarting at any row's position gives the
    rest of the rows."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 50).astype(np.int32)
    lengths[[3, 9]] = 90                                          # longer than a row: cut
    copies = rng.integers(0, 4, 50)                               # 0: a dropped line, never a document
    per_epoch, seq_len, end = int(copies.sum()), 64, int(2.5 * copies.sum())
    rows = list(packed_rows(lengths, copies, seq_len, 7, 0, end))
    stream = [item for row, _ in rows for item in row]
    assert len(stream) == end and rows[-1][1] == end
    for e in range(2):
        assert Counter(stream[e * per_epoch:(e + 1) * per_epoch]) == {i: int(c) for i, c in enumerate(copies) if c}
    assert stream[:per_epoch] != stream[per_epoch:2 * per_epoch]  # each epoch its own shuffle
    size = [sum(min(int(lengths[i]), seq_len) for i in row) for row, _ in rows]
    assert max(size) <= seq_len
    assert all(size[r] + min(int(lengths[rows[r + 1][0][0]]), seq_len) > seq_len for r in range(len(rows) - 1))
    for r in range(len(rows)):
        assert list(packed_rows(lengths, copies, seq_len, 7, rows[r - 1][1] if r else 0, end)) == rows[r:]
    assert list(packed_rows(lengths, copies, seq_len, 8, 0, end)) != rows  # the seed decides the order


def test_the_data_path_holds_a_few_bytes_per_record_not_the_documents(tmp_path):
    """Count, plan and read 16 rows over N and 10 x N records: Python's peak allocation (tracemalloc, which sees
    numpy's arrays) grows by a few ints a record (measured: 19 bytes). Reference: the same path also holding every
    tokenised document, as the previous train_sft.py did, grows by ~2,000 bytes a record here (measured; and
    bench/sft_memory.py --script on that version: +147 MB peak RSS for 18,000 more records)."""
    toy = load_records(ROOT / "data/toy/sft/math.jsonl") + load_records(ROOT / "data/toy/sft/if.jsonl")
    tok = Tokenizer.from_dir(TINY_DIR)

    def data_path(n):
        path = tmp_path / f"{n}.jsonl"
        write_records(path, (replace(toy[i % len(toy)], id=f"r{i}") for i in range(n)))
        blend = realise(files_blend([str(path)]))
        lengths = count_tokens(blend, tok, True, False, 0, 1)
        copies = np.where(lengths > 0, blend.copies(), 0)
        stream = packed_rows(lengths, copies, 128, 0, 0, int(copies.sum()))
        assert (lengths > 0).sum() == n
        return [row_of(next(stream)[0], blend, tok, True, 128) for _ in range(16)]

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # count_tokens gathers the ranks'
    data_path(200)  # first calls allocate once for good (imports, caches): not the data's
    peaks = []
    for n in (200, 2000):
        tracemalloc.start()
        data_path(n)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    dist.destroy_process_group()
    assert peaks[1] - peaks[0] < 1800 * 100, peaks  # under 100 bytes for each of the 1,800 more records


def test_two_ranks_follow_the_single_process_curve(small_data, tmp_path):
    one = run([sys.executable], tmp_path / "one", small_data, "--micro-rows", "1", "--epochs", "0.5")
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = run(torchrun, tmp_path / "two", small_data, "--micro-rows", "1", "--epochs", "0.5")
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


def test_a_finished_run_asked_for_fewer_or_as_many_steps_keeps_its_checkpoint(small_data, tmp_path):
    """Issue 18.6: a rerun that asked for no more steps than the checkpoint holds exited 0, re-pointed `latest` at a
    step that was never saved and overwrote args.json. Now fewer steps is an error naming the flag, as many is a
    no-op, and neither touches args.json or `latest`. The run itself trains at --lr 0 (issue 18.10: `args.lr or
    default` trained it at 2e-3), so its weights must equal the seeded initialisation (reference: model.from_preset,
    the unsharded tiny model of the same seed)."""
    from model import CheckpointReader, from_preset
    out, steps = tmp_path / "run", ["--epochs", "0.5", "--micro-rows", "2"]
    first = run([sys.executable], out, small_data, *steps, "--lr", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    latest, args_json = (out / "latest").resolve(), (out / "args.json").stat().st_mtime_ns
    assert json.loads((out / "args.json").read_text())["lr"] == 0.0
    init, trained = from_preset("tiny", seed=1).state_dict(), CheckpointReader(out / "latest")
    assert all(trained.get(name).equal(init[name]) for name in trained.names())

    fewer = run([sys.executable], out, small_data, "--epochs", "0.25", "--micro-rows", "2", "--lr", "0")
    assert fewer.returncode == 1
    assert fewer.stderr.strip().splitlines()[-1].startswith("--epochs 0.25 (--max-steps None) make ")
    assert f"but {out} already holds step " in fewer.stderr.strip().splitlines()[-1]
    same = run([sys.executable], out, small_data, *steps, "--lr", "0")
    assert same.returncode == 0, same.stderr[-3000:]
    assert "nothing to do" in same.stdout
    assert (out / "latest").resolve() == latest and (out / "args.json").stat().st_mtime_ns == args_json
