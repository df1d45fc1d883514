"""Evaluate models on benchmarks: K samples per prompt through the rollout engine, scored with rewards/, Avg@K.

    python evaluate.py --models sft=runs/sft/latest rl-multi=runs/rl ties=runs/ties \\
        --benchmarks aime24 gpqa_diamond ifeval --k 16 --data-dir data/bench --engine vllm --out results/
    python evaluate.py      # the tiny preset (random weights) on the toy eval splits

Benchmarks and their local file formats: benchmarks.py. Over n prompts with K samples each, c_i of prompt i's
samples correct:
- Avg@K = (1/n) sum_i c_i/K, the mean over prompts of the fraction correct. Its standard error is the sample
  standard deviation of the per-prompt fractions over sqrt(n): prompts are the sampled unit, K samples only make
  each prompt's fraction less noisy.
- pass@k (--pass-k) = (1/n) sum_i [1 - C(K-c_i, k) / C(K, k)], the unbiased estimator of Chen et al. 2021
  (Codex paper), with the same standard error over prompts. pass@1 equals Avg@K.
- Instruction following (every benchmark of domain "if"): prompt-level strict (= the reward) and loose, and
  instruction-level strict and loose = instructions followed / instructions given, over all samples, as IFEval
  reports them; an instruction level is a ratio estimate, its standard error the delta-method one.
The table shows Avg@K of the reward, so prompt-level strict for the IF benchmarks.

Generation: rollout.open_engine (--engine: native, vllm, or auto: vLLM where installed), Qwen3's thinking mode
(--no-thinking: its non-thinking mode) and, under --protocol toy, its recommended sampling (temperature 0.6, top-p
0.95, top-k 20) and --k samples for every benchmark; max new tokens per benchmark (benchmarks.py) unless
--max-new-tokens. --protocol m2rl is the paper's in-loop evaluation (M2RL eval_config/multi_task.yaml, resolved as
slime/utils/eval_config.py does): top-p 0.7, temperature 1 (the yaml sets none, so the rollout's
--rollout-temperature 1 holds), no top-k (slime's -1), 32,768-token responses, K = 16 for aime24, 4 for
gpqa_diamond, 1 for ifbench (benchmarks.py paper_k; other benchmarks --k), and the paper's reward rules (rewards/:
think gate, deepscaler math, ...). Flags given win. `preset:tiny` models are random weights with no directory for an
engine to load, so they get the native engine directly.

Outputs in --out:
  table.md                           benchmarks x models in percent (+ Avg.), pass@k and IF levels, loader notes
  results.json                       every number, per model and benchmark
  samples/<model>/<benchmark>.jsonl  one line per sample: id, sample, text, finish_reason, tokens, reward, info
  plots/avg_at_k.png                 bar charts with standard-error bars (and pass_at_<k>.png)
  cache/<model>/<benchmark>/<hash>/  every generated sample, saved after each engine call, in a directory per
                                     generation settings (<hash>: of the model, its weight files, the sampling
                                     and --engine-dtype where not auto).
                                     A rerun generates only the (prompt, sample) pairs missing there: an interrupted
                                     evaluation resumes, and one with nothing missing re-scores without loading the
                                     model.
  args.json                          vars(args), written once every input is checked (benchmark files, models'
                                     tokenizers and configs), right after the previous run's table.md, results.json,
                                     plots and this run's samples files are removed: what lies beside it is its run's.
"""
import argparse
import hashlib
import json
import math
import zlib
from collections import defaultdict
from dataclasses import fields, replace
from functools import cached_property
from pathlib import Path

import torch
from matplotlib.figure import Figure
from tqdm import tqdm

import rewards
from benchmarks import BENCHMARKS, BenchmarkError, load_benchmarks
from cli import (HelpFormatter, add_config_flag, add_engine_dtype_flag, add_engine_flag, label_pairs, listed,
                 non_negative_float, non_negative_int, parse_args, positive_int, probability)
from curves import save_figure
from files import read_jsonl, write_atomic
from model import (TINY_DIR, CheckpointError, Qwen3Config, SamplingParams, check_vocab, from_preset, preset_config,
                   read_json)
