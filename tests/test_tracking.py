"""--report-to (tracking.py): real tiny runs send every metrics.jsonl row and the run's args.json to TensorBoard and
W&B. The references are the trackers' own readers: TensorBoard's EventAccumulator on the event files, and the offline
W&B run file decoded with W&B's protobuf schema (wandb_internal_pb2.Record); the expected values are metrics.jsonl
and args.json, which the same run writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("wandb", reason="the track extra is not installed: pip install \".[track]\"")
pytest.importorskip("tensorboard", reason="the track extra is not installed: pip install \".[track]\"")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.util.tensor_util import make_ndarray  # noqa: E402
from wandb.proto.wandb_internal_pb2 import Record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SFT = os.environ.get("M2RL_TEST_SFT", str(ROOT / "data/tiny-sft"))
# taken at collection, as the other run tests do: a test's in-process world of one (dist.init) later leaves RANK and
# its MASTER_PORT in os.environ, and a child inheriting them would bind that port again
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tensorboard_scalars(log_dir) -> dict:
    """{(tag, step): value} as TensorBoard shows it (its reader drops what a purge_step hides)."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    return {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}


def as_tensorboard(rows) -> dict:
    # TensorBoard keeps a scalar as float32
    return {(k, row["step"]): float(np.float32(v)) for row in rows for k, v in row.items() if k != "step"}


def wandb_records(path):
    """The records of a .wandb file: W&B's LevelDB-style log (a 7-byte ':W&B' header, then 32 KiB blocks of chunks,
    each a 7-byte header of CRC32, little-endian length and type 1 full / 2 first / 3 middle / 4 last; a block's
    tail shorter than a header is padding), each record a wandb_internal_pb2.Record."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, payload = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        payload += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield Record.FromString(payload)
            payload = b""


def reported_run(script, tmp_path, *args):
    """Runs `script` with --report-to tensorboard wandb (W&B offline, its files in tmp_path) into tmp_path/run; then
    checks that TensorBoard and W&B hold exactly metrics.jsonl's rows and args.json, and returns the rows."""
    out, wandb_dir = tmp_path / "run", tmp_path / "wandb_dir"
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_PROJECT": "m2rl-test",
           **{v: str(tmp_path / v) for v in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}}
    done = subprocess.run([sys.executable, str(ROOT / script), "--out", str(out), *args, "--report-to", "tensorboard",
                           "wandb"], cwd=ROOT, env={**ENV, **env}, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((out / "args.json").read_text())

    assert tensorboard_scalars(out / "tensorboard") == as_tensorboard(rows)
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    [text] = events.Tensors("config/text_summary")
    fenced = make_ndarray(text.tensor_proto).item().decode().splitlines()
    assert fenced[0] == "```json" and fenced[-1] == "```" and json.loads("\n".join(fenced[1:-1])) == config

    [run_file] = (wandb_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    [started] = [r.run for r in records if r.HasField("run")]
    assert (started.project, started.display_name) == ("m2rl-test", "run")  # the run's name: --out's
    assert {u.key: json.loads(u.value_json) for u in started.config.update if u.key != "_wandb"} == config
    history = []
    for r in records:
        if r.HasField("history"):
            logged = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            history.append({k: v for k, v in logged.items() if k == "_step" or not k.startswith("_")})
    assert history == [{"_step": row["step"], **{k: v for k, v in row.items() if k != "step"}} for row in rows]
    return rows


def test_grpo_reports_every_row_and_its_flags(tmp_path):
    rows = reported_run("train_grpo.py", tmp_path, "--model", SFT, "--domains", "math,code", "--prompts-per-step",
                        "2", "--group-size", "2", "--max-response-len", "16", "--eval-every", "2", "--eval-prompts",
                        "2", "--reward-workers", "1", "--steps", "2")
    # the step-0 evaluation, a step, a step with its evaluation: rows of different keys
    assert [row["step"] for row in rows] == [0, 1, 2] and "eval/all/reward" in rows[2].keys() - rows[1].keys()


def test_sft_reports_every_row_and_its_flags(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join((ROOT / "data/toy/sft/math.jsonl").read_text().splitlines(keepends=True)[:40]))
    rows = reported_run("train_sft.py", tmp_path, "--data", str(data), "--max-steps", "2", "--batch-rows", "2",
                        "--micro-rows", "2", "--seq-len", "128")
    # steps from 1, not W&B's own count from 0
    assert [row["step"] for row in rows] == [1, 2] and rows[0]["train/loss"] != rows[1]["train/loss"]


def test_a_resumed_run_shows_in_tensorboard_as_in_metrics_jsonl(tmp_path):
    """A run dies after step 3, resumes from its checkpoint of step 1 and redoes steps 2-3 differently: TensorBoard
    hides every step the died run logged after 1 as Metrics drops their lines (the reference: metrics.jsonl written
    alongside). Its evaluation of step 2 is not redone at step 2, so only the resume's purge hides it."""
    from tracking import Tracker
    from training import Metrics
    for keep_below, rows in ((0, [{"step": 1, "train/loss": 1}, {"step": 2, "train/loss": 2, "eval/all/reward": 0.5},
                                  {"step": 3, "train/loss": 3}]),
                             (1, [{"step": 2, "train/loss": 20}, {"step": 3, "train/loss": 30, "eval/all/reward": 1}])):
        metrics = Metrics(tmp_path / "metrics.jsonl", keep_below)
        tracker = Tracker(["tensorboard"], tmp_path, {}, "run", keep_below)
        for row in rows:
            metrics.log(row)
            tracker.log(row)
        tracker.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["train/loss"] for row in rows] == [1, 20, 30] and [r.get("eval/all/reward") for r in rows] == [
        None, None, 1]
    assert tensorboard_scalars(tmp_path / "tensorboard") == as_tensorboard(rows)


@pytest.mark.parametrize("script", ["train_grpo", "train_sft"])
@pytest.mark.parametrize("sink", ["wandb", "tensorboard"])
def test_a_missing_tracker_package_stops_at_the_flag_naming_the_install(script, sink, monkeypatch, capsys):
    parser = __import__(script).parser
    monkeypatch.setitem(sys.modules, sink, None)  # what `import wandb` meets where the package is absent
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--report-to", sink])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{parser.prog}: error: argument --report-to: {sink} is not installed: pip install \".[track]\" in the m2rl "
        f"folder")
