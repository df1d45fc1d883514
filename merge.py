"""Merge per-domain RL checkpoints into one model, streaming one tensor name across all N models at a time.

    python merge.py --base SFT_DIR --models math=DIR code=DIR science=DIR if=DIR --method ties --out OUT_DIR

Notation: θ_b the base (the SFT checkpoint every domain run started from), θ_i model i, δ_i = θ_i − θ_b its task
vector, w_i a per-model weight (--weights, default 1), λ = --scale. Defaults are the M2RL paper's settings (its MergeLM
scripts: run.sh + merging_methods.py), listed in DEFAULTS below.

  average          θ = Σ w_i θ_i / Σ w_i
  task_arithmetic  θ = θ_b + λ Σ w_i δ_i                              λ = 1: a sum of task vectors, not a mean
  ties             trim:  δ_i ← δ_i ⊙ [|δ_i| ≥ t_i], t_i the k-th smallest |δ_i|, k = ⌊n (1 − density)⌋, density 0.2,
                          n = entries of the whole model (--ties-scope model, as MergeLM) or of each tensor (tensor)
                   elect: s = sign(Σ w_i δ_i), 0 → +
                   mean:  θ = θ_b + λ Σ w_i δ_i [sign δ_i = s] / Σ w_i [sign δ_i = s]      (0 where no model agrees)
  ties_dare        DARE first, δ_i ← δ_i ⊙ m_i / (1 − p), m_i ~ Bernoulli(1 − p), p = --drop = 0.2; then TIES
  ta_dare          DARE first, then task arithmetic
  sce              select (only if --select-topk < 1): zero the positions outside the top fraction by Var_i(δ_i);
                   calculate: per tensor w_i = mean(δ_i²) / Σ_j mean(δ_j²) (uniform if all are 0);
                   erase: s = sign(Σ δ_i), 0 → +;   θ = θ_b + Σ w_i δ_i [sign δ_i = s] / Σ w_i [sign δ_i = s]

Inputs in different float dtypes (a bf16 Hugging Face base, our fp32 RL outputs) merge in fp32. A model stored in a
coarser dtype than the base (bf16 beside an fp32 base) is read with the base's rounding residual θ_b − round(θ_b) added
back, so an entry it did not move has δ = 0 exactly, and rounding never counts as a task vector (see on_base_precision).

Checks, each leaving --out as it was: first, --out is new, empty or an earlier merge (it holds merge_report.json), and
neither an input nor the working directory (model.check_out_dir); every model's config and tensor shapes equal the
base's (headers only); then, as each tensor is read (the first weight matrix, in practice), every model's matrix points
the base's way (cosine ≥ MIN_COSINE, else "fine-tuned from another base?"; --skip-base-check merges anyway), a failure
removing the half-written temporary. A bad input is one line naming the model, file and key, and exit status 1.

Where we differ from MergeLM: an exact tie Σ w_i δ_i = 0 elects + (mergekit's rule; MergeLM takes the model-wide
majority sign — a measure-zero event); SCE's selection mask also zeroes the merged deltas (the SCE paper and mergekit;
MergeLM uses it for the weights only — moot at the default select_topk = 1); DARE masks come from per-tensor generators
(same distribution, different draws from MergeLM's one global stream); and the output keeps the base's dtype, where
MergeLM, loading in transformers' default fp32, saved fp32 (--dtype float32 does the same).

Streaming: the base and the N models are read one tensor name at a time (safetensors, shards via the index) and the
output is written by model.save_checkpoint as shards fill, so peak memory is a few copies of the largest tensor × N,
never a model. The model-wide TIES threshold needs every entry of a task vector before the first tensor can be trimmed:
it is found exactly, in two extra read passes, by radix selection (see model_wide_thresholds). DARE masks are drawn
from a generator seeded by (seed, model label, tensor name), so every pass and every device redraws the same masks.

Outputs in --out: the HF checkpoint (shards + index, config.json, generation_config.json, the base's tokenizer files,
base dtype per tensor unless --dtype; tied embeddings stay tied), merge_args.json (vars(args)) and merge_report.json
(method, parameters, seed, model-wide TIES thresholds; per tensor and over the model: the fraction of each task vector
that entered the merge after DARE/trim/select, and the fraction of positions where those entries disagree in sign;
SCE's per-tensor weights), all put in place by one rename (a report never lacks its weights, nor the reverse).
"""
import argparse
import json
import math
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import torch
from tqdm import tqdm

from cli import HelpFormatter, add_config_flag, parse_args as parse_with_config
from demo import demo_checkpoints
from model import DTYPES, CheckpointError, CheckpointReader, check_out_dir, save_checkpoint

