"""The merge methods, each on one tensor (or a block of its rows), and their registry METHODS: name -> Method(function,
defaults), which merge.py's flags and --help, and experiment.py's list of merges, read.

Notation: θ_b the base (the SFT checkpoint every domain run started from), θ_i model i, δ_i = θ_i − θ_b its task
vector, w_i a per-model weight (--weights, default 1), λ = --scale. Defaults are the M2RL paper's settings (its MergeLM
scripts: run.sh + merging_methods.py): scaling_coefficient 1.0, param_value_mask_rate 0.8 (TIES keeps 20%),
weight_mask_rate 0.2 (DARE), select_topk 1.0 (SCE); weights None = 1 each.

A method function takes base (*shape) fp32 and the task vectors deltas (N, *shape) fp32 — the fine-tuned weights thetas
instead where its Method says on_weights —, the per-model weights (N,) where its defaults name `weights`, and its other
parameters by name; it returns the merged tensor (fp32) and a dict of extra per-tensor report entries. It may zero
entries of deltas in place (a trim): what is left nonzero is reported as the part of each task vector that entered.
Two parameters are applied by merge_tensor / merge.py before the function sees the task vectors: `drop` (DARE, which
the function never sees) and `ties_scope` ("model": the TIES thresholds found over the whole model, passed in as
`thresholds`; "tensor": None, the function finds them).

Where we differ from MergeLM: an exact tie Σ w_i δ_i = 0 elects + (mergekit's rule; MergeLM takes the model-wide
majority sign — a measure-zero event); SCE's selection mask also zeroes the merged deltas (the SCE paper and mergekit;
MergeLM uses it for the weights only — moot at the default select_topk = 1); DARE masks come from per-tensor generators
(same distribution, different draws from MergeLM's one global stream).
"""
import inspect
import zlib
from dataclasses import dataclass, field
from typing import Callable

import torch


def average(base, thetas, weights):
    """θ = Σ w_i θ_i / Σ w_i"""
    return torch.tensordot(weights, thetas, dims=1) / weights.sum(), {}


def task_arithmetic(base, deltas, weights, scale):
    """θ = θ_b + λ Σ w_i δ_i   (λ = 1: a sum of task vectors, not a mean)"""
    return base + scale * torch.tensordot(weights, deltas, dims=1), {}


def ties(base, deltas, weights, scale, density, thresholds=None):
    """trim: δ_i ← δ_i ⊙ [|δ_i| ≥ t_i], t_i the k-th smallest |δ_i|, k = ⌊n (1 − density)⌋, n = entries of the whole
    model (--ties-scope model, as MergeLM: `thresholds` given) or of this tensor (tensor: None);
    elect: s = sign(Σ w_i δ_i), 0 → +;  mean: θ = θ_b + λ Σ w_i δ_i [sign δ_i = s] / Σ w_i [sign δ_i = s] (0 where none)"""
    if thresholds is None:
        k = int(deltas[0].numel() * (1 - density))
        thresholds = magnitude_thresholds(lambda step: [deltas], k, len(deltas), deltas.device)
    trim(deltas, thresholds)
    sign = elect_sign(torch.tensordot(weights, deltas, dims=1))
    return base + scale * disjoint_mean(deltas, weights, sign), {}


def sce(base, deltas, select_topk):
    """select (only if select_topk < 1): zero the positions outside the top fraction by Var_i(δ_i);
    calculate: per tensor w_i = mean(δ_i²) / Σ_j mean(δ_j²) (uniform if all are 0);
    erase: s = sign(Σ δ_i), 0 → +;   θ = θ_b + Σ w_i δ_i [sign δ_i = s] / Σ w_i [sign δ_i = s]"""
    if select_topk < 1:
        sce_select(deltas, select_topk)
    weights = sce_weights(deltas)
    return base + disjoint_mean(deltas, weights, elect_sign(deltas.sum(0))), {"sce_weights": weights.tolist()}


@dataclass(frozen=True)
class Method:
    merge: Callable  # the function above: one tensor, or a block of its rows
    defaults: dict  # its parameters, which are the merge.py flags it accepts, and their defaults
    on_weights: bool = False  # merge gets the fine-tuned weights θ_i, not the task vectors δ_i
    # params -> whether the function needs the whole tensor at once (a per-tensor statistic); otherwise each entry of
    # its result depends on the same entry of the inputs alone, and merge.py streams large tensors in row blocks
    whole_tensor: Callable = field(default=lambda params: False)


