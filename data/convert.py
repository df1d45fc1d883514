"""Convert local files of the paper's data (NVIDIA Nemotron) into Records.

    python -m data.convert --format nemotron_rl train.jsonl data/nemotron_rl.jsonl [--skip-bad] [--protocol m2rl]
    python -m data.convert --format nemotron_sft --domain math math.jsonl data/sft_math.jsonl

nemotron_rl: the Nemotron-3-Nano RL blend (`train.jsonl`, one NeMo-Gym row per line). The row's `dataset` picks the
domain by its suffix (DATASETS); `responses_create_params.input` is the prompt; the verifier comes from the fields
NeMo-Gym's resources servers read:
    math     `expected_answer`                                   (math_with_judge)  -> {"answer"}
    science  `options` [{"A": text}, ...] and `expected_answer` "C"   (mcqa)             -> {"options", "answer"}
    if       `instruction_id_list`, `kwargs`                     (instruction_following) -> the same two keys
    code     `verifier_metadata.unit_tests` {inputs, outputs, fn_name} (code_gen)     -> {"tests"}
--protocol m2rl writes the prompts the paper trains on (M2RL data/process_rl_data.py): every math prompt prefixed
with its "Solve the following math problem step by step. ..." instruction (DAPO rows, which already carry it, then
carry it twice, as there), and each science prompt's opening "Answer the following multiple choice question."
rewritten to "... question step by step." (a science prompt without that opening is a malformed row: the paper's
slice would cut its first words). The default, toy, keeps the blend's prompts as they are.
Two kinds of row are skipped and counted, not errors: rows of the blend's other environments (agentic
workbench, ...), and placeholder rows (`_hf_placeholder`: DAPO-17k / Skywork rows published as a row index and a
template; the dataset's `create_nanov3_jsonl.py` fills them in from those datasets - run it first).

nemotron_sft: Nemotron post-training SFT sets (`messages`, the assistant's reasoning in `reasoning_content`, or in
`<think>...</think>` at the start of its content as in the v1/v2 sets). The last message is the target (`response`),
the ones before it the prompt; `--domain` names the domain, and a row's `expected_answer` (Nemotron-Math) becomes
the math verifier; without one the record is SFT-only (`verifier: {}`). Rows that use tools are skipped and counted.

A malformed row (bad JSON, a missing or ill-typed field, an unsupported instruction id, ...) stops the run with
an error naming the file, line and key; --skip-bad counts and skips them instead. Output is written atomically.
"""
import argparse
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from data.record import RecordError, json_line, parse_record, write_records
from rewards import DOMAINS, PROTOCOLS
from tokenizer import split_reasoning

# The blend's dataset names end in these (e.g. "nano_v3_sft_profiled_dapo17k").
DATASETS = {"dapo17k": "math", "skywork_no_omni": "math", "stem_mcqa": "science",
            "instruction_following": "if", "comp_coding_50tests": "code"}
LETTERS = "ABCDEFGHIJ"
# M2RL data/process_rl_data.py `process`: the math prefix, and the science instruction it rewrites
MATH_PREFIX = ("Solve the following math problem step by step. The last line of your response should be of the form "
               "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n")
MCQ_INSTRUCTION = "Answer the following multiple choice question."
MCQ_STEP_BY_STEP = "Answer the following multiple choice question step by step."


class Skip(Exception):
    """A well-formed row this project does not train on; counted under its reason."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", required=True, choices=sorted(CONVERTERS))
    parser.add_argument("--domain", choices=DOMAINS, help="nemotron_sft: the domain of the file's records")
    parser.add_argument("--skip-bad", action="store_true", help="count and skip malformed rows instead of stopping")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="toy",
                        help="nemotron_rl prompts: m2rl adds the paper's math prefix and science rewrite "
                             "(process_rl_data.py); toy (default) keeps the blend's own prompts, which the toy "
                             "and the unchanged data round trip rely on")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    if args.format == "nemotron_sft" and args.domain is None:
        parser.error("--format nemotron_sft needs --domain (the SFT files do not say which domain they are)")
    try:
        counts = convert_file(args.format, args.input, args.output, args.domain, args.skip_bad, args.protocol)
    except RecordError as e:  # it names the file, line and key: one line, not a traceback
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.output}:")
    for key, n in sorted(counts.items()):
        print(f"  {n:8d}  {key}")
    if counts["skipped: placeholder row"]:
        print("placeholder rows hold only a pointer into DAPO-Math-17k / Skywork-OR1: fill them in with the "
              "dataset's create_nanov3_jsonl.py, then convert its output")


def convert_file(fmt: str, in_path: Path, out_path: Path, domain: str | None = None,
                 skip_bad: bool = False, protocol: str = "toy") -> Counter:
    """Stream `in_path` through the format's row converter into `out_path`; returns counts by outcome."""
    counts = Counter()

    def records():
        seen = set()
        with open(in_path, "rb") as f, tqdm(total=in_path.stat().st_size, unit="B", unit_scale=True,
                                             desc=in_path.name) as bar:
            for n, line in enumerate(f, 1):
                bar.update(len(line))
                if not line.strip():
                    continue
                try:
                    row = json_line(line)
                    # Nemotron rows carry a uuid; the line is the fallback, and the file the default source
                    obj = {"id": str(row.get("uuid") or f"{in_path.stem}:{n}"), "source": in_path.name}
                    record = parse_record(obj | CONVERTERS[fmt](row, domain, protocol))
                    if record.id in seen:
                        raise RecordError("uuid", f"duplicate id {record.id!r}")
                    seen.add(record.id)
                except Skip as e:
                    counts[f"skipped: {e}"] += 1
                    continue
                except RecordError as e:
                    if not skip_bad:
                        raise RecordError(e.key, f"{in_path}:{n}: {e} - fix the row, or pass --skip-bad") from None
                    counts[f"bad: {e.key}"] += 1
                    continue
                counts[f"converted: {record.domain}"] += 1
                yield record

    write_records(out_path, records())
    return counts