from report import table as markdown_table
from rollout import NativeEngine, Sample, open_engine
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent
# (temperature, top-p, top-k): Qwen3's recommended sampling for thinking mode; the paper's eval (see the docstring)
SAMPLING = {"toy": (0.6, 0.95, 20), "m2rl": (1.0, 0.7, 0)}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
add_config_flag(parser)
parser.add_argument("--models", nargs="+", default=["tiny-random=preset:tiny"],
                    help="NAME=DIR (an HF checkpoint) or NAME=preset:tiny (random weights)")
parser.add_argument("--benchmarks", nargs="+", default=[b for b in BENCHMARKS if b.startswith("toy_")],
                    metavar="NAME", help=f"space- or comma-separated, from: {', '.join(BENCHMARKS)}")
parser.add_argument("--data-dir", default=str(ROOT / "data" / "bench"),
                    help="local benchmark files, named as in benchmarks.py (aime24.jsonl, gpqa_diamond.csv, ...)")
parser.add_argument("--path", nargs="+", default=[], metavar="NAME=FILE", help="a benchmark's file, not in --data-dir")
parser.add_argument("--window", nargs="+", default=[], metavar="NAME=START:END",
                    help="LiveCodeBench release dates, e.g. lcb_v5=2024-08-01:2025-02-01")
parser.add_argument("--template", nargs="+", default=[], metavar="KEY=FILE",
                    help="replace a prompt template (keys: benchmarks.TEMPLATES)")
parser.add_argument("--protocol", choices=rewards.PROTOCOLS, default="toy",
                    help="sampling, K per benchmark and reward rules: m2rl, the paper's (see above); toy (default): "
                         "Qwen3's sampling, one K, our rules - the default models and benchmarks are the toy ones, "
                         "whose answers the paper's rules (think gate, boxed math) would score 0")
parser.add_argument("--k", type=positive_int,
                    help="samples per prompt, every benchmark (default 4; under m2rl each benchmark's paper K, else 4)")
parser.add_argument("--pass-k", default="", help="comma-separated k for pass@k, each at most every benchmark's K")
parser.add_argument("--limit", type=positive_int, help="first N prompts of each benchmark")
parser.add_argument("--temperature", type=non_negative_float, help="default: the protocol's (SAMPLING)")
parser.add_argument("--top-p", type=probability, help="default: the protocol's (SAMPLING)")
parser.add_argument("--top-k", type=non_negative_int, help="default: the protocol's (SAMPLING; 0: off)")
parser.add_argument("--max-new-tokens", type=positive_int, help="for every benchmark (default: each benchmark's own)")
add_engine_flag(parser, "generation")
add_engine_dtype_flag(parser)
parser.add_argument("--gpu-memory-utilization", type=probability, default=0.9,
                    help="vLLM: the share of each GPU its weights and KV cache may take (evaluation has the GPU to "
                         "itself, unlike the trainer's colocated engine)")
parser.add_argument("--tensor-parallel-size", type=positive_int, default=1,
                    help="vLLM: GPUs one engine shards the model over (its own worker processes)")
parser.add_argument("--no-thinking", action="store_true",
                    help="prompt in non-thinking mode (an empty think block after the generation prompt), as "
                         "train_grpo.py --no-thinking")
parser.add_argument("--batch-size", type=positive_int, default=64,
                    help="sequences per engine call (one cache part each)")
parser.add_argument("--seed", type=int, default=0, help="seeds the sampling (with what each engine call holds)")
parser.add_argument("--out", default="results", help="output directory (see Outputs above); a rerun into it resumes "
                                                     "from its cache")
parser.add_argument("--dry-run", action="store_true",
                    help="read every benchmark file and every model's config and tokenizer, print the plan and exit; "
                         "nothing generated or written")


