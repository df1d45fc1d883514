"""Merge per-domain RL checkpoints into one model, streaming one tensor name across all N models at a time.

    python merge.py --base SFT_DIR --models math=DIR code=DIR science=DIR if=DIR --method ties --out OUT_DIR

The methods, their formulas and defaults (the M2RL paper's settings): merge_methods.py, whose registry METHODS this
script's --method, flags and --help read (python merge.py --help lists them). Inputs in different float dtypes merge in
fp32, a model stored coarser than the base read at the base's precision (checkpoints.on_base_precision).

Checks, each leaving --out as it was: first, --out is new, empty or an earlier merge (it holds merge_report.json), and
neither an input nor the working directory (model.check_out_dir); every model's config and tensor shapes equal the
base's (headers only); then, as each tensor is read (the first weight matrix, in practice), every model's matrix points
the base's way (cosine ≥ MIN_COSINE, else "fine-tuned from another base?"; --skip-base-check merges anyway), a failure
removing the half-written temporary. A bad input is one line naming the model, file and key, and exit status 1.

The output keeps the base's dtype, where MergeLM, loading in transformers' default fp32, saved fp32 (--dtype float32
does the same); merge_methods.py lists where the methods differ from MergeLM's.

Streaming: the base and the N models are read one tensor name at a time (shards via the index), a large tensor in
blocks of BLOCK_ENTRIES entries' rows, each block read from the page cache straight into reused buffers and converted
to fp32 there (checkpoints.Checkpoints.read); each merged block goes into the output tensor, which model.save_checkpoint
writes as shards fill. Peak memory is one shard of the output plus a few blocks, never a model; a method that needs a
whole tensor at once (per-tensor TIES, SCE) holds its N fp32 copies. The model-wide TIES threshold needs every entry of
a task vector before the first tensor can be trimmed: it is found exactly, in two extra read passes, by radix
selection (see model_wide_thresholds). DARE masks are drawn from a generator seeded by (seed, model label, tensor
name), so every pass, every block and every device redraws the same masks.

Outputs in --out: the HF checkpoint (shards + index, config.json, generation_config.json, the base's tokenizer files,
base dtype per tensor unless --dtype; tied embeddings stay tied), merge_args.json (vars(args)) and merge_report.json
(method, parameters, seed, model-wide TIES thresholds; per tensor and over the model: the fraction of each task vector
that entered the merge after DARE/trim/select, and the fraction of positions where those entries disagree in sign;
SCE's per-tensor weights), all put in place by one rename (a report never lacks its weights, nor the reverse).
"""
import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from checkpoints import MIN_COSINE, Checkpoints
from cli import HelpFormatter, add_config_flag, label_pairs, parse_args as parse_with_config
from demo import demo_checkpoints
from merge_methods import METHODS, dare_generator, magnitude_thresholds, merge_tensor, method_table, task_vectors
from model import DTYPES, CheckpointError, check_out_dir, save_checkpoint

PARAMETERS = sorted({k for method in METHODS.values() for k in method.defaults})  # each one a flag


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter,
                                epilog=f"methods (merge_methods.METHODS):\n{method_table()}\n\n"
                                       "Without --base/--models: merges 4 perturbations of the tiny preset (a demo).")
    add_config_flag(p)
    p.add_argument("--base", help="the checkpoint all models were fine-tuned from (HF directory)")
    p.add_argument("--models", nargs="+", metavar="LABEL=DIR", help="the fine-tuned checkpoints, e.g. math=runs/math")
    p.add_argument("--method", choices=tuple(METHODS), default="ties", help="the merge (formulas below)")
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
    used = METHODS[args.method].defaults
    for key in PARAMETERS:
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


# -----------------------------------------------------------------------------
# Streaming: the model-wide TIES threshold (two read passes), then the merge itself (one pass, written as it goes)

# Entries per row block of a large tensor: (N + 1) fp32 blocks of 4 MiB, so that the few passes a method makes over a
# block run in the cache (32 MiB of L3 here) and only the read and the write touch memory.
BLOCK_ENTRIES = 1 << 20


