"""Peak memory and time of indexing a 2-million-line JSONL file for a blend, against holding its lines.

    python bench/blend_index.py [--lines 2000000] [--sample 100000] [--out DIR]

Writes a generated file of --lines toy-shaped records (about 125 bytes each), then runs each variant in a fresh
process and reports the growth of its peak RSS (ru_maxrss, the kernel's high-water mark) over the process after
its imports (and the verifiers' imports), and the wall time:
  index      data.blend.index_lines: the byte offset of every line (int64), never the lines
  readlines  f.readlines(): the lines themselves, what loading the file would cost at the least
  stream     realise a blend drawing --sample lines of the file at random, then read them back as Records
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/blend_index.py`
from data.blend import index_lines, parse_blend, realise  # noqa: E402
from data.record import parse_record  # noqa: E402
from files import write_atomic  # noqa: E402

VARIANTS = ("index", "readlines", "stream")


def write_file(path: Path, lines: int) -> None:
    with open(path, "w") as f:
        for i in range(lines):
            f.write(json.dumps({"id": f"r{i}", "domain": "math", "messages": [{"role": "user", "content":
                                f"What is {i} + 7?"}], "verifier": {"answer": str(i + 7)}}) + "\n")


def run_variant(variant: str, path: Path, sample: int) -> dict:
    """In the child process: one variant, its peak RSS growth and time."""
    with open(path) as f:  # validating a first record imports the verifiers (math-verify: ~40 MB): not the blend's
        parse_record(json.loads(f.readline()))
    before = peak_rss_bytes()
    start = time.perf_counter()
    if variant == "index":
        n = len(index_lines(path).offsets)
    elif variant == "readlines":
        with open(path, "rb") as f:
            n = len(f.readlines())
    else:
        blend = parse_blend({"seed": 0, "sources": [{"name": "bench", "paths": [str(path)], "converter": "record",
                                                     "method": "sample", "samples": sample}]}, path.parent, "bench")
        n = sum(1 for _ in realise(blend).records())
    return dict(items=n, seconds=time.perf_counter() - start, peak_mb=(peak_rss_bytes() - before) / 2**20)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--sample", type=int, default=100_000, help="lines drawn by the stream variant")
    parser.add_argument("--out", type=Path, help="directory for blend_index.json (default: print only)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return print(json.dumps(run_variant(args.variant, args.file, args.sample)))

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.jsonl"
        write_file(path, args.lines)
        size_mb = path.stat().st_size / 2**20
        for variant in VARIANTS:
            child = subprocess.run([sys.executable, __file__, "--variant", variant, "--file", str(path),
                                    "--sample", str(args.sample)], capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"bench/blend_index.py: the {variant} run failed:\n{child.stderr}")
            rows[variant] = json.loads(child.stdout.splitlines()[-1])

    print(f"file: {args.lines:,} lines, {size_mb:.0f} MB")
    print(f"{'variant':10} {'items':>10} {'peak MB':>8} {'bytes/line':>10} {'seconds':>8}")
    for variant, r in rows.items():
        print(f"{variant:10} {r['items']:10,} {r['peak_mb']:8.1f} {r['peak_mb'] * 2**20 / args.lines:10.1f} "
              f"{r['seconds']:8.2f}")
    print(f"indexing holds {rows['index']['peak_mb'] / size_mb:.1%} of the file in memory; "
          f"readlines / index peak: {rows['readlines']['peak_mb'] / rows['index']['peak_mb']:.1f}x")
    if args.out:
        write_atomic(args.out / "blend_index.json",
                     json.dumps(dict(lines=args.lines, file_mb=size_mb, rows=rows), indent=2))


if __name__ == "__main__":
    main()
