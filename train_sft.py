"""Supervised fine-tuning: chat-formatted records, assistant-only loss, packed rows, FSDP2, exact resume.

    python train_sft.py                                   # tiny preset on the built-in toy SFT split, CPU
    torchrun --nproc_per_node 8 train_sft.py --model /data/Qwen3-4B-Base --data sft.jsonl --out runs/sft
    torchrun --nproc_per_node 8 train_sft.py --model /data/Qwen3-4B-Base --blend data/blends/m2rl_sft.json

Reads top-down: config -> data (a token count per record, then a seeded stream of documents packed into rows) ->
model (sharded) -> loop (each rank reads and tokenises only its rows of the step). The loss is the per-token negative
log-likelihood averaged over all assistant tokens of the global batch, whatever the number of ranks or micro-batches
(so 1 and N processes follow the same curve).

The data is never in memory: records are read by seeking (data/blend.py's line index; --data is a blend of each
file once), a first pass keeps only each line's token count (4 bytes; the ranks share it), and every epoch shuffles
the samples by index with a generator seeded by (--seed, epoch). Not a bounded shuffle buffer: a blend yields its
sources one after another, so a buffer smaller than the data would train domain by domain, and a line repeated 10x
would land in the same few steps. The trainer state keeps the stream position: a resumed run goes on exactly.
"""
import argparse
import math
import os
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import curves
import dist as m2rl_dist
import memory
import tracking
from cli import (HelpFormatter, add_config_flag, add_resume_flag, existing_file, model_dir, non_negative_float,
                 non_negative_int, parse_args, positive_float, positive_int)
from data.blend import Blend, BlendError, load_blend, parse_blend, realise
from data.record import RecordError
from model import DTYPES, PRESETS, TINY_DIR, CheckpointError, Qwen3Config, check_vocab, preset_config
from tokenizer import Tokenizer
from training import Metrics, adamw, open_run

ROOT = Path(__file__).resolve().parent
# flags that may change when a run resumes: where and how often it saves and reports, not what it computes (--epochs
# and --max-steps set the learning-rate schedule, so changing them changes the run)
RESUME_MAY_CHANGE = ("save_every", "keep_last", "report_to", "run_name")
parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
add_config_flag(parser)
parser.add_argument("--model", type=model_dir,
                    help="HF Qwen3 directory to start from (default: a fresh --preset model)")
parser.add_argument("--preset", default="tiny", choices=tuple(PRESETS),
                    help="model.py's preset of the random-weight model trained when there is no --model")
data_args = parser.add_mutually_exclusive_group()
data_args.add_argument("--data", nargs="+", type=existing_file,
                       help="record JSONL files with a `response`, each record once")
data_args.add_argument("--blend", type=existing_file,
                       help="a blend file (data/blend.py): sources, counts and sampling methods; the realised counts "
                            "go to OUT/blend.md (default: data/blends/toy_sft.json, the toy SFT split of every domain)")
parser.add_argument("--skip-bad", action="store_true", help="count and skip malformed lines instead of stopping")
parser.add_argument("--out", default="runs/sft",
                    help="run directory: args.json, metrics.jsonl, step_* checkpoints; a run there resumes (flags as "
                         "in its args.json)")
add_resume_flag(parser)
parser.add_argument("--seq-len", type=positive_int, default=512, help="tokens per packed row")
parser.add_argument("--batch-rows", type=positive_int, default=8, help="rows per optimizer step, over all ranks")
parser.add_argument("--micro-rows", type=positive_int, default=4, help="rows per forward/backward on one rank")
parser.add_argument("--epochs", type=positive_float, default=1.0, help="passes over the data (fractions allowed)")
parser.add_argument("--max-steps", type=positive_int,
                    help="stop after this many steps, the lr schedule with them (as HF's max_steps; default: the "
                         "epochs' steps)")
# Paper defaults (M2RL SFT) when fine-tuning a --model: AdamW, lr 5e-5 -> 5e-6 cosine, 10% warm-up, weight decay
# 0.1, betas 0.9/0.95. A tiny preset starts from random weights, so it trains at the rates measured for it in
# docs/toy-notes.md (peak 2e-3, weight decay 0.01).
parser.add_argument("--lr", type=non_negative_float,
                    help="peak learning rate (default: 5e-5 with --model, 2e-3 for a preset)")
parser.add_argument("--min-lr", type=non_negative_float, help="final learning rate (default: --lr / 10)")
parser.add_argument("--warmup", type=non_negative_float, default=0.1, help="fraction of the steps")
parser.add_argument("--weight-decay", type=non_negative_float, help="(default: 0.1 with --model, 0.01 for a preset)")
parser.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95), help="AdamW's beta1 beta2")
parser.add_argument("--grad-clip", type=positive_float, default=1.0, help="gradient norm clip")
parser.add_argument("--no-thinking", action="store_true", help="train the non-thinking format (empty think block)")
parser.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute each block's activations in the backward pass (the paper's full recompute)")
parser.add_argument("--save-every", type=non_negative_int,
                    help="steps between resumable checkpoints (0: only the end; default: 1000 with --model, 0 for a "
                         "preset). The paper's SFT is ~55,000 steps of 512 samples (14.1M samples, 2 epochs): 1000 "
                         "steps is under 2%% of it, hours on 8 GPUs at most lost to a crash")
