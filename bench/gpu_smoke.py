"""Every CUDA path of m2rl checked in one command, a few minutes on one GPU, as one table of PASS/FAIL lines.

    python bench/gpu_smoke.py [--time-limit 600] [--tokens 16384] [--out runs/gpu_smoke]

Each line carries the number it was judged on, or "skipped: why". The exit status is 1 when a line failed or the
time limit struck (the table so far is still printed), so it runs unattended. Without CUDA it runs what a CPU can
(the first two kinds of line) and marks the rest "skipped: no CUDA". The thresholds are this file's first guesses,
to be tightened on the first GPU.

  <kernel> compiles for sm_90      each Triton kernel of kernels/ at Qwen3-4B's feature sizes (hidden 2560, 32/8 heads
                                   of 128, intermediate 9728, vocab 151,936), compiled for an H100/H200 target as
                                   Triton's launcher would compile it, without launching: Triton ships its own ptxas
  <kernel> triton = eager          forward + backward. On CUDA in bf16 on --tokens tokens at the 4B sizes: the error
                                   of Triton bf16 against eager fp32 at most twice eager bf16's own (STYLE.md 13).
                                   Without CUDA, fp32 at small sizes under TRITON_INTERPRET (in a subprocess: Triton
                                   picks the interpreter when the kernel files are imported)
  flash-attn varlen = SDPA         packed rows of 4 documents, bf16, forward + backward, the same rule against SDPA
  trainer step MFU                 FSDP2 over a world of one (bf16 compute, fp32 master weights) + AdamW at the
                                   Qwen3-0.6B shape, --tokens packed tokens of 1024-token documents per step: tokens/s
                                   and MFU = model flops / time / the GPU's dense bf16 peak; PASS at MFU >= 20%
  memory plan 0.6B                 that step's peak allocated memory against memory.plan_bytes, within 25%
  grpo 0.6B + vllm, 2 steps        train_grpo.py --engine vllm as a user runs it, on a random Qwen3-0.6B-shaped
                                   checkpoint written here (nothing is downloaded): exits 0, two metrics rows, the
                                   engine's logprobs within 0.1 nats of the trainer's
  vllm sync: greedy = trainer      VllmEngine (bf16, sleep mode) on the same checkpoint, in this process; the trainer's
                                   weights change and are streamed in with load_weights: each greedy token of the
                                   engine is the trainer's own greedy choice after the same prefix (the argmax of its
                                   fp32 logits, or within 0.1 nats of it: bf16 may break a near-tie the other way) for
                                   >= 95% of tokens, and the logprobs the engine reports equal the trainer's fp32
                                   recomputation (mean |d| <= 0.1 nats, and 5x closer than to the weights before)
  vllm sleep/wake: no growth       3 cycles of GRPO's sleep(2) / wake weights / load_weights / wake KV cache / generate
                                   with the trainer allocating between: device memory in use (cudaMemGetInfo, which
                                   sees vLLM's own allocator too) grows by at most 256 MiB from the first to the last
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

if "--interpret-worker" not in sys.argv:  # the compile line needs the real @triton.jit; the interpreter runs apart
    os.environ.pop("TRITON_INTERPRET", None)

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/gpu_smoke.py`
from memory import parameter_count, plan_bytes  # noqa: E402
from files import read_jsonl, write_atomic  # noqa: E402
from model import PRESETS, TINY_DIR, Qwen3Config, SamplingParams  # noqa: E402

FAMILIES = {"rmsnorm": "rmsnorm", "rope": "rope", "swiglu": "silu_mul", "logprobs": "logprobs"}  # line -> kernels/
SIZES_4B = dict(hidden=2560, inter=9728, n_q=32, n_kv=8, head_dim=128, vocab=151936)
# the vocabulary enters the kernels only as a runtime size, specialised on divisibility by 16 (as 151,936 is): the
# compile line uses a small one and spends no time on a 151,936 x 2560 weight
SIZES_COMPILE = {**SIZES_4B, "vocab": 4096}
SIZES_SMALL = dict(hidden=64, inter=96, n_q=4, n_kv=2, head_dim=16, vocab=300)
BF16_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM; by device name
CUDA = torch.cuda.is_available()

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--time-limit", type=int, default=600, help="seconds for the whole run")
parser.add_argument("--tokens", type=int, default=16384, help="tokens per kernel check and per trainer step")
parser.add_argument("--out", default="runs/gpu_smoke", help="table.md, and the random 0.6B checkpoint and GRPO run")
parser.add_argument("--interpret-worker", action="store_true", help=argparse.SUPPRESS)


class TimeLimit(Exception):
    pass


def on_alarm(signum, frame):
    raise TimeLimit


# -----------------------------------------------------------------------------
# Kernels


def kernel_inputs(family, n, sizes, dtype, device):
    """(float inputs that get gradients, other arguments) of one kernel family."""
    gen = torch.Generator(device).manual_seed(0)
    rand = lambda *shape, scale=1.0: (torch.randn(*shape, generator=gen, device=device) * scale).to(dtype)
    h, hd = sizes["hidden"], sizes["head_dim"]
    if family == "rmsnorm":
        return [rand(n, h), 1 + rand(h, scale=0.1)], [1e-6]
    if family == "rope":
        angles = torch.rand(1, n, hd // 2, generator=gen, device=device) * n
        cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
        return [rand(1, n, sizes["n_q"], hd), rand(1, n, sizes["n_kv"], hd)], [cos, sin]
    if family == "swiglu":
        return [rand(n, sizes["inter"]), rand(n, sizes["inter"])], []
    targets = torch.randint(0, sizes["vocab"], (n,), generator=gen, device=device)
    return [rand(n, h), rand(sizes["vocab"], h, scale=h ** -0.5)], [targets, 1.0, True, -100]


def run_kernel(impl, family, inputs, others):
    """Outputs and input gradients of one forward + backward, for a fixed random cotangent."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    fn = {"rmsnorm": "rms_norm", "rope": "apply_rope", "swiglu": "swiglu", "logprobs": "linear_logprobs"}[family]
    outs = getattr(impl, fn)(*inputs, *others)
    outs = [o for o in (outs if isinstance(outs, tuple) else (outs,)) if o is not None]
    gen = torch.Generator(outs[0].device).manual_seed(1)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen, device=o.device)).sum() for o in outs)
    loss.backward()
    return [o.detach().float() for o in outs] + [t.grad.float() for t in inputs]


