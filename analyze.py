r"""Why mixing and merging behave as they do: the M2RL paper's mechanism analyses, on our checkpoints and evaluations.

    python analyze.py weights --base runs/sft --models math=runs/math code=runs/code multi=runs/multi ties=runs/ties
    python analyze.py kl --experts math=runs/math code=runs/code --multi rl-multi=runs/multi --eval results
    python analyze.py gains --eval results --sft sft --experts math code science if --combined rl-multi ties
    python analyze.py self-verify --eval results --models sft=runs/sft math=runs/math code=runs/code if=runs/if \
        rl-multi=runs/multi ties=runs/ties
    python analyze.py [demo]     # weights + kl on the tiny preset and planted shifts of it, answers known in advance

weights: where RL moved the weights (the paper's Fig. 3). θ_sft is the base, θ_i an analysed checkpoint, n entries.
  shift      δ_i = θ_i − θ_sft, in fp32; a model stored in a coarser dtype than θ_sft (bf16 beside fp32) is read at
             θ_sft's precision (merge.on_base_precision), so rounding alone is no shift
  mask       m_i = [|θ_i − θ_sft| > η · max(|θ_i|, |θ_sft|)], η = --eta = 1e-3: the entries RL changed
  density    p_i = |m_i| / n
  Jaccard    J_ij = |m_i ∧ m_j| / |m_i ∨ m_j|, beside the random baseline of equal densities: independent uniform masks
             have E|m_i ∧ m_j| = n p_i p_j, so J_rand = p_i p_j / (p_i + p_j − p_i p_j)
  cosine     cos(δ_i, δ_j) per module type (q k v o gate up down; other = embedding and norms; all), exact and after
             the paper's random projection to k = 256 dimensions, z_i = Σ_c δ_i[c] R_c, summed over every chunk c of
             C = 65,536 entries of every tensor of the type, R_c (C × k) i.i.d. N(0, 1/k) from a generator seeded
             by blake2b("seed/tensor name/c"): the same entries get the same projection in every model, and no
             (n × k) matrix is ever built. Independent shifts give |cos_projected| ≲ 4/√k = 0.25 (4σ of N(0, 1/k));
             projecting costs n · k Gaussian draws, whatever N (10-25 s for the tiny preset on one CPU core).
  overlap    the paper's Fig. 3 cosine, "in the overlapping regions": over the entries both models changed,
             o = m_i ∧ m_j, cos_o(δ_i, δ_j) = Σ_o δ_i δ_j / sqrt(Σ_o δ_i² · Σ_o δ_j²), exact, per module type and for
             attention (q k v o) and FFN (gate up down) as wholes; "Fig. 3" is the mean of those two, as captioned
             ("averaged over attention and FFN"). Reported beside the all-entries cosine, which it does not replace.
  Streaming: one tensor name across all checkpoints at a time, one tensor per checkpoint alive, walked in chunks.

kl: how far the multi-task policy lies from each expert (Fig. 4). Rows: the experts; columns: the domains whose
  prompts are sampled. Cell (e, d): n responses to each of the first --limit prompts of d are sampled from expert e
  (at --temperature, without top-p/top-k, so that the samples come from the distribution being compared); every
  response token is then scored under e and under the multi-task model m with model.token_logprobs at the same
  temperature (the engine's logprobs are not used: both sides share one code path, and a model against itself gives
  exactly 0). With r_t = log π_e(y_t | x, y_<t) − log π_m(y_t | x, y_<t):
    k1_t = r_t,   k3_t = e^(−r_t) − 1 + r_t ≥ 0     (Schulman 2020; each has mean KL(π_e || π_m) at its prefix)
  The cell is KL(expert || multi) on the expert's samples, as the paper estimates it, per token: Σ k3 / Σ tokens over
  all responses; also per token with k1, and per response (mean over responses of Σ_t k3_t, the KL between whole
  responses). With --eval, each cell carries Δ = Avg(m) − Avg(e) on d's benchmark in points. Policy neighbourhood:
  m lies in e's neighbourhood on d when the cell's KL ≤ --threshold (nats per token; 0.05 is our default, not the
  paper's: calibrate it, e.g. by running kl with the SFT model as --multi, which measures how far RL moved each expert).

gains: whose gains a combined model keeps (Fig. 5), from evaluate.py's samples/<model>/<benchmark>.jsonl.
  acc_M(i) = mean reward of model M's samples of item i;  gain_M(i) = max(acc_M(i) − acc_sft(i), 0)
  union of the single-task gains g(i) = max_e gain_e(i); consistency of a combined model C (RL-multi, a merge,
  MT-OPD) = cos(g, gain_C) over the items of every benchmark, and per benchmark (null where either vector is 0).

self-verify: self-discrimination (the paper's Table 7): each model, as a generative reward model, judges its own
  responses of evaluate.py's samples/<model>/<benchmark>.jsonl, in two modes (templates: JUDGE_TEMPLATES)
    outcome  shown the problem and the final answer: the text after the last </think>, what the verifier graded
    process  shown the problem, the reasoning (the think block) and the final answer
  The problem is the prompt's last user turn, loaded as evaluate.py loaded it (the settings in --eval's args.json).
  The judge must end with \boxed{correct} or \boxed{incorrect}: after its last </think>, the last `\boxed{` decides
  and must hold one of the two words (case aside); anything else is unparsable, counted, and a miss. The truth is the
  verifier's (reward 1 = correct). Per (model, benchmark, mode), with r_c, r_i the recalls on the correct and on the
  incorrect responses:  accuracy;  balanced accuracy = (r_c + r_i) / 2;  the unparsable rate. Balanced, because
  base rates differ between models and benchmarks: a judge that always says "incorrect" is 90% accurate on a set
  10% correct, and 50% balanced. With one class absent (all correct, all wrong) it is that class's recall alone,
  flagged †; nothing divides by zero. Judging is greedy unless --temperature. Against --sft, the paper's claims
  (IF RL sharpens outcome judging; math and code RL sharpen process judging; multi-task RL improves both: models
  named if, math, code and --multi) are checked on the mean over benchmarks: Δ ± se, holds when Δ > 2 se.

Outputs in --out (default runs/analysis), each written atomically: <command>.json (every number), <command>.md,
<command>_args.json (vars(args)), plots/<command>_*.png, and summary.md, the Markdown sections present joined;
self-verify also writes self-verify/<model>/<benchmark>.jsonl, every judge reply with its parsed verdict.
"""
import argparse
import hashlib
import json
import math
import sys
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path

