"""Peak memory of train_sft.py as its data grows: the same few steps on N and on 10 x N records.

    python bench/sft_memory.py [--records 2000] [--documents 200] [--script PATH] [--out DIR]

The records are the toy SFT split's, cycled under fresh ids up to the count (--data files of N and 10 x N lines).
Each run is `python train_sft.py` (tiny preset, one process, default rows of 512 tokens, 8 rows a step) with
--epochs chosen so that it trains on the same --documents documents, so the steps are the same and only the size
of the data set differs. Reported per run: the peak RSS of the process (ru_maxrss from os.wait4, the kernel's
high-water mark, VmHWM), its steps and wall time. A streaming trainer holds a few ints per record (token counts,
the epoch's order), so 10x the records should move its peak by well under a megabyte here; one that tokenises
every record into memory grows with the data. --script measures another train_sft.py, e.g. an older commit's
(`git archive <commit> | tar -x -C /tmp/old`, then --script /tmp/old/train_sft.py).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/sft_memory.py`
from data.record import load_records, write_records  # noqa: E402
from files import write_atomic  # noqa: E402


def write_data(path: Path, n: int) -> None:
    toy = [r for p in sorted((ROOT / "data/toy/sft").glob("*.jsonl")) for r in load_records(p)]
    write_records(path, (replace(toy[i % len(toy)], id=f"{toy[i % len(toy)].id}-{i // len(toy)}") for i in range(n)))


def run(script: Path, data: Path, out: Path, epochs: float) -> dict:
    """One SFT run in a child process: its peak RSS, steps and seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), "--data", str(data), "--out", str(out), "--epochs",
                             repr(epochs)], cwd=script.parent, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage, not the sum over this process's children
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench/sft_memory.py: {script} on {data} failed:\n{stderr[-3000:]}")
    steps = (out / "metrics.jsonl").read_text().count("\n")
    return dict(peak_mb=usage.ru_maxrss / 1024, steps=steps, seconds=time.perf_counter() - start)  # Linux: kB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="N: the small data set (the large one is 10 x N)")
    parser.add_argument("--documents", type=int, default=200, help="documents each run trains on")
    parser.add_argument("--script", type=Path, default=ROOT / "train_sft.py", help="the train_sft.py to measure")
    parser.add_argument("--out", type=Path, help="directory for sft_memory.json (default: print only)")
    args = parser.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.records, 10 * args.records):
            data = Path(tmp) / f"sft_{n}.jsonl"
            write_data(data, n)
            # int(epochs * n) documents: the half keeps float rounding from losing one
            rows[n] = run(args.script.resolve(), data, Path(tmp) / f"run_{n}", (args.documents + 0.5) / n)

    print(f"{args.script}: {args.documents} documents per run")
    print(f"{'records':>8} {'steps':>6} {'peak MB':>8} {'seconds':>8}")
    for n, r in rows.items():
        print(f"{n:8,} {r['steps']:6} {r['peak_mb']:8.1f} {r['seconds']:8.1f}")
    small, large = rows.values()
    print(f"10x the records: peak {large['peak_mb'] - small['peak_mb']:+.1f} MB "
          f"({large['peak_mb'] / small['peak_mb']:.3f}x)")
    if args.out:
        write_atomic(args.out / "sft_memory.json",
                     json.dumps(dict(script=str(args.script), documents=args.documents, rows=rows), indent=2))


if __name__ == "__main__":
    main()