def relative_error(got, want) -> float:
    return max(((g - w).abs().max() / w.abs().max().clamp(min=1e-30)).item() for g, w in zip(got, want))


def kernel_agreement(family, n, sizes, dtype, device, floor):
    """(ok, number): Triton's error against eager fp32 at most twice eager's own in `dtype` (or under `floor`)."""
    import importlib
    from kernels import eager
    triton_impl = importlib.import_module(f"kernels.{FAMILIES[family]}")
    inputs, others = kernel_inputs(family, n, sizes, dtype, device)
    reference = run_kernel(eager, family, [t.float() for t in inputs], others)
    err_triton = relative_error(run_kernel(triton_impl, family, inputs, others), reference)
    if dtype == torch.float32:  # eager fp32 is the reference itself
        return err_triton <= floor, f"rel. err {err_triton:.1e} (at most {floor:.0e})"
    err_eager = relative_error(run_kernel(eager, family, inputs, others), reference)
    return err_triton <= max(2 * err_eager, floor), f"rel. err {err_triton:.1e} (eager bf16: {err_eager:.1e})"


def compile_for_sm90(family) -> tuple[bool, str]:
    """Run the family's forward + backward on tensors of the 4B sizes (8 tokens) with every kernel launch replaced
    by what Triton's launcher does before launching: bind and specialise the arguments, then compile, here for
    GPUTarget('cuda', 90, 64) (H100/H200) down to a cubin. Nothing is launched, so no GPU is needed."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    target = GPUTarget("cuda", 90, 64)
    backend = make_backend(target)
    cubins = []

    def compile_instead_of_launch(kernel, *args, grid, warmup, **kwargs):  # JITFunction.run's first steps
        binder = create_function_from_signature(kernel.signature, kernel.params, backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
        compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                                  options=options.__dict__)
        cubins.append(len(compiled.asm["cubin"]))

    launch = JITFunction.run
    JITFunction.run = compile_instead_of_launch
    try:
        inputs, others = kernel_inputs(family, 8, SIZES_COMPILE, torch.bfloat16, "cuda" if CUDA else "cpu")
        run_kernel(importlib.import_module(f"kernels.{FAMILIES[family]}"), family, inputs, others)
    finally:
        JITFunction.run = launch
    return bool(cubins), f"{len(cubins)} kernels, {sum(cubins) // 1024} KiB of cubin"


def interpreter_worker():
    """Under TRITON_INTERPRET=1 (set by the parent): each family in fp32 at small sizes; one JSON line each."""
    for family in FAMILIES:
        ok, number = kernel_agreement(family, 37, SIZES_SMALL, torch.float32, "cpu", floor=1e-5)
        print(json.dumps([f"{family} triton = eager (interpreter)", "PASS" if ok else "FAIL", number]))


def interpreted_lines(deadline):
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, __file__, "--interpret-worker"], env=env, capture_output=True, text=True,
                         timeout=max(1, deadline - time.time()))
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("[")]
    if run.returncode:
        lines.append(["triton = eager (interpreter)", "FAIL", run.stderr.strip().splitlines()[-1][:100]])
    return lines


# -----------------------------------------------------------------------------
# GPU: flash-attn, the trainer step, vLLM


def flash_attn_line(n):
    import model as m2rl_model
    if m2rl_model.flash_attn_varlen_func is None:
        return "skipped: flash-attn not installed"
    lengths = [n // 4 - 24, n // 2, 19, n - (n // 4 - 24) - n // 2 - 19]  # uneven documents, one very short
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    gen = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, n, h, 128, generator=gen, device="cuda") for h in (32, 8, 8))

    def sdpa(q, k, v):
        out = [torch.nn.functional.scaled_dot_product_attention(*(t[0, s:e].transpose(0, 1) for t in (q, k, v)),
                                                                is_causal=True, enable_gqa=True).transpose(0, 1)
               for s, e in zip(cu[:-1].tolist(), cu[1:].tolist())]
        return torch.cat(out)[None]

    def both(fn, dtype):
        ins = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]  # fresh leaves: .grad below
        out = fn(*ins)
        (out.float() * torch.randn(out.shape, generator=gen.manual_seed(1), device="cuda")).sum().backward()
        return [out.detach().float()] + [t.grad.float() for t in ins]

    reference = both(sdpa, torch.float32)
    err_flash = relative_error(both(lambda q, k, v: m2rl_model.flash_attn_varlen(q, k, v, cu), torch.bfloat16),
                               reference)
    err_sdpa = relative_error(both(sdpa, torch.bfloat16), reference)
    return err_flash <= max(2 * err_sdpa, 1e-3), f"rel. err {err_flash:.1e} (SDPA bf16: {err_sdpa:.1e})"


def trainer_step_lines(tokens):
    """Two lines: MFU of FSDP2 + AdamW steps at the 0.6B shape, and their peak memory against memory.plan_bytes."""
    import dist as m2rl_dist
    from model import from_preset
    from training import adamw

    environ = dict(os.environ)
    m2rl_dist.init()  # a world of one on this GPU, NCCL
    try:
        config = Qwen3Config(**PRESETS["0.6B"])
        model = m2rl_dist.shard(from_preset("0.6B").cuda(), bf16=True)
        optimizer = adamw(model, 1e-6, (0.9, 0.98), 0.1)
        doc = 1024
        ids = torch.randint(0, config.vocab_size, (1, tokens), device="cuda")
        positions = (torch.arange(tokens, device="cuda") % doc)[None]

        def step():
            logprobs, _ = model.token_logprobs(ids, ids.roll(-1), positions)
            (-logprobs.mean()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step(), step()  # warm-up: allocator, kernels, AdamW state
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, repeats = time.perf_counter(), 3
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / repeats
        peak = torch.cuda.max_memory_allocated()
    finally:  # the vLLM engine and train_grpo.py below start worlds of their own
        torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
        model = optimizer = None
        torch.cuda.empty_cache()

    # 6 flops per parameter and token (matmuls, forward + backward; the tied head's matmul counted, its embedding
    # lookup not), + attention: QK^T and PV over (document position + 1) keys, 2 x 2 flops each, x3 for the backward
    dense = parameter_count(config) - (0 if config.tie_word_embeddings else config.vocab_size * config.hidden_size)
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * (doc + 1) / 2
    flops = tokens * (6 * dense + attention)
    name = torch.cuda.get_device_name()
    peak_flops = next((f for key, f in BF16_PEAK_FLOPS.items() if key in name), None)
    mfu = flops / seconds / peak_flops if peak_flops else None
    speed = f"{tokens / seconds:,.0f} tok/s, {seconds * 1e3:.0f} ms/step"
    mfu_line = (mfu >= 0.2, f"MFU {mfu:.1%}, {speed}") if mfu else (True, f"{speed} (peak flops of {name} unknown)")
    plan = sum(plan_bytes(config, 1, tokens).values())
    return mfu_line, (abs(peak - plan) <= 0.25 * plan, f"peak {peak / 2**30:.1f} GiB, plan {plan / 2**30:.1f} GiB")


def random_checkpoint(out: Path) -> Path:
    """Qwen3-0.6B's shape, random weights with initializer_range 0.1 (peaked logits: greedy has few near-ties), the
    tiny tokenizer (its ids are a subset of the 151,936 rows). Nothing is downloaded."""
    from model import Qwen3ForCausalLM, save_model
    path = out / "random-0.6B"
    if not (path / "config.json").exists():
        model = Qwen3ForCausalLM(Qwen3Config(**{**PRESETS["0.6B"], "initializer_range": 0.1}))
        model.init_weights(seed=0)
        save_model(model, path, source_dir=TINY_DIR)
    return path


def vllm_lines(checkpoint: Path):
    """Two lines: the engine after a weight sync against the trainer, then sleep/wake cycles against memory growth."""
    from data.record import load_records
    from rollout import VllmEngine
    from tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(checkpoint)
    records = load_records(ROOT / "data/toy/eval/math.jsonl")[:8]
    prompts = [(r.id, tokenizer.encode_chat(r.messages, add_generation_prompt=True)) for r in records]
    greedy = SamplingParams(max_new_tokens=32, temperature=0)
    engine = VllmEngine(checkpoint, dtype="bfloat16", max_model_len=1024, gpu_memory_utilization=0.3)
    try:
        return engine_checks(engine, checkpoint, prompts, greedy)
    finally:
        engine.close()  # the GPU to train_grpo.py next


def engine_checks(engine, checkpoint, prompts, greedy):
    from model import load_model
    trainer = load_model(checkpoint, "cuda", torch.float32)
    old = [p.detach().clone() for p in trainer.parameters()]

    def sync():
        engine.sleep(level=2)
        scratch = torch.empty(2**30, dtype=torch.uint8, device="cuda")  # the trainer's step allocates and frees
        del scratch
        engine.wake_up(["weights"])
        engine.load_weights(trainer.state_dict().items())
        engine.wake_up(["kv_cache"])

    with torch.no_grad():  # a change every tensor takes part in, as an optimizer step
        gen = torch.Generator("cuda").manual_seed(0)
        for p in trainer.parameters():
            p.add_(torch.randn(p.shape, generator=gen, device="cuda") * 0.3 * p.std().clamp(min=1e-3))
    sync()
    samples = engine.generate(prompts, 1, greedy)
    margins = torch.cat([argmax_margins(trainer, s) for s in samples])  # 0 where the token is the trainer's argmax
    near = (margins <= 0.1).float().mean().item()
    new_diff = recomputed_difference(trainer, samples)
    with torch.no_grad():
        for p, o in zip(trainer.parameters(), old):
            p.copy_(o)
    old_diff = recomputed_difference(trainer, samples)
    sync_line = (near >= 0.95 and new_diff <= 0.1 and old_diff >= 5 * new_diff,
                 f"greedy = trainer's {(margins == 0).float().mean().item():.0%} (within 0.1: {near:.0%}, worst "
                 f"{margins.max().item():.2f}); logprob mean |d| {new_diff:.3f} (old weights {old_diff:.3f})")

    used = []
    for _ in range(3):
        sync()
        engine.generate(prompts[:2], 1, greedy)
        free, total = torch.cuda.mem_get_info()
        used.append(total - free)
    growth = used[-1] - used[0]
    return sync_line, (growth <= 256 * 2**20, f"in use {used[0] / 2**30:.2f} -> {used[-1] / 2**30:.2f} GiB")


@torch.no_grad()
def argmax_margins(model, sample) -> torch.Tensor:
    """Per response token: the trainer's best logprob minus the logprob of the token the engine chose (fp32)."""
    ids = torch.tensor([sample.prompt_ids + sample.response_ids], device="cuda")
    n = len(sample.prompt_ids)
    logprobs = torch.log_softmax(model.logits(model(ids)[0, n - 1:-1]), -1)  # (response tokens, vocab)
    chosen = logprobs.gather(1, ids[0, n:, None])[:, 0]
    return (logprobs.max(-1).values - chosen).cpu()


