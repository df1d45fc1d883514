"""CPU guards for what the first GPU would reveal (issue 24): the CUDA-only branches run here with their GPU half
replaced, each by a stand-in that checks what the real one requires.

- flash-attn takes only fp16/bf16 (flash_attn_varlen_func raises "FlashAttention only support fp16 and bf16 data
  type"): use_flash_attn must say no for fp32 (the dtype of every checkpoint the trainers write).
- vLLM colocated with the trainer (VllmEngine with CUDA present): a fake vllm.LLM records the engine's constructor
  arguments, checked against the installed vLLM's own signature and EngineArgs fields, and the order of the calls
  of one real GRPO step (train_grpo.main): generate -> sleep -> empty_cache -> wake weights -> sync -> prefix-cache
  reset -> empty_cache -> wake KV cache, as vLLM's sleep-mode recipe and TRL's colocated trainer order them.
- evaluate.py closes each model's engine before the next one opens, and drops it.
- bench/gpu_smoke.py runs its CPU part here: the Triton kernels compile for an sm_90 (H100) target, offline, with
  the ptxas that the Triton wheel ships; the kernels under TRITON_INTERPRET equal eager; GPU lines say so.
"""
import dataclasses
import inspect
import os
import subprocess
import sys
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import evaluate
import model as m2rl_model
from model import load_model
from rollout import NativeEngine
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent


def test_flash_attn_is_never_chosen_for_fp32(monkeypatch):
    monkeypatch.setattr(m2rl_model, "flash_attn_varlen_func", lambda *a, **k: None)  # as if flash-attn were installed
    on_gpu = lambda dtype: SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype)  # a CUDA tensor's attributes
    assert not m2rl_model.use_flash_attn(on_gpu(torch.float32))
    assert m2rl_model.use_flash_attn(on_gpu(torch.bfloat16)) and m2rl_model.use_flash_attn(on_gpu(torch.float16))
    assert not m2rl_model.use_flash_attn(torch.zeros(1, dtype=torch.bfloat16))  # CPU: SDPA


# -----------------------------------------------------------------------------
# vLLM colocated on a GPU rank, through the real GRPO step


class FakeLLM:
    """vllm.LLM as VllmEngine uses it. Appends to `log` the constructor's keyword arguments and every call; keeps
    vLLM's sleep state (vllm/v1/executor/abstract.py: sleeping tags, wake_up returns whether all are awake) and
    refuses what vLLM would: generating or loading weights while asleep."""
    log = []

    def __init__(self, model, **kwargs):
        import vllm
        from vllm.engine.arg_utils import EngineArgs
        accepted = {f.name for f in dataclasses.fields(EngineArgs)} | set(inspect.signature(vllm.LLM).parameters)
        assert set(kwargs) <= accepted, f"not vllm.LLM arguments: {set(kwargs) - accepted}"
        self.log.append(("LLM", kwargs))
        self.asleep = set()

    def generate(self, prompts, params, use_tqdm):
        assert not self.asleep
        self.log.append("generate")
        completion = SimpleNamespace(token_ids=[7, 8], finish_reason="length",
                                     logprobs=[{7: SimpleNamespace(logprob=-1.0)}, {8: SimpleNamespace(logprob=-2.0)}])
        return [SimpleNamespace(outputs=[completion] * p.n) for p in params]

    def sleep(self, level):
        self.log.append(("sleep", level))
        self.asleep = {"weights", "kv_cache"}

    def wake_up(self, tags=None):
        self.log.append(("wake_up", tags))
        self.asleep -= set(tags or self.asleep)
        return not self.asleep

    def collective_rpc(self, method):
        log = self.log

        class Worker:
            def reload_weights(self_, weights_iterator, is_checkpoint_format):
                assert "weights" not in self.asleep and is_checkpoint_format
                log.append(("sync", sum(1 for _ in weights_iterator)))
        return [method(Worker())]

    def reset_prefix_cache(self):
        self.log.append("reset_prefix_cache")


