"""Data blends: which local files, how many samples of each, drawn how - a training mixture as a small JSON file,
realised by line index so that a 14M-sample blend is never in memory at once.

    python -m data.blend data/blends/m2rl_sft.json [--seed N] [--convert] [--out DIR]   # print (and write) the table

A blend file is JSON: the standard library reads it (no new dependency), and it has no implicit types (YAML reads
`no` as false); comments go in a `note` key. Unknown keys are errors, so a typo cannot pass silently:

    {"description": "what this mixture is", "seed": 0,
     "sources": [{"name": "science", "paths": ["$NEMOTRON_DATA/Nemotron-Science-v1/**/*.jsonl"],
                  "converter": "nemotron_sft", "domain": "science",
                  "method": "repeat", "times": 10, "samples": 2263340, "note": "free text"}, ...]}

paths      files or glob patterns (`**` recurses); `$VAR` is taken from the environment, and a relative path is
           relative to the blend file. Every pattern must match at least one file.
converter  how a line becomes a Record: "record" (the line is one, data/record.py), or a data/convert.py format,
           "nemotron_sft" (needs `domain`) or "nemotron_rl".
method     "sample"  draw `samples` lines without replacement (at most the source's line count)
           "all"     every line once
           "repeat"  every line `times` times; or, given only `samples` (at least the line count), every line
                     samples // lines times plus samples % lines lines drawn without replacement (upsampling)
samples    the sample count. Optional for "all" and for "repeat" with `times`: when given there, it must equal what
           the local files yield (lines, or times x lines), so a blend written for one copy of the data fails loudly
           on another instead of silently realising different counts.

Realising a blend (`realise`): each file is indexed - the byte offset of every non-blank line, 8 bytes a line,
never the lines - the draw is made on line numbers, and records are read back by seeking, file by file in sorted
offset order. A source's draw depends only on the blend's seed and the source's name, so adding a source leaves
the others' draws unchanged. A line drawn k times is converted once and yielded k times (same `id`). The realised
counts and shares per source are printed as a table and written next to a run (blend.md, blend.json); after
reading, the table adds the records kept and the lines the converter skipped (e.g. rows that use tools).

    from data.blend import load_blend, realise
    realised = realise(load_blend("data/blends/toy_sft.json"))   # index + draw: the counts, no record read yet
    for record in realised.records(): ...                        # streamed, source by source, in file order
    realised.read(item)                                          # one drawn line by seeking (train_sft's order)
    print(realised.table()); realised.save("runs/x")
"""
import argparse
import glob
import json
import os
import re
import zlib
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.convert import CONVERTERS as ROW_CONVERTERS
from data.convert import Skip
from data.record import Record, RecordError, json_line, parse_record
from files import write_atomic
from report import table
from rewards import DOMAINS

CONVERTERS = ("record", *ROW_CONVERTERS)
METHODS = ("sample", "all", "repeat")
BLEND_KEYS = ("description", "seed", "sources")
SOURCE_KEYS = ("name", "paths", "converter", "domain", "method", "samples", "times", "note")
ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blend", nargs="?", default=str(ROOT / "data/blends/toy_sft.json"))
    parser.add_argument("--seed", type=int, help="draw with this seed instead of the file's")
    parser.add_argument("--convert", action="store_true",
                        help="also read and convert every drawn line: adds the kept/dropped columns")
    parser.add_argument("--skip-bad", action="store_true", help="with --convert: count malformed lines, do not stop")
    parser.add_argument("--out", help="write blend.md and blend.json into this directory")
    args = parser.parse_args()
    try:
        realised = realise(load_blend(args.blend), args.seed)
        if args.convert:
            for _ in tqdm(realised.records(args.skip_bad), total=realised.total, unit="sample", desc="converting"):
                pass
    except (BlendError, RecordError) as e:
        raise SystemExit(f"error: {e}") from None
    print(realised.table())
    if args.out:
        realised.save(args.out)
        print(f"wrote {Path(args.out) / 'blend.md'} and blend.json")


# ---- the blend file -------------------------------------------------------------------------------------------

class BlendError(ValueError):
    """A blend that cannot be realised; the message names the blend file, the source entry and the key."""


