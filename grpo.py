"""The GRPO loss and the batch it is computed on: advantages, the clipped policy loss with TIS, loss aggregation (the
maths in docs/grpo.md; the KL estimators are logprobs.kl_estimate), and `Batch`, a step's samples laid
out once for every forward and backward of the step.

A step's kept samples on one rank become a Batch: mini-batches (one optimizer step each), each a list of
micro-batches (one forward/backward each) whose token rows, advantages and engine logprobs are built here once and
then used from scoring (pi_old, teachers) to the loss of every PPO epoch. The functions of the loss are pure: tensors
in, tensors out, the same on one rank or many.
"""
from dataclasses import dataclass, field

import torch

import dist as m2rl_dist
from logprobs import Tokens, packed, padded

LOSS_AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")


@dataclass(frozen=True)
class LossConfig:
    """The hyper-parameters of one update (the flags of the same names)."""
    temperature: float  # the rollout's: logprobs are scored under the distribution the engine sampled from
    eps_clip: float
    eps_clip_high: float
    tis_cap: float  # 0: no truncated importance sampling
    kl_coef: float  # 0: no KL term (and no reference model)
    kl_estimator: str
    entropy_coef: float
    loss_agg: str
    max_response_len: int  # Dr.GRPO's normaliser
    grad_clip: float


def group_advantages(rewards: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards (P, n) -> advantages (P, n), normalised within each prompt's group of n samples. std is the unbiased
    one (torch.std, as verl and TRL); a group of one has no baseline and gets advantage 0."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(centred[:, :1])
    return centred / (std + eps)


def policy_loss(logprobs, old_logprobs, rollout_logprobs, advantages, eps_low, eps_high, tis_cap):
    """Per-token PPO-clip loss (B, T) and where the clip was active (B, T) bool. advantages: (B, T), or (B, 1) for one
    per sequence. tis_cap = 0 turns truncated importance sampling off."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - eps_low, 1 + eps_high)
    loss = torch.maximum(unclipped, clipped)
    if tis_cap:
        loss = loss * torch.exp(old_logprobs - rollout_logprobs).clamp(max=tis_cap).detach()
    return loss, clipped > unclipped


def aggregate(loss, mask, mode: str, n_seqs: int, n_tokens: int, max_len: int) -> torch.Tensor:
    """This micro-batch's share of the batch loss: summed over every micro-batch of every rank, it gives
        token-mean               sum of all tokens' losses / all tokens                            (DAPO)
        seq-mean-token-mean      mean over sequences of each sequence's mean token loss             (GRPO, paper)
        seq-mean-token-sum-norm  mean over sequences of each sequence's summed loss / max_len       (Dr.GRPO)
    loss, mask (B, T); n_seqs and n_tokens count the whole batch (all ranks)."""
    per_seq = (loss * mask).sum(dim=1)
    if mode == "token-mean":
        return per_seq.sum() / n_tokens
    if mode == "seq-mean-token-mean":
        return (per_seq / mask.sum(dim=1).clamp(min=1)).sum() / n_seqs
    if mode == "seq-mean-token-sum-norm":
        return (per_seq / max_len).sum() / n_seqs
    raise ValueError(f"unknown loss aggregation {mode!r}; choose one of {LOSS_AGGREGATIONS}")


# ---------------------------------------------------------------------------------------------------------------
# The batch


@dataclass
class MicroBatch:
    """Some of the step's samples for one forward/backward: their token rows, and per response token (B, R), R the
    longest response here, zero past each response's end: the advantage, the engine's logprob, and pi_old's (None: on
    policy, where pi_old is pi detached and costs no forward; set by scoring otherwise). `samples` are their indices
    in the step's batch; an idle micro-batch has none."""
    samples: list[int]
    domain: str | None  # the samples' domain when the batch is split by domain (MT-OPD), else None
    tokens: Tokens
    advantages: torch.Tensor
    rollout_lp: torch.Tensor
    old_lp: torch.Tensor | None = None
    real_tokens: int = 0  # prompt + response tokens of its samples: the rest of tokens.ids is padding


@dataclass
class MiniBatch:
    """One optimizer step's micro-batches, as many on every rank (see `build_batch`), and the sizes of the whole
    mini-batch over all ranks, which the loss aggregation divides by."""
    micro: list[MicroBatch]
    n_seqs: int
    n_tokens: int


@dataclass
class Batch:
    """A step's samples on this rank, as `build_batch` lays them out: one mini-batch per optimizer step."""
    minis: list[MiniBatch] = field(default_factory=list)

    def micro_batches(self) -> list[MicroBatch]:
        return [mb for mini in self.minis for mb in mini.micro]