METHODS = ("average", "task_arithmetic", "ties", "ties_dare", "ta_dare", "sce")
# The parameters each method takes and their defaults: M2RL's run.sh calls MergeLM with scaling_coefficient 1.0,
# param_value_mask_rate 0.8 (TIES keeps 20%), weight_mask_rate 0.2 (DARE), select_topk 1.0 (SCE); weights None = 1 each.
DEFAULTS = {
    "average": dict(weights=None),
    "task_arithmetic": dict(weights=None, scale=1.0),
    "ties": dict(weights=None, scale=1.0, density=0.2, ties_scope="model"),
    "ties_dare": dict(weights=None, scale=1.0, density=0.2, ties_scope="model", drop=0.2),
    "ta_dare": dict(weights=None, scale=1.0, drop=0.2),
    "sce": dict(select_topk=1.0),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter,
                                epilog="Without --base/--models: merges 4 perturbations of the tiny preset (a demo).")
    add_config_flag(p)
    p.add_argument("--base", help="the checkpoint all models were fine-tuned from (HF directory)")
    p.add_argument("--models", nargs="+", metavar="LABEL=DIR", help="the fine-tuned checkpoints, e.g. math=runs/math")
    p.add_argument("--method", choices=METHODS, default="ties", help="the merge (formulas in merge.py's docstring)")
    p.add_argument("--out", default="runs/merge", help="output directory: new, empty or an earlier merge's (it is "
                   "replaced atomically)")
    p.add_argument("--weights", nargs="+", metavar="LABEL=W", help="per-model weights w_i > 0 (default 1 each)")
    p.add_argument("--scale", type=float, help="λ, the task-vector scale (default 1.0)")
    p.add_argument("--density", type=float, help="TIES: the fraction of each task vector kept (default 0.2)")
    p.add_argument("--ties-scope", choices=("model", "tensor"), help="TIES: rank magnitudes over the whole model "
                   "(default, as the M2RL scripts) or within each tensor (as mergekit)")
    p.add_argument("--drop", type=float, help="DARE: the drop probability p (default 0.2)")
    p.add_argument("--select-topk", type=float, help="SCE: the fraction of highest-variance positions kept (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seeds the DARE masks (and the demo models)")
    p.add_argument("--dtype", choices=tuple(DTYPES), help="output dtype (default: the base's, per tensor)")
    p.add_argument("--device", default="cpu", help="where the arithmetic runs, e.g. cuda")
    p.add_argument("--dry-run", action="store_true", help="check --out and every model against the base (configs, "
                                                          "tensor headers), print the plan and exit; nothing written")
    p.add_argument("--skip-base-check", action="store_true", help="merge even when a model's weights look unrelated "
                   f"to the base's (a weight matrix with cosine < {MIN_COSINE} to the base's)")
    args = parse_with_config(p, argv)

    # A flag the chosen method does not take would be silently ignored: refuse it instead, then fill in the defaults.
    used = DEFAULTS[args.method]
    for key in ("weights", "scale", "density", "ties_scope", "drop", "select_topk"):
        if getattr(args, key) is not None and key not in used:
            p.error(f"--{key.replace('_', '-')} does not apply to --method {args.method}")
        if getattr(args, key) is None and key in used:
            setattr(args, key, used[key])
    if (args.base is None) != (args.models is None):
        p.error("give both --base and --models (or neither, for the tiny demo)")
    if args.density is not None and not 0 < args.density <= 1:
        p.error(f"--density must lie in (0, 1], got {args.density}")
    if args.drop is not None and not 0 <= args.drop < 1:
        p.error(f"--drop must lie in [0, 1), got {args.drop}")
    if args.select_topk is not None and not 0 < args.select_topk <= 1:
        p.error(f"--select-topk must lie in (0, 1], got {args.select_topk}")
    return args


def label_pairs(items, flag, value=str):
    """['math=DIR', ...] -> {'math': value('DIR'), ...}"""
    pairs = {}
    for item in items:
        label, sep, rest = item.partition("=")
        if not sep or not label or not rest:
            raise SystemExit(f"{flag} expects LABEL=VALUE items, got {item!r}")
        if "=" in rest.partition(",")[2]:  # a=X,b=Y: one syntax for every labelled list, and it is not this one
            raise SystemExit(f"{flag} takes space-separated LABEL=VALUE items ({flag} a=X b=Y), got {item!r}")
        if label in pairs:
            raise SystemExit(f"{flag}: label {label!r} appears twice")
        pairs[label] = value(rest)
    return pairs