def nemotron_rl(row: dict, _domain, protocol: str = "toy") -> dict:
    dataset = field(row, "dataset", str)
    domain = next((d for suffix, d in DATASETS.items() if dataset.endswith(suffix)), None)
    if domain is None:
        raise Skip(f"other environment ({dataset})")
    if row.get("_hf_placeholder"):
        raise Skip("placeholder row")
    params = field(row, "responses_create_params", dict)
    messages = field(params, "input", list, "responses_create_params.input")
    if protocol == "m2rl" and domain in ("math", "science"):
        messages = paper_prompt(domain, messages)
    return {"domain": domain, "messages": messages, "verifier": RL_VERIFIERS[domain](row), "source": dataset}


def paper_prompt(domain: str, messages: list) -> list:
    """process_rl_data.py's rewrite of the first message (`message[0]['content']`), whatever its role."""
    first = messages[0] if messages and isinstance(messages[0], dict) else {}
    content = first.get("content")
    if not isinstance(content, str):
        raise RecordError("responses_create_params", "key 'responses_create_params.input[0].content' must be a str")
    if domain == "math":
        content = MATH_PREFIX + content
    elif content.startswith(MCQ_INSTRUCTION):
        content = MCQ_STEP_BY_STEP + content[len(MCQ_INSTRUCTION):]
    else:
        raise RecordError("responses_create_params", f"--protocol m2rl: a science prompt must open with "
                                                     f"{MCQ_INSTRUCTION!r}, the sentence the paper rewrites; got "
                                                     f"{content[:80]!r}")
    return [{**first, "content": content}] + messages[1:]


def math_verifier(row: dict) -> dict:
    return {"answer": field(row, "expected_answer", str)}


def science_verifier(row: dict) -> dict:
    # NeMo-Gym mcqa: options = [{"A": text}, {"B": text}, ...], one letter each, in order from A
    options = field(row, "options", list)
    letters = [next(iter(o)) if isinstance(o, dict) and len(o) == 1 else None for o in options]
    if letters != list(LETTERS[: len(options)]):
        raise RecordError("options", f"key 'options' must be [{{\"A\": text}}, {{\"B\": text}}, ...] with the "
                                     f"letters in order from A, got {options!r}")
    return {"options": [o[letter] for o, letter in zip(options, letters)],
            "answer": field(row, "expected_answer", str)}


def if_verifier(row: dict) -> dict:
    return {"instruction_id_list": field(row, "instruction_id_list", list), "kwargs": field(row, "kwargs", list)}


def code_verifier(row: dict) -> dict:
    metadata = field(row, "verifier_metadata", dict)
    tests = field(metadata, "unit_tests", dict, "verifier_metadata.unit_tests")
    return {"tests": {key: tests.get(key) for key in ("inputs", "outputs", "fn_name")}}


RL_VERIFIERS = {"math": math_verifier, "science": science_verifier, "if": if_verifier, "code": code_verifier}


def nemotron_sft(row: dict, domain: str, _protocol: str = "toy") -> dict:
    messages = field(row, "messages", list)
    if row.get("tools") or any(isinstance(m, dict) and (m.get("tool_calls") or m.get("role") == "tool")
                               for m in messages):
        raise Skip("uses tools (out of scope)")
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        raise RecordError("messages", "key 'messages' must be a list of {'role': ..., 'content': str}")
    if not messages or messages[-1].get("role") != "assistant":
        raise RecordError("messages", "key 'messages' must end with the assistant turn to train on")
    prompt = []
    for m in messages[:-1]:
        if m["role"] == "system" and not m["content"].strip():
            continue  # the v3 sets carry an empty system turn; Qwen3's template would render it as an empty block
        prompt.append({"role": m["role"], "content": split_reasoning(m)[1] if m["role"] == "assistant"
                       else m["content"]})
    reasoning, content = split_reasoning(messages[-1])
    answer = row.get("expected_answer")
    return {"domain": domain, "messages": prompt, "verifier": {"answer": answer} if domain == "math" and answer else {},
            "response": {"content": content, "reasoning_content": reasoning}}


CONVERTERS = {"nemotron_rl": nemotron_rl, "nemotron_sft": nemotron_sft}


def field(obj: dict, key: str, kind: type, name: str | None = None):
    """obj[key], which must be a `kind`; a RecordError naming the key otherwise."""
    value = obj.get(key)
    if not isinstance(value, kind):
        shown = repr(value) if len(repr(value)) < 200 else repr(value)[:200] + "..."  # unit tests can be megabytes
        raise RecordError(key, f"key {name or key!r} must be a {kind.__name__}, got {shown}")
    return value


if __name__ == "__main__":
    main()
