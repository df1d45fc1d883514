"""grpo.py: the loss maths against hand computations (GRPO advantage, PPO clip with DAPO's clip-higher, truncated
importance sampling, verl's loss aggregations), and the step's batch against the samples it was built from."""
import math

import pytest
import torch

from grpo import aggregate, build_batch, group_advantages, partition, policy_loss
from test_logprobs import random_samples


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


def test_partition_packs_whole_samples_under_the_budget():
    lengths = [30, 5, 12, 50, 8, 20, 3]
    parts = partition(lengths, list(range(7)), micro_batch=2, max_tokens=32)
    assert sorted(i for p in parts for i in p) == list(range(7))  # every sample once, whole
    assert [3] in parts  # longer than the budget: a micro-batch of its own
    assert all(sum(lengths[i] for i in p) <= 32 for p in parts if p != [3])
    assert parts == [[3], [0], [5, 2], [4, 1, 6]]  # first-fit decreasing by hand: 50 | 30 | 20+12 | 8+5+3
    # padded: micro_batch samples each, longest first, so rows of like length pad together: 50 30 | 20 12 | 8 5 | 3
    assert partition(lengths, list(range(7)), micro_batch=2, max_tokens=0) == [[3, 0], [5, 2], [4, 1], [6]]


@pytest.mark.parametrize("max_tokens", [0, 32])
def test_batch_holds_each_samples_advantage_and_engine_logprobs(max_tokens, world_of_one):
    # reference: the samples themselves. Mini-batch m takes samples m, m + 2, ...; every sample sits in one
    # micro-batch, its response tokens under the mask, each carrying its advantage and the engine's logprob
    samples = random_samples([(6, 40), (3, 2), (9, 17), (4, 1), (12, 9), (5, 3), (2, 25)])
    advantages = [0.5 * i - 1 for i in range(len(samples))]
    batch = build_batch(samples, advantages, None, 2, 3, max_tokens, "cpu")
    for m, mini in enumerate(batch.minis):
        mine = list(range(m, len(samples), 2))
        assert sorted(i for mb in mini.micro for i in mb.samples) == mine
        assert mini.n_seqs == len(mine) and mini.n_tokens == sum(len(samples[i].response_ids) for i in mine)
        for mb in mini.micro:
            assert mb.old_lp is None and (mb.tokens.positions is not None) == (max_tokens > 0)
            assert mb.real_tokens == sum(len(samples[i].prompt_ids) + len(samples[i].response_ids) for i in mb.samples)
            for b, i in enumerate(mb.samples):
                n = len(samples[i].response_ids)
                assert mb.tokens.mask[b, :n].all() and not mb.tokens.mask[b, n:].any()
                assert torch.equal(mb.rollout_lp[b, :n], torch.tensor(samples[i].logprobs))
                assert (mb.rollout_lp[b, n:] == 0).all()
                assert (mb.advantages[b, :n] == advantages[i]).all() and (mb.advantages[b, n:] == 0).all()


def test_batch_split_by_domain_keeps_each_micro_batch_to_one(world_of_one):
    # MT-OPD: each teacher scores the micro-batches of its domain, so none may mix two
    samples = random_samples([(4, 3)] * 8)
    domains = ["math", "code", "code", "math", "if", "math", "code", "if"]
    batch = build_batch(samples, [0.0] * 8, domains, 1, 16, 0, "cpu")
    assert {mb.domain: mb.samples for mb in batch.micro_batches()} == {"math": [0, 3, 5], "code": [1, 2, 6],
                                                                     "if": [4, 7]}


def test_a_rank_with_fewer_micro_batches_pads_with_idle_ones(world_of_one, monkeypatch):
    # the busiest rank (stood in for by all_reduce_max) has 3 micro-batches: this one, with 1, adds 2 idle ones
    # whose loss is exactly 0 (reference: aggregate of any loss under their empty mask)
    import dist as m2rl_dist
    monkeypatch.setattr(m2rl_dist, "all_reduce_max", lambda x: 3)
    batch = build_batch(random_samples([(4, 3), (2, 5)]), [1.0, -1.0], None, 1, 16, 0, "cpu")
    idle = batch.minis[0].micro[1:]
    assert len(batch.minis[0].micro) == 3 and [mb.samples for mb in idle] == [[], []]
    for mb in idle:
        assert mb.tokens.mask.sum() == 0 and mb.real_tokens == 0
        loss = torch.randn_like(mb.tokens.mask, requires_grad=True)
        assert aggregate(loss, mb.tokens.mask, "token-mean", 2, 8, 8).item() == 0
