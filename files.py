"""Files written whole or not at all, and JSON Lines read line by line: the one writer and the one reader every
script and module uses.

    write_atomic(path, data)        str, bytes, or an iterable of str chunks (streamed): a temporary, then a rename
    read_jsonl(path, bad=None, torn_tail=False) -> (line number, object), ...; JSONLError names file and line
    json_object(line) -> dict       one line, for readers that seek to their lines (data/blend.py, data/convert.py)
    remove_stale_temps(directory)   the temporaries of writers that were killed

Temporaries carry their writer's host and pid, so the next writer can tell a killed run's leftovers (a killed merge
leaves a whole model) from a live writer's: `.NAME.m2rl-PID-TAG@HOST.tmp`. The host, because on a shared filesystem
another machine's pid means nothing here.
"""
import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterable

HOST = socket.gethostname()
TEMP = re.compile(r"\.(.+)\.m2rl-(\d+)-(\w+)@(.+)\.tmp")


def temp_path(path: Path, tag: str) -> Path:
    """Beside `path` (the same directory, so that os.replace onto it is atomic), hidden, named for this writer."""
    return path.with_name(f".{path.name}.m2rl-{os.getpid()}-{tag}@{HOST}.tmp")


def write_atomic(path: Path, data: str | bytes | Iterable[str]):
    """A file written whole or not at all: a temporary file in the same directory, renamed onto `path`. An iterable
    of chunks is written as it streams (a data set larger than memory); if it raises, the old file stays and the
    temporary goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, "file")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines([data] if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: Path):
    """Remove the temporaries in `directory` whose writer, on this host, is dead — but a previous output that
    model.py's _replace_dir had moved aside, killed before the new one took its place, goes back to its name."""
    for path in directory.glob(".*.m2rl-*.tmp"):
        match = TEMP.fullmatch(path.name)
        if match and match[4] == HOST:
            name, pid, tag = match[1], int(match[2]), match[3]
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                if tag == "old" and not (directory / name).exists():
                    path.rename(directory / name)
                elif path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            except PermissionError:
                pass  # alive, another user's


class JSONLError(ValueError):
    """A line that is not a JSON object. `key` says how: "json" (not JSON) or "line" (JSON, not an object); readers
    that skip bad lines count them by it (data/record.py's RecordError keys by the record's key the same way)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def json_object(line: str | bytes) -> dict:
    """One JSON Lines line -> its object, or JSONLError."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise JSONLError("json", f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise JSONLError("line", f"a line must hold a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path, bad: list | None = None, torn_tail: bool = False):
    """Yield (line number, object) for each non-empty line of a JSON Lines file, as it streams. A line that is not a
    JSON object raises JSONLError "FILE:LINE: ..."; with a list as `bad`, the error is appended to it and the line
    skipped. With torn_tail, a last line that is not JSON is dropped, and said so: a writer killed mid-line (a full
    disk), or one still writing it, leaves such a line (metrics.jsonl)."""
    with open(path, encoding="utf-8") as f:
        torn, torn_at = None, 0  # a line that did not parse, dropped if no line follows it
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if torn:
                raise torn
            try:
                yield n, json_object(line)
            except JSONLError as e:
                error = JSONLError(e.key, f"{path}:{n}: {e}")
                if torn_tail and e.key == "json":
                    torn, torn_at = error, n
                elif bad is None:
                    raise error from None
                else:
                    bad.append(error)
        if torn:
            print(f"{path}:{torn_at}: dropped a torn last line (its writer died mid-write, or is still writing it)")