# -----------------------------------------------------------------------------
# The checkpoints: opened and checked against the base before anything is read or written


# Is model i fine-tuned from the base? Fine-tuning moves a weight matrix by a relative norm ρ = ‖δ_i‖ / ‖θ_b‖ (RL:
# 1e-3 to 1e-2; SFT: a few %; the tests' heavy noise: 0.4), and a shift uncorrelated with the weights leaves
# cos(θ_i, θ_b) = 1 / √(1 + ρ²): above 0.5 up to ρ = √3, a matrix moved by 170% of its norm. A model trained from
# another initialisation has weights uncorrelated with the base's: cosine 0 ± 1/√n over n entries (≤ 0.05 for the
# smallest matrix of the tiny preset). 0.5 lies far from both. Only matrices: norm weights start at 1 in every Qwen3
# and stay near it, so they look related whatever the base. What this cannot see: a sibling of the base (the model
# fine-tuned from Qwen3-4B while the base is Qwen3-4B-Base) is as close as a fine-tune.
MIN_COSINE = 0.5
FLOAT_DTYPES = ("F32", "BF16", "F16")  # safetensors' names: inputs may mix these, the arithmetic is fp32


class Checkpoints:
    """The base and the N fine-tuned models (merged here, compared by analyze.py), checked against the base from the
    safetensors headers alone, then read one tensor name at a time across all of them."""

    def __init__(self, base_dir, model_dirs: dict, device="cpu", check_base=True):
        self.base = CheckpointReader(base_dir)
        self.models = {label: CheckpointReader(d) for label, d in model_dirs.items()}
        self.labels = list(self.models)
        self.device = device
        self.check_base = check_base
        config = self.base.config
        tied = config.tie_word_embeddings  # a tied head is the embedding: handled once
        self.names = [n for n in self.base.names() if not (tied and n == "lm_head.weight")]
        base_headers = tensor_headers(self.base)
        self.numel = {name: math.prod(base_headers[name][0]) for name in self.names}
        for label, reader in self.models.items():
            where = f"--models {label}={reader.path}"
            theirs, ours = vars(reader.config), vars(config)
            for key in ours:
                if key != "dtype" and theirs[key] != ours[key]:  # dtypes may differ (on_base_precision)
                    raise CheckpointError(f"{where}: config.json has {key} = {theirs[key]!r} but the base "
                                          f"{self.base.path} has {ours[key]!r}; every model must be fine-tuned from "
                                          f"the base")
            headers = tensor_headers(reader)
            for name in self.names:
                if name not in headers:
                    raise CheckpointError(f"{where}: tensor {name!r} of the base {self.base.path} is missing from "
                                          f"this model")
                (shape, dtype), (base_shape, base_dtype) = headers[name], base_headers[name]
                if shape != base_shape or (dtype != base_dtype and not {dtype, base_dtype} <= set(FLOAT_DTYPES)):
                    raise CheckpointError(f"{where}: tensor {name!r} is {dtype} {list(shape)} but the base's is "
                                          f"{base_dtype} {list(base_shape)}; every model must share the base's "
                                          f"architecture")
            extra = [n for n in headers if n not in base_headers and not (tied and n == "lm_head.weight")]
            if extra:
                raise CheckpointError(f"{where}: tensor {extra[0]!r} is not in the base {self.base.path} "
                                      f"({len(extra)} extra tensor(s)); every model must share the base's architecture")

    def read(self, name):
        """The base tensor as stored, and the N models' tensors stacked as fp32 (N, *shape), each read against the
        base at the base's precision. Checks that each model's weight matrix points the base's way."""
        base = self.base.get(name, self.device)
        thetas = torch.empty((len(self.models), *base.shape), dtype=torch.float32, device=self.device)
        for i, reader in enumerate(self.models.values()):
            thetas[i] = on_base_precision(reader.get(name, self.device), base)  # the arithmetic is fp32, as MergeLM's
        if self.check_base and base.dim() == 2:
            b = base.flatten().float()
            # (N,); a zero matrix gives NaN, which passes
            cosine = thetas.flatten(1) @ b / (thetas.flatten(1).norm(dim=1) * b.norm())
            for label, c in zip(self.labels, cosine.tolist()):
                if c < MIN_COSINE:
                    raise CheckpointError(
                        f"--models {label}={self.models[label].path}: tensor {name!r} has cosine {c:.2f} with the "
                        f"base {self.base.path}'s (a fine-tune of it keeps ≥ {MIN_COSINE}, unrelated weights ~0): was "
                        f"it fine-tuned from another base? (--skip-base-check merges anyway)")
        return base, thetas