def main(args):
    out = Path(args.out)
    models = model_names(label_pairs(args.models, "--models"))
    for key, value in zip(("temperature", "top_p", "top_k"), SAMPLING[args.protocol]):
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:  # every file is read before any model loads: a bad file fails in seconds
        benchmarks = load_benchmarks(listed(args.benchmarks), args.data_dir, label_pairs(args.path, "--path"),
                                     label_pairs(args.window, "--window"), args.template, args.seed, args.limit)
    except BenchmarkError as e:
        raise SystemExit(str(e)) from None
    ks = samples_per_prompt(list(benchmarks), args.k, args.protocol)
    pass_ks = [int(k) for k in args.pass_k.split(",") if k]
    if any(not 1 <= k <= min(ks.values()) for k in pass_ks):
        raise SystemExit(f"--pass-k {args.pass_k}: each k must be between 1 and every benchmark's K ({ks})")
    vllm_args = dict(dtype=args.engine_dtype, gpu_memory_utilization=args.gpu_memory_utilization,
                     tensor_parallel_size=args.tensor_parallel_size)
    models = {name: Model(where, args.engine, args.batch_size, vllm_args) for name, where in models.items()}
    for name, model in models.items():
        print(f"{name}: chat format {model.tokenizer.chat_format}")
    previous = out / "args.json"  # an earlier evaluation's has our --benchmarks; a trainer's run directory has not
    if out.exists() and any(out.iterdir()) and not (previous.is_file() and "benchmarks" in read_json(previous)):
        raise SystemExit(f"--out {out} exists and is not an earlier evaluation (no args.json with 'benchmarks'), and "
                         f"this run would overwrite its files: choose another --out")
    if args.dry_run:
        prompts = sum(len(loaded.records) for loaded in benchmarks.values())
        generations = sum(len(loaded.records) * ks[b] for b, loaded in benchmarks.items())
        print(f"plan: {len(models)} models x {len(benchmarks)} benchmarks ({prompts} prompts) x K {ks} = "
              f"{len(models) * generations} generations, engine {args.engine} -> {out}")
        return
    # Only now, every input checked, is --out touched: first the previous run's outputs of this run's names go, so
    # that whatever a failed run leaves beside its args.json is its own (the cache stays: it is keyed by settings).
    stale = [out / "results.json", out / "table.md", out / "plots" / "avg_at_k.png",
             *(out / "plots").glob("pass_at_*.png"),
             *(out / "samples" / name / f"{bench}.jsonl" for name in models for bench in benchmarks)]
    for path in stale:
        path.unlink(missing_ok=True)
    write_atomic(out / "args.json", json.dumps(vars(args), indent=2))
    results = {}
    with rewards.ScorePool() as pool:
        for name, model in models.items():
            for bench, loaded in benchmarks.items():
                results.setdefault(name, {})[bench] = evaluate(model, out, name, bench, loaded, pool, args, ks[bench],
                                                               pass_ks)
            model.close()  # before the next model's engine opens: one vLLM engine per process, the GPU to itself
    write_atomic(out / "results.json", json.dumps(results, indent=2))
    report = table(results, list(benchmarks), ks, pass_ks, {b: loaded.notes for b, loaded in benchmarks.items()})
    write_atomic(out / "table.md", report)
    plot(out / "plots", results, list(benchmarks), ks, pass_ks)
    print(report)


def samples_per_prompt(benchmarks: list[str], k: int | None, protocol: str) -> dict:
    """{benchmark: K}: --k for all where given, else the paper's K per benchmark under m2rl, else 4."""
    return {b: k or (BENCHMARKS[b].paper_k if protocol == "m2rl" else None) or 4 for b in benchmarks}


def model_names(models: dict) -> dict:
    """--models' names become directory names, so they must be plain."""
    for name in models:
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise SystemExit(f"--models {name}=...: a name is letters, digits, - _ . (it names a directory)")
    return models