# The registry: a new method is one function above and one line here (docs/extending.md).
METHODS = {
    "average": Method(average, dict(weights=None), on_weights=True),
    "task_arithmetic": Method(task_arithmetic, dict(weights=None, scale=1.0)),
    "ties": Method(ties, dict(weights=None, scale=1.0, density=0.2, ties_scope="model"),
                   whole_tensor=lambda params: params["ties_scope"] == "tensor"),
    "ties_dare": Method(ties, dict(weights=None, scale=1.0, density=0.2, ties_scope="model", drop=0.2),
                        whole_tensor=lambda params: params["ties_scope"] == "tensor"),
    "ta_dare": Method(task_arithmetic, dict(weights=None, scale=1.0, drop=0.2)),
    "sce": Method(sce, dict(select_topk=1.0), whole_tensor=lambda params: True),
}


def method_table() -> str:
    """The registry as merge.py's --help shows it: each method's parameters and its function's formula."""
    lines = []
    for name, method in METHODS.items():
        lines.append(f"  {name}: {method.merge.__name__}({', '.join(f'{k}={v}' for k, v in method.defaults.items())})")
        if "drop" in method.defaults:
            lines.append("      DARE first: δ_i ← δ_i ⊙ m_i / (1 − p), m_i ~ Bernoulli(1 − p), p = drop")
        lines += [f"      {line}" for line in inspect.cleandoc(method.merge.__doc__).splitlines()]
    return "\n".join(lines)


def merge_tensor(method: Method, params: dict, base, thetas, weights, dare_generators=None, thresholds=None):
    """One tensor or a block of its rows: base (*shape) and thetas (N, *shape), fp32 -> the merged block (fp32), and
    the counts behind the report: per model the nonzero entries of the task vector that entered (after DARE, trim,
    select), the positions where those entries disagree in sign, and the method's extra entries. thetas becomes the
    task vectors (in place: the fine-tuned weights are not needed again). dare_generators: one per model, for
    methods with `drop` (dare_generator); thresholds: the model-wide TIES t_i (N,), for ties_scope "model"."""
    kwargs = {k: v for k, v in params.items() if k not in ("weights", "drop", "ties_scope")}
    if "weights" in method.defaults:
        kwargs["weights"] = weights
    if thresholds is not None:
        kwargs["thresholds"] = thresholds
    if method.on_weights:
        merged, extra = method.merge(base, thetas, **kwargs)
        deltas = thetas.sub_(base)  # for the report only
    else:
        deltas = task_vectors(base, thetas, params.get("drop"), dare_generators)
        merged, extra = method.merge(base, deltas, **kwargs)
    return merged, entry_counts(deltas), extra


def task_vectors(base, thetas, drop=None, dare_generators=None):
    """δ_i = θ_i − θ_b (in place), then DARE where `drop` is given."""
    deltas = thetas.sub_(base)
    if drop is not None:
        dare(deltas, drop, dare_generators)
    return deltas


