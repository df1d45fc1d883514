"""Logprobs of given response tokens under a model, and KL estimators from them: the one scorer that train_grpo.py
(pi_old, the reference, the teachers, the loss) and analyze.py's KL between policies both use.

A sample is anything with `prompt_ids` and `response_ids` (rollout.Sample). Its rows are prompt + response, laid out
padded (one sample per row) or packed (end to end in one row, no padding); either way the response tokens come back
as one (B, R) tensor, R the longest response, zero past each response's end. They are scored as model.token_logprobs
scores a row, through the chunked kernel (the (tokens x vocab) logits never exist whole), at the response positions
only.
"""
from typing import NamedTuple

import torch


class Tokens(NamedTuple):
    """Token rows for the forward pass, and each sample's response tokens as one padded (B, R) view of them.
    ids, targets (rows, L): prompt + response tokens, the next token on response positions and -100 elsewhere;
    positions (rows, L): restarting at 0 at each packed sample, or None for one sample per row;
    index (B, R): where response token r of sample b sits in ids.flatten(); mask (B, R): 1 on response tokens."""
    ids: torch.Tensor
    positions: torch.Tensor | None
    targets: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor

    def to(self, device) -> "Tokens":
        return Tokens(*(t.to(device) if t is not None else None for t in self))


def padded(samples) -> Tokens:
    """One sample per row, right-padded to the longest."""
    L = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    ids = torch.zeros(len(samples), L, dtype=torch.long)
    targets = torch.full((len(samples), L), -100, dtype=torch.long)
    for b, s in enumerate(samples):
        P, n = len(s.prompt_ids), len(s.response_ids)
        ids[b, :P + n] = torch.tensor(s.prompt_ids + s.response_ids)
        targets[b, P - 1:P - 1 + n] = torch.tensor(s.response_ids)  # position t predicts token t + 1
    return _responses(samples, [b * L for b in range(len(samples))], ids, None, targets)


def packed(samples) -> Tokens:
    """The samples end to end in one row, no padding: position ids restart at 0 at each sample, which is how
    model.py keeps attention inside a sample (a block-diagonal causal mask with SDPA, flash-attn's varlen kernel on
    CUDA) — the same logprobs as one sample per row (tested)."""
    ids, positions, targets, starts = [], [], [], []
    for s in samples:
        P, n = len(s.prompt_ids), len(s.response_ids)
        starts.append(len(ids))
        ids += s.prompt_ids + s.response_ids
        positions += range(P + n)
        targets += [-100] * (P - 1) + s.response_ids + [-100]
    as_row = lambda x: torch.tensor([x], dtype=torch.long)  # (1, L)
    return _responses(samples, starts, as_row(ids), as_row(positions), as_row(targets))


def _responses(samples, starts, ids, positions, targets) -> Tokens:
    """The (B, R) view of each sample's response tokens, sample b starting at flat offset starts[b]."""
    R = max(len(s.response_ids) for s in samples)
    index, mask = torch.zeros(len(samples), R, dtype=torch.long), torch.zeros(len(samples), R)
    for b, (s, start) in enumerate(zip(samples, starts)):
        P, n = len(s.prompt_ids), len(s.response_ids)
        index[b, :n] = torch.arange(start + P - 1, start + P - 1 + n)
        mask[b, :n] = 1
    return Tokens(ids, positions, targets, index, mask)


def response_logprobs(model, tokens: Tokens, temperature: float, with_entropy: bool = False):
    """Logprobs (and entropies, else None) of the response tokens, (B, R) fp32, at the sampling temperature: the
    distribution the engine sampled from. Zero past each response's end.

    model.token_logprobs with the head applied to the response positions only (as TRL's logits_to_keep): the prompt
    and padding positions' logits, which nothing reads, cost the head's matmuls forward and backward (a quarter of a
    Qwen3-0.6B token's FLOPs; half the positions of the toy step's micro-batches)."""
    targets = torch.where(tokens.mask.bool(), tokens.targets.flatten()[tokens.index], -100)  # -100: past the end
    return model.token_logprobs(tokens.ids, targets, tokens.positions, temperature=temperature,
                                with_entropy=with_entropy, at=tokens.index)


@torch.no_grad()
def sample_logprobs(model, samples, temperature: float, batch_size: int, device) -> list[torch.Tensor]:
    """log pi(y_t | x, y_<t) of every response token of every sample under `model`, one CPU tensor per sample,
    scored `batch_size` padded rows at a time."""
    out = []
    for b in range(0, len(samples), batch_size):
        batch = samples[b:b + batch_size]
        logprobs = response_logprobs(model, padded(batch).to(device), temperature)[0].cpu()
        out += [logprobs[i, :len(s.response_ids)] for i, s in enumerate(batch)]
    return out


def kl_estimate(logprobs, ref_logprobs, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimates of KL(pi || pi_ref) from samples of pi (Schulman, "Approximating KL divergence", 2020):
    k1 = log r, k2 = (log r)^2 / 2, k3 = 1/r - 1 + log r, with log r = log pi - log pi_ref. k1 and k3 are unbiased,
    k3 never negative and of lower variance; k2 is biased but low-variance. Computed in the inputs' dtype: pass
    doubles to sum many tokens' estimates when the two policies nearly agree."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio  # expm1: no cancellation near r = 1
    raise ValueError(f"unknown KL estimator {estimator!r}; choose k1, k2 or k3")
