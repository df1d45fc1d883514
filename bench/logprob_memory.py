"""Peak memory and time of logprob + entropy, forward and backward, at Qwen3-4B's lm_head size, on CPU.

    python bench/logprob_memory.py [--tokens 8192 --vocab 151936 --hidden 2560] [--out DIR]

Two variants, each in a fresh process that builds the same bf16 inputs, runs forward + backward once and
reports its peak RSS (ru_maxrss, the kernel's own high-water mark of resident memory):
  blocked  kernels.linear_logprobs on CPU (kernels/eager.py): blocks of logits, never all of them
  naive    log_softmax((h @ W.T).float()).gather(...) and -(p * log p).sum(-1): the whole fp32 logits
The naive variant holds about five fp32 copies of the (tokens x vocab) logits at its peak (25 GB at the
default size). When the machine has less memory free than that, it runs on the first tokens/2^k tokens that
fit, and its memory above the inputs is scaled to --tokens: every large buffer it allocates is
(tokens x vocab), so that part is linear in tokens (the table says when this was done).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/logprob_memory.py`
import kernels  # noqa: E402
from files import write_atomic  # noqa: E402

NAIVE_LOGIT_COPIES = 6  # the naive variant's peak, in fp32 (tokens x vocab) logits, with a margin (measured: 4.9)


def naive_logprobs(hidden, weight, targets):
    logp = torch.log_softmax((hidden @ weight.T).float(), dim=-1)  # (N, V) fp32
    return logp.gather(1, targets[:, None]).squeeze(1), -(logp.exp() * logp).sum(-1)


def run_variant(args):
    """In the child process: build the inputs, run forward + backward once, print one JSON line."""
    torch.manual_seed(args.seed)
    weight = torch.randn(args.vocab, args.hidden, dtype=torch.bfloat16).mul_(args.hidden ** -0.5).requires_grad_()
    # built at --tokens and cut, so that a run on fewer tokens sees the same first tokens
    hidden = torch.randn(args.tokens, args.hidden, dtype=torch.bfloat16)[:args.run_tokens].requires_grad_()
    targets = torch.randint(0, args.vocab, (args.tokens,))[:args.run_tokens]
    inputs_rss = _peak_rss_bytes()
    start = time.perf_counter()
    fn = kernels.linear_logprobs if args.variant == "blocked" else naive_logprobs
    logprobs, entropy = fn(hidden, weight, targets)
    forward_s = time.perf_counter() - start
    (logprobs.sum() + entropy.sum()).backward()
    backward_s = time.perf_counter() - start - forward_s
    torch.save({"logprobs": logprobs.detach(), "entropy": entropy.detach()}, args.result)
    print(json.dumps(dict(peak_gb=_peak_rss_bytes() / 1e9, inputs_gb=inputs_rss / 1e9, forward_s=forward_s,
                          backward_s=backward_s)))


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--hidden", type=int, default=2560)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="directory for logprob_memory.json (default: print only)")
    parser.add_argument("--variant", choices=["blocked", "naive"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--run-tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return run_variant(args)
    config = {k: str(v) for k, v in vars(args).items() if v is not None}
    print(json.dumps(config))

    naive_tokens = args.tokens
    while naive_tokens > 1 and NAIVE_LOGIT_COPIES * naive_tokens * args.vocab * 4 > _available_bytes():
        naive_tokens //= 2
    rows, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant, n in (("blocked", args.tokens), ("naive", naive_tokens)):
            result = os.path.join(tmp, f"{variant}.pt")
            child = subprocess.run([sys.executable, __file__, "--variant", variant, "--run-tokens", str(n),
                                    "--result", result, "--tokens", str(args.tokens), "--vocab", str(args.vocab),
                                    "--hidden", str(args.hidden), "--seed", str(args.seed)],
                                   capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"bench/logprob_memory.py: the {variant} run failed:\n{child.stderr}")
            rows[variant] = dict(json.loads(child.stdout.splitlines()[-1]), tokens=n)
            outputs[variant] = torch.load(result)
    naive = rows["naive"]
    scale = args.tokens / naive["tokens"]  # 1 unless the naive run had to be cut
    naive["peak_gb_at_tokens"] = naive["inputs_gb"] + (naive["peak_gb"] - naive["inputs_gb"]) * scale
    rows["blocked"]["peak_gb_at_tokens"] = rows["blocked"]["peak_gb"]
    common = naive["tokens"]  # the naive run's tokens are the blocked run's first tokens
    agreement = {k: (outputs["blocked"][k][:common] - outputs["naive"][k]).abs().max().item()
                 for k in ("logprobs", "entropy")}
    ratio = naive["peak_gb_at_tokens"] / rows["blocked"]["peak_gb_at_tokens"]

    print(f"{'variant':8} {'tokens':>6} {'inputs GB':>9} {'peak GB':>8} {f'peak GB @{args.tokens}':>14} "
          f"{'forward s':>9} {'backward s':>10}")
    for variant, r in rows.items():
        print(f"{variant:8} {r['tokens']:6d} {r['inputs_gb']:9.2f} {r['peak_gb']:8.2f} {r['peak_gb_at_tokens']:14.2f} "
              f"{r['forward_s']:9.1f} {r['backward_s']:10.1f}")
    if scale != 1:
        print(f"naive: run on {naive['tokens']} tokens (too little memory free for {args.tokens}); "
              f"its memory above the inputs is scaled by {scale:g}")
    print(f"peak memory, naive / blocked: {ratio:.1f}x  (goal: at least 8x)")
    print(f"max |blocked - naive| on the first {common} tokens: logprob {agreement['logprobs']:.2e}, "
          f"entropy {agreement['entropy']:.2e}")
    if args.out:
        write_atomic(args.out / "logprob_memory.json",
                     json.dumps(dict(args=config, rows=rows, naive_over_blocked=ratio, max_abs_diff=agreement),
                                indent=2))


if __name__ == "__main__":
    main()