def build_batch(samples, advantages: list[float], domains: list[str] | None, mini_batches: int, micro_batch: int,
                max_tokens: int, device, skip_zero: bool = False) -> Batch:
    """The step's batch on this rank: sample i (with `prompt_ids`, `response_ids` and the engine's `logprobs`) has
    one advantage for all its response tokens. Mini-batch m takes samples m, m + M, m + 2M, ...; each is cut into
    micro-batches by `partition`, packed (max_tokens > 0) or padded, and with `domains` never across two domains
    (each teacher scores the micro-batches of its own domain). Every rank holds as many micro-batches in each
    mini-batch as the busiest rank, because each FSDP forward is a collective that must pair up: the others are idle
    ones, whose forward and backward add nothing. skip_zero: samples of advantage 0 get no micro-batch but count in
    the mini-batch's sizes (their loss and gradient are exactly 0 under the policy loss alone); a mini-batch with
    nothing left keeps one idle micro-batch, so its optimizer step still sees gradients, of 0, as AdamW's moments and
    weight decay need. The batch stays on `device` for the step: at most 48 bytes a token (int64
    rows, fp32 per-token values; `memory.batch_bytes` counts them), ~0.4 GB for a paper-scale rank's 8M tokens."""
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
    batch = Batch()
    for m in range(mini_batches):
        mini = list(range(m, len(samples), mini_batches))
        trained = [i for i in mini if not (skip_zero and advantages[i] == 0.0)]
        groups = {None: trained} if domains is None else {d: [i for i in trained if domains[i] == d]
                                                          for d in dict.fromkeys(domains[i] for i in trained)}
        micro = [micro_batch_of(samples, part, [advantages[i] for i in part], domain, max_tokens > 0, device)
                 for domain, chosen in groups.items() for part in partition(lengths, chosen, micro_batch, max_tokens)]
        n_micro = int(m2rl_dist.all_reduce_max(max(len(micro), 1 if mini else 0)))
        micro += [idle_micro_batch(device) for _ in range(n_micro - len(micro))]
        batch.minis.append(MiniBatch(micro, int(m2rl_dist.all_reduce_sum(len(mini))),
                                     int(m2rl_dist.all_reduce_sum(sum(len(samples[i].response_ids) for i in mini)))))
    return batch


def micro_batch_of(samples, chosen: list[int], advantages: list[float], domain, pack: bool, device) -> MicroBatch:
    picked = [samples[i] for i in chosen]
    tokens = (packed if pack else padded)(picked)
    per_token, rollout_lp = torch.zeros_like(tokens.mask), torch.zeros_like(tokens.mask)  # (B, R)
    for b, (s, advantage) in enumerate(zip(picked, advantages)):
        per_token[b, :len(s.response_ids)] = advantage
        rollout_lp[b, :len(s.response_ids)] = torch.tensor(s.logprobs)
    real = sum(len(s.prompt_ids) + len(s.response_ids) for s in picked)
    return MicroBatch(chosen, domain, tokens.to(device), per_token.to(device), rollout_lp.to(device), real_tokens=real)


def idle_micro_batch(device) -> MicroBatch:
    """One token, no response: a forward that joins the collectives and a loss of exactly 0."""
    zeros = torch.zeros(1, 1, device=device)
    tokens = Tokens(torch.zeros(1, 1, dtype=torch.long, device=device), None,
                    torch.full((1, 1), -100, dtype=torch.long, device=device),
                    torch.zeros(1, 1, dtype=torch.long, device=device), zeros)
    return MicroBatch([], None, tokens, zeros, zeros)


def partition(lengths, chosen, micro_batch: int, max_tokens: int) -> list[list[int]]:
    """The chosen samples in micro-batches: `micro_batch` sequences each (padded), or with a token budget whole
    samples packed first-fit-decreasing so each micro-batch holds at most `max_tokens` tokens (slime's dynamic
    batching, verl's use_dynamic_bsz); a sample longer than the budget gets one of its own. Padded micro-batches take
    the samples longest first, so each pads its rows to a length near theirs: in the order they came, one long
    response made every micro-batch pad to it (the toy step's first three batches: 26-29% of the token slots were
    padding, 10-14% sorted). The loss is the same, as every share is normalised by the whole mini-batch's sizes
    (`aggregate`)."""
    by_length = sorted(chosen, key=lambda i: -lengths[i])  # stable: ties keep their order, so every run cuts alike
    if not max_tokens:
        return [by_length[i:i + micro_batch] for i in range(0, len(by_length), micro_batch)]
    bins, loads = [], []
    for i in by_length:
        fits = next((b for b, load in enumerate(loads) if load + lengths[i] <= max_tokens), None)
        if fits is None:
            bins.append([i])
            loads.append(lengths[i])
        else:
            bins[fits].append(i)
            loads[fits] += lengths[i]
    return bins
