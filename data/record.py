"""The Record: one training/eval item, one JSON object per line (see docs/data.md, "The record"), and its file format.

    read_records(path, bad=None)   stream a JSONL file of records, each validated
    load_records(path, skip_bad=False) -> list[Record]
    write_records(path, records)   atomically (files.write_atomic)

A line is valid when it is a JSON object with exactly the Record's keys: `id` (non-empty, unique in the file),
`domain` (one of rewards.DOMAINS), `messages` (the prompt: chat messages ending with a user turn), `verifier` (the
domain's fields, checked by rewards.validate), and optionally `response` ({"content", "reasoning_content"}, the
SFT target) and `source`. An SFT-only record (a response, and no gold to score it by) carries `verifier: {}`.
A malformed line raises RecordError naming the file, the line and the key; with skip_bad it is counted and skipped.
Every converter produces exactly this, and nothing downstream reads a foreign format.
"""
import json
import sys
from collections import Counter
from dataclasses import dataclass, fields

import rewards
from files import JSONLError, json_object, read_jsonl, write_atomic

ROLES = ("system", "user", "assistant")


@dataclass
class Record:
    id: str
    domain: str            # one of rewards.DOMAINS; selects the verifier in rewards/
    messages: list[dict]   # the prompt as chat messages: [{"role": ..., "content": ...}, ...]
    verifier: dict         # the domain's fields: gold answer / tests / options + answer / instruction ids + kwargs
    response: dict | None = None  # SFT target: {"content": ..., "reasoning_content": ...}
    source: str | None = None


KEYS = tuple(f.name for f in fields(Record))
REQUIRED = KEYS[:4]


class RecordError(JSONLError):
    """A malformed record. `key` is what was wrong (a Record key, or the line's: "json", "line"): skip_bad counts by
    it."""


def json_line(line) -> dict:
    """One JSONL line -> its object, or RecordError."""
    try:
        return json_object(line)
    except JSONLError as e:
        raise RecordError(e.key, str(e)) from None


def parse_record(obj: dict) -> Record:
    """A JSON object -> a validated Record, or RecordError naming the offending key."""
    for key in obj:
        if key not in KEYS:
            raise RecordError(key, f"unknown key {key!r}; a record has {', '.join(KEYS)}")
    for key in REQUIRED:
        if key not in obj:
            raise RecordError(key, f"missing key {key!r}")
    record = Record(**obj)
    if not isinstance(record.id, str) or not record.id:
        raise RecordError("id", f"key 'id' must be a non-empty string, got {record.id!r}")
    if record.domain not in rewards.DOMAINS:
        raise RecordError("domain", f"key 'domain' is {record.domain!r}; it must be one of "
                                    f"{', '.join(rewards.DOMAINS)}")
    check_messages(record.messages)
    if record.response is not None:
        check_response(record.response)
    if record.source is not None and not isinstance(record.source, str):
        raise RecordError("source", f"key 'source' must be a string or absent, got {record.source!r}")
    if record.verifier != {} or record.response is None:  # an empty verifier only on an SFT-only record
        try:
            rewards.validate(record)
        except ValueError as e:
            raise RecordError("verifier", f"key 'verifier': {e}") from None
    return record


def check_messages(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise RecordError("messages", "key 'messages' must be a non-empty list of chat messages")
    for i, m in enumerate(messages):
        where = f"key 'messages' [{i}]"
        # reasoning_content: an earlier assistant turn may keep it (the Qwen3 template drops it from the history)
        if not isinstance(m, dict) or set(m) - {"role", "content", "reasoning_content"} or "role" not in m:
            raise RecordError("messages", f"{where} must be {{'role': ..., 'content': ...}} (tools are out of "
                                          f"scope), got {m!r}")
        if m["role"] not in ROLES or not isinstance(m.get("content"), str):
            raise RecordError("messages", f"{where}: role must be one of {ROLES} and content a string, got {m!r}")
    if messages[-1]["role"] != "user":
        raise RecordError("messages", "key 'messages' must end with a user turn (the prompt the model answers); "
                                      "put the answer to train on in 'response'")


def check_response(response) -> None:
    if not (isinstance(response, dict) and set(response) == {"content", "reasoning_content"}
            and all(isinstance(v, str) for v in response.values())):
        raise RecordError("response", "key 'response' must be {'content': str, 'reasoning_content': str} "
                                      f"(reasoning may be \"\"), got {response!r}")


def read_records(path, bad: list | None = None):
    """Yield the file's records in order. A bad line raises RecordError "FILE:LINE: ...", or, when a list is
    passed as `bad`, its error is appended to it and the line skipped: a RecordError, or read_jsonl's JSONLError
    for a line that is no JSON object (both with a `key`)."""
    seen = {}  # id -> line: ids name records in samples and metrics, so they must be unique
    try:
        for n, obj in read_jsonl(path, bad):
            try:
                record = parse_record(obj)
                if record.id in seen:
                    raise RecordError("id", f"duplicate id {record.id!r} (first at line {seen[record.id]})")
                seen[record.id] = n
            except RecordError as e:
                error = RecordError(e.key, f"{path}:{n}: {e}")
                if bad is None:
                    raise error from None
                bad.append(error)
                continue
            yield record
    except JSONLError as e:  # this line's record, or read_jsonl's line that is not a JSON object
        raise RecordError(e.key, f"{e} - fix the line, or load with skip_bad=True") from None


def load_records(path, skip_bad: bool = False) -> list[Record]:
    """All records of a JSONL file. skip_bad=True skips malformed lines and reports their counts on stderr."""
    bad = [] if skip_bad else None
    records = list(read_records(path, bad))
    if bad:
        counts = ", ".join(f"{key}: {n}" for key, n in sorted(Counter(e.key for e in bad).items()))
        print(f"{path}: skipped {len(bad)} bad lines ({counts}); first: {bad[0]}", file=sys.stderr)
    return records


def write_records(path, records) -> int:
    """Write records (any iterable, consumed as it streams) as JSONL; the file appears whole or not at all. Returns
    how many."""
    n = 0

    def lines():
        nonlocal n
        for record in records:
            n += 1
            yield to_json(record) + "\n"
    write_atomic(path, lines())
    return n


def to_json(record: Record) -> str:
    """One line; optional keys left out when unset, so a file reads the way docs/data.md shows it."""
    obj = {key: getattr(record, key) for key in KEYS if getattr(record, key) is not None}
    return json.dumps(obj, ensure_ascii=False)
