r"""weights: where RL moved the weights (the paper's Fig. 3). θ_sft is the base, θ_i an analysed checkpoint, n entries.
  shift      δ_i = θ_i − θ_sft, in fp32; a model stored in a coarser dtype than θ_sft (bf16 beside fp32) is read at
             θ_sft's precision (checkpoints.on_base_precision), so rounding alone is no shift
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
"""
import hashlib
import math
from pathlib import Path

import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from curves import save_figure
from checkpoints import Checkpoints, on_base_precision
from report import bar_chart, fmt, heatmap, pct, table

MODULE_TYPES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
                "down_proj": "down"}  # everything else (embedding, norms, an untied head) is "other"
FIG3_GROUPS = {"attention": ("q", "k", "v", "o"), "ffn": ("gate", "up", "down")}
PROJ_DIM, CHUNK = 256, 1 << 16  # the paper's 256 dimensions; a chunk's projection is 64 MB of fp32


def weights(base: str, models: dict, out: Path, eta: float, seed: int, device) -> tuple[dict, str]:
    """The shifts of `models` ({label: HF dir}) from `base`, one tensor name at a time: the report (every number) and
    its Markdown section; the plots go to out/plots."""
    ckpt = Checkpoints(base, models)
    labels = ckpt.labels
    totals = {}  # module type -> [entries, intersections, Gram, projected, overlap Gram, overlap squares]
    densities = {}
    for name in tqdm(ckpt.names, desc="weights", unit="tensor"):
        stats = shift_statistics(ckpt, name, eta, seed, device)
        numel, kind = ckpt.numel[name], module_type(name)
        t = totals.get(kind, [0] * 6)
        totals[kind] = [t[0] + numel] + [a + b.cpu() for a, b in zip(t[1:], stats)]
        densities[name] = {"type": kind, "density": dict(zip(labels, (stats[0].diagonal() / numel).tolist()))}
    totals = {kind: totals[kind] for kind in [*MODULE_TYPES.values(), "other"] if kind in totals}
    groups = {group: [totals[k] for k in kinds if k in totals] for group, kinds in FIG3_GROUPS.items()}
    totals["all"] = [sum(t[i] for t in totals.values()) for i in range(6)]

    report = {"base": base, "models": {label: str(r.path) for label, r in ckpt.models.items()}, "eta": eta,
              "projection": {"dim": PROJ_DIM, "chunk": CHUNK, "seed": seed, "device": str(device)},
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


def projection(seed: int, name: str, chunk: int, rows: int, device) -> torch.Tensor:
    """R_c (rows, k), i.i.d. N(0, 1/k): chunk `chunk` of tensor `name`'s flattened entries. The seed is a 64-bit hash of
    (seed, name, chunk), so every model, pass and order of reading draws the same matrix for the same entries (crc32
    would collide at a few thousand chunks). A CUDA generator draws other numbers than a CPU one: same law, not the
    same matrix, so compare projected cosines computed on one device type."""
    key = hashlib.blake2b(f"{seed}/{name}/{chunk}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device).manual_seed(int.from_bytes(key, "little"))
    return torch.randn(rows, PROJ_DIM, generator=generator, device=device) / math.sqrt(PROJ_DIM)


def module_type(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'q' (the paper's Fig. 3 groups); embedding and norms -> 'other'."""
    parts = name.split(".")
    return next((MODULE_TYPES[p] for p in parts if p in MODULE_TYPES), "other")


def random_jaccard(density: torch.Tensor) -> torch.Tensor:
    """(N,) densities -> (N, N) Jaccard expected of independent uniform masks with them: p_i p_j / (p_i + p_j − p_i p_j)
    (the ratio of the expected intersection n p_i p_j to the expected union; exact as n grows)."""
    p_i, p_j = density[:, None], density[None, :]
    return p_i * p_j / (p_i + p_j - p_i * p_j)


def cosines(gram: torch.Tensor) -> torch.Tensor:
    """Gram matrix (N, N) -> cosines; NaN (reported null) for a zero vector."""
    norm = gram.diagonal().sqrt()
    return gram / (norm[:, None] * norm[None, :])


def overlap_cosines(gram: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """Σ_o δ_i δ_j (N, N) and Σ_o δ_i² (N, N, row i) -> cosines on the overlaps; NaN (null) where one is empty."""
    return gram / (sq * sq.T).sqrt()


def matrix(labels, values: torch.Tensor) -> dict:
    return {a: {b: finite(values[i, j].item()) for j, b in enumerate(labels)} for i, a in enumerate(labels)}


def finite(x: float):
    return None if math.isnan(x) else x


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
