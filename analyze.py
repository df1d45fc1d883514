r"""Why mixing and merging behave as they do: the M2RL paper's mechanism analyses, on our checkpoints and evaluations.

    python analyze.py weights --base runs/sft --models math=runs/math code=runs/code multi=runs/multi ties=runs/ties
    python analyze.py kl --experts math=runs/math code=runs/code --multi rl-multi=runs/multi --eval results
    python analyze.py gains --eval results --sft sft --experts math code science if --combined rl-multi ties
    python analyze.py self-verify --eval results --models sft=runs/sft math=runs/math code=runs/code if=runs/if \
        rl-multi=runs/multi ties=runs/ties
    python analyze.py [demo]     # weights + kl on the tiny preset and planted shifts of it, answers known in advance
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from analysis import gains, kl, self_verify, weights
from cli import (HelpFormatter, add_engine_dtype_flag, add_engine_flag, label_pairs, listed, non_negative_float,
                 positive_int)
from demo import demo_checkpoints
from files import write_atomic
from report import write_summary
from rewards import DOMAINS

ROOT = Path(__file__).resolve().parent
ANALYSES = (weights, kl, gains, self_verify)  # each module's docstring is its part of --help
SECTIONS = ("weights", "kl", "gains", "self-verify")  # the order of summary.md
OUTPUTS = """\
Outputs in --out (default runs/analysis), each written atomically: <command>.json (every number), <command>.md,
<command>_args.json (vars(args)), plots/<command>_*.png, and summary.md, the Markdown sections present joined;
self-verify also writes self-verify/<model>/<benchmark>.jsonl, every judge reply with its parsed verdict.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="\n".join([__doc__, *(m.__doc__ for m in ANALYSES), OUTPUTS]),
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", help="demo when none is given")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", default="runs/analysis", help="output directory (files replaced atomically)")
    seeded = argparse.ArgumentParser(add_help=False, parents=[common])
    seeded.add_argument("--seed", type=int, default=0, help="seeds the projection, the sampling, the demo models")

    w = sub.add_parser("weights", parents=[seeded], help="shift masks, Jaccard overlaps, cosines per module type")
    w.add_argument("--base", required=True, help="the SFT checkpoint every analysed model started from (HF dir)")
    w.add_argument("--models", nargs="+", required=True, metavar="LABEL=DIR", help="RL, merged, MT-OPD checkpoints")
    w.add_argument("--eta", type=non_negative_float, default=1e-3,
                   help="η: an entry changed if |δ| > η · max(|θ|, |θ_sft|)")
    w.add_argument("--device", default="cpu", help="where the arithmetic runs, e.g. cuda")

    k = sub.add_parser("kl", parents=[seeded], help="KL(expert || multi) per domain, with performance deltas")
    k.add_argument("--experts", nargs="+", required=True, metavar="LABEL=DIR",
                   help="the single-task RL models; an expert labelled by a domain has that domain as its own")
    k.add_argument("--multi", required=True, metavar="LABEL=DIR", help="the multi-task model")
    k.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated: the columns")
    k.add_argument("--prompts", nargs="+", default=[], metavar="DOMAIN=FILE",
                   help="Record JSONL of a domain's prompts (default data/toy/eval/DOMAIN.jsonl)")
    k.add_argument("--limit", type=positive_int, default=32, help="prompts per domain")
    k.add_argument("--samples", type=positive_int, default=4, help="responses sampled per prompt")
    k.add_argument("--max-new-tokens", type=positive_int, default=128, help="generation budget per response")
    k.add_argument("--temperature", type=non_negative_float, default=1.0, help="sampling and scoring temperature (> 0)")
    k.add_argument("--threshold", type=non_negative_float, default=0.05,
                   help="policy neighbourhood: KL ≤ this (nats per token)")
    k.add_argument("--eval", help="evaluate.py's --out, for Δ = Avg(multi) − Avg(expert) (models named as here)")
    k.add_argument("--benchmarks", nargs="+", default=[], metavar="DOMAIN=BENCHMARK",
                   help="the benchmark giving a domain's Δ (default toy_DOMAIN)")
    add_engine_flag(k, "sampling")
    add_engine_dtype_flag(k)
    k.add_argument("--batch-size", type=positive_int, default=64,
                   help="sequences per engine call and per scoring forward")
    k.add_argument("--device", default="cpu", help="where the models score, e.g. cuda")

    g = sub.add_parser("gains", parents=[common], help="gain consistency of combined models with the single-task union")
    g.add_argument("--eval", default="results", help="evaluate.py's --out (holding samples/<model>/<benchmark>.jsonl)")
    g.add_argument("--sft", default="sft", help="the SFT model's name in the evaluation")
    g.add_argument("--experts", nargs="+", default=list(DOMAINS), help="the single-task models' names")
    g.add_argument("--combined", nargs="+", default=["rl-multi"], help="RL-multi, merges, MT-OPD: names")
    g.add_argument("--benchmarks", nargs="+", metavar="NAME",
                   help="space- or comma-separated (default: every benchmark evaluated for --sft)")

    v = sub.add_parser("self-verify", parents=[seeded], help="each model judges its own responses: outcome, process")
    v.add_argument("--models", nargs="+", required=True, metavar="NAME=DIR",
                   help="the judges, named as in the evaluation: each judges its own samples")
    v.add_argument("--eval", default="results",
                   help="evaluate.py's --out (samples/<model>/<benchmark>.jsonl and args.json)")
    v.add_argument("--benchmarks", nargs="+", metavar="NAME",
                   help="space- or comma-separated (default: every benchmark evaluated for the first model)")
    v.add_argument("--limit", type=positive_int, help="the first N items of each benchmark, each with all its samples")
    v.add_argument("--sft", default="sft", help="the model the claims compare with")
    v.add_argument("--multi", default="rl-multi", help="the multi-task RL model, for the claim that it improves both")
    v.add_argument("--temperature", type=non_negative_float, default=0.0,
                   help="the judge's sampling temperature (0 = greedy)")
    v.add_argument("--max-new-tokens", type=positive_int, default=2048,
                   help="the judge's budget: its thinking and verdict")
    v.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=True,
                   help="Qwen3's thinking mode for the judge (--no-thinking: the empty think block)")
    add_engine_flag(v, "judging")
    add_engine_dtype_flag(v)
    v.add_argument("--batch-size", type=positive_int, default=64, help="judge prompts per engine call")

    sub.add_parser("demo", parents=[seeded], help="weights and kl on the tiny preset (the default command)")
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["demo", *argv]  # the embedded default: `python analyze.py [--out DIR]`
    args = p.parse_args(argv)
    if args.command == "kl" and args.temperature <= 0:
        p.error("--temperature must be > 0: KL is between sampling distributions, and greedy decoding has none")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    if args.command == "demo":
        demo(out, args.seed)
        return
    write_atomic(out / f"{args.command}_args.json", json.dumps(vars(args), indent=2))
    report, markdown = COMMANDS[args.command](args, out)
    write_atomic(out / f"{args.command}.json", json.dumps(report, indent=2))
    write_atomic(out / f"{args.command}.md", markdown)
    write_summary(out / "summary.md", "Mechanism analyses", [out / f"{s}.md" for s in SECTIONS])
    print(markdown)