def row_blocks(ckpt: Checkpoints, name: str, whole: bool):
    """The row slices a tensor is read in: blocks of ~BLOCK_ENTRIES entries, or the whole tensor (`whole`, or 1-D)."""
    shape = ckpt.shapes[name]
    if whole or len(shape) < 2:
        return [slice(None)]
    step = max(1, BLOCK_ENTRIES // (ckpt.numel[name] // shape[0]))
    return [slice(start, start + step) for start in range(0, shape[0], step)]


def model_wide_thresholds(ckpt: Checkpoints, density: float, drop=None, seed=0):
    """MergeLM trims each task vector flattened over the whole model: t_i = the k-th smallest |δ_i| of all n entries,
    k = ⌊n (1 − density)⌋ — found without holding a model, by streaming every tensor (after DARE where `drop` is
    given) through magnitude_thresholds twice."""
    def blocks(step):
        for name in tqdm(ckpt.names, desc=f"TIES threshold, pass {step}/2", unit="tensor"):
            generators = [dare_generator(seed, label, name) for label in ckpt.labels]
            for rows in row_blocks(ckpt, name, whole=False):
                base, thetas = ckpt.read(name, rows)
                yield task_vectors(base.float(), thetas, drop, generators)

    k = int(sum(ckpt.numel.values()) * (1 - density))
    return magnitude_thresholds(blocks, k, len(ckpt.labels), ckpt.device)


def merged_tensors(ckpt: Checkpoints, method_name: str, params: dict, weights, thresholds, seed, dtype, report):
    """The (name, tensor) stream that save_checkpoint writes: one tensor name across all models at a time, read and
    merged in row blocks into the output tensor (in `dtype`, default the base's); report["tensors"] gets each
    tensor's kept fractions, sign-conflict fraction and the method's extra entries."""
    method = METHODS[method_name]
    for name in tqdm(ckpt.names, desc=f"merge ({method_name})", unit="tensor"):
        generators = [dare_generator(seed, label, name) for label in ckpt.labels]
        kept, conflict, merged = [0] * len(ckpt.labels), 0, None
        for rows in row_blocks(ckpt, name, method.whole_tensor(params)):
            base, thetas = ckpt.read(name, rows)
            if merged is None:
                merged = torch.empty(ckpt.shapes[name], dtype=dtype or base.dtype, device=ckpt.device)
            block, (block_kept, block_conflict), extra = merge_tensor(method, params, base.float(), thetas, weights,
                                                                     generators, thresholds)
            merged[rows] = block
            kept, conflict = [a + b for a, b in zip(kept, block_kept)], conflict + block_conflict
        n = ckpt.numel[name]
        report["tensors"][name] = {"kept": [k / n for k in kept], "sign_conflict": conflict / n, **extra}
        yield name, merged


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
        params = {k: getattr(args, k) for k in METHODS[args.method].defaults}
        if args.dry_run:
            n = sum(ckpt.numel.values())
            print(f"plan: {args.method} merge of {', '.join(ckpt.labels)} onto {base_dir} -> {args.out}: "
                  f"{len(ckpt.names)} tensors, {n / 1e9:.3f}B parameters; reads {len(ckpt.labels) + 1} models, "
                  f"writes one; parameters {params}")
            return

        start = time.time()
        thresholds = None
        if params.get("ties_scope") == "model":
            thresholds = model_wide_thresholds(ckpt, params["density"], params.get("drop"), args.seed)
        report = dict(method=args.method, seed=args.seed, base=str(base_dir),
                      models={label: str(d) for label, d in model_dirs.items()}, tensors={},
                      params={**params, **({"weights": dict(zip(ckpt.labels, weights.tolist()))}
                                           if "weights" in params else {})})
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
        dtype = DTYPES[args.dtype] if args.dtype else None
        tensors = merged_tensors(ckpt, args.method, params, weights, thresholds, args.seed, dtype, report)
        save_checkpoint(args.out, tensors, ckpt.base.config, source_dir=base_dir, extra_files=reports)
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
