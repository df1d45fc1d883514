r"""gains: whose gains a combined model keeps (Fig. 5), from evaluate.py's samples/<model>/<benchmark>.jsonl.
  acc_M(i) = mean reward of model M's samples of item i;  gain_M(i) = max(acc_M(i) − acc_sft(i), 0)
  union of the single-task gains g(i) = max_e gain_e(i); consistency of a combined model C (RL-multi, a merge,
  MT-OPD) = cos(g, gain_C) over the items of every benchmark, and per benchmark (null where either vector is 0).
"""
from pathlib import Path

import torch

from analysis.evaluated import read_samples
from report import bar_chart, fmt, table


def gains(eval_dir: str, sft: str, experts: list, combined: list, benchmarks: list | None,
          out: Path) -> tuple[dict, str]:
    """The gain consistency of each combined model with the union of the experts' gains over the SFT model, on the
    benchmarks given (default: every one evaluated for `sft`), from evaluate.py's --out `eval_dir`: the report and its
    Markdown section; the plot goes to out/plots."""
    samples = Path(eval_dir) / "samples"
    if benchmarks is None:
        benchmarks = sorted(p.stem for p in (samples / sft).glob("*.jsonl"))
        if not benchmarks:
            raise SystemExit(f"{samples / sft}: no benchmark evaluated for the SFT model {sft!r}; run "
                             f"evaluate.py --models {sft}=DIR ... --out {eval_dir}, or pass --eval/--sft")
    models = [sft, *experts, *combined]
    acc = {}  # model -> benchmark -> item -> accuracy
    for m in models:
        for b in benchmarks:
            per_item = {i: sum(r) / len(r) for i, r in read_samples(samples / m / f"{b}.jsonl").items()}
            ref = acc.get(sft, {}).get(b, per_item)
            if set(per_item) != set(ref):
                missing, extra = sorted(set(ref) - set(per_item)), sorted(set(per_item) - set(ref))
                raise SystemExit(f"{samples / m / f'{b}.jsonl'}: its items differ from the SFT model's ({len(missing)} "
                                 f"missing, e.g. {missing[:3]}; {len(extra)} extra, e.g. {extra[:3]}): evaluate every "
                                 f"model on the same prompts (same --limit and data)")
            acc.setdefault(m, {})[b] = per_item
    items = {b: list(acc[sft][b]) for b in benchmarks}
    gain = {m: {b: torch.tensor([max(acc[m][b][i] - acc[sft][b][i], 0.0) for i in items[b]], dtype=torch.float64)
                for b in benchmarks} for m in models[1:]}
    union = {b: torch.stack([gain[e][b] for e in experts]).amax(0) for b in benchmarks}

    def over(per_benchmark):  # each benchmark, and all items of every benchmark together
        return {**per_benchmark, "all": torch.cat(list(per_benchmark.values()))}

    union_all = over(union)
    report = {"sft": sft, "experts": experts, "combined": combined, "benchmarks": benchmarks,
              "items": {b: len(items[b]) for b in benchmarks},
              "accuracy": {m: {b: sum(acc[m][b].values()) / len(items[b]) for b in benchmarks} for m in models},
              "consistency": {c: {b: cosine(union_all[b], g) for b, g in over(gain[c]).items()} for c in combined},
              "gained_items": {"union": {b: int((g > 0).sum()) for b, g in union_all.items()},
                               **{m: {b: int((g > 0).sum()) for b, g in over(gain[m]).items()} for m in models[1:]}}}
    columns = [*benchmarks, "all"]
    bar_chart(out / "plots" / "gains.png", "gain consistency: cos(union of single-task gains, model's gain)", columns,
              {c: [report["consistency"][c][b] for b in columns] for c in combined}, "cosine")
    consistency, gained = report["consistency"], report["gained_items"]
    rows = [[c, *(f"{fmt(consistency[c][b])} ({gained[c][b]})" for b in columns)] for c in combined]
    return report, "\n".join([
        f"## Gain consistency against {sft}", "",
        f"gain(i) = max(acc(i) − acc_{sft}(i), 0) per item; union = max over {', '.join(experts)}; cosine "
        "between the union and each model's gain (items gained in parentheses):", "",
        table(["model", *columns], rows + [["union", *(f"({gained['union'][b]})" for b in columns)]])])


def cosine(a: torch.Tensor, b: torch.Tensor):
    na, nb = a.norm(), b.norm()
    return (a @ b / (na * nb)).item() if na > 0 and nb > 0 else None