# Each command's flags -> its analysis's parameters


def run_weights(args, out: Path):
    return weights.weights(args.base, label_pairs(args.models, "--models"), out, args.eta, args.seed, args.device)


def run_kl(args, out: Path):
    experts = label_pairs(args.experts, "--experts")
    (multi_label, multi_dir), = label_pairs([args.multi], "--multi").items()
    domains = args.domains.split(",")
    prompts = per_domain(args.prompts, "--prompts", domains, lambda d: ROOT / "data" / "toy" / "eval" / f"{d}.jsonl")
    accuracy = None
    if args.eval:
        benchmarks = per_domain(args.benchmarks, "--benchmarks", domains, lambda d: f"toy_{d}")
        accuracy = kl.eval_accuracy(args.eval, benchmarks, [*experts, multi_label])
    settings = kl.KLSettings(limit=args.limit, samples=args.samples, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, threshold=args.threshold, engine=args.engine,
                             engine_dtype=args.engine_dtype, batch_size=args.batch_size, device=args.device,
                             seed=args.seed)
    return kl.kl(experts, (multi_label, multi_dir), prompts, settings, out, accuracy)


def per_domain(items: list, flag: str, domains: list, default) -> dict:
    """{domain: value} for the domains analysed: default(domain), unless `flag DOMAIN=VALUE` gives one."""
    given = label_pairs(items, flag)
    unknown = sorted(set(given) - set(domains))
    if unknown:
        raise SystemExit(f"{flag}: domain(s) {unknown} not in --domains {','.join(domains)}")
    return {d: given.get(d, default(d)) for d in domains}


def run_gains(args, out: Path):
    return gains.gains(args.eval, args.sft, args.experts, args.combined,
                       listed(args.benchmarks) if args.benchmarks else None, out)


def run_self_verify(args, out: Path):
    settings = self_verify.JudgeSettings(limit=args.limit, temperature=args.temperature,
                                         max_new_tokens=args.max_new_tokens, thinking=args.thinking,
                                         engine=args.engine, engine_dtype=args.engine_dtype,
                                         batch_size=args.batch_size, seed=args.seed)
    return self_verify.self_verify(label_pairs(args.models, "--models"), args.eval,
                                   listed(args.benchmarks) if args.benchmarks else None, args.sft, args.multi,
                                   settings, out)


COMMANDS = {"weights": run_weights, "kl": run_kl, "gains": run_gains, "self-verify": run_self_verify}


def demo(out: Path, seed: int):
    """weights and kl on the tiny preset's planted shifts (demo.demo_checkpoints), whose answers are known."""
    with tempfile.TemporaryDirectory() as scratch:
        base, models = demo_checkpoints(Path(scratch), seed, std=0.01, multi=True)
        common = [f"--out={out}", f"--seed={seed}"]
        main(["weights", f"--base={base}", "--models", *(f"{label}={d}" for label, d in models.items()), *common])
        main(["kl", "--experts", *(f"{d}={models[d]}" for d in DOMAINS), f"--multi=multi={models['multi']}",
              "--limit=8", "--samples=2", "--max-new-tokens=32", "--engine=native", *common])
    print(f"gains needs evaluate.py's per-sample JSONL: python analyze.py gains --eval DIR --out {out}")


if __name__ == "__main__":
    main()