class Model:
    """A model to sample from. Its engine starts only when a sample is missing from the cache."""

    def __init__(self, where: str, engine: str, batch_size: int, vllm_args: dict):
        self.where, self.kind, self.batch_size, self.vllm_args = where, engine, batch_size, vllm_args
        self.preset = where.removeprefix("preset:") if where.startswith("preset:") else None
        self.tokenizer = Tokenizer.from_dir(TINY_DIR if self.preset else where)
        config = preset_config(self.preset) if self.preset else Qwen3Config.from_dir(where)
        check_vocab(config, self.tokenizer.vocab_size, where)
        # names, sizes and times of the weight files: a checkpoint saved anew into the same directory gets a cache
        # of its own (a preset's random weights are fixed by its seed)
        self.weights = [] if self.preset else [[f.name, f.stat().st_size, f.stat().st_mtime_ns]
                                               for f in sorted(Path(where).glob("*.safetensors"))]

    @cached_property
    def engine(self):
        if self.preset:
            return NativeEngine(from_preset(self.preset), self.tokenizer, self.batch_size)
        return open_engine(self.where, self.kind, self.batch_size, **self.vllm_args)

    def close(self):
        if "engine" in vars(self):  # started: cached_property keeps it in the instance dict
            vars(self).pop("engine").close()


# ----------------------------------------------------------------------------------------------------------
# One model on one benchmark: generate what the cache lacks, score, measure


def evaluate(model: Model, out: Path, name: str, bench: str, loaded, pool, args, k: int, pass_ks) -> dict:
    records = loaded.records
    if not records:
        print(f"{name} {bench}: no prompts to evaluate")
        return {"prompts": 0, "k": k, "notes": loaded.notes}
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens or BENCHMARKS[bench].max_new_tokens,
                              temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed,
                              stop_token_ids=[model.tokenizer.im_end_id, model.tokenizer.pad_id])
    settings = {"model": model.where, "weights": model.weights, **vars(sampling)}
    if args.engine_dtype != "auto":  # other numerics, other samples; auto keeps the key its caches had before the flag
        settings["engine_dtype"] = args.engine_dtype
    cache = Cache(out / "cache" / name / bench, settings)
    samples = generate(model, bench, records, k, sampling, cache, enable_thinking=not args.no_thinking)
    ordered = [(r, j, samples[r.id, j]) for r in records for j in range(k)]  # (prompt, sample) order
    scores = pool.score([r for r, _, _ in ordered], [s.text for _, _, s in ordered], protocol=args.protocol)
    regrade = BENCHMARKS[bench].regrade
    if regrade:
        scores = [regrade(r, score) for (r, _, _), score in zip(ordered, scores)]
    write_atomic(out / "samples" / name / f"{bench}.jsonl", "".join(
        json.dumps({"id": r.id, "sample": j, "text": s.text, "finish_reason": s.finish_reason,
                    "tokens": len(s.response_ids), "reward": score.reward, "info": score.info}) + "\n"
        for (r, j, s), score in zip(ordered, scores)))
    by_prompt = [scores[i * k:(i + 1) * k] for i in range(len(records))]  # (n prompts, K)
    result = {**measure(records, by_prompt, pass_ks), "k": k, "notes": loaded.notes}
    print(f"{name} {bench}: Avg@{k} {result['avg']:.3f} ± {result['stderr']:.3f} ({len(records)} prompts)")
    return result