parser.add_argument("--save-dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="dtype of the saved HF weights (auto: the --model checkpoint's, e.g. bf16 for a Hugging Face "
                         "Qwen3; fp32 for a preset); the trainer state keeps the fp32 master weights whatever this "
                         "says")
parser.add_argument("--keep-last", type=non_negative_int, default=2,
                    help="resumable trainer states kept: the newest N (0: all); older steps keep their HF weights")
parser.add_argument("--report-to", nargs="+", type=tracking.installed, choices=tracking.SINKS, default=[],
                    help="also send metrics.jsonl's rows and these flags to W&B (offline unless WANDB_MODE is "
                         "set; project: WANDB_PROJECT or m2rl) and/or TensorBoard (in OUT/tensorboard); "
                         "default: neither")
parser.add_argument("--run-name", help="the W&B run's name (default: the last part of --out)")
parser.add_argument("--seed", type=int, default=0, help="seeds a preset's initial weights and the data order")
parser.add_argument("--dry-run", nargs="?", const="auto", choices=("auto", "cuda", "cpu"),
                    help="validate every flag, index the data and read a sample of it, then print the plan (steps "
                         "and tokens estimated from the sample, per-rank memory for WORLD_SIZE ranks on GPUs with "
                         "`cuda`, on this CPU with `cpu`; default: this machine's) and exit; nothing written")


def main(args):
    args.lr = args.lr if args.lr is not None else 5e-5 if args.model else 2e-3
    args.min_lr = args.min_lr if args.min_lr is not None else args.lr / 10
    args.save_every = args.save_every if args.save_every is not None else 1000 if args.model else 0
    args.weight_decay = args.weight_decay if args.weight_decay is not None else (0.1 if args.model else 0.01)
    args.blend = args.blend or (None if args.data else str(ROOT / "data/blends/toy_sft.json"))
    if args.dry_run:
        print(plan(args, int(os.environ.get("WORLD_SIZE", 1))))
        return
    rank, world, device = m2rl_dist.init()
    torch.manual_seed(args.seed)
    out = Path(args.out)  # untouched until every input is checked: a run that fails validation leaves no --out

    # data: a stream of documents (a record rendered in the chat format: token ids, and next-token targets -100 off
    # the assistant turns), packed into rows as the loop needs them; no rank ever holds the data set. A first pass
    # keeps only each drawn line's token count, and from the counts and the seed alone every rank knows the whole
    # plan: which documents share a row, which rows make a step, how many steps there are (the lr schedule needs it).
    tokenizer = Tokenizer.from_dir(args.model or TINY_DIR)
    check_vocab(Qwen3Config.from_dir(args.model) if args.model else preset_config(args.preset), tokenizer.vocab_size,
                args.model or f"--preset {args.preset}")  # before any step can index past it
    if rank == 0:
        print(f"chat format: {tokenizer.chat_format}")
    blend = realise(load_blend(args.blend) if args.blend else files_blend(args.data))  # indexed and drawn, not read
    lengths = count_tokens(blend, tokenizer, not args.no_thinking, args.skip_bad, rank, world)
    if rank == 0:
        print(blend.table())
    copies = np.where(lengths > 0, blend.copies(), 0)  # (items,) samples per epoch; dropped lines none
    end = int(args.epochs * copies.sum())  # the run's documents: positions [0, end) of the stream
    n_rows = sum(1 for _ in packed_rows(lengths, copies, args.seq_len, args.seed, 0, end))
    steps = min(n_rows // args.batch_rows, args.max_steps or n_rows)
    if args.batch_rows % (world * args.micro_rows):
        raise SystemExit(f"--batch-rows {args.batch_rows} must be a multiple of ranks x --micro-rows "
                         f"({world} x {args.micro_rows}): every rank runs the same number of micro-batches")
    if steps == 0:
        raise SystemExit(f"{n_rows} packed rows make no step of --batch-rows {args.batch_rows}")
    if not open_run(out, vars(args), steps, f"--epochs {args.epochs} (--max-steps {args.max_steps}) make {steps} "
                                            f"steps, but", RESUME_MAY_CHANGE, rank):
        return
    if rank == 0:
        blend.save(out)  # blend.md + blend.json: what this run trained on

    # model: built on the meta device, sharded with FSDP2, each rank filling only its shard; optimizer over the shards
    bf16 = device.type == "cuda"
    model = m2rl_dist.load_sharded(args.model, device, bf16, recompute=args.activation_checkpointing) if args.model \
        else m2rl_dist.init_sharded(preset_config(args.preset), args.seed, device, bf16, args.activation_checkpointing)
    save_dtype = DTYPES.get(model.config.dtype if args.save_dtype == "auto" else args.save_dtype, torch.float32)
    optimizer = adamw(model, args.lr, args.betas, args.weight_decay)

    start, position = 0, 0  # position: the stream's next document
    resume_from = m2rl_dist.latest_checkpoint(out)
    if resume_from:
        state = m2rl_dist.load_trainer_state(resume_from, model, optimizer)
        start, position = state["step"], state["documents"]
        if rank == 0:
            print(f"resumed from {resume_from} at step {start}, document {position:,} of {end:,}")
    metrics = Metrics(out / "metrics.jsonl", keep_below=start) if rank == 0 else None
    tracker = tracking.Tracker(args.report_to if rank == 0 else (), out, vars(args), args.run_name or out.name, start)

    # loop
    stream = packed_rows(lengths, copies, args.seq_len, args.seed, position, end)
    progress = tqdm(range(start, steps), initial=start, total=steps, disable=rank != 0, desc="sft")
    for step in progress:
        t0 = time.perf_counter()
        lr = lr_at(step, steps, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = [next(stream) for _ in range(args.batch_rows)]  # [(items, stream position after the row)]
        position = rows[-1][1]
        # this rank's rows of the step, read and tokenised now: (batch_rows / world, 3, seq_len) ids, positions, targets
        mine = torch.tensor([row_of(items, blend, tokenizer, not args.no_thinking, args.seq_len)
                             for items, _ in rows[rank::world]])
        n_targets = int(m2rl_dist.all_reduce_sum(float((mine[:, 2] != -100).sum())))  # over the global batch
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
        peak_rss = m2rl_dist.all_reduce_max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)  # kB -> GiB
        if rank == 0:
            row = {"step": step + 1, "train/loss": loss_value, "train/grad_norm": grad_norm.item(), "train/lr": lr,
                   "train/target_tokens": n_targets, "time/step_s": seconds,
                   "train/tokens_per_s": args.batch_rows * args.seq_len / seconds, "memory/peak_rss_gib": peak_rss}
            metrics.log(row)
            tracker.log(row)
            progress.set_postfix_str(live_line(row))

        if (args.save_every and (step + 1) % args.save_every == 0) or step + 1 == steps:
            m2rl_dist.save_step(out, step + 1, model, optimizer, source_dir=args.model or TINY_DIR, dtype=save_dtype,
                                keep_last=args.keep_last, documents=position)
            if rank == 0:  # SFT has no in-loop evaluation: the curves are drawn with each checkpoint
                curves.draw_run(out)
    m2rl_dist.link_latest(out, steps)
    tracker.close()
    if rank == 0:
        print(f"done: {out / 'latest'} (HF checkpoint), metrics in {out / 'metrics.jsonl'}, curves in "
              f"{out / 'curves.png'}")
    dist.destroy_process_group()


def plan(args, world: int, sample: int = 1000) -> str:
    """--dry-run's report. The token-count pass over a large blend takes long, so the plan reads a seeded sample of
    the drawn lines instead and scales it: steps and tokens are estimates, said so."""
    tokenizer = Tokenizer.from_dir(args.model or TINY_DIR)
    blend = realise(load_blend(args.blend) if args.blend else files_blend(args.data))  # every source indexed
    copies = blend.copies()
    picked = np.random.default_rng(args.seed).choice(blend.items, min(sample, blend.items), replace=False)
    lengths = [len(tokenize(r, tokenizer, not args.no_thinking)[0]) for r in map(blend.read, picked.tolist()) if r]
    mean = sum(lengths) / max(len(lengths), 1)
    documents = args.epochs * copies.sum()
    rows = math.ceil(documents * mean / args.seq_len)  # a lower bound: greedy packing leaves row ends empty
    steps = min(rows // args.batch_rows, args.max_steps or rows)
    config = Qwen3Config.from_dir(args.model) if args.model else preset_config(args.preset)
    device = args.dry_run if args.dry_run in ("cuda", "cpu") else "cuda" if torch.cuda.is_available() else "cpu"
    terms = memory.plan_bytes(config, world, args.micro_rows * args.seq_len, args.activation_checkpointing,
                              torch.bfloat16 if device == "cuda" else torch.float32, path=device)
    if device == "cpu":
        terms["runtime: torch + libraries, measured in this process"] = memory.resident_bytes()
    return "\n".join([
        f"plan: ~{steps:,} steps of {args.batch_rows} rows x {args.seq_len:,} tokens over {world} ranks "
        f"({args.batch_rows // world} rows, {args.batch_rows // world // args.micro_rows} micro-batches each)",
        f"data: {blend.items:,} drawn lines, {int(documents):,} documents over {args.epochs} epoch(s); "
        f"{len(lengths)} sampled: {mean:,.0f} tokens each on average, max {max(lengths, default=0):,} -> ~{rows:,} rows",
        f"model: {args.model or 'preset ' + args.preset}, {memory.parameter_count(config) / 1e9:.3f}B parameters",
        memory.report(terms, f"per-rank memory on {device}, {world} ranks, {args.micro_rows * args.seq_len:,} tokens "
                             f"a micro-batch" + (", activation recompute" if args.activation_checkpointing else ""))])


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


def files_blend(paths) -> Blend:
    """--data as a blend: each file's records once."""
    return parse_blend({"seed": 0, "sources": [{"name": p, "paths": [p], "converter": "record", "method": "all"}
                                               for p in paths]}, Path.cwd(), "--data")


def count_tokens(blend, tokenizer, enable_thinking, skip_bad, rank, world) -> np.ndarray:
    """(items,) int32: each drawn line's token count as a document, 0 when the line is dropped. Each rank tokenises
    every world-th line; the counts, and the kept/dropped tallies of the blend's table, are gathered to all."""
    lines = tqdm(blend.lines(skip_bad, rank, world), total=len(range(rank, blend.items, world)), disable=rank != 0,
                 desc="counting tokens", unit="line")
    mine = np.fromiter((len(tokenize(r, tokenizer, enable_thinking)[0]) if r else 0 for _, _, r in lines), np.int32)
    shares = m2rl_dist.gather((mine, blend.kept, blend.dropped))
    lengths = np.zeros(blend.items, np.int32)
    for r, (share, _, _) in enumerate(shares):
        lengths[r::world] = share
    blend.kept = [sum(per_rank, Counter()) for per_rank in zip(*(kept for _, kept, _ in shares))]
    blend.dropped = [sum(per_rank, Counter()) for per_rank in zip(*(dropped for _, _, dropped in shares))]
    return lengths


def epoch_order(copies, epoch, seed) -> np.ndarray:
    """Epoch `epoch` of the document stream: every item `copies` times, shuffled by a generator seeded with (seed,
    epoch), so that any epoch is drawn without the ones before it."""
    order = np.repeat(np.arange(len(copies), dtype=np.int32), copies)
    np.random.default_rng([seed, epoch]).shuffle(order)
    return order


def packed_rows(lengths, copies, seq_len, seed, position, end):
    """Yield (items of a row, stream position after the row) for the documents at stream positions [position, end):
    laid end to end in stream order, a document that would cross a row's end starts the next row, one longer than
    a row is cut. The rows follow from the lengths, the seed and the position alone, so every rank packs the same
    ones, and a run resumed at a row's first document continues the uninterrupted run's stream exactly."""
    per_epoch, epoch = int(copies.sum()), None
    row, used = [], 0
    while position < end:
        if position // per_epoch != epoch:
            epoch = position // per_epoch
            order = epoch_order(copies, epoch, seed)
        item = int(order[position % per_epoch])
        n = min(int(lengths[item]), seq_len)
        if row and used + n > seq_len:
            yield row, position
            row, used = [], 0
        row.append(item)
        used += n
        position += 1
    if row:
        yield row, position


def row_of(items, blend, tokenizer, enable_thinking, seq_len) -> list[list[int]]:
    """The documents of `items`, read and tokenised, end to end in one row: ids, positions (restarting at 0 for each
    document, which is how model.py keeps attention inside it), targets; then padding."""
    row = ([], [], [])
    for item in items:
        ids, targets = (x[:seq_len] for x in tokenize(blend.read(item), tokenizer, enable_thinking))
        row[0].extend(ids)
        row[1].extend(range(len(ids)))
        row[2].extend(targets)
    return pad_row(row, seq_len, tokenizer.pad_id)


def pad_row(row, seq_len, pad_id):
    n = seq_len - len(row[0])  # the padding is one more document, with no targets
    return [row[0] + [pad_id] * n, row[1] + list(range(n)), row[2] + [-100] * n]


def live_line(row: dict) -> str:
    """A step's row as the progress bar's postfix; tqdm's own ETA sits before it."""
    return f"loss {row['train/loss']:.4f}, lr {row['train/lr']:.2e}, {row['train/tokens_per_s']:,.0f} tok/s"


def lr_at(step, steps, args):
    """Linear warm-up to --lr, then cosine decay to --min-lr."""
    warmup = max(1, int(args.warmup * steps))
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


if __name__ == "__main__":
    try:
        main(parse_args(parser))
    except (BlendError, CheckpointError, FileNotFoundError, RecordError) as e:  # bad input: one line naming it
        raise SystemExit(f"error: {e}") from None
