"""Supervised fine-tuning: chat-formatted records, assistant-only loss, packed rows, FSDP2, exact resume.

    python train_sft.py                                   # tiny preset on the built-in toy SFT split, CPU
    torchrun --nproc_per_node 8 train_sft.py --model /data/Qwen3-4B-Base --data sft.jsonl --out runs/sft
    torchrun --nproc_per_node 8 train_sft.py --model /data/Qwen3-4B-Base --blend data/blends/m2rl_sft.json

Reads top-down: config -> data (tokenise with the chat template and loss mask, pack into rows) -> model (sharded)
-> loop. The loss is the per-token negative log-likelihood averaged over all assistant tokens of the global batch,
whatever the number of ranks or micro-batches (so 1 and N processes follow the same curve).
"""
import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

import dist as m2rl_dist
from data.blend import load_blend, realise
from data.record import load_records
from model import TINY_DIR, from_preset, load_model, recompute_activations
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", help="HF Qwen3 directory to start from (default: a fresh --preset model)")
parser.add_argument("--preset", default="tiny")
data_args = parser.add_mutually_exclusive_group()
data_args.add_argument("--data", nargs="+", help="record JSONL files with a `response`, each record once")
data_args.add_argument("--blend", help="a blend file (data/blend.py): sources, counts and sampling methods; the "
                                       "realised counts go to OUT/blend.md (default: data/blends/toy_sft.json, the "
                                       "toy SFT split of every domain)")
parser.add_argument("--skip-bad", action="store_true", help="count and skip malformed lines instead of stopping")
parser.add_argument("--out", default="runs/sft")
parser.add_argument("--seq-len", type=int, default=512, help="tokens per packed row")
parser.add_argument("--batch-rows", type=int, default=8, help="rows per optimizer step, over all ranks")
parser.add_argument("--micro-rows", type=int, default=4, help="rows per forward/backward on one rank")
parser.add_argument("--epochs", type=float, default=1.0)
# Paper defaults (M2RL SFT) when fine-tuning a --model: AdamW, lr 5e-5 -> 5e-6 cosine, 10% warm-up, weight decay
# 0.1, betas 0.9/0.95. A tiny preset starts from random weights, so it trains at the rates measured for it in
# shared/TOY_NOTES.md (peak 2e-3, weight decay 0.01).
parser.add_argument("--lr", type=float, help="peak learning rate (default: 5e-5 with --model, 2e-3 for a preset)")
parser.add_argument("--min-lr", type=float, help="final learning rate (default: --lr / 10)")
parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps")
parser.add_argument("--weight-decay", type=float, help="(default: 0.1 with --model, 0.01 for a preset)")
parser.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95))
parser.add_argument("--grad-clip", type=float, default=1.0)
parser.add_argument("--no-thinking", action="store_true", help="train the non-thinking format (empty think block)")
parser.add_argument("--activation-checkpointing", action="store_true")
parser.add_argument("--save-every", type=int, default=0, help="steps between resumable checkpoints (0: only the end)")
parser.add_argument("--seed", type=int, default=0)


