"""evaluate.py's per-sample output, samples/<model>/<benchmark>.jsonl (a line per sample: id, sample, text, reward,
...), as the analyses read it back."""
from pathlib import Path

from files import JSONLError, read_jsonl


def read_samples(path: Path) -> dict:
    """evaluate.py's samples/<model>/<benchmark>.jsonl -> {item id: [each sample's reward]}."""
    rewards = {}
    for where, row in evaluated_rows(path, (("id", str), ("sample", int), ("reward", (int, float)))):
        item = rewards.setdefault(row["id"], {})
        if row["sample"] in item:
            raise SystemExit(f"{where}: sample {row['sample']} of item {row['id']!r} appears twice")
        item[row["sample"]] = float(row["reward"])
    return {i: list(s.values()) for i, s in rewards.items()}


def average(per_item: dict) -> float:
    """Avg@K: the mean over items of each item's mean reward."""
    return sum(sum(r) / len(r) for r in per_item.values()) / len(per_item)


def evaluated_rows(path: Path, fields):
    """(path:line, row) for each line of evaluate.py's samples/<model>/<benchmark>.jsonl. Every line needs the
    `fields` ((key, type), ...); any other key is ignored, so evaluate.py may add more."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: evaluate the model on the benchmark first (evaluate.py --models "
                         f"{path.parent.name}=DIR --benchmarks {path.stem} --out {path.parent.parent.parent})")
    try:
        for n, row in read_jsonl(path):
            for key, kind in fields:
                if key not in row:
                    raise SystemExit(f"{path}:{n}: key {key!r} missing; evaluate.py writes "
                                     f"{', '.join(k for k, _ in fields)} on every line: re-run it for this model")
                if not isinstance(row[key], kind) or isinstance(row[key], bool):
                    raise SystemExit(f"{path}:{n}: key {key!r} is {row[key]!r}, expected {kind}")
            yield f"{path}:{n}", row
    except JSONLError as e:
        raise SystemExit(f"{e}; re-run evaluate.py for this model") from None