def dare_generator(seed: int, label: str, name: str) -> torch.Generator:
    """The mask of model `label` on tensor `name` is torch.rand(shape, generator=this) >= p: a CPU generator seeded
    by crc32("seed/label/name"), so the masks do not depend on the order tensors are read in, the pass, or the device.
    A tensor read in row blocks draws its blocks' masks in row order from the same generator, which gives the same
    numbers as one draw (CPU torch.rand fills its output from the generator's stream in order: tested)."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{label}/{name}".encode()))


def dare(deltas, p: float, generators):
    """DARE (Yu et al. 2024): drop each entry with probability p, rescale survivors by 1 / (1 − p). In place."""
    for delta, generator in zip(deltas, generators):
        keep = torch.rand(delta.shape, generator=generator) >= p
        delta.mul_((keep * (1 / (1 - p))).to(delta.device))  # (*shape) fp32: 0 or 1/(1 − p)


def trim(deltas, thresholds):
    """TIES trim: keep |δ_i| ≥ t_i (ties at the threshold are kept, as MergeLM's `>= kth_values`). In place."""
    for delta, threshold in zip(deltas, thresholds):
        delta.mul_(delta.abs() >= threshold)


def magnitude_thresholds(blocks, k: int, n_models: int, device):
    """t_i = the k-th smallest |δ_i| over all entries of the task-vector blocks (k = 0: t_i = 0, nothing is trimmed).

    Exact, by radix selection on the float32 bits: for non-negative floats the order of the bit patterns is the order
    of the values. Pass 1 counts the top 16 bits of every |δ_i| (2^15 buckets, the sign bit being cleared), which
    locates the bucket holding the k-th value and its rank inside it; pass 2 counts the low 16 bits of the entries in
    that bucket, which pins the value. `blocks(step)` returns a fresh iterable of (N, *shape) blocks: one tensor for the
    per-tensor scope, or the whole model streamed from disk for the model-wide scope. Memory: N × 3 · 2^15 counters.
    (torch.kthvalue is exact too, but measured 2× slower here and needs 12 bytes of scratch per entry.)
    """
    if k == 0:
        return torch.zeros(n_models, device=device)
    high = torch.zeros(n_models, 1 << 15, dtype=torch.long, device=device)
    for block in blocks(1):
        for i, delta in enumerate(block):
            high[i] += torch.bincount(magnitude_bits(delta) >> 16, minlength=1 << 15)
    bucket, rank = kth_in_histogram(high, torch.full((n_models,), k, device=device))
    low = torch.zeros(n_models, 1 << 16, dtype=torch.long, device=device)
    for block in blocks(2):
        for i, delta in enumerate(block):
            # the low 16 bits of the entries in the bucket, those below and above it counted in two end bins that
            # are dropped: 2x faster than selecting the bucket's entries with a boolean mask
            low_bits = (magnitude_bits(delta) - (int(bucket[i]) << 16)).clamp_(-1, 1 << 16).add_(1)
            low[i] += torch.bincount(low_bits, minlength=(1 << 16) + 2)[1:-1]
    value, _ = kth_in_histogram(low, rank)
    return ((bucket << 16) | value).to(torch.int32).view(torch.float32)


def magnitude_bits(delta):
    """|δ| as int32 bit patterns, flattened: the float32 bits with the sign bit cleared."""
    return (delta.view(torch.int32) & 0x7FFFFFFF).flatten()


def kth_in_histogram(counts, k):
    """counts (N, B) per row, k (N,) 1-based ranks -> the bucket holding each row's k-th smallest entry, and the
    entry's 1-based rank inside that bucket."""
    below = counts.cumsum(1)  # (N, B) entries in buckets 0..b
    bucket = (below < k[:, None]).sum(1)
    before = torch.where(bucket > 0, below.gather(1, (bucket - 1).clamp(min=0)[:, None])[:, 0], 0)
    return bucket, k - before


def elect_sign(summed):
    """TIES/SCE sign election: + where the summed deltas are ≥ 0, − elsewhere."""
    return torch.where(summed >= 0, 1.0, -1.0)


def disjoint_mean(deltas, weights, sign):
    """Σ w_i δ_i [sign δ_i = s] / Σ w_i [sign δ_i = s]: the weighted mean over the models that agree with the elected
    sign. A zero δ_i never agrees; where no model does, the result is 0. One model at a time, to bound the scratch."""
    total, count = torch.zeros_like(sign), torch.zeros_like(sign)
    for delta, w in zip(deltas, weights.tolist()):
        agree = (delta * sign > 0).float()
        total.addcmul_(delta, agree, value=w)
        count.add_(agree, alpha=w)
    return total / count.masked_fill_(count == 0, 1.0)


def sce_select(deltas, select_topk: float):
    """SCE select: keep the ⌊select_topk · #{Var > 0}⌋ positions whose values vary most across models (mergekit's
    sce_mask), zero the rest. In place."""
    variance = deltas.var(0, unbiased=False)  # (*shape)
    k = int(select_topk * torch.count_nonzero(variance))
    mask = torch.zeros(variance.numel(), device=deltas.device)
    mask[variance.flatten().topk(k).indices] = 1.0
    deltas.mul_(mask.view(variance.shape))


def sce_weights(deltas):
    """SCE calculate: w_i = mean(δ_i²) / Σ_j mean(δ_j²), uniform when every task vector is zero here."""
    weights = torch.linalg.vector_norm(deltas.flatten(1), dim=1) ** 2 / deltas[0].numel()  # (N,)
    total = weights.sum()
    return weights / total if total > 0 else torch.full_like(weights, 1 / len(weights))


def entry_counts(deltas):
    """What entered the merge: per model the nonzero entries (after DARE/trim/select), and the positions where the
    models pull in opposite directions — the interference that the sign election resolves."""
    kept = [torch.count_nonzero(delta).item() for delta in deltas]  # per row: faster than one count over dim 1
    conflict = torch.count_nonzero((deltas.amax(0) > 0) & (deltas.amin(0) < 0)).item()  # 20x faster than aminmax
    return kept, conflict