import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from benchmarks import fill
from checkpoints import Checkpoints, on_base_precision
from cli import HelpFormatter, add_engine_flag, label_pairs, listed, non_negative_float, positive_int
from curves import save_figure
from data.record import DOMAINS, load_records
from evaluate import load_benchmarks
from model import TINY_DIR, SamplingParams, from_preset, load_model, save_model, write_atomic
from rollout import open_engine
from tokenizer import Tokenizer, split_reasoning

ROOT = Path(__file__).resolve().parent
MODULE_TYPES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
                "down_proj": "down"}  # everything else (embedding, norms, an untied head) is "other"
FIG3_GROUPS = {"attention": ("q", "k", "v", "o"), "ffn": ("gate", "up", "down")}
PROJ_DIM, CHUNK = 256, 1 << 16  # the paper's 256 dimensions; a chunk's projection is 64 MB of fp32
SECTIONS = ("weights", "kl", "gains", "self-verify")  # the order of summary.md


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
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
    write_summary(out)
    print(markdown)


# -----------------------------------------------------------------------------
# weights: one tensor name across the base and every model at a time


def module_type(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'q' (the paper's Fig. 3 groups); embedding and norms -> 'other'."""
    parts = name.split(".")
    return next((MODULE_TYPES[p] for p in parts if p in MODULE_TYPES), "other")


def projection(seed: int, name: str, chunk: int, rows: int, device) -> torch.Tensor:
    """R_c (rows, k), i.i.d. N(0, 1/k): chunk `chunk` of tensor `name`'s flattened entries. The seed is a 64-bit hash of
    (seed, name, chunk), so every model, pass and order of reading draws the same matrix for the same entries (crc32
    would collide at a few thousand chunks). A CUDA generator draws other numbers than a CPU one: same law, not the
    same matrix, so compare projected cosines computed on one device type."""
    key = hashlib.blake2b(f"{seed}/{name}/{chunk}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device).manual_seed(int.from_bytes(key, "little"))
    return torch.randn(rows, PROJ_DIM, generator=generator, device=device) / math.sqrt(PROJ_DIM)


def shift_statistics(ckpt: Checkpoints, name: str, eta: float, seed: int, device):
    """One tensor name -> over its entries: the masks' intersections |m_i ∧ m_j| (N, N) (diagonal: |m_i|), the shifts'
    Gram matrix δ_i · δ_j (N, N), the projected shifts Σ_c δ_i[c] R_c (N, k), and on the overlaps o = m_i ∧ m_j the
    Gram matrix Σ_o δ_i δ_j and the squared norms Σ_o δ_i² (N, N: row i, column j), all fp64. One tensor per
    checkpoint is alive (freed on return); fp32 scratch is a few (N, C) chunks."""
    base = ckpt.base.get(name, device).flatten()
    thetas = [reader.get(name, device).flatten() for reader in ckpt.models.values()]
    n_models = len(thetas)
    inter = torch.zeros(n_models, n_models, dtype=torch.float64, device=device)
    gram = torch.zeros_like(inter)
    projected = torch.zeros(n_models, PROJ_DIM, dtype=torch.float64, device=device)
    overlap_gram, overlap_sq = torch.zeros_like(inter), torch.zeros_like(inter)
    for c, start in enumerate(range(0, base.numel(), CHUNK)):
        b = base[start:start + CHUNK]  # (C,) as stored
        theta = torch.stack([on_base_precision(t[start:start + CHUNK], b) for t in thetas])  # (N, C) fp32
        b = b.float()
        delta = theta - b
        mask = (delta.abs() > eta * torch.maximum(theta.abs(), b.abs())).double()  # (N, C)
        inter += mask @ mask.T
        delta64 = delta.double()  # fp64 sums: an identical pair's cosine is 1 to ~1e-15
        gram += delta64 @ delta64.T
        masked = mask * delta64  # (N, C): δ_i where m_i, else 0
        overlap_gram += masked @ masked.T  # Σ over m_i ∧ m_j of δ_i δ_j
        overlap_sq += (masked * masked) @ mask.T  # [i, j]: Σ over m_i ∧ m_j of δ_i²
        projected += (delta @ projection(seed, name, c, len(b), device)).double()
    return inter, gram, projected, overlap_gram, overlap_sq


def weights(args, out: Path):
    ckpt = Checkpoints(args.base, label_pairs(args.models, "--models"))
    labels = ckpt.labels
    totals = {}  # module type -> [entries, intersections, Gram, projected, overlap Gram, overlap squares]
    densities = {}
    for name in tqdm(ckpt.names, desc="weights", unit="tensor"):
        stats = shift_statistics(ckpt, name, args.eta, args.seed, args.device)
        numel, kind = ckpt.numel[name], module_type(name)
        t = totals.get(kind, [0] * 6)
        totals[kind] = [t[0] + numel] + [a + b.cpu() for a, b in zip(t[1:], stats)]
        densities[name] = {"type": kind, "density": dict(zip(labels, (stats[0].diagonal() / numel).tolist()))}
    totals = {kind: totals[kind] for kind in [*MODULE_TYPES.values(), "other"] if kind in totals}
    groups = {group: [totals[k] for k in kinds if k in totals] for group, kinds in FIG3_GROUPS.items()}
    totals["all"] = [sum(t[i] for t in totals.values()) for i in range(6)]

    report = {"base": args.base, "models": {label: str(r.path) for label, r in ckpt.models.items()}, "eta": args.eta,
              "projection": {"dim": PROJ_DIM, "chunk": CHUNK, "seed": args.seed, "device": str(args.device)},
              "entries": {}, "density": {}, "jaccard": {}, "jaccard_random": {}, "cosine": {}, "cosine_projected": {},
              "cosine_overlap": {}, "projected": {}}
    for kind, (numel, inter, gram, projected, overlap_gram, overlap_sq) in totals.items():
        size = inter.diagonal()
        density = size / numel
        union = size[:, None] + size[None, :] - inter
        report["entries"][kind] = numel
        report["density"][kind] = dict(zip(labels, density.tolist()))
        report["jaccard"][kind] = matrix(labels, inter / union)
        report["jaccard_random"][kind] = matrix(labels, random_jaccard(density))
        report["cosine"][kind] = matrix(labels, cosines(gram))
        report["cosine_projected"][kind] = matrix(labels, cosines(projected @ projected.T))
        report["cosine_overlap"][kind] = matrix(labels, overlap_cosines(overlap_gram, overlap_sq))
        report["projected"][kind] = dict(zip(labels, projected.tolist()))
    # Fig. 3: attention's and FFN's overlap cosines (each over all its entries), averaged
    fig3 = [overlap_cosines(sum(t[4] for t in group), sum(t[5] for t in group)) for group in groups.values() if group]
    report["cosine_overlap_fig3"] = matrix(labels, sum(fig3) / len(fig3))
    report["tensors"] = densities

    kinds = list(totals)
    weights_plots(out / "plots", report, labels, kinds)
    return report, weights_markdown(report, labels, kinds)


def weights_plots(plots: Path, report: dict, labels: list, kinds: list):
    """Densities per module type (bars), the Jaccard matrix with its random baseline, one cosine heatmap per type."""
    n_models = len(labels)
    bar_chart(plots / "weights_density.png", f"changed entries (η = {report['eta']:g})", kinds,
              {label: [report["density"][kind][label] for kind in kinds] for label in labels}, "density")
    jac, rand = report["jaccard"]["all"], report["jaccard_random"]["all"]
    fig = Figure(figsize=(1.2 * n_models + 3, 1.0 * n_models + 2))
    ax = fig.subplots()
    fig.colorbar(heatmap(ax, [[jac[a][b] for b in labels] for a in labels], labels, labels, vmin=0, vmax=1,
                         notes=[[fmt(jac[a][b]) + (f"\n({fmt(rand[a][b])})" if a != b else "") for b in labels]
                                for a in labels]), ax=ax)
    ax.set_title("Jaccard of changed-entry masks (random baseline)")
    save_figure(fig, plots / "weights_jaccard.png")
    cols = math.ceil(math.sqrt(len(kinds)))
    rows = math.ceil(len(kinds) / cols)
    fig = Figure(figsize=(cols * (0.9 * n_models + 2), rows * (0.8 * n_models + 1.5)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, kind in zip(axes, kinds):
        cos = report["cosine_projected"][kind]
        image = heatmap(ax, [[cos[a][b] for b in labels] for a in labels], labels, labels, vmin=-1, vmax=1,
                        cmap="coolwarm")
        ax.set_title(kind)
    for ax in axes[len(kinds):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes.tolist())
    fig.suptitle(f"cosine of weight shifts, random projection to {PROJ_DIM} dimensions")
    save_figure(fig, plots / "weights_cosine.png")


def random_jaccard(density: torch.Tensor) -> torch.Tensor:
    """(N,) densities -> (N, N) Jaccard expected of independent uniform masks with them: p_i p_j / (p_i + p_j − p_i p_j)
    (the ratio of the expected intersection n p_i p_j to the expected union; exact as n grows)."""
    p_i, p_j = density[:, None], density[None, :]
    return p_i * p_j / (p_i + p_j - p_i * p_j)


def overlap_cosines(gram: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """Σ_o δ_i δ_j (N, N) and Σ_o δ_i² (N, N, row i) -> cosines on the overlaps; NaN (null) where one is empty."""
    return gram / (sq * sq.T).sqrt()


def cosines(gram: torch.Tensor) -> torch.Tensor:
    """Gram matrix (N, N) -> cosines; NaN (reported null) for a zero vector."""
    norm = gram.diagonal().sqrt()
    return gram / (norm[:, None] * norm[None, :])


def matrix(labels, values: torch.Tensor) -> dict:
    return {a: {b: finite(values[i, j].item()) for j, b in enumerate(labels)} for i, a in enumerate(labels)}


def finite(x: float):
    return None if math.isnan(x) else x


def weights_markdown(report, labels, kinds) -> str:
    density, jaccard, rand = report["density"], report["jaccard"]["all"], report["jaccard_random"]["all"]
    cos, exact, overlap = report["cosine_projected"], report["cosine"], report["cosine_overlap"]
    fig3 = report["cosine_overlap_fig3"]
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    return "\n".join([
        f"## Weight shifts against {report['base']}", "",
        f"Changed entries, |θ − θ_sft| > η · max(|θ|, |θ_sft|) with η = {report['eta']:g}, in % of each module "
        "type:", "",
        table(["model", *kinds], [[a, *(pct(density[k][a]) for k in kinds)] for a in labels]),
        "Jaccard overlap of the masks over all entries (random masks of equal density in parentheses):", "",
        table(["", *labels], [[a, *(fmt(jaccard[a][b]) + (f" ({fmt(rand[a][b])})" if a != b else "") for b in labels)]
                              for a in labels]),
        f"Cosine of the shifts per module type after the random projection to {PROJ_DIM} dimensions (exact in "
        f"parentheses; independent shifts give |projected| ≲ {4 / math.sqrt(PROJ_DIM):.2f}):", "",
        table(["pair", *kinds], [[f"{a} / {b}", *(f"{fmt(cos[k][a][b])} ({fmt(exact[k][a][b])})" for k in kinds)]
                                 for a, b in pairs]),
        "The paper's Fig. 3 cosine: on the overlap, the entries both models changed (exact), per module type, and "
        "in the last column the mean of attention's and FFN's (q k v o and gate up down, each as a whole):", "",
        table(["pair", *kinds, "Fig. 3"], [[f"{a} / {b}", *(fmt(overlap[k][a][b]) for k in kinds), fmt(fig3[a][b])]
                                           for a, b in pairs])])


# -----------------------------------------------------------------------------
# kl: sample from each expert, score under the expert and the multi-task model


def kl(args, out: Path):
    experts = label_pairs(args.experts, "--experts")
    (multi_label, multi_dir), = label_pairs([args.multi], "--multi").items()
    domains = args.domains.split(",")
    files = per_domain(args.prompts, "--prompts", domains, lambda d: ROOT / "data" / "toy" / "eval" / f"{d}.jsonl")
    tokenizer = Tokenizer.from_dir(multi_dir)
    prompts = {d: [(r.id, tokenizer.encode_chat(r.messages, add_generation_prompt=True))
                   for r in load_records(files[d])[:args.limit]] for d in domains}
    accuracy = eval_accuracy(args, [*experts, multi_label], domains) if args.eval else None

    multi = load_model(multi_dir, args.device).eval()
    cells = {}
    for label, path in tqdm(experts.items(), desc="kl", unit="expert"):
        engine = open_engine(path, args.engine, args.batch_size)
        samples = {d: engine.generate(prompts[d], args.samples, SamplingParams(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            seed=zlib.crc32(f"{args.seed}/{label}/{d}".encode()),
            stop_token_ids=[tokenizer.im_end_id, tokenizer.pad_id])) for d in domains}
        engine.close()  # the sampler goes before the scorer comes: two models of this size at a time, never three
        expert = load_model(path, args.device).eval()
        cells[label] = {}
        for d in domains:
            cell = kl_estimates(response_logprobs(expert, samples[d], args.temperature, args.batch_size, args.device),
                                response_logprobs(multi, samples[d], args.temperature, args.batch_size, args.device))
            cell["neighbour"] = cell["kl"] <= args.threshold
            if accuracy:
                cell["delta"] = 100 * (accuracy[multi_label][d] - accuracy[label][d])
            cells[label][d] = cell
        del expert

    report = {"multi": {multi_label: multi_dir}, "experts": experts, "domains": domains, "prompts": {
              d: str(f) for d, f in files.items()}, "limit": args.limit, "samples": args.samples,
              "temperature": args.temperature, "threshold": args.threshold,
              "estimator": "KL(expert || multi) on the expert's samples; kl = sum k3 / tokens, "
                           "kl_k1 = sum k1 / tokens, kl_seq = sum k3 / responses", "cells": cells, "neighbourhood": neighbourhood(cells)}
    if accuracy:
        report["accuracy"] = accuracy
    labels = list(experts)
    kl_plot(out / "plots" / "kl.png", report, labels, multi_label, accuracy is not None)
    return report, kl_markdown(report, labels, multi_label, accuracy is not None)


def kl_plot(path: Path, report: dict, labels: list, multi_label: str, with_delta: bool):
    """Experts x domains, coloured by KL, each cell's text: KL (* within the neighbourhood) and Δ."""
    domains, cells = report["domains"], report["cells"]
    notes = [[fmt(cells[e][d]["kl"], 4) + ("*" if cells[e][d]["neighbour"] else "")
              + (f"\nΔ {cells[e][d]['delta']:+.1f}" if with_delta else "") for d in domains] for e in labels]
    fig = Figure(figsize=(1.3 * len(domains) + 3, 0.9 * len(labels) + 2))
    ax = fig.subplots()
    fig.colorbar(heatmap(ax, [[cells[e][d]["kl"] for d in domains] for e in labels], domains, labels, notes=notes,
                         vmin=0, cmap="magma_r"), ax=ax)
    ax.set_xlabel("domain of the prompts")
    ax.set_ylabel("expert")
    ax.set_title(f"KL(expert || {multi_label}) per token" + (", Δ = multi − expert (points)" if with_delta else "")
                 + f"; * ≤ {report['threshold']:g}")
    save_figure(fig, path)


def per_domain(items: list, flag: str, domains: list, default) -> dict:
    """{domain: value} for the domains analysed: default(domain), unless `flag DOMAIN=VALUE` gives one."""
    given = label_pairs(items, flag)
    unknown = sorted(set(given) - set(domains))
    if unknown:
        raise SystemExit(f"{flag}: domain(s) {unknown} not in --domains {','.join(domains)}")
    return {d: given.get(d, default(d)) for d in domains}


def eval_accuracy(args, models, domains) -> dict:
    """Avg@K of each model on each domain's benchmark, from evaluate.py's per-sample JSONL."""
    benchmarks = per_domain(args.benchmarks, "--benchmarks", domains, lambda d: f"toy_{d}")
    return {m: {d: average(read_samples(Path(args.eval) / "samples" / m / f"{benchmarks[d]}.jsonl")) for d in domains}
            for m in models}


@torch.no_grad()
def response_logprobs(model, samples, temperature: float, batch_size: int, device) -> list[torch.Tensor]:
    """log π(y_t | x, y_<t) of every response token of every sample under `model`, at `temperature`, fp32 (one
    tensor per sample). Rows are prompt + response, right-padded; the prompt and the padding are not scored."""
    out = []
    for b in range(0, len(samples), batch_size):
        batch = samples[b:b + batch_size]
        L = max(len(s.prompt_ids) + len(s.response_ids) for s in batch)
        ids = torch.zeros(len(batch), L, dtype=torch.long)
        targets = torch.full((len(batch), L), -100, dtype=torch.long)
        for i, s in enumerate(batch):
            P, R = len(s.prompt_ids), len(s.response_ids)
            ids[i, :P + R] = torch.tensor(s.prompt_ids + s.response_ids)
            targets[i, P - 1:P + R - 1] = torch.tensor(s.response_ids)  # position t predicts token t + 1
        logprobs, _ = model.token_logprobs(ids.to(device), targets.to(device), temperature=temperature)  # (B, L)
        out += [logprobs[i, len(s.prompt_ids) - 1:len(s.prompt_ids) + len(s.response_ids) - 1].cpu()
                for i, s in enumerate(batch)]
    return out


def kl_estimates(expert_logprobs: list, multi_logprobs: list) -> dict:
    """KL(π_e || π_m) from responses sampled from π_e, given their tokens' logprobs under each (module docstring)."""
    k1 = k3 = 0.0
    tokens = 0
    for e, m in zip(expert_logprobs, multi_logprobs):
        r = e.double() - m.double()
        k1 += r.sum().item()
        k3 += (torch.expm1(-r) + r).sum().item()  # expm1: no cancellation when the two policies nearly agree
        tokens += len(r)
    return {"kl": k3 / tokens, "kl_k1": k1 / tokens, "kl_seq": k3 / len(expert_logprobs),
            "responses": len(expert_logprobs), "tokens": tokens}


def neighbourhood(cells: dict) -> dict:
    """The policy-neighbourhood test: which cells lie within the threshold, on each expert's own domain (an expert
    labelled by a domain), and the mean performance delta inside and outside the neighbourhood."""
    flat = [(e, d, c) for e, row in cells.items() for d, c in row.items()]
    result = {"within": sum(c["neighbour"] for _, _, c in flat), "cells": len(flat),
              "own_domain": {e: row[e]["neighbour"] for e, row in cells.items() if e in row}}
    if flat and "delta" in flat[0][2]:
        for key, inside in (("mean_delta_within", True), ("mean_delta_outside", False)):
            deltas = [c["delta"] for _, _, c in flat if c["neighbour"] == inside]
            result[key] = sum(deltas) / len(deltas) if deltas else None
    return result


def kl_markdown(report, labels, multi_label, with_delta) -> str:
    domains, cells, test = report["domains"], report["cells"], report["neighbourhood"]

    def cell(c):
        text = fmt(c["kl"], 4) + (f" (Δ {c['delta']:+.1f})" if with_delta else "")
        return f"**{text}**" if c["neighbour"] else text

    own = ", ".join(f"{e} {'yes' if v else 'no'}" for e, v in test["own_domain"].items()) or "no expert names a domain"
    lines = [f"## KL(expert || {multi_label}) on the experts' samples", "",
             f"Per token (k3), {report['samples']} responses to each of {report['limit']} prompts per domain at temperature "
             f"{report['temperature']:g}" + ("; Δ = Avg(multi) − Avg(expert) in points" if with_delta else "")
             + f". Bold: within the policy neighbourhood, KL ≤ {report['threshold']:g}.", "",
             table(["expert \\ domain", *domains], [[e, *(cell(cells[e][d]) for d in domains)] for e in labels]),
             f"Within the neighbourhood: {test['within']} of {test['cells']} cells; on the expert's own domain: {own}."]
    if with_delta:
        lines.append(f"Mean Δ in points: {fmt(test['mean_delta_within'], 1)} within the neighbourhood, "
                     f"{fmt(test['mean_delta_outside'], 1)} outside.")
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------
# gains: per-item gains over the SFT model, from evaluate.py's per-sample JSONL


def read_samples(path: Path) -> dict:
    """evaluate.py's samples/<model>/<benchmark>.jsonl -> {item id: [each sample's reward]}."""
    rewards = {}
    for where, row in evaluated_rows(path, (("id", str), ("sample", int), ("reward", (int, float)))):
        item = rewards.setdefault(row["id"], {})
        if row["sample"] in item:
            raise SystemExit(f"{where}: sample {row['sample']} of item {row['id']!r} appears twice")
        item[row["sample"]] = float(row["reward"])
    return {i: list(s.values()) for i, s in rewards.items()}


def evaluated_rows(path: Path, fields):
    """(path:line, row) for each line of evaluate.py's samples/<model>/<benchmark>.jsonl. Every line needs the
    `fields` ((key, type), ...); any other key is ignored, so evaluate.py may add more."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: evaluate the model on the benchmark first (evaluate.py --models "
                         f"{path.parent.name}=DIR --benchmarks {path.stem} --out {path.parent.parent.parent})")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not valid JSON ({e}); re-run evaluate.py for this model") from None
            for key, kind in fields:
                if not isinstance(row, dict) or key not in row:
                    raise SystemExit(f"{path}:{n}: key {key!r} missing; evaluate.py writes "
                                     f"{', '.join(k for k, _ in fields)} on every line: re-run it for this model")
                if not isinstance(row[key], kind) or isinstance(row[key], bool):
                    raise SystemExit(f"{path}:{n}: key {key!r} is {row[key]!r}, expected {kind}")
            yield f"{path}:{n}", row


def average(per_item: dict) -> float:
    """Avg@K: the mean over items of each item's mean reward."""
    return sum(sum(r) / len(r) for r in per_item.values()) / len(per_item)


def gains(args, out: Path):
    samples = Path(args.eval) / "samples"
    if args.benchmarks:
        benchmarks = listed(args.benchmarks)
    else:
        benchmarks = sorted(p.stem for p in (samples / args.sft).glob("*.jsonl"))
        if not benchmarks:
            raise SystemExit(f"{samples / args.sft}: no benchmark evaluated for the SFT model {args.sft!r}; run "
                             f"evaluate.py --models {args.sft}=DIR ... --out {args.eval}, or pass --eval/--sft")
    models = [args.sft, *args.experts, *args.combined]
    acc = {}  # model -> benchmark -> item -> accuracy
    for m in models:
        for b in benchmarks:
            per_item = {i: sum(r) / len(r) for i, r in read_samples(samples / m / f"{b}.jsonl").items()}
            ref = acc.get(args.sft, {}).get(b, per_item)
            if set(per_item) != set(ref):
                missing, extra = sorted(set(ref) - set(per_item)), sorted(set(per_item) - set(ref))
                raise SystemExit(f"{samples / m / f'{b}.jsonl'}: its items differ from the SFT model's ({len(missing)} "
                                 f"missing, e.g. {missing[:3]}; {len(extra)} extra, e.g. {extra[:3]}): evaluate every "
                                 f"model on the same prompts (same --limit and data)")
            acc.setdefault(m, {})[b] = per_item
    items = {b: list(acc[args.sft][b]) for b in benchmarks}
    gain = {m: {b: torch.tensor([max(acc[m][b][i] - acc[args.sft][b][i], 0.0) for i in items[b]], dtype=torch.float64)
                for b in benchmarks} for m in models[1:]}
    union = {b: torch.stack([gain[e][b] for e in args.experts]).amax(0) for b in benchmarks}

    def over(per_benchmark):  # each benchmark, and all items of every benchmark together
        return {**per_benchmark, "all": torch.cat(list(per_benchmark.values()))}

    union_all = over(union)
    report = {"sft": args.sft, "experts": args.experts, "combined": args.combined, "benchmarks": benchmarks,
              "items": {b: len(items[b]) for b in benchmarks},
              "accuracy": {m: {b: sum(acc[m][b].values()) / len(items[b]) for b in benchmarks} for m in models},
              "consistency": {c: {b: cosine(union_all[b], g) for b, g in over(gain[c]).items()} for c in args.combined},
              "gained_items": {"union": {b: int((g > 0).sum()) for b, g in union_all.items()},
                               **{m: {b: int((g > 0).sum()) for b, g in over(gain[m]).items()} for m in models[1:]}}}
    columns = [*benchmarks, "all"]
    bar_chart(out / "plots" / "gains.png", "gain consistency: cos(union of single-task gains, model's gain)", columns,
              {c: [report["consistency"][c][b] for b in columns] for c in args.combined}, "cosine")
    consistency, gained = report["consistency"], report["gained_items"]
    rows = [[c, *(f"{fmt(consistency[c][b])} ({gained[c][b]})" for b in columns)] for c in args.combined]
    return report, "\n".join([
        f"## Gain consistency against {args.sft}", "",
        f"gain(i) = max(acc(i) − acc_{args.sft}(i), 0) per item; union = max over {', '.join(args.experts)}; cosine "
        "between the union and each model's gain (items gained in parentheses):", "",
        table(["model", *columns], rows + [["union", *(f"({gained['union'][b]})" for b in columns)]])])


def cosine(a: torch.Tensor, b: torch.Tensor):
    na, nb = a.norm(), b.norm()
    return (a @ b / (na * nb)).item() if na > 0 and nb > 0 else None


# -----------------------------------------------------------------------------
# self-verify: each model judges its own responses, shown the final answer only or the whole reasoning

MODES = ("outcome", "process")
# The two templates differ only in what they show, so outcome vs process isolates seeing the reasoning. Fields are
# filled in one pass (benchmarks.fill): a `{x}` in a problem or a response stays as written.
INSTRUCTION = ("A response is correct when its final answer solves the problem and follows every instruction given in "
               "it. End your reply with your verdict, exactly \\boxed{correct} or \\boxed{incorrect}.")
JUDGE_TEMPLATES = {
    "outcome": ("Below are a problem and the final answer a model gave to it. Judge whether the final answer is "
                "correct.\n\n## Problem\n{problem}\n\n## Final answer\n{answer}\n\n" + INSTRUCTION),
    "process": ("Below are a problem and a model's whole solution to it: its reasoning, then its final answer. Check "
                "the reasoning step by step, then judge whether the final answer is correct.\n\n## Problem\n{problem}"
                "\n\n## Reasoning\n{reasoning}\n\n## Final answer\n{answer}\n\n" + INSTRUCTION),
}
VERDICTS = {"correct": True, "incorrect": False}
CLAIMS = [  # the paper's self-verification findings: (claim, model, modes), each against the SFT model
    ("IF RL sharpens outcome judging", "if", ["outcome"]),
    ("math RL sharpens process judging", "math", ["process"]),
    ("code RL sharpens process judging", "code", ["process"]),
    ("multi-task RL improves both", None, ["outcome", "process"]),  # None: the --multi model
]


def judge_prompt(mode: str, problem: str, response: str) -> str:
    """The judge's user turn. The response is split where rewards/ splits it: the final answer is the text after the
    last </think> (what the verifier graded), the reasoning the think block before it."""
    reasoning, answer = split_reasoning({"content": response})
    return fill(JUDGE_TEMPLATES[mode], problem=problem, reasoning=reasoning.strip() or "(none)",
                answer=answer.strip() or "(none)")


def parse_verdict(text: str) -> bool | None:
    """The judge's reply -> True (judged correct), False (judged incorrect) or None (unparsable). Read where rewards/
    reads an answer, after the last </think>; there the last `\\boxed{` decides, and its box must hold exactly
    `correct` or `incorrect` (case and surrounding spaces aside). Anything else is unparsable: no box, a box never
    closed, another word (`\\boxed{yes}`, `\\boxed{\\text{correct}}`), a verdict only inside the thinking."""
    _, answer = split_reasoning({"content": text})
    start = answer.rfind("\\boxed{")
    if start < 0:
        return None
    body = answer[start + len("\\boxed{"):]
    end = body.find("}")
    return VERDICTS.get(body[:end].strip().lower()) if end >= 0 else None


def judging_metrics(truths: list[bool], verdicts: list) -> dict:
    """Verdicts (True, False, None = unparsable) against the verifier's truths (reward 1 = correct). An unparsable
    verdict is a miss. With recall r_c on the correct responses and r_i on the incorrect ones:
      accuracy = hits / responses;  balanced accuracy = (r_c + r_i) / 2
    When one class is absent (all correct, all wrong), the balanced accuracy is the present class's recall, and
    `classes` names that class alone; with no responses every rate is None. The standard error treats responses as
    independent, with Agresti-Coull per class (never 0 at a recall of 0 or 1): an under-estimate when K > 1 samples
    of one problem are judged, as they are correlated."""
    confusion = {truth: {"correct": 0, "incorrect": 0, "unparsable": 0} for truth in VERDICTS}
    for truth, verdict in zip(truths, verdicts, strict=True):
        said = "unparsable" if verdict is None else "correct" if verdict else "incorrect"
        confusion["correct" if truth else "incorrect"][said] += 1
    recall, variance = {}, {}
    for truth, row in confusion.items():
        total = sum(row.values())
        if total:
            recall[truth] = row[truth] / total
            p = (row[truth] + 2) / (total + 4)
            variance[truth] = p * (1 - p) / (total + 4)
    n = len(truths)
    return {"responses": n, "confusion": confusion, "classes": list(recall),
            "accuracy": (confusion["correct"]["correct"] + confusion["incorrect"]["incorrect"]) / n if n else None,
            "recall_correct": recall.get("correct"), "recall_incorrect": recall.get("incorrect"),
            "balanced_accuracy": sum(recall.values()) / len(recall) if recall else None,
            "balanced_stderr": math.sqrt(sum(variance.values())) / len(variance) if variance else None,
            "unparsable_rate": sum(row["unparsable"] for row in confusion.values()) / n if n else None}


def self_verify(args, out: Path):
    models = label_pairs(args.models, "--models")
    samples = Path(args.eval) / "samples"
    first = next(iter(models))
    benchmarks = (listed(args.benchmarks) if args.benchmarks
                  else sorted(p.stem for p in (samples / first).glob("*.jsonl")))
    if not benchmarks:
        raise SystemExit(f"{samples / first}: no benchmark evaluated for {first!r}; run evaluate.py --models "
                         f"{first}=DIR ... --out {args.eval}, or pass --eval")
    problems = eval_problems(Path(args.eval), benchmarks)
    cells = {}
    for name, path in models.items():
        responses = {b: read_responses(samples / name / f"{b}.jsonl", problems[b], args.limit) for b in benchmarks}
        tokenizer = Tokenizer.from_dir(path)
        engine = open_engine(path, args.engine, args.batch_size)
        cells[name] = {}
        with tqdm(total=len(MODES) * sum(map(len, responses.values())), desc=f"self-verify {name}") as bar:
            for b in benchmarks:
                judged, cells[name][b] = [], {}
                for mode in MODES:
                    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                              seed=zlib.crc32(f"{args.seed}/{name}/{b}/{mode}".encode()),
                                              stop_token_ids=[tokenizer.im_end_id, tokenizer.pad_id])
                    replies = judge(engine, tokenizer, responses[b], problems[b], mode, sampling, args, bar)
                    verdicts = [parse_verdict(r.text) for r in replies]
                    cells[name][b][mode] = judging_metrics([row["reward"] == 1.0 for row in responses[b]], verdicts)
                    judged += [{"id": row["id"], "sample": row["sample"], "reward": row["reward"], "mode": mode,
                                "verdict": None if v is None else "correct" if v else "incorrect", "judge": r.text,
                                "finish_reason": r.finish_reason, "tokens": len(r.response_ids)}
                               for row, r, v in zip(responses[b], replies, verdicts)]
                write_atomic(out / "self-verify" / name / f"{b}.jsonl", "".join(json.dumps(j) + "\n" for j in judged))
        engine.close()  # one judge in memory at a time

    average = {m: {mode: mean_over_benchmarks([cells[m][b][mode] for b in benchmarks]) for mode in MODES}
               for m in models}
    report = {"models": models, "eval": args.eval, "benchmarks": benchmarks, "modes": list(MODES),
              "templates": JUDGE_TEMPLATES, "temperature": args.temperature, "max_new_tokens": args.max_new_tokens,
              "thinking": args.thinking, "cells": cells, "average": average, "sft": args.sft, "multi": args.multi,
              "claims": check_claims(average, args.sft, args.multi)}
    self_verify_plot(out / "plots" / "self-verify.png", report)
    return report, self_verify_markdown(report, [(b, mode) for b in benchmarks for mode in MODES])


def eval_problems(eval_dir: Path, benchmarks: list) -> dict:
    """{benchmark: {item id: the problem as asked, the prompt's last user turn}}, loaded as evaluate.py loaded them:
    with the settings in its args.json (data dir, paths, templates, windows, seed)."""
    path = eval_dir / "args.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: self-verify reads the problems as evaluate.py loaded them, from the "
                         f"args.json it writes in its --out; pass that directory as --eval")
    settings = json.loads(path.read_text())
    loaded = load_benchmarks(argparse.Namespace(**{**settings, "benchmarks": benchmarks, "limit": None}))
    return {b: {r.id: r.messages[-1]["content"] for r in loaded[b].records} for b in benchmarks}


def read_responses(path: Path, problems: dict, limit: int | None) -> list[dict]:
    """evaluate.py's samples/<model>/<benchmark>.jsonl -> its rows (id, sample, text, reward), those of the first
    `limit` items when given. Every id must be one of the benchmark's problems."""
    rows, items = [], set()
    for where, row in evaluated_rows(path, (("id", str), ("sample", int), ("text", str), ("reward", (int, float)))):
        if row["id"] not in problems:
            raise SystemExit(f"{where}: item {row['id']!r} is not in the benchmark as evaluate.py's args.json loads "
                             f"it; evaluate again with the current data, or restore the data it was evaluated on")
        items.add(row["id"])
        if limit is not None and len(items) > limit:
            break
        rows.append(row)
    return rows


def judge(engine, tokenizer, rows: list, problems: dict, mode: str, sampling, args, bar) -> list:
    """One judge reply (a Sample) per response row, in order; engine calls of --batch-size prompts."""
    prompts = [(str(i), tokenizer.encode_chat([{"role": "user", "content": judge_prompt(
        mode, problems[row["id"]], row["text"])}], add_generation_prompt=True, enable_thinking=args.thinking))
               for i, row in enumerate(rows)]
    replies = [None] * len(rows)
    for c in range(0, len(prompts), args.batch_size):
        for reply in engine.generate(prompts[c:c + args.batch_size], 1, replace(sampling, seed=sampling.seed + c)):
            replies[int(reply.record_id)] = reply
        bar.update(len(prompts[c:c + args.batch_size]))
    return replies


def mean_over_benchmarks(cells: list) -> dict:
    """The mean balanced accuracy over the benchmarks that have one, with the standard error of a mean of
    independent terms, sqrt(sum se²) / B."""
    rated = [c for c in cells if c["balanced_accuracy"] is not None]
    if not rated:
        return {"balanced_accuracy": None, "balanced_stderr": None, "benchmarks": 0}
    return {"balanced_accuracy": sum(c["balanced_accuracy"] for c in rated) / len(rated),
            "balanced_stderr": math.sqrt(sum(c["balanced_stderr"] ** 2 for c in rated)) / len(rated),
            "benchmarks": len(rated)}


def check_claims(average: dict, sft: str, multi: str) -> list:
    """Each claim's Δ = mean balanced accuracy of the model − the SFT model's, per mode, with the standard error of a
    difference of independent estimates. Verdict: "holds" when every Δ > 2 se, "contradicted" when any Δ < −2 se,
    "within noise" otherwise, "not evaluated" when the model (or the SFT model) was not judged."""
    claims = []
    for claim, model, modes in CLAIMS:
        model = model or multi
        deltas = {}
        for mode in modes:
            a, b = average.get(model, {}).get(mode), average.get(sft, {}).get(mode)
            if model != sft and a and b and a["balanced_accuracy"] is not None and b["balanced_accuracy"] is not None:
                deltas[mode] = {"delta": a["balanced_accuracy"] - b["balanced_accuracy"],
                                "stderr": math.hypot(a["balanced_stderr"], b["balanced_stderr"])}
        if len(deltas) < len(modes):
            verdict = "not evaluated"
        elif all(d["delta"] > 2 * d["stderr"] for d in deltas.values()):
            verdict = "holds"
        elif any(d["delta"] < -2 * d["stderr"] for d in deltas.values()):
            verdict = "contradicted"
        else:
            verdict = "within noise"
        claims.append({"claim": claim, "model": model, "deltas": deltas, "verdict": verdict})
    return claims


def self_verify_plot(path: Path, report: dict):
    """One panel per mode: the benchmarks and their average along x, a bar per model, chance (0.5) dashed."""
    groups = [*report["benchmarks"], "avg"]
    fig = Figure(figsize=(2 * max(4.0, 0.4 * len(groups) * (len(report["models"]) + 1)), 4.0))
    for ax, mode in zip(fig.subplots(1, len(MODES), sharey=True), MODES):
        bars(ax, groups, {m: [report["cells"][m][b][mode]["balanced_accuracy"] for b in report["benchmarks"]]
                          + [report["average"][m][mode]["balanced_accuracy"]] for m in report["models"]})
        ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{mode}: judged shown the {'final answer' if mode == 'outcome' else 'reasoning too'}")
    fig.axes[0].set_ylabel("balanced accuracy (chance 0.5, dashed)")
    fig.suptitle("self-verification: each model judging its own responses")
    save_figure(fig, path)


def self_verify_markdown(report: dict, columns: list) -> str:
    cells, average, models = report["cells"], report["average"], list(report["models"])

    def balanced(c):
        return pct(c["balanced_accuracy"]) + ("†" if len(c["classes"]) == 1 else "")

    header = ["model", *(f"{b} {mode}" for b, mode in columns)]
    claims = [f"- {c['claim']} ({c['model']} vs {report['sft']}): " + (", ".join(
        f"{mode} {100 * d['delta']:+.1f} ± {100 * d['stderr']:.1f}" for mode, d in c["deltas"].items())
        or "no numbers") + f" → **{c['verdict']}**" for c in report["claims"]]
    return "\n".join([
        "## Self-verification: each model judges its own responses", "",
        "Balanced accuracy (%) against the verifiers: the mean of the recall on correct and on incorrect responses "
        "(chance 50), an unparsable verdict counted as a miss. outcome: the judge sees the problem and the final "
        "answer; process: also the reasoning. † one class only (all responses correct, or all wrong): the recall on "
        "it alone.", "",
        table([*header, *(f"avg {mode}" for mode in MODES)],
              [[m, *(balanced(cells[m][b][mode]) for b, mode in columns),
                *(pct(average[m][mode]["balanced_accuracy"]) for mode in MODES)] for m in models]),
        "Accuracy (%) / unparsable verdicts (%) (responses judged):", "",
        table(header, [[m, *(f"{pct(c['accuracy'])} / {pct(c['unparsable_rate'])} ({c['responses']})"
                             for c in (cells[m][b][mode] for b, mode in columns))] for m in models]),
        f"The paper's claims, Δ mean balanced accuracy against {report['sft']} in points ± standard error "
        "(holds: every Δ > 2 se):", "", *claims]) + "\n"


# -----------------------------------------------------------------------------
# The embedded default


def demo_checkpoints(root: Path, seed: int):
    """The tiny preset as the SFT model; four experts, each shifting its own random 10% of the entries by N(0, 0.01²),
    independently (so Jaccard ≈ the random baseline and cosine ≈ 0 between experts); and "multi" carrying all four
    shifts (so its cosine with each expert ≈ 1/√4 = 0.5)."""
    model = from_preset("tiny", seed)
    save_model(model, root / "sft", source_dir=TINY_DIR)
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    shifts = {}
    for i, label in enumerate(DOMAINS):
        gen = torch.Generator().manual_seed(seed * 1000 + i + 1)
        shifts[label] = {name: (torch.rand(p.shape, generator=gen) < 0.1) * torch.randn(p.shape, generator=gen) * 0.01
                         for name, p in base.items()}
    shifts["multi"] = {name: sum(s[name] for s in shifts.values()) for name in base}
    for label, shift in shifts.items():
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(base[name] + shift[name])
        save_model(model, root / label, source_dir=TINY_DIR)
    return root / "sft", {label: root / label for label in shifts}


def demo(out: Path, seed: int):
    with tempfile.TemporaryDirectory() as scratch:
        base, models = demo_checkpoints(Path(scratch), seed)
        common = [f"--out={out}", f"--seed={seed}"]
        main(["weights", f"--base={base}", "--models", *(f"{label}={d}" for label, d in models.items()), *common])
        main(["kl", "--experts", *(f"{d}={models[d]}" for d in DOMAINS), f"--multi=multi={models['multi']}",
              "--limit=8", "--samples=2", "--max-new-tokens=32", "--engine=native", *common])
    print(f"gains needs evaluate.py's per-sample JSONL: python analyze.py gains --eval DIR --out {out}")


# -----------------------------------------------------------------------------
# Reports: tables, plots, atomic writes


def fmt(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]) + "\n"


def heatmap(ax, values, cols, rows, notes=None, vmin=None, vmax=None, cmap="viridis"):
    """values[i][j] for row i, column j (None shown blank); notes, when given, are the cells' texts."""
    image = ax.imshow([[math.nan if v is None else v for v in row] for row in values], vmin=vmin, vmax=vmax,
                      cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, notes[i][j] if notes else fmt(v, 2), ha="center", va="center", fontsize=7,
                    bbox=dict(facecolor="white", alpha=0.6, linewidth=0, pad=1))
    return image


def bar_chart(path: Path, title: str, groups: list, series: dict, ylabel: str):
    """One group of bars per entry of `groups`, one bar per series (None drawn as a gap)."""
    fig = Figure(figsize=(max(6.0, 0.4 * len(groups) * (len(series) + 1)), 4.0))  # the OO API: no pyplot state
    ax = fig.subplots()
    bars(ax, groups, series)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save_figure(fig, path)


def bars(ax, groups: list, series: dict):
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(groups))]
        ax.bar(xs, [math.nan if v is None else v for v in values], width, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.legend(fontsize=7)


def write_summary(out: Path):
    sections = [(out / f"{s}.md").read_text() for s in SECTIONS if (out / f"{s}.md").exists()]
    write_atomic(out / "summary.md", "# Mechanism analyses\n\n" + "\n".join(sections))


COMMANDS = {"weights": weights, "kl": kl, "gains": gains, "self-verify": self_verify}

if __name__ == "__main__":
    main()