def recomputed_difference(model, samples) -> float:
    """Mean |engine logprob - model's recomputed logprob| over the samples' tokens (fp32, temperature 1)."""
    diffs = []
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.response_ids], device="cuda")
        targets = torch.full_like(ids, -100)
        targets[0, len(s.prompt_ids) - 1:-1] = ids[0, len(s.prompt_ids):]
        with torch.no_grad():
            logprobs, _ = model.token_logprobs(ids, targets)
        recomputed = logprobs[0, len(s.prompt_ids) - 1:-1].cpu()
        diffs.append((recomputed - torch.tensor(s.logprobs)).abs())
    return torch.cat(diffs).mean().item()


def grpo_line(checkpoint: Path, out: Path, deadline: float):
    run_dir = out / "grpo"
    shutil.rmtree(run_dir, ignore_errors=True)  # else train_grpo.py resumes the last smoke run's finished steps
    command = [sys.executable, str(ROOT / "train_grpo.py"), "--model", str(checkpoint), "--engine", "vllm",
               "--data", str(ROOT / "data/toy/rl/math.jsonl"), "--domains", "math", "--steps", "2",
               "--eval-every", "0", "--prompts-per-step", "8", "--group-size", "4", "--max-response-len", "128",
               "--out", str(run_dir)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(1, deadline - time.time()))
    if run.returncode:
        return False, f"exit {run.returncode}: {run.stderr.strip().splitlines()[-1][:90]}"
    rows = [row for _, row in read_jsonl(run_dir / "metrics.jsonl")]
    diff = max(row["train/engine_logprob_abs_diff"] for row in rows)
    step = sum(v for k, v in rows[-1].items() if k.startswith("time/"))
    return (len(rows) == 2 and diff <= 0.1,
            f"{len(rows)} steps, last {step:.1f} s, rollout {rows[-1]['rollout/tokens_per_s']:,.0f} tok/s, "
            f"|engine - trainer| {diff:.3f}")