def generate(model: Model, bench: str, records, k: int, sampling: SamplingParams, cache, enable_thinking=True) -> dict:
    """{(record id, sample index): Sample} for every prompt and k samples, generating only what the cache lacks."""
    prompts = {r.id: model.tokenizer.encode_chat(r.messages, add_generation_prompt=True,
                                                 enable_thinking=enable_thinking) for r in records}
    samples = cache.read(prompts)
    todo = defaultdict(list)  # missing sample indices -> the records missing exactly those
    for r in records:
        missing = tuple(j for j in range(k) if (r.id, j) not in samples)
        if missing:
            todo[missing].append(r.id)
    with tqdm(total=sum(len(js) * len(ids) for js, ids in todo.items()), desc=f"generate {bench}",
              disable=not todo) as bar:
        for js, ids in todo.items():
            per_call = max(1, model.batch_size // len(js))
            for c in range(0, len(ids), per_call):
                chunk = ids[c:c + per_call]
                # The seed is a function of what the call holds, not of how far a run got: a resumed evaluation
                # draws the very samples the uninterrupted one would have.
                seed = zlib.crc32(f"{sampling.seed}/{bench}/{chunk[0]}/{js[0]}".encode())
                out = model.engine.generate([(rid, prompts[rid]) for rid in chunk], len(js),
                                            replace(sampling, seed=seed))
                slots = {rid: iter(js) for rid in chunk}  # the engine's n samples of a prompt take its missing slots
                new = {(s.record_id, next(slots[s.record_id])): s for s in out}
                cache.write(new)
                samples.update(new)
                bar.update(len(new))
    return samples


class Cache:
    """The generated samples of one model on one benchmark, in a directory per generation settings (model, weight
    files, sampling), so samples drawn differently never mix and coming back to earlier settings finds their
    samples again. One part file per engine call, each written whole (temp file, then rename): a run killed at any
    moment leaves only complete parts."""
    FIELDS = tuple(f.name for f in fields(Sample))  # a row: these and its index, "sample"; any other key is ignored

    def __init__(self, directory: Path, settings: dict):
        text = json.dumps(settings, sort_keys=True)
        self.dir = directory / hashlib.sha256(text.encode()).hexdigest()[:12]
        if not (self.dir / "settings.json").exists():
            write_atomic(self.dir / "settings.json", text)

    def read(self, prompts: dict) -> dict:
        """The cached samples of these prompts ({record id: prompt token ids}). A sample counts only for the very
        prompt it answered: after a change of data or template, the changed prompts are generated anew."""
        samples = {}
        for part in sorted(self.dir.glob("part-*.jsonl")):
            for _, row in read_jsonl(part):
                if prompts.get(row["record_id"]) == row["prompt_ids"]:
                    samples[row["record_id"], row["sample"]] = Sample(**{f: row[f] for f in self.FIELDS})
        return samples

    def write(self, samples: dict) -> None:
        n = len(list(self.dir.glob("part-*.jsonl")))
        write_atomic(self.dir / f"part-{n:06d}.jsonl", "".join(
            json.dumps({"sample": j, **{f: getattr(s, f) for f in self.FIELDS}}) + "\n"
            for (_, j), s in samples.items()))


# ----------------------------------------------------------------------------------------------------------
# Metrics


def measure(records, by_prompt: list[list], pass_ks: list[int]) -> dict:
    """by_prompt: each prompt's K Scores. Avg@K, pass@k and, for instruction following, IFEval's four levels."""
    k = len(by_prompt[0])
    result = avg_at_k([sum(s.reward for s in scores) / k for scores in by_prompt])
    for pk in pass_ks:
        result[f"pass@{pk}"] = avg_at_k([pass_at_k(k, sum(s.reward == 1.0 for s in scores), pk)
                                         for scores in by_prompt])
    if all(r.domain == "if" for r in records):
        result["if"] = if_levels(records, by_prompt)
    return result


def avg_at_k(per_prompt: list[float]) -> dict:
    """Mean of the per-prompt values and its standard error (sample std / sqrt(n))."""
    n = len(per_prompt)
    mean = sum(per_prompt) / n
    var = sum((x - mean) ** 2 for x in per_prompt) / (n - 1) if n > 1 else 0.0
    return {"avg": mean, "stderr": math.sqrt(var / n), "prompts": n}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that k of the n samples, c of them correct, drawn without replacement hold a correct one."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def if_levels(records, by_prompt) -> dict:
    """Prompt level: all instructions of a sample followed. Instruction level: followed / given over all samples.
    A sample whose check failed to run (info without verdicts) follows nothing."""
    levels = {}
    for mode in ("strict", "loose"):
        verdicts = [[s.info.get(mode) or [False] * len(r.verifier["instruction_id_list"]) for s in scores]
                    for r, scores in zip(records, by_prompt)]  # (n prompts, K, instructions)
        levels[f"prompt_{mode}"] = avg_at_k([sum(map(all, vs)) / len(vs) for vs in verdicts])
        followed = [sum(map(sum, vs)) / len(vs) for vs in verdicts]
        given = [len(r.verifier["instruction_id_list"]) for r in records]
        levels[f"instruction_{mode}"] = ratio(followed, given)
    return levels


def ratio(x: list[float], m: list[int]) -> dict:
    """R = sum(x) / sum(m) over prompts, with the delta-method standard error
    sqrt(sum((x_i - R m_i)^2) / (n (n-1))) / mean(m)."""
    n, r = len(x), sum(x) / sum(m)
    se = math.sqrt(sum((xi - r * mi) ** 2 for xi, mi in zip(x, m)) / (n * (n - 1))) / (sum(m) / n) if n > 1 else 0.0
    return {"avg": r, "stderr": se, "prompts": n}


# ----------------------------------------------------------------------------------------------------------
# Reports: the table, the plots


def table(results: dict, benchmarks: list[str], k: int | dict, pass_ks: list[int], notes: dict) -> str:
    """Benchmarks as rows, models as columns, in percent with standard errors; Avg. is the mean over the
    benchmarks every model has a number for. Then pass@k, the IF levels, and what the loaders left out.
    k: one K, or {benchmark: K}; where the Ks differ, each row names its own."""
    models = list(results)
    scored = [b for b in benchmarks if all("avg" in results[m][b] for m in models)]
    title, label = avg_title(benchmarks, k)
    sections = [grid(f"{title} (%)", models, [(label(b), [results[m][b] if b in scored else None for m in models])
                                              for b in benchmarks]
                     + [("Avg.", [{"avg": sum(results[m][b]["avg"] for b in scored) / len(scored)} if scored
                                  else None for m in models])])]
    for pk in pass_ks:
        sections.append(grid(f"pass@{pk} (%)", models, [(b, [results[m][b].get(f"pass@{pk}") for m in models])
                                                        for b in scored]))
    levels = [b for b in scored if "if" in results[models[0]][b]]
    if levels:
        sections.append(grid("IF levels (%)", models, [
            (f"{b} {level.replace('_', ' ')}", [results[m][b]["if"][level] for m in models])
            for b in levels for level in results[models[0]][b]["if"]]))
    lines = [f"- {b}: {note}" for b in benchmarks for note in notes[b]]
    lines += [f"- Avg. leaves out {b}: no prompts to score" for b in benchmarks if b not in scored]
    if lines:
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def avg_title(benchmarks: list[str], k: int | dict):
    """The Avg@K title and a row labeller: "Avg@16" and plain names for one K, "Avg@K" and "aime24 (K=16)" else."""
    ks = k if isinstance(k, dict) else dict.fromkeys(benchmarks, k)
    if len(set(ks.values())) == 1:
        return f"Avg@{ks[benchmarks[0]]}", lambda b: b
    return "Avg@K", lambda b: f"{b} (K={ks[b]})"


def grid(title: str, models: list[str], rows: list[tuple]) -> str:
    def cell(value):
        if value is None:
            return "n/a"
        return f"{100 * value['avg']:.1f}" + (f" ± {100 * value['stderr']:.1f}" if "stderr" in value else "")
    return markdown_table([title, *models], [[label, *map(cell, values)] for label, values in rows])


def plot(directory: Path, results: dict, benchmarks: list[str], k: int | dict, pass_ks: list[int]):
    """A grouped bar chart per metric: benchmarks along x, one bar per model, standard-error bars."""
    for metric, title, file in [(None, avg_title(benchmarks, k)[0], "avg_at_k.png")] + [
            (f"pass@{pk}", f"pass@{pk}", f"pass_at_{pk}.png") for pk in pass_ks]:
        values = {m: [(r[b].get(metric) if metric else r[b]) or {} for b in benchmarks] for m, r in results.items()}
        bar_chart(directory / file, f"{title} (%)", benchmarks, values)


def bar_chart(path: Path, title: str, labels: list[str], values: dict):
    fig = Figure(figsize=(max(6.0, 0.5 * len(labels) * (len(values) + 1)), 4.0))  # matplotlib's OO API: no pyplot
    ax = fig.subplots()
    width = 0.8 / len(values)
    for i, (model, cells) in enumerate(values.items()):
        xs = [x + (i - (len(values) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, [100 * c.get("avg", math.nan) for c in cells], width, label=model,
               yerr=[100 * c.get("stderr", 0.0) for c in cells], capsize=3)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        main(parse_args(parser))
    except (CheckpointError, FileNotFoundError) as e:  # a bad model directory: one line naming the file
        raise SystemExit(f"error: {e}") from None
