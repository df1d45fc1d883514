r"""kl: how far the multi-task policy lies from each expert (Fig. 4). Rows: the experts; columns: the domains whose
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
"""
import zlib
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from tqdm import tqdm

from analysis.evaluated import average, read_samples
from curves import save_figure
from data.record import load_records
from logprobs import kl_estimate, sample_logprobs
from model import SamplingParams, load_model
from report import fmt, heatmap, table
from rollout import open_engine
from tokenizer import Tokenizer


@dataclass(frozen=True)
class KLSettings:
    """How the experts' responses are sampled and scored (analyze.py kl's flags of the same names)."""
    limit: int  # prompts per domain
    samples: int  # responses sampled per prompt
    max_new_tokens: int
    temperature: float  # of sampling and of scoring, > 0
    threshold: float  # the policy neighbourhood: KL ≤ this, in nats per token
    engine: str  # the sampler: native or vllm
    engine_dtype: str  # vLLM's compute dtype: auto (vLLM's rule), bfloat16 or float32
    batch_size: int  # sequences per engine call and per scoring forward
    device: str  # where the models score
    seed: int


def kl(experts: dict, multi: tuple[str, str], prompts: dict, settings: KLSettings, out: Path,
       accuracy: dict | None = None) -> tuple[dict, str]:
    """KL(expert || multi) for each expert ({label: HF dir}) against the multi-task model (label, HF dir), on the
    prompts of each domain ({domain: Record JSONL}, the columns in order): the report and its Markdown section; the
    plot goes to out/plots. `accuracy` ({model: {domain: Avg@K}}, from eval_accuracy) adds Δ = multi − expert to each
    cell."""
    multi_label, multi_dir = multi
    domains = list(prompts)
    tokenizer = Tokenizer.from_dir(multi_dir)
    chats = {d: [(r.id, tokenizer.encode_chat(r.messages, add_generation_prompt=True))
                 for r in load_records(prompts[d])[:settings.limit]] for d in domains}

    multi_model = load_model(multi_dir, settings.device).eval()
    cells = {}
    for label, path in tqdm(experts.items(), desc="kl", unit="expert"):
        engine = open_engine(path, settings.engine, settings.batch_size, dtype=settings.engine_dtype)
        samples = {d: engine.generate(chats[d], settings.samples, SamplingParams(
            max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
            seed=zlib.crc32(f"{settings.seed}/{label}/{d}".encode()),
            stop_token_ids=[tokenizer.im_end_id, tokenizer.pad_id])) for d in domains}
        engine.close()  # the sampler goes before the scorer comes: two models of this size at a time, never three
        expert = load_model(path, settings.device).eval()
        cells[label] = {}
        for d in domains:
            cell = kl_estimates(
                sample_logprobs(expert, samples[d], settings.temperature, settings.batch_size, settings.device),
                sample_logprobs(multi_model, samples[d], settings.temperature, settings.batch_size, settings.device))
            cell["neighbour"] = cell["kl"] <= settings.threshold
            if accuracy:
                cell["delta"] = 100 * (accuracy[multi_label][d] - accuracy[label][d])
            cells[label][d] = cell
        del expert

    report = {"multi": {multi_label: multi_dir}, "experts": experts, "domains": domains, "prompts": {
              d: str(f) for d, f in prompts.items()}, "limit": settings.limit, "samples": settings.samples,
              "temperature": settings.temperature, "threshold": settings.threshold,
              "estimator": "KL(expert || multi) on the expert's samples; kl = sum k3 / tokens, "
                           "kl_k1 = sum k1 / tokens, kl_seq = sum k3 / responses", "cells": cells,
              "neighbourhood": neighbourhood(cells)}
    if accuracy:
        report["accuracy"] = accuracy
    labels = list(experts)
    kl_plot(out / "plots" / "kl.png", report, labels, multi_label, accuracy is not None)
    return report, kl_markdown(report, labels, multi_label, accuracy is not None)


def kl_estimates(expert_logprobs: list, multi_logprobs: list) -> dict:
    """KL(π_e || π_m) from responses sampled from π_e, given their tokens' logprobs under each (module docstring)."""
    k1 = k3 = 0.0
    tokens = 0
    for e, m in zip(expert_logprobs, multi_logprobs):
        e, m = e.double(), m.double()  # fp64 sums over many tokens of two policies that nearly agree
        k1 += kl_estimate(e, m, "k1").sum().item()
        k3 += kl_estimate(e, m, "k3").sum().item()
        tokens += len(e)
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


def eval_accuracy(eval_dir: str, benchmarks: dict, models: list) -> dict:
    """Avg@K of each model on each domain's benchmark ({domain: benchmark}), from evaluate.py's per-sample JSONL in
    eval_dir: {model: {domain: Avg@K}}."""
    return {m: {d: average(read_samples(Path(eval_dir) / "samples" / m / f"{b}.jsonl")) for d, b in benchmarks.items()}
            for m in models}


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


def kl_markdown(report, labels, multi_label, with_delta) -> str:
    domains, cells, test = report["domains"], report["cells"], report["neighbourhood"]

    def cell(c):
        text = fmt(c["kl"], 4) + (f" (Δ {c['delta']:+.1f})" if with_delta else "")
        return f"**{text}**" if c["neighbour"] else text

    own = ", ".join(f"{e} {'yes' if v else 'no'}" for e, v in test["own_domain"].items()) or "no expert names a domain"
    lines = [f"## KL(expert || {multi_label}) on the experts' samples", "",
             f"Per token (k3), {report['samples']} responses to each of {report['limit']} prompts per domain at "
             f"temperature {report['temperature']:g}" + ("; Δ = Avg(multi) − Avg(expert) in points" if with_delta else "")
             + f". Bold: within the policy neighbourhood, KL ≤ {report['threshold']:g}.", "",
             table(["expert \\ domain", *domains], [[e, *(cell(cells[e][d]) for d in domains)] for e in labels]),
             f"Within the neighbourhood: {test['within']} of {test['cells']} cells; on the expert's own domain: {own}."]
    if with_delta:
        lines.append(f"Mean Δ in points: {fmt(test['mean_delta_within'], 1)} within the neighbourhood, "
                     f"{fmt(test['mean_delta_outside'], 1)} outside.")
    return "\n".join(lines) + "\n"