def on_base_precision(theta, base):
    """θ_i as fp32, with the base's rounding residual θ_b − round(θ_b) added back when θ_i is stored in another dtype
    than the base: an entry model i did not move then reads as θ_b exactly (bf16 saved from an fp32 base would
    otherwise shift every entry by up to 2^-9 of its value, above analyze.py's η = 1e-3). Finer than the base (an fp32
    model of a bf16 base) the residual is 0."""
    theta32 = theta.float()
    if theta.dtype != base.dtype:
        theta32 += base.float() - base.to(theta.dtype).float()
    return theta32


def tensor_headers(reader: CheckpointReader) -> dict:
    """name -> (shape, dtype) from the safetensors headers alone: validation reads no tensor data."""
    headers = {}
    for file in set(reader.file_of.values()):
        with reader.open(file) as f:
            for name in f.keys():
                tensor = f.get_slice(name)
                headers[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
    return headers


# -----------------------------------------------------------------------------
# The methods, on one tensor: deltas is (N, *shape) fp32, one task vector per model; weights is (N,)


def task_vectors(base, thetas, name, labels, args):
    """δ_i = θ_i − θ_b (in place: the fine-tuned weights are not needed again), then DARE for the *_dare methods."""
    deltas = thetas.sub_(base)
    if args.method.endswith("_dare"):
        dare(deltas, args.drop, [dare_generator(args.seed, label, name) for label in labels])
    return deltas


def dare_generator(seed: int, label: str, name: str) -> torch.Generator:
    """The mask of model `label` on tensor `name` is torch.rand(shape, generator=this) >= p: a CPU generator seeded
    by crc32("seed/label/name"), so the masks do not depend on the order tensors are read in, the pass, or the device."""
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
            bits = magnitude_bits(delta)
            low[i] += torch.bincount(bits[(bits >> 16) == bucket[i]] & 0xFFFF, minlength=1 << 16)
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


def merge_tensor(base, thetas, name, labels, weights, thresholds, args):
    """One tensor: base (*shape) and thetas (N, *shape), fp32 -> the merged tensor (fp32) and its statistics."""
    if args.method == "average":
        merged = torch.tensordot(weights, thetas, dims=1) / weights.sum()
        deltas = thetas.sub_(base)  # for the statistics only
        return merged, entry_stats(deltas)
    deltas = task_vectors(base, thetas, name, labels, args)
    if args.method in ("ties", "ties_dare"):
        if thresholds is None:  # --ties-scope tensor
            k = int(deltas[0].numel() * (1 - args.density))
            thresholds = magnitude_thresholds(lambda step: [deltas], k, len(deltas), deltas.device)
        trim(deltas, thresholds)
    if args.method == "sce" and args.select_topk < 1:
        sce_select(deltas, args.select_topk)
    stats = entry_stats(deltas)
    if args.method in ("task_arithmetic", "ta_dare"):
        return base + args.scale * torch.tensordot(weights, deltas, dims=1), stats
    if args.method == "sce":
        weights = sce_weights(deltas)
        stats["sce_weights"] = weights.tolist()
        return base + disjoint_mean(deltas, weights, elect_sign(deltas.sum(0))), stats
    sign = elect_sign(torch.tensordot(weights, deltas, dims=1))  # TIES
    return base + args.scale * disjoint_mean(deltas, weights, sign), stats


def entry_stats(deltas):
    """What entered the merge: per model the fraction of nonzero entries (after DARE/trim/select), and the fraction of
    positions where the models pull in opposite directions — the interference that the sign election resolves."""
    kept = [torch.count_nonzero(delta).item() / delta.numel() for delta in deltas]  # per row: no (N, numel) scratch
    conflict = torch.count_nonzero((deltas.amax(0) > 0) & (deltas.amin(0) < 0)).item() / deltas[0].numel()
    return {"kept": kept, "sign_conflict": conflict}


# -----------------------------------------------------------------------------
# Streaming: the model-wide TIES threshold (two read passes), then the merge itself (one pass, written as it goes)


def model_wide_thresholds(ckpt: Checkpoints, args):
    """MergeLM trims each task vector flattened over the whole model: t_i = the k-th smallest |δ_i| of all n entries,
    k = ⌊n (1 − density)⌋ — found without holding a model, by streaming every tensor (after DARE) through
    magnitude_thresholds twice."""
    def blocks(step):
        for name in tqdm(ckpt.names, desc=f"TIES threshold, pass {step}/2", unit="tensor"):
            base, thetas = ckpt.read(name)
            yield task_vectors(base.float(), thetas, name, ckpt.labels, args)

    k = int(sum(ckpt.numel.values()) * (1 - args.density))
    return magnitude_thresholds(blocks, k, len(ckpt.labels), ckpt.device)


def merged_tensors(ckpt: Checkpoints, weights, thresholds, args, report):
    """The (name, tensor) stream that save_checkpoint writes: one tensor name across all models at a time."""
    for name in tqdm(ckpt.names, desc=f"merge ({args.method})", unit="tensor"):
        base, thetas = ckpt.read(name)
        merged, report["tensors"][name] = merge_tensor(base.float(), thetas, name, ckpt.labels, weights, thresholds,
                                                       args)
        yield name, merged.to(DTYPES[args.dtype] if args.dtype else base.dtype)


def main(argv=None):
    args = parse_args(argv)
    print(json.dumps(vars(args)))
    model_dirs = label_pairs(args.models or [], "--models")
    check_out_dir(args.out, "merge_report.json", [*([args.base] if args.base else []), *model_dirs.values()])
    with tempfile.TemporaryDirectory() as scratch:
        if args.base is None:
            base_dir, model_dirs = demo_checkpoints(Path(scratch), args.seed, std=1e-3)
        else:
            base_dir = args.base
        ckpt = Checkpoints(base_dir, model_dirs, args.device, check_base=not args.skip_base_check)
        given = label_pairs(args.weights or [], "--weights", float)
        for label, w in given.items():
            if label not in model_dirs:
                raise SystemExit(f"--weights {label}={w}: no model is labelled {label!r} in --models")
            if w <= 0:
                raise SystemExit(f"--weights {label}={w}: weights must be > 0")
        weights = torch.tensor([given.get(label, 1.0) for label in ckpt.labels], device=args.device)
        if args.dry_run:
            n = sum(ckpt.numel.values())
            print(f"plan: {args.method} merge of {', '.join(ckpt.labels)} onto {base_dir} -> {args.out}: "
                  f"{len(ckpt.names)} tensors, {n / 1e9:.3f}B parameters; reads {len(ckpt.labels) + 1} models, "
                  f"writes one; parameters {dict((k, getattr(args, k)) for k in DEFAULTS[args.method])}")
            return

        start = time.time()
        thresholds = None
        if args.method in ("ties", "ties_dare") and args.ties_scope == "model":
            thresholds = model_wide_thresholds(ckpt, args)
        params = {k: getattr(args, k) for k in DEFAULTS[args.method]}
        if "weights" in params:
            params["weights"] = dict(zip(ckpt.labels, weights.tolist()))
        report = dict(method=args.method, seed=args.seed, base=str(base_dir),
                      models={label: str(d) for label, d in model_dirs.items()}, params=params, tensors={})
        if thresholds is not None:
            report["ties_thresholds"] = dict(zip(ckpt.labels, thresholds.tolist()))

        def reports():  # the per-tensor numbers exist once every tensor is merged; they land with the weights
            # numel-weighted totals over the model, next to the per-tensor numbers
            n = sum(ckpt.numel.values())
            stats = report["tensors"]
            report["kept"] = {label: sum(stats[t]["kept"][i] * ckpt.numel[t] for t in stats) / n
                              for i, label in enumerate(ckpt.labels)}
            report["sign_conflict"] = sum(stats[t]["sign_conflict"] * ckpt.numel[t] for t in stats) / n
            report["seconds"] = round(time.time() - start, 2)
            return {"merge_args.json": json.dumps(vars(args), indent=2),
                    "merge_report.json": json.dumps(report, indent=2)}
        save_checkpoint(args.out, merged_tensors(ckpt, weights, thresholds, args, report), ckpt.base.config,
                        source_dir=base_dir, extra_files=reports)
    for label, kept in report["kept"].items():
        if kept == 0:
            warnings.warn(f"--models {label}={model_dirs[label]} equals the base {base_dir}: its task vector is zero, so "
                          "it adds nothing to the merge (but still counts in an average) — is it the right checkpoint?")
    print(f"{args.method} merge of {len(ckpt.labels)} models -> {args.out} in {report['seconds']} s; "
          f"kept {', '.join(f'{l} {k:.3f}' for l, k in report['kept'].items())}; "
          f"sign conflicts {report['sign_conflict']:.3f}")


if __name__ == "__main__":
    try:
        main()
    except CheckpointError as e:  # the user's input, named in the message: one line, no traceback
        sys.exit(f"merge.py: {e}")