@dataclass
class Source:
    name: str
    files: list[Path]        # the paths, variables and globs expanded
    converter: str           # one of CONVERTERS
    method: str              # one of METHODS
    samples: int | None      # the stated sample count (see the module docstring)
    times: int | None        # "repeat": how many times every line
    domain: str | None       # "nemotron_sft": the domain of the records
    where: str               # "FILE: sources[i] ('name')", for error messages


@dataclass
class Blend:
    seed: int
    sources: list[Source]
    description: str
    path: str                # the blend file, or what built it (e.g. "--mix")


def load_blend(path) -> Blend:
    """Read and validate a blend file; BlendError naming the entry and key when it is wrong."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BlendError(f"{path}: no such blend file (see data/blends/ for examples)") from None
    except json.JSONDecodeError as e:
        raise BlendError(f"{path}: not valid JSON ({e})") from None
    return parse_blend(obj, path.parent, str(path))


def parse_blend(obj, base: Path, where: str) -> Blend:
    """A blend from its JSON object; relative paths resolve against `base`. Also the way to build one in code."""
    if not isinstance(obj, dict):
        raise BlendError(f"{where}: a blend is a JSON object with keys {', '.join(BLEND_KEYS)}")
    check_keys(obj, BLEND_KEYS, where)
    seed, sources = obj.get("seed"), obj.get("sources")
    if not is_int(seed) or seed < 0:
        raise BlendError(f"{where}: key 'seed' must be a non-negative integer, got {seed!r}")
    if not isinstance(sources, list) or not sources:
        raise BlendError(f"{where}: key 'sources' must be a non-empty list of source entries")
    parsed = [parse_source(s, base, f"{where}: sources[{i}]") for i, s in enumerate(sources)]
    names = Counter(s.name for s in parsed)
    if max(names.values()) > 1:
        raise BlendError(f"{where}: source names must be unique (they seed the draws), "
                         f"repeated: {', '.join(n for n, k in names.items() if k > 1)}")
    return Blend(seed, parsed, obj.get("description", ""), where)


def parse_source(obj, base: Path, where: str) -> Source:
    if not isinstance(obj, dict):
        raise BlendError(f"{where}: a source entry is a JSON object, got {obj!r}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise BlendError(f"{where}: key 'name' must be a non-empty string, got {name!r}")
    where = f"{where} ({name!r})"
    check_keys(obj, SOURCE_KEYS, where)
    converter, method, domain = obj.get("converter"), obj.get("method"), obj.get("domain")
    samples, times = obj.get("samples"), obj.get("times")
    if converter not in CONVERTERS:
        raise BlendError(f"{where}: unknown converter {converter!r}; use one of {', '.join(CONVERTERS)}")
    if (converter == "nemotron_sft") != (domain is not None):
        raise BlendError(f"{where}: key 'domain' is needed with converter 'nemotron_sft' (its files do not say "
                         f"which domain they are) and only there (other lines carry their domain)")
    if domain is not None and domain not in DOMAINS:
        raise BlendError(f"{where}: key 'domain' is {domain!r}; use one of {', '.join(DOMAINS)}")
    if method not in METHODS:
        raise BlendError(f"{where}: unknown method {method!r}; use one of {', '.join(METHODS)}")
    if samples is not None and (not is_int(samples) or samples < 0):
        raise BlendError(f"{where}: key 'samples' must be a non-negative integer, got {samples!r}")
    if times is not None and (not is_int(times) or times < 1 or method != "repeat"):
        raise BlendError(f"{where}: key 'times' must be a positive integer, and only with method 'repeat', "
                         f"got {times!r}")
    if method == "sample" and samples is None:
        raise BlendError(f"{where}: method 'sample' needs key 'samples' (how many lines to draw)")
    if method == "repeat" and samples is None and times is None:
        raise BlendError(f"{where}: method 'repeat' needs key 'times' (every line k times) or 'samples' (upsample)")
    return Source(name, expand_paths(obj.get("paths"), base, where), converter, method, samples, times, domain, where)


def check_keys(obj: dict, allowed, where: str) -> None:
    unknown = [key for key in obj if key not in allowed]
    if unknown:
        raise BlendError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(allowed)}")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expand_paths(paths, base: Path, where: str) -> list[Path]:
    """Each path: $VARIABLES from the environment, relative to `base`, globs expanded (sorted)."""
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise BlendError(f"{where}: key 'paths' must be a non-empty list of file paths or glob patterns, "
                         f"got {paths!r}")
    files = []
    for pattern in paths:
        for var in re.findall(r"\$\{?(\w+)\}?", pattern):
            if var not in os.environ:
                raise BlendError(f"{where}: path {pattern!r} uses ${var}, which is not set: export {var}=<the "
                                 f"directory holding your local copy>")
        pattern = os.path.normpath(os.path.join(base, os.path.expandvars(pattern)))  # an absolute path stays itself
        matched = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not matched:
            raise BlendError(f"{where}: missing file: nothing matches {pattern!r}; fix key 'paths', or put the "
                             f"files there")
        files += matched
    return files


# ---- indexing and drawing -------------------------------------------------------------------------------------

@dataclass
class LineIndex:
    """Where every non-blank line of a file starts - 8 bytes a line, never the lines themselves."""
    path: Path
    offsets: np.ndarray      # (lines,) int64 byte offsets of the non-blank lines
    blanks: np.ndarray       # int64 byte offsets of the blank lines: errors and ids use the file's own line numbers

    def line_number(self, i: int) -> int:
        """1-based line number in the file of the i-th non-blank line."""
        return i + 1 + int(np.searchsorted(self.blanks, self.offsets[i]))


def index_lines(path: Path) -> LineIndex:
    # A plain loop over the binary file: about 2M lines/s and 16 MB for 2M lines (bench/blend_index.py), faster here
    # than a numpy newline search over chunks (2.1 s and 80 MB for the same file, measured once).
    offsets, blanks = array("q"), array("q")
    position = 0
    with open(path, "rb") as f:
        for line in f:
            (offsets if line.strip() else blanks).append(position)
            position += len(line)
    return LineIndex(Path(path), np.frombuffer(offsets, np.int64), np.frombuffer(blanks, np.int64))


@dataclass
class Draw:
    """A source's realised share. Every method is "each line `passes` times, plus the `extra` lines once more":
    sample N = (0, N drawn lines); all = (1, none); repeat k = (k, none); repeat to N = (N // lines, N % lines drawn).
    Line numbers run over the source's files end to end."""
    source: Source
    files: list[LineIndex]
    passes: int
    extra: np.ndarray        # sorted int64 line numbers, drawn without replacement

    @property
    def lines(self) -> int:
        return sum(len(f.offsets) for f in self.files)

    @property
    def samples(self) -> int:
        return self.passes * self.lines + len(self.extra)


def draw(source: Source, files: list[LineIndex], seed: int) -> Draw:
    lines, stated, where = sum(len(f.offsets) for f in files), source.samples, source.where
    if source.method == "sample":
        if stated > lines:
            raise BlendError(f"{where}: method 'sample' draws {stated:,} lines without replacement but the files "
                             f"hold {lines:,}; use method 'repeat' with 'samples' to upsample")
        passes, n_extra = 0, stated
    elif source.method == "all":
        passes, n_extra = 1, 0
    elif source.times is not None:
        passes, n_extra = source.times, 0
    else:
        if stated < lines or lines == 0:
            raise BlendError(f"{where}: method 'repeat' with 'samples' upsamples: {stated:,} must be at least the "
                             f"files' {lines:,} lines (and they must hold some); use method 'sample' to draw fewer")
        passes, n_extra = divmod(stated, lines)
    if stated is not None and passes * lines + n_extra != stated:
        raise BlendError(f"{where}: the blend states {stated:,} samples, but {source.method}"
                         f"{f' x{passes}' if source.times else ''} of these files gives {passes * lines + n_extra:,} "
                         f"({lines:,} lines in {len(files)} files): these are not the files it was written for - "
                         f"fix key 'paths', or remove key 'samples'")
    # Seeded by the blend's seed and the source's name (crc32: stable across runs, unlike hash()).
    rng = np.random.default_rng([seed, zlib.crc32(source.name.encode())])
    extra = np.sort(rng.choice(lines, n_extra, replace=False)) if n_extra else np.zeros(0, np.int64)
    return Draw(source, files, passes, extra)


def realise(blend: Blend, seed: int | None = None) -> "Realised":
    """Index every source and draw its lines (the blend's seed unless `seed` is given). Reads no record yet."""
    seed = blend.seed if seed is None else seed
    files = {p: None for s in blend.sources for p in s.files}  # a file shared by two sources is indexed once
    with tqdm(total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True, desc="indexing") as bar:
        for p in files:
            files[p] = index_lines(p)
            bar.update(p.stat().st_size)
    return Realised(blend, seed, [draw(s, [files[p] for p in s.files], seed) for s in blend.sources])


# ---- the realised blend: records, table ------------------------------------------------------------------------

class Realised:
    """The drawn lines of every source; `records()` streams them, `table()` / `save()` report the counts.

    The drawn lines are numbered 0 .. items-1, source by source in file order (the order records() reads them): a
    source read whole at least once (passes >= 1) has every line as an item, a sampled one only its drawn lines. An
    item stands for `copies()` samples. `lines()` reads each item once, or every parts-th one (one rank's share), and
    `read(item)` reads one by seeking, so a trainer can visit the samples in any order without holding them."""

    def __init__(self, blend: Blend, seed: int, draws: list[Draw]):
        self.blend, self.seed, self.draws = blend, seed, draws
        self.total = sum(d.samples for d in draws)
        self.first_item = np.cumsum([0] + [d.lines if d.passes else len(d.extra) for d in draws])  # (sources + 1,)
        self.items = int(self.first_item[-1])
        # filled by lines(), per source, in samples: kept by domain, and dropped by reason ("skipped: uses tools")
        self.kept: list[Counter] | None = None
        self.dropped: list[Counter] | None = None

    def copies(self) -> np.ndarray:
        """(items,) int32: how many samples each item is; they sum to `total`."""
        return np.concatenate([d.passes + np.bincount(d.extra, minlength=d.lines) if d.passes
                               else np.ones(len(d.extra), np.int64) for d in self.draws]).astype(np.int32)

    def records(self, skip_bad: bool = False):
        """Yield the blend's records, source by source, each source's lines in file order, a line drawn k times
        k times in a row (shuffle downstream). A malformed line raises RecordError naming file, line and source;
        with skip_bad it is counted and skipped. Lines the converter skips (rows with tools, ...) are counted, as in
        data/convert.py."""
        for _, k, record in self.lines(skip_bad):
            if record is not None:
                for _ in range(k):
                    yield record

    def lines(self, skip_bad: bool = False, part: int = 0, parts: int = 1):
        """Yield (item, copies, record) for the items with item % parts == part, in order, each line read and
        converted once; record is None when the line is dropped. Fills `kept` and `dropped` for those items."""
        self.kept, self.dropped = [Counter() for _ in self.draws], [Counter() for _ in self.draws]
        copies = self.copies()
        for d, first_item, kept, dropped in zip(self.draws, self.first_item, self.kept, self.dropped):
            drawn = np.arange(d.lines) if d.passes else d.extra  # (this source's items,) their line numbers
            first = 0  # the source's line number of this file's first line
            for index in d.files:
                lo, hi = np.searchsorted(drawn, [first, first + len(index.offsets)])
                with open(index.path, "rb") as f:
                    for j in range(lo + (part - first_item - lo) % parts, hi, parts):
                        item = int(first_item + j)
                        record = read_line(d, index, int(drawn[j]) - first, f, skip_bad)
                        if isinstance(record, str):
                            dropped[record] += int(copies[item])
                            record = None
                        else:
                            kept[record.domain] += int(copies[item])
                        yield item, int(copies[item]), record
                first += len(index.offsets)

    def read(self, item: int) -> Record | None:
        """One item, read by seeking; None when the converter skips its line."""
        s = int(np.searchsorted(self.first_item, item, "right")) - 1
        d, line = self.draws[s], item - int(self.first_item[s])
        line = line if d.passes else int(d.extra[line])  # the source's line number
        for index in d.files:
            if line < len(index.offsets):
                break
            line -= len(index.offsets)
        with open(index.path, "rb") as f:
            record = read_line(d, index, line, f, skip_bad=False)
        return None if isinstance(record, str) else record

    def table(self) -> str:
        """Markdown: per source its domain, method, lines, samples and share; once read, the kept and dropped."""
        head = ["source", "domain", "converter", "method", "lines", "samples", "share"]
        rows = [[d.source.name, d.source.domain or "(per line)", d.source.converter, method(d), f"{d.lines:,}",
                 f"{d.samples:,}", share(d.samples, self.total)] for d in self.draws]
        rows.append(["total", "", "", "", f"{sum(d.lines for d in self.draws):,}", f"{self.total:,}",
                     share(self.total, self.total)])
        notes = []
        if self.kept is not None:
            kept, dropped = self.kept + [sum(self.kept, Counter())], self.dropped + [sum(self.dropped, Counter())]
            head += ["kept", "dropped"]
            rows = [row + [f"{k.total():,}", f"{x.total():,}"] for row, k, x in zip(rows, kept, dropped)]
            notes = ["", "kept by domain: " + ", ".join(f"{domain} {n:,} ({share(n, kept[-1].total())})"
                                                       for domain, n in sorted(kept[-1].items()))]
            notes += [f"dropped from {d.source.name}: {reason} {n:,}"
                      for d, x in zip(self.draws, dropped) for reason, n in sorted(x.items())]
        title = f"blend {self.blend.path} (seed {self.seed}): {self.total:,} samples\n\n"
        return title + table(head, rows, align="llll" + "r" * (len(head) - 4)) + "".join(f"{n}\n" for n in notes)

    def to_json(self) -> dict:
        sources = []
        for i, d in enumerate(self.draws):
            s = d.source
            sources.append({"name": s.name, "domain": s.domain, "converter": s.converter, "method": s.method,
                            "times": s.times, "files": [str(f.path) for f in d.files], "lines": d.lines,
                            "passes": d.passes, "extra": len(d.extra), "samples": d.samples,
                            "share": d.samples / self.total if self.total else 0.0})
            if self.kept is not None:
                sources[-1] |= {"kept": dict(sorted(self.kept[i].items())),
                                "dropped": dict(sorted(self.dropped[i].items()))}
        return {"blend": self.blend.path, "description": self.blend.description, "seed": self.seed,
                "total": self.total, "sources": sources}

    def save(self, out_dir) -> None:
        """blend.md (the table) and blend.json (counts, files, seed), each written atomically."""
        write_atomic(Path(out_dir) / "blend.md", self.table())
        write_atomic(Path(out_dir) / "blend.json", json.dumps(self.to_json(), indent=2) + "\n")


def read_line(d: Draw, index: LineIndex, i: int, f, skip_bad: bool) -> Record | str:
    """Line i of index's file (open as f) as a Record, or why it is dropped: "skipped: <the converter's reason>",
    or, with skip_bad, "bad: <key>". A malformed line otherwise raises RecordError naming file, line and source."""
    f.seek(index.offsets[i])  # forward, mostly inside the read buffer: no system call
    try:
        return to_record(d.source, f.readline(), index, i)
    except Skip as e:
        return f"skipped: {e}"
    except RecordError as e:
        if skip_bad:
            return f"bad: {e.key}"
        message = f"{index.path}:{index.line_number(i)}: {e} (blend source {d.source.name!r})"
        raise RecordError(e.key, f"{message} - fix the line, or pass --skip-bad") from None


def to_record(source: Source, line: bytes, index: LineIndex, i: int) -> Record:
    """One drawn line -> a validated Record, through the source's converter."""
    row = json_line(line)
    if source.converter == "record":
        return parse_record(row)
    # as data/convert.py: a Nemotron row's uuid is its id (the file and line otherwise), the file its default source
    obj = {"id": str(row.get("uuid") or f"{index.path.stem}:{index.line_number(i)}"), "source": index.path.name}
    return parse_record(obj | ROW_CONVERTERS[source.converter](row, source.domain))


def method(d: Draw) -> str:
    """The table's method column: "sample", "all", "repeat x10", or "repeat x2.5" for repeat to a count."""
    return d.source.method if d.source.method != "repeat" else f"repeat x{d.source.times or d.samples / d.lines:.4g}"


def share(n: int, total: int) -> str:
    return f"{100 * n / total:.2f}%" if total else "-"


if __name__ == "__main__":
    main()