def main(args):
    args.lr = args.lr or (5e-5 if args.model else 2e-3)
    args.min_lr = args.min_lr if args.min_lr is not None else args.lr / 10
    args.weight_decay = args.weight_decay if args.weight_decay is not None else (0.1 if args.model else 0.01)
    args.blend = args.blend or (None if args.data else str(ROOT / "data/blends/toy_sft.json"))
    rank, world, device = m2rl_dist.init()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    m2rl_dist.record_args(out, args)

    # data: every record becomes one document of token ids and next-token targets (-100 off the assistant turns)
    tokenizer = Tokenizer.from_dir(args.model or TINY_DIR)
    if args.blend:
        blend = realise(load_blend(args.blend))  # indexed and drawn; records streamed below
        records = blend.records(skip_bad=args.skip_bad)
    else:
        records = (r for path in args.data for r in load_records(path, skip_bad=args.skip_bad))
    documents = [tokenize(r, tokenizer, not args.no_thinking) for r in records]
    if args.blend and rank == 0:
        print(blend.table())
        blend.save(out)  # blend.md + blend.json: what this run trained on
    rows = pack(documents, args.seq_len, tokenizer.pad_id, args.seed)
    steps = int(args.epochs * len(rows)) // args.batch_rows
    if args.batch_rows % (world * args.micro_rows):
        raise SystemExit(f"--batch-rows {args.batch_rows} must be a multiple of ranks x --micro-rows "
                         f"({world} x {args.micro_rows}): every rank runs the same number of micro-batches")
    if steps == 0:
        raise SystemExit(f"{len(rows)} packed rows make no step of --batch-rows {args.batch_rows}")

    # model: built, sharded with FSDP2, optimizer over the shards
    model = load_model(args.model, dtype=torch.float32) if args.model else from_preset(args.preset, args.seed)
    if args.activation_checkpointing:
        recompute_activations(model)
    model = m2rl_dist.shard(model.to(device), bf16=device.type == "cuda")
    optimizer = adamw(model, args.lr, args.betas, args.weight_decay)

    start = 0
    resume_from = m2rl_dist.latest_checkpoint(out)
    if resume_from:
        start = m2rl_dist.load_trainer_state(resume_from, model, optimizer)["step"]
        if rank == 0:
            print(f"resumed from {resume_from} at step {start}")
    metrics = Metrics(out / "metrics.jsonl", keep_below=start) if rank == 0 else None

    # loop
    micro_per_step = args.batch_rows // (world * args.micro_rows)
    progress = tqdm(range(start, steps), initial=start, total=steps, disable=rank != 0, desc="sft")
    for step in progress:
        t0 = time.perf_counter()
        lr = lr_at(step, steps, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = rows_of_step(rows, step, args.batch_rows, args.seed)  # (batch_rows, 3, seq_len): ids, positions, targets
        n_targets = int((batch[:, 2] != -100).sum())  # every rank sees the whole global batch: no collective needed
        mine = batch[rank::world]
        loss_sum = 0.0
        for micro in mine.split(args.micro_rows):
            ids, positions, targets = (t.to(device) for t in micro.unbind(1))
            logprobs, _ = model.token_logprobs(ids, targets, positions)
            # FSDP averages gradients over ranks; scaling by world makes the reduced gradient that of the global sum
            loss = -logprobs.sum() / n_targets * world
            loss.backward()
            loss_sum += loss.item() / world
        loss_value = m2rl_dist.all_reduce_sum(loss_sum)
        if not math.isfinite(loss_value):
            raise SystemExit(f"step {step}: loss is {loss_value}; lower --lr or check the data (last good "
                             f"checkpoint: {m2rl_dist.latest_checkpoint(out)})")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t0
        if rank == 0:
            metrics.log({"step": step + 1, "train/loss": loss_value, "train/grad_norm": grad_norm.item(),
                         "train/lr": lr, "train/target_tokens": n_targets, "time/step_s": seconds,
                         "train/tokens_per_s": args.batch_rows * args.seq_len / seconds})
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")

        if (args.save_every and (step + 1) % args.save_every == 0) or step + 1 == steps:
            m2rl_dist.save_step(out, step + 1, model, optimizer, source_dir=args.model or TINY_DIR)
    m2rl_dist.link_latest(out, steps)
    if rank == 0:
        print(f"done: {out / 'latest'} (HF checkpoint), metrics in {out / 'metrics.jsonl'}")
    dist.destroy_process_group()


def tokenize(record, tokenizer, enable_thinking):
    """(ids, targets): the record's prompt + reference answer in the chat format; targets[t] = ids[t+1] where that
    token belongs to the assistant turn (the loss mask), else -100."""
    if record.response is None:
        raise ValueError(f"record {record.id!r} has no `response` to train on: SFT needs records with one")
    answer = {"role": "assistant", "content": record.response["content"]}
    if enable_thinking:
        answer["reasoning_content"] = record.response["reasoning_content"]
    ids, mask = tokenizer.encode_chat_with_mask(record.messages + [answer], enable_thinking)
    targets = [i if m else -100 for i, m in zip(ids[1:], mask[1:])] + [-100]
    return ids, targets


def pack(documents, seq_len, pad_id, seed):
    """Documents shuffled (seeded), then laid end to end into rows of seq_len tokens; a document that would cross a
    row's end starts the next row, one longer than a row is cut. Positions restart at 0 for each document, which is
    how model.py keeps attention inside it. Returns a (rows, 3, seq_len) long tensor: ids, positions, targets."""
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
    rows, row = [], ([], [], [])
    for i in order:
        ids, targets = (x[:seq_len] for x in documents[i])
        if len(row[0]) + len(ids) > seq_len:
            rows.append(pad_row(row, seq_len, pad_id))
            row = ([], [], [])
        row[0].extend(ids)
        row[1].extend(range(len(ids)))
        row[2].extend(targets)
    if row[0]:
        rows.append(pad_row(row, seq_len, pad_id))
    return torch.tensor(rows, dtype=torch.long)


def pad_row(row, seq_len, pad_id):
    n = seq_len - len(row[0])  # the padding is one more document, with no targets
    return [row[0] + [pad_id] * n, row[1] + list(range(n)), row[2] + [-100] * n]


def rows_of_step(rows, step, batch_rows, seed):
    """The global batch of a step: a function of the step alone, so a resumed run reads exactly the rows an
    uninterrupted run would have read."""
    return rows[stream_indices(len(rows), step * batch_rows, batch_rows, seed)]


def stream_indices(n, first, count, seed) -> torch.Tensor:
    """Items [first, first + count) of the endless stream of seeded per-epoch permutations of range(n)."""
    epochs = range(first // n, (first + count - 1) // n + 1)
    order = torch.cat([torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + e)) for e in epochs])
    offset = first - epochs[0] * n
    return order[offset:offset + count]


def adamw(model, lr, betas, weight_decay):
    """AdamW with no decay on norms and biases (the parameters of fewer than 2 dimensions), as nanoGPT."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=tuple(betas))


def lr_at(step, steps, args):
    """Linear warm-up to --lr, then cosine decay to --min-lr."""
    warmup = max(1, int(args.warmup * steps))
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


class Metrics:
    """metrics.jsonl, one object per step. On resume, lines of steps after the checkpoint (written by the run that
    died) are dropped, so the file reads as one uninterrupted run."""

    def __init__(self, path: Path, keep_below: int):
        self.path = path
        if path.exists():
            kept = [l for l in path.read_text().splitlines() if json.loads(l)["step"] <= keep_below]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(l + "\n" for l in kept))
            os.replace(tmp, path)

    def log(self, row: dict):
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(parser.parse_args())
