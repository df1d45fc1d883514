"""What the two trainers (train_sft.py, train_grpo.py) share: the run directory they resume in, its metrics.jsonl,
the optimizer, and the seeded stream of indices a step draws from.

    open_run(out, flags, steps, asked, may_change, rank) -> bool   lock --out, check a resume, write args.json
    Metrics(path, keep_below).log(row)                             metrics.jsonl, cut back to a resumed step
    adamw(model, lr, betas, weight_decay)                          no decay on norms and biases
    stream_indices(n, first, count, seed)                          items of seeded per-epoch permutations
"""
import json
from pathlib import Path

import torch
import torch.distributed as dist

import dist as m2rl_dist
from cli import check_resumed_args
from files import JSONLError, read_jsonl, write_atomic


def open_run(out: Path, flags: dict, steps: int, asked: str, may_change: tuple, rank: int) -> bool:
    """Take --out for this run (a lock: one run at a time) and say whether there is work in it: False when a run
    there already reached `steps` (nothing to do; its checkpoint and args.json stay as they are, and the process
    group is closed). A run there beyond `steps` stops, the message starting with `asked` (how the flags set the
    steps); one short of them resumes, if its args.json holds these `flags` but for `may_change` (cli.py's
    check_resumed_args). The flags are then printed and kept as out/args.json."""
    m2rl_dist.lock(out)
    done = m2rl_dist.steps_done(out)
    if done > steps:
        raise SystemExit(f"{asked} {out} already holds step {done}; ask for more steps to continue that run, or give "
                         f"a new --out")
    if done == steps:
        if rank == 0:
            print(f"{out} is already at step {done} of {steps}: nothing to do")
        dist.destroy_process_group()
        return False
    if done:
        check_resumed_args(out, flags, may_change, announce=rank == 0)
    m2rl_dist.record_args(out, flags)
    return True


class Metrics:
    """metrics.jsonl, one object per step. On resume, lines of steps after the checkpoint (written by the run that
    died) are dropped, so the file reads as one uninterrupted run. So is a torn last line: a run that died mid-write
    (a full disk) leaves one, and its step is redone."""

    def __init__(self, path: Path, keep_below: int):
        self.path = path
        if path.exists():
            try:
                kept = [row for _, row in read_jsonl(path, torn_tail=True) if row["step"] <= keep_below]
            except JSONLError as e:
                raise SystemExit(f"{e}; repair or remove the line, then resume") from None
            write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))

    def log(self, row: dict):
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def adamw(model, lr, betas, weight_decay):
    """AdamW with no decay on norms and biases (the parameters of fewer than 2 dimensions), as nanoGPT.

    The fused kernel (CPU and CUDA; HF Trainer's default, so TRL's, since torch 2.8): one pass per parameter, where
    torch's default on CPU, the for-loop one, runs each of AdamW's ~10 element-wise ops as a pass of its own with
    parameter-sized temporaries. Measured on a third of the Qwen3-0.6B shape's tensors, one thread: 0.27 s of CPU a step
    against 2.04 s, and a peak 1.2 GiB lower (docs/benchmarks.md)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=tuple(betas), fused=True)


def stream_indices(n, first, count, seed) -> torch.Tensor:
    """Items [first, first + count) of the endless stream of seeded per-epoch permutations of range(n)."""
    epochs = range(first // n, (first + count - 1) // n + 1)
    order = torch.cat([torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + e)) for e in epochs])
    offset = first - epochs[0] * n
    return order[offset:offset + count]
