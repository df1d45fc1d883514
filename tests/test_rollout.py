"""rollout.py's engine contract on the native engine, against the trainer's own recomputation (model.token_logprobs
over prompt + response) and, for load_weights, against the streamed model itself. The helpers here are shared with
tests/test_rollout_vllm.py, which holds the vLLM engine to the same reference.

fp32 tolerances on the per-token logprobs: mean abs difference <= 2e-5, max <= 2e-4 (measured: mean ~3e-6, max ~2e-5
for vLLM; the engines' logits and the trainer's chunked kernel round differently).
"""
from pathlib import Path

import pytest
import torch

from data.record import load_records
from model import PRESETS, TINY_DIR, Qwen3Config, Qwen3ForCausalLM, SamplingParams, save_model
from rollout import NativeEngine, open_engine
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
MEAN_TOL, MAX_TOL = 2e-5, 2e-4


def make_checkpoint(path, tied: bool, seed: int = 0) -> Qwen3ForCausalLM:
    """The tiny preset (tied) or its untied twin, saved as an HF directory with the tiny tokenizer. initializer_range
    0.1 gives peaked logits, so greedy decoding has no near-ties for float noise to flip; norms are randomised so a
    mixed-up norm weight cannot go unnoticed."""
    model = Qwen3ForCausalLM(Qwen3Config(**{**PRESETS["tiny"], "tie_word_embeddings": tied, "initializer_range": 0.1}))
    model.init_weights(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    save_model(model, path, source_dir=TINY_DIR)
    return model


def chat_prompts(tokenizer):
    """One toy eval question per domain, and one of ~210 tokens: vLLM caches prompt KV in whole blocks (128 tokens
    on CPU), so only a long prompt shows a prefix cache left stale by a weight sync."""
    records = [load_records(ROOT / f"data/toy/eval/{d}.jsonl")[0] for d in ("math", "science", "code", "if")]
    prompts = [(r.id, tokenizer.encode_chat(r.messages, add_generation_prompt=True)) for r in records]
    long = " ".join(r.messages[-1]["content"] for r in records)
    return prompts + [("long", tokenizer.encode_chat([{"role": "user", "content": long}], add_generation_prompt=True))]


def recompute(model, samples, temperature: float) -> list[torch.Tensor]:
    """The trainer's logprobs of each sample's response tokens: one forward over the right-padded prompt + response
    rows, log_softmax(logits / temperature) of each next token (model.token_logprobs, as the trainers call it)."""
    L = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    ids = torch.zeros(len(samples), L, dtype=torch.long)
    targets = torch.full((len(samples), L), -100, dtype=torch.long)
    for i, s in enumerate(samples):
        seq, p = s.prompt_ids + s.response_ids, len(s.prompt_ids)
        ids[i, :len(seq)] = torch.tensor(seq)
        targets[i, p - 1:len(seq) - 1] = torch.tensor(s.response_ids)  # position t predicts token t + 1
    logprobs, _ = model.token_logprobs(ids, targets, temperature=temperature)
    starts = [len(s.prompt_ids) - 1 for s in samples]
    return [logprobs[i, start:start + len(s.response_ids)] for i, (s, start) in enumerate(zip(samples, starts))]


def differences(samples, reference) -> tuple[float, float]:
    """(mean, max) absolute difference between the engine's logprobs and the reference, over all response tokens."""
    diff = torch.cat([torch.tensor(s.logprobs) - ref.detach() for s, ref in zip(samples, reference)]).abs()
    return diff.mean().item(), diff.max().item()


def sampling(temperature=1.0, seed=0, **kw):
    return SamplingParams(max_new_tokens=16, temperature=temperature, seed=seed, **kw)


def copy_of(model):
    old = Qwen3ForCausalLM(model.config)
    old.load_state_dict(model.state_dict())
    return old


# -----------------------------------------------------------------------------
# The native engine


def test_native_logprobs_equal_trainer_recomputation(tmp_path):
    model = make_checkpoint(tmp_path, tied=True)
    tokenizer = Tokenizer.from_dir(tmp_path)
    prompts = chat_prompts(tokenizer)[:3]
    engine = NativeEngine(model, tokenizer, batch_size=4)  # 6 sequences: batches of 4 and 2
    for temperature in (1.0, 0.7):
        samples = engine.generate(prompts, 2, sampling(temperature, seed=3))
        assert [(s.record_id, s.prompt_ids) for s in samples] == [p for p in prompts for _ in range(2)]
        with torch.no_grad():
            mean, worst = differences(samples, recompute(model, samples, temperature))
        assert mean <= MEAN_TOL and worst <= MAX_TOL
    assert engine.generate(prompts, 2, sampling(0.7, seed=3)) == samples  # same seed, same samples


def test_native_on_sample_gets_each_sample_as_it_finishes(tmp_path):
    model = make_checkpoint(tmp_path, tied=True)
    tokenizer = Tokenizer.from_dir(tmp_path)
    prompts = chat_prompts(tokenizer)[:3]
    engine = NativeEngine(model, tokenizer, batch_size=4)  # 6 sequences: batches of 4 and 2
    sp = sampling(seed=5, stop_token_ids=list(range(0, model.config.vocab_size, 8)))  # rows stop at varied steps
    reported = []
    samples = engine.generate(prompts, 2, sp, on_sample=lambda i, s: reported.append((i, s)))
    assert samples == engine.generate(prompts, 2, sp)  # the callback changes nothing
    assert sorted(i for i, _ in reported) == list(range(6)) and all(samples[i] == s for i, s in reported)
    assert [i // 4 for i, _ in reported] == [0, 0, 0, 0, 1, 1]  # a batch's samples before the next batch runs
    # within a batch, in the order they finished: by length, not by index
    lengths = [[len(s.response_ids) for i, s in reported if i // 4 == batch] for batch in (0, 1)]
    assert lengths == [sorted(lengths[0]), sorted(lengths[1])], lengths
    assert [len(samples[i].response_ids) for i in range(4)] != sorted(lengths[0])  # the index order differs


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_native_load_weights_copies_the_stream_in_place(tmp_path, tied):
    """Reference: the streamed model's own tensors. A tied head stays tied (the stream's lm_head.weight is skipped)."""
    engine = NativeEngine(make_checkpoint(tmp_path / "a", tied, seed=0), Tokenizer.from_dir(TINY_DIR))
    new = make_checkpoint(tmp_path / "b", tied, seed=1)
    before = {name: p.data_ptr() for name, p in engine.model.named_parameters()}
    engine.load_weights(iter(new.state_dict().items()))
    for name, tensor in new.state_dict().items():
        assert torch.equal(engine.model.state_dict()[name], tensor), name
    assert before == {name: p.data_ptr() for name, p in engine.model.named_parameters()}  # in place
    assert (engine.model.lm_head.weight is engine.model.model.embed_tokens.weight) == tied


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_native_engine_over_a_one_rank_policy_generates_with_its_updated_weights(tmp_path, tied, world_of_one):
    """NativeEngine.over_policy on the FSDP2 policy of a world of one: its parameters are the policy's own storage,
    and after the policy's first forward, backward and AdamW step (which FSDP2 could have re-laid out), with no
    load_weights, its samples' logprobs equal the updated policy's recomputation (reference: model.token_logprobs on
    the sharded policy, as the trainer scores). The private-copy path of several ranks is the two-rank run's
    (tests/test_train_grpo_run.py)."""
    import dist as m2rl_dist
    from training import adamw
    make_checkpoint(tmp_path, tied)
    tokenizer = Tokenizer.from_dir(tmp_path)
    policy = m2rl_dist.load_sharded(tmp_path, torch.device("cpu"), bf16=False)
    engine = NativeEngine.over_policy(policy, tokenizer, batch_size=4)
    shards = {name: t.to_local().data_ptr() for name, t in policy.state_dict().items()}
    prompts = chat_prompts(tokenizer)[:2]
    samples = engine.generate(prompts, 2, sampling(seed=1))
    optimizer = adamw(policy, 0.05, (0.9, 0.98), 0.1)
    sum(lp.sum() for lp in recompute(policy, samples, 1.0)).backward()
    optimizer.step()
    assert {name: p.data_ptr() for name, p in engine.model.state_dict().items()} == shards  # still the policy's
    assert (engine.model.lm_head.weight.data_ptr() == engine.model.model.embed_tokens.weight.data_ptr()) == tied
    engine.load_weights(iter([("lm_head.weight", None)]))  # nothing to copy: the stream is not even read
    after = engine.generate(prompts, 2, sampling(seed=1))
    with torch.no_grad():
        mean, worst = differences(after, recompute(policy, after, 1.0))
    assert mean <= MEAN_TOL and worst <= MAX_TOL
    assert [s.response_ids for s in after] != [s.response_ids for s in samples]  # the step changed what it samples


def test_open_engine_native_and_unknown_kinds(tmp_path):
    model = make_checkpoint(tmp_path, tied=True)
    engine = open_engine(tmp_path, "native", batch_size=8)
    assert isinstance(engine, NativeEngine) and engine.batch_size == 8
    assert all(torch.equal(a, b) for a, b in zip(engine.model.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="unknown engine 'vLLM'"):
        open_engine(tmp_path, "vLLM")


@pytest.mark.parametrize("cuda", [False, True])
def test_vllm_engine_passes_memory_and_tensor_parallel_to_vllm(monkeypatch, cuda):
    """open_engine(kind "vllm", ...) builds vllm.LLM with the flags' values (a recording stand-in for vllm.LLM, and
    for CUDA a pretended GPU 3: the real engine's tests are tests/test_rollout_vllm.py). On CUDA the GPU share sizes
    the KV cache, and a one-GPU engine is pinned to this rank's GPU; with tensor parallelism vLLM places its
    workers itself. On CPU the KV cache is kv_cache_gib (1 GiB)."""
    import sys
    import types
    built = []
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=lambda model, **kw: built.append(kw)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    for tp in (1, 2):
        engine = open_engine(TINY_DIR, "vllm", gpu_memory_utilization=0.7, tensor_parallel_size=tp)
        kw = built.pop()
        assert (kw["gpu_memory_utilization"], kw["tensor_parallel_size"]) == (0.7, tp)
        assert kw["kv_cache_memory_bytes"] == (None if cuda else 2**30)
        assert kw.get("device_ids") == ([3] if cuda and tp == 1 else None)
        assert engine.sleep_mode == cuda and engine.tokenizer.vocab_size == 512


def test_vllm_engine_hands_each_sample_to_on_sample_once_the_batch_returns(monkeypatch):
    """LLM.generate returns the whole batch at once (a recording stand-in for vllm.LLM here): on_sample gets
    samples[i] for every i, all after it returns."""
    import sys
    import types
    ns, events = types.SimpleNamespace, []

    class LLM:
        def __init__(self, model, **kw):
            pass

        def generate(self, prompts, params, use_tqdm):
            events.append("batch returned")
            completion = ns(token_ids=[5, 6], logprobs=[{5: ns(logprob=-0.5)}, {6: ns(logprob=-0.25)}],
                            finish_reason="stop")
            return [ns(outputs=[completion] * p.n) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", ns(LLM=LLM, SamplingParams=lambda **kw: ns(**kw)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engine = open_engine(TINY_DIR, "vllm")
    samples = engine.generate([("a", [1, 2]), ("b", [3])], 2, sampling(),
                              on_sample=lambda i, s: events.append((i, s)))
    assert len(samples) == 4 and events == ["batch returned", *enumerate(samples)]