def test_grpo_step_drives_a_colocated_vllm_engine_in_order(tmp_path, monkeypatch):
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed: its LLM signature is the reference here")
    import train_grpo

    FakeLLM.log = []
    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: FakeLLM.log.append("empty_cache"))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        monkeypatch.delenv(key, raising=False)  # dist.init and VllmEngine set them; restored afterwards

    def open_on_gpu_rank_3(*args):
        """The real open_rollout_engine with the device and CUDA state of rank 3 on a GPU node: dist.init has called
        torch.cuda.set_device(cuda:3), so the current device is 3. Only the engine sees CUDA; training stays on CPU."""
        with monkeypatch.context() as m:
            m.setattr(torch.cuda, "is_available", lambda: True)
            m.setattr(torch.cuda, "current_device", lambda: 3)
            return opened(*(torch.device("cuda", 3) if isinstance(a, torch.device) else a for a in args))
    opened = train_grpo.open_rollout_engine
    monkeypatch.setattr(train_grpo, "open_rollout_engine", open_on_gpu_rank_3)
    args = train_grpo.parser.parse_args(["--engine", "vllm", "--steps", "1", "--eval-every", "0", "--domains", "math",
                                         "--prompts-per-step", "2", "--group-size", "2", "--max-response-len", "2",
                                         "--reward-workers", "1", "--out", str(tmp_path / "grpo")])
    train_grpo.main(args)

    (_, kwargs), *calls = FakeLLM.log
    assert kwargs["device_ids"] == [3]  # not vLLM's default cuda:0, where every rank's engine would land
    assert kwargs["enable_sleep_mode"] and kwargs["dtype"] == "bfloat16" and not kwargs["enforce_eager"]
    assert kwargs["kv_cache_memory_bytes"] is None and 0 < kwargs["gpu_memory_utilization"] <= 0.5  # the rest: training
    assert kwargs["logprobs_mode"] == "processed_logprobs"
    n_tensors = len(load_model(train_grpo.TINY_SFT).state_dict())
    assert calls == ["generate", ("sleep", 2), "empty_cache", ("wake_up", ["weights"]), ("sync", n_tensors),
                     "reset_prefix_cache", "empty_cache", ("wake_up", ["kv_cache"])]


def test_wake_up_refuses_an_engine_left_asleep(monkeypatch):
    from rollout import VllmEngine
    engine = VllmEngine.__new__(VllmEngine)  # the wake path only: an engine whose LLM is the fake, in sleep mode
    engine.llm, engine.sleep_mode = FakeLLM.__new__(FakeLLM), True
    FakeLLM.log = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: FakeLLM.log.append("empty_cache"))
    engine.llm.asleep = {"weights", "kv_cache"}
    with pytest.raises(RuntimeError, match="still partly asleep"):
        engine.wake_up(["kv_cache"])  # the weights were never woken
    engine.wake_up(["weights"])
    assert FakeLLM.log == ["empty_cache", ("wake_up", ["kv_cache"]), "empty_cache", ("wake_up", ["weights"])]


# -----------------------------------------------------------------------------
# evaluate.py: one engine at a time


def test_evaluate_closes_each_engine_before_the_next_opens(tmp_path, monkeypatch):
    from model import TINY_DIR, from_preset, save_model
    events, engines = [], []

    class Recorded(NativeEngine):
        def close(self):
            events.append(("close", self.where))
            super().close()

    def open_engine(where, kind, batch_size, **kwargs):
        alive = [e for e in engines if e() is not None]  # no gc.collect(): gone means no reference left at all
        events.append(("open", where, len(alive)))
        engine = Recorded(load_model(where), Tokenizer.from_dir(where), batch_size)
        engine.where = where
        engines.append(weakref.ref(engine))
        return engine

    monkeypatch.setattr(evaluate, "open_engine", open_engine)
    dirs = []
    for seed in (1, 2):
        save_model(from_preset("tiny", seed=seed), tmp_path / f"m{seed}", source_dir=TINY_DIR)
        dirs.append(str(tmp_path / f"m{seed}"))
    evaluate.main(evaluate.parser.parse_args(["--models", f"a={dirs[0]}", f"b={dirs[1]}", "--benchmarks", "toy_math",
                                              "--limit", "1", "--k", "1", "--max-new-tokens", "2", "--engine",
                                              "native", "--out", str(tmp_path / "eval")]))
    assert events == [("open", dirs[0], 0), ("close", dirs[0]), ("open", dirs[1], 0), ("close", dirs[1])]
    assert all(e() is None for e in engines)


# -----------------------------------------------------------------------------
# bench/gpu_smoke.py without a GPU


def test_gpu_smoke_runs_its_cpu_part(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_smoke.py"), "--out", str(tmp_path / "smoke")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = {line.split("|")[1].strip(): line for line in run.stdout.splitlines() if line.startswith("| ")}
    for check in ("rmsnorm", "rope", "swiglu", "logprobs"):
        assert "PASS" in lines[f"{check} compiles for sm_90"], lines
        assert "PASS" in lines[f"{check} triton = eager (interpreter)"], lines
    for check in ("flash-attn varlen = SDPA", "grpo 0.6B + vllm, 2 steps", "trainer step MFU"):
        assert "skipped: no CUDA" in lines[check], lines
    assert "skipped: no CUDA" in lines["memory plan 0.6B"] and "GiB" in lines["memory plan 0.6B"]  # the plan alone
