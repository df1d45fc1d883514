"""logprobs.py: the response-token scorer against model.token_logprobs on each sequence alone (padded and packed
layouts alike), and Schulman's KL estimators against hand computations."""
import math

import pytest
import torch

from logprobs import kl_estimate, packed, padded, response_logprobs, sample_logprobs
from model import from_preset
from rollout import Sample


def random_samples(shapes, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [Sample("r", torch.randint(0, 500, (p,), generator=gen).tolist(),
                   torch.randint(0, 500, (n,), generator=gen).tolist(),
                   (-torch.rand(n, generator=gen)).tolist(), "", "stop") for p, n in shapes]


def alone(model, s, temperature):
    """Reference: model.token_logprobs on prompt + response on its own, unpadded."""
    seq = torch.tensor([s.prompt_ids + s.response_ids])
    tgt = torch.tensor([[-100] * (len(s.prompt_ids) - 1) + s.response_ids + [-100]])
    return model.token_logprobs(seq, tgt, temperature=temperature)[0][0, len(s.prompt_ids) - 1:-1]


@pytest.mark.parametrize("layout", [padded, packed])
def test_batch_gathers_each_response_like_the_sequence_alone(layout):
    model = from_preset("tiny", seed=0)
    samples = random_samples([(5, 3), (2, 7), (9, 1)])
    tokens = layout(samples)
    with torch.no_grad():
        batched = response_logprobs(model, tokens, temperature=0.7)[0]
        for b, s in enumerate(samples):
            n = len(s.response_ids)
            assert torch.allclose(batched[b, :n], alone(model, s, 0.7), atol=1e-5)
            assert tokens.mask[b].sum() == n and (batched[b, n:] == 0).all()
    if layout is packed:  # one row, no padding: every token is a real one
        assert tokens.ids.shape == (1, sum(len(s.prompt_ids) + len(s.response_ids) for s in samples))


@pytest.mark.parametrize("layout", [padded, packed])
def test_head_on_response_positions_only_gives_every_rows_entropy_and_gradient(layout):
    # reference: model.token_logprobs over the whole rows (the head at every position), then gathered at the
    # response tokens. A prompt of one token puts a response target at flat position 0, where past-the-end entries
    # of the (B, R) index point
    model = from_preset("tiny", seed=0)
    samples = random_samples([(1, 4), (6, 2), (3, 9)])
    tokens = layout(samples)
    weights = torch.randn(tokens.mask.shape, generator=torch.Generator().manual_seed(3))
    results = []
    for head_everywhere in (True, False):
        model.zero_grad()
        if head_everywhere:
            lp, ent = model.token_logprobs(tokens.ids, tokens.targets, tokens.positions, temperature=0.7,
                                           with_entropy=True)
            lp, ent = lp.flatten()[tokens.index] * tokens.mask, ent.flatten()[tokens.index] * tokens.mask
        else:
            lp, ent = response_logprobs(model, tokens, temperature=0.7, with_entropy=True)
        ((lp + 0.1 * ent) * weights).sum().backward()
        results.append((lp.detach(), ent.detach(), [p.grad.clone() for p in model.parameters()]))
    (lp_ref, ent_ref, grads_ref), (lp, ent, grads) = results
    assert torch.allclose(lp, lp_ref, atol=1e-5) and torch.allclose(ent, ent_ref, atol=1e-5)
    assert (lp[tokens.mask == 0] == 0).all() and (ent[tokens.mask == 0] == 0).all()  # zero past each end
    for a, b in zip(grads, grads_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_sample_logprobs_scores_each_sample_like_the_sequence_alone():
    model = from_preset("tiny", seed=0)
    samples = random_samples([(5, 3), (2, 7), (9, 1), (4, 4), (3, 6)])
    scored = sample_logprobs(model, samples, temperature=0.7, batch_size=2, device="cpu")
    with torch.no_grad():
        for s, lp in zip(samples, scored, strict=True):
            assert lp.shape == (len(s.response_ids),) and torch.allclose(lp, alone(model, s, 0.7), atol=1e-5)


def test_kl_estimators_by_hand():
    logprobs, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    log_r = [0.5, -1.0]  # log pi - log pi_ref
    assert torch.allclose(kl_estimate(logprobs, ref, "k1"), torch.tensor(log_r))
    assert torch.allclose(kl_estimate(logprobs, ref, "k2"), torch.tensor([x * x / 2 for x in log_r]))
    assert torch.allclose(kl_estimate(logprobs, ref, "k3"), torch.tensor([math.exp(-x) - 1 + x for x in log_r]))
    assert (kl_estimate(logprobs, ref, "k3") >= 0).all()  # k3 is never negative (unbiased and low-variance)


def test_k3_keeps_its_precision_when_the_policies_nearly_agree():
    # reference: the series k3 = r^2/2 - r^3/6 + ..., for r = 1e-6 in fp64; exp(-r) - 1 + r would lose ~half the digits
    r = torch.tensor([1e-6], dtype=torch.float64)
    assert kl_estimate(r, torch.zeros_like(r), "k3").item() == pytest.approx(r.item() ** 2 / 2 - r.item() ** 3 / 6,
                                                                            rel=1e-9)