# -----------------------------------------------------------------------------


def main(args):
    out = Path(args.out)
    deadline = time.time() + args.time_limit
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.time_limit)
    table = []

    def check(name, fn, *fn_args):
        """Run one check into the table: fn returns (ok, number), or a string saying why it was skipped."""
        if not CUDA and name in GPU_ONLY:
            table.append([name, "skipped: no CUDA", ""])
            return
        try:
            result = fn(*fn_args)
        except TimeLimit:
            table.append([name, "FAIL", f"time limit ({args.time_limit} s) struck here"])
            raise
        except Exception as e:  # a crash is this line's FAIL, not the end of the smoke test
            result = False, f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        table.append([name, result, ""] if isinstance(result, str) else [name, "PASS" if result[0] else "FAIL",
                                                                           result[1]])

    try:
        for family in FAMILIES:
            check(f"{family} compiles for sm_90", compile_for_sm90, family)
        if CUDA:
            for family in FAMILIES:
                check(f"{family} triton = eager (bf16, 4B sizes)", kernel_agreement, family, args.tokens, SIZES_4B,
                      torch.bfloat16, "cuda", 2**-7)
        else:
            table.extend(interpreted_lines(deadline))
        check("flash-attn varlen = SDPA", flash_attn_line, args.tokens)
        second = {}  # the line a check judges on the way, for the row after it

        def trainer_step():
            mfu, second["memory plan 0.6B"] = trainer_step_lines(args.tokens)
            return mfu
        check("trainer step MFU", trainer_step)
        if CUDA:
            check("memory plan 0.6B", lambda: second.get("memory plan 0.6B", "skipped: the trainer step failed"))
        else:  # the arithmetic alone, for the record
            plan = sum(plan_bytes(Qwen3Config(**PRESETS["0.6B"]), 1, args.tokens).values())
            table.append(["memory plan 0.6B", "skipped: no CUDA", f"plan {plan / 2**30:.1f} GiB at {args.tokens} tok"])

        # train_grpo.py before this process opens an engine of its own: a subprocess's vLLM wants its share of a
        # GPU that nothing else holds yet
        check("grpo 0.6B + vllm, 2 steps", lambda: grpo_line(random_checkpoint(out), out, deadline))

        def engine_sync():
            sync, second["vllm sleep/wake: no growth"] = vllm_lines(random_checkpoint(out))
            return sync
        check("vllm sync: greedy = trainer", engine_sync)
        check("vllm sleep/wake: no growth", lambda: second.get("vllm sleep/wake: no growth",
                                                               "skipped: the engine check failed"))
    except TimeLimit:
        pass
    signal.alarm(0)
    report = "| check | result | number |\n|---|---|---|\n" + "".join(f"| {' | '.join(row)} |\n" for row in table)
    print(report, end="")
    write_atomic(out / "table.md", report)
    return 1 if any(row[1] == "FAIL" for row in table) or time.time() > deadline else 0


GPU_ONLY = {"flash-attn varlen = SDPA", "trainer step MFU", "vllm sync: greedy = trainer", "vllm sleep/wake: no growth",
            "grpo 0.6B + vllm, 2 steps"}

if __name__ == "__main__":
    args = parser.parse_args()
    if args.interpret_worker:
        interpreter_worker()
    else:
        sys.exit(main(args))
