"""Times each Triton kernel against eager PyTorch and torch.compile on one GPU, at Qwen3-4B's sizes.

    python bench/kernels_gpu.py [--tokens 8192] [--out DIR]

For each kernel and implementation: the median time of the forward and of forward + backward
(triton.testing.do_bench), and the bandwidth that implies for the bytes the op must move at the least
(read inputs once, write outputs once), as a fraction of this GPU's measured device-to-device copy
bandwidth. linear_logprobs is bound by its matmuls, not by memory: it is reported in TFLOP/s of the
necessary 2NHV (forward) and 6NHV (forward + backward) flops, with its peak memory.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/kernels_gpu.py`
from files import write_atomic  # noqa: E402
from kernels import eager, logprobs, rmsnorm, rope, silu_mul  # noqa: E402


def naive_logprobs(hidden, weight, targets):
    logp = torch.log_softmax((hidden @ weight.T).float(), dim=-1)  # (N, V) fp32
    return logp.gather(1, targets[:, None]).squeeze(1), -(logp.exp() * logp).sum(-1)


def cases(n, hidden, inter, n_q, n_kv, head_dim, vocab):
    """(name, {implementation: fn}, inputs that get gradients, other args, forward work, forward+backward work,
    unit of work)."""
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    x, w = torch.randn(n, hidden, **bf16), 1 + 0.1 * torch.randn(hidden, **bf16)
    qk, w_head = torch.randn(n, n_q, head_dim, **bf16), 1 + 0.1 * torch.randn(head_dim, **bf16)
    q, k = torch.randn(1, n, n_q, head_dim, **bf16), torch.randn(1, n, n_kv, head_dim, **bf16)
    angles = torch.rand(1, n, head_dim // 2, device="cuda") * n
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
    gate, up = torch.randn(n, inter, **bf16), torch.randn(n, inter, **bf16)
    h, lm_head = torch.randn(n, hidden, **bf16), torch.randn(vocab, hidden, **bf16) * hidden ** -0.5
    targets = torch.randint(0, vocab, (n,), device="cuda")

    def three_ways(triton_fn, eager_fn):
        return {"triton": triton_fn, "eager": eager_fn, "compile": torch.compile(eager_fn)}

    norm = three_ways(lambda x, w: rmsnorm.rms_norm(x, w, 1e-6), lambda x, w: eager.rms_norm(x, w, 1e-6))
    rope_bytes = 2 * 2 * (q.numel() + k.numel()) + 2 * 4 * cos.numel()  # q, k in and out (bf16); cos, sin (fp32)
    return [
        ("rms_norm (N, hidden)", norm, [x, w], [], 2 * 2 * x.numel(), 5 * 2 * x.numel(), "GB/s"),
        ("rms_norm (N, heads, head_dim)", norm, [qk, w_head], [], 2 * 2 * qk.numel(), 5 * 2 * qk.numel(), "GB/s"),
        ("apply_rope", three_ways(lambda q, k: rope.apply_rope(q, k, cos, sin),
                                  lambda q, k: eager.apply_rope(q, k, cos, sin)),
         [q, k], [], rope_bytes, 2 * rope_bytes, "GB/s"),
        ("swiglu", three_ways(silu_mul.swiglu, eager.swiglu), [gate, up], [], 3 * 2 * gate.numel(),
         8 * 2 * gate.numel(), "GB/s"),
        ("linear_logprobs", {"triton": logprobs.linear_logprobs, "eager": eager.linear_logprobs,
                             "naive": naive_logprobs, "naive+compile": torch.compile(naive_logprobs)},
         [h, lm_head], [targets], 2 * n * hidden * vocab, 6 * n * hidden * vocab, "TFLOP/s"),
    ]


def copy_bandwidth_gbs() -> float:
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / do_bench(lambda: dst.copy_(src), return_mode="median") / 1e6  # read + write


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=2560)  # Qwen3-4B
    parser.add_argument("--intermediate", type=int, default=9728)
    parser.add_argument("--heads", type=int, nargs=2, default=[32, 8], metavar=("Q", "KV"))
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--out", type=Path, help="directory for kernels_gpu.json (default: print only)")
    args = parser.parse_args()
    torch.manual_seed(0)
    copy = copy_bandwidth_gbs()
    print(f"{torch.cuda.get_device_name()}: copy bandwidth {copy:.0f} GB/s; {args.tokens} tokens")
    print(f"{'kernel':30} {'impl':14} {'fwd ms':>8} {'fwd':>15} {'fwd+bwd ms':>10} {'fwd+bwd':>15} {'peak GB':>8}")
    rows = []
    for name, implementations, inputs, other, work, work_both, unit in cases(
            args.tokens, args.hidden, args.intermediate, *args.heads, args.head_dim, args.vocab):
        inputs = [t.requires_grad_() for t in inputs]
        for impl, fn in implementations.items():
            outputs = fn(*inputs, *other)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            grads = [torch.randn_like(o) for o in outputs]

            def forward_backward():
                outs = fn(*inputs, *other)
                torch.autograd.grad(outs if isinstance(outs, tuple) else (outs,), inputs, grads)

            del outputs
            forward_ms = do_bench(lambda: fn(*inputs, *other), return_mode="median")
            both_ms = do_bench(forward_backward, return_mode="median")
            torch.cuda.reset_peak_memory_stats()
            forward_backward()
            peak_gb = torch.cuda.max_memory_allocated() / 1e9
            rate = work / forward_ms / 1e-3 / (1e9 if unit == "GB/s" else 1e12)
            rate_both = work_both / both_ms / 1e-3 / (1e9 if unit == "GB/s" else 1e12)
            of_copy = [f"({r / copy:.0%})" if unit == "GB/s" else "" for r in (rate, rate_both)]
            print(f"{name:30} {impl:14} {forward_ms:8.3f} {rate:7.0f} {of_copy[0]:>7} {both_ms:10.3f} "
                  f"{rate_both:7.0f} {of_copy[1]:>7} {peak_gb:8.2f}")
            rows.append(dict(kernel=name, impl=impl, forward_ms=forward_ms, forward_backward_ms=both_ms, unit=unit,
                             forward_rate=rate, forward_backward_rate=rate_both, peak_gb=peak_gb))
    if args.out:
        write_atomic(args.out / "kernels_gpu.json",
                     json.dumps(dict(args={k: str(v) for k, v in vars(args).items()},
                                     device=torch.cuda.get_device_name(), copy_gbs=copy, rows=rows), indent=2))


if __name__ == "__main__":
    main()
