"""data/toy.py and the frozen files in data/toy/: regeneration, splits, reference answers, the behaviours' shares.

References: the verifiers of rewards/ (each SFT reference answer must score 1.0 through rewards.score, and a
corrupted one 0), Python's own integer arithmetic for the careful columns, the tiny tokenizer for lengths, and
the knobs stated in data/toy.py for the shares of the behaviours.
"""
import filecmp
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rewards
from data import toy
from data.record import load_records
from rewards import DOMAINS
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
FROZEN = ROOT / "data" / "toy"
SPLITS = {(split, domain): load_records(FROZEN / split / f"{domain}.jsonl") for split in toy.SIZES for domain in DOMAINS}


def test_cli_regenerates_the_frozen_files_bit_identically(tmp_path):
    subprocess.run([sys.executable, "-m", "data.toy", "--out", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True)
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jsonl"))
    assert names == sorted(str(p.relative_to(FROZEN)) for p in FROZEN.rglob("*.jsonl")) and len(names) == 12
    match, mismatch, errors = filecmp.cmpfiles(tmp_path, FROZEN, names, shallow=False)
    assert mismatch == errors == [], "data/toy/ is stale: run `python -m data.toy`"


def test_splits_have_their_sizes_and_share_no_prompt():
    for domain in DOMAINS:
        prompts = []
        for split, size in toy.SIZES.items():
            records = SPLITS[split, domain]
            assert len(records) == size and all(r.domain == domain for r in records)
            assert all((r.response is not None) == (split == "sft") for r in records)
            prompts += [r.messages[-1]["content"] for r in records]
        assert len(set(prompts)) == len(prompts)
    assert toy.SIZES["eval"] >= 400  # docs/toy-notes.md: 200 eval prompts measure only to +-3.5 points


def answer(record) -> str:
    """The reference response as the model would write it in thinking mode."""
    return f"<think>\n{record.response['reasoning_content']}\n</think>\n\n{record.response['content']}"


def corrupt(record) -> str:
    """The reference answer with one thing made wrong, by a rule that knows the domain's check, not the generator."""
    text = answer(record)
    if record.domain == "math":
        return re.sub(r"\\boxed\{(\d+)\}", lambda m: f"\\boxed{{{int(m[1]) + 1}}}", text)
    if record.domain == "science":
        letters = "ABCD"
        wrong = letters[(letters.index(record.verifier["answer"]) + 1) % 4]
        return text.replace(f"Answer: {record.verifier['answer']}", f"Answer: {wrong}")
    if record.domain == "code":
        return re.sub(r"(return|print\()(.*?)(\)?)\n```", r"\1(\2) + 1\3\n```", text)
    instruction, kwargs = record.verifier["instruction_id_list"][0], record.verifier["kwargs"][0]
    head, content = text.split("</think>\n\n")
    broken = {
        "keywords:forbidden_words": lambda c: c + " " + kwargs.get("forbidden_words", [""])[0],
        "keywords:existence": lambda c: re.sub(kwargs.get("keywords", ["$^"])[0], "", c, flags=re.I),
        "length_constraints:number_words": lambda c: (c + " word" * kwargs["num_words"]
                                                      if kwargs.get("relation") == "less than" else c.split()[0]),
        "punctuation:no_comma": lambda c: c + ",",
        "detectable_content:postscript": lambda c: c.replace("P.S.", "").replace("p.s.", ""),
        "startend:end_checker": lambda c: c.rstrip('"') + " extra",
        "detectable_format:title": lambda c: c.replace("<<", "").replace(">>", ""),
        "detectable_format:json_format": lambda c: c + " }",
        "startend:quotation": lambda c: c.strip('"'),
        "change_case:english_lowercase": lambda c: c.upper(),
        "change_case:english_capital": lambda c: c.lower(),
    }[instruction](content)
    return f"{head}</think>\n\n{broken}"


@pytest.mark.parametrize("domain, n", [("math", 100), ("science", 100), ("if", 200), ("code", 12)])
def test_reference_answers_score_one_and_corrupted_ones_zero(domain, n):
    records = random.Random(0).sample(SPLITS["sft", domain], n)  # the code sandbox costs ~0.1 s a record
    for record in records:
        assert rewards.score(record, answer(record)).reward == 1.0, (record.id, rewards.score(record, answer(record)))
        assert rewards.score(record, corrupt(record)).reward == 0.0, (record.id, corrupt(record))


def check_columns(a: int, op: str, b: int, line: str):
    """The careful line against Python: each column true, fed the operands' digits and the last column's carry
    (or borrow), and the columns' digits spell a op b."""
    head, cols, tail = re.fullmatch(r"(\d+[+*-]\d+): (.*)\. (\d+[+*-]\d+=\d+)\.", line).groups()
    assert head == f"{a}{op}{b}" and tail == f"{a}{op}{b}={eval(head)}"
    xs, ys = str(a)[::-1], str(b)[::-1]
    carry, digits = 0, []
    for i, col in enumerate(cols.split(",")):
        x, y, c, v = map(int, re.fullmatch(rf"(\d+)\{op}(\d+)[+-](\d+)=(\d+)", col).groups())
        x_digit, y_digit = int(xs[i]) if i < len(xs) else 0, (b if op == "*" else int(ys[i]) if i < len(ys) else 0)
        assert c == carry and y == y_digit
        if op == "-":
            assert x in (x_digit, x_digit + 10) and v == x - y - c and 0 <= v <= 9
            carry = int(x >= 10)
            digits.append(v)
        else:
            assert x == x_digit and v == (x * y if op == "*" else x + y) + c
            carry = v // 10
            digits.append(v % 10)
    assert int(str(carry or "") + "".join(map(str, reversed(digits)))) == eval(head)


def test_careful_columns_agree_with_python():
    rng = random.Random(1)
    for _ in range(3000):
        op = rng.choice("+-*")
        a, b = toy.operands(rng, op)
        check_columns(a, op, b, toy.working(a, op, b, careful=True))
    for a, op, b in [(999, "+", 1), (1, "+", 999), (1000, "-", 1), (100, "-", 100), (999, "*", 9), (5, "*", 2)]:
        check_columns(a, op, b, toy.working(a, op, b, careful=True))


def test_behaviour_shares_follow_the_knobs():
    def share(domain, behaviour):
        records = SPLITS["sft", domain]
        return sum(bool(toy.BEHAVIOURS[behaviour].search(answer(r))) for r in records) / len(records)

    for domain in ("math", "science"):
        assert share(domain, "careful") == pytest.approx(toy.CAREFUL, abs=0.04)
    assert share("code", "careful") == pytest.approx(toy.CAREFUL * (1 - toy.SPECIFIC), abs=0.04)  # Python, or working
    for domain, behaviour in [("code", "code_python"), ("science", "science_law"), ("if", "if_rules")]:
        assert share(domain, behaviour) == pytest.approx(toy.SPECIFIC, abs=0.04)
    # math: stepwise (or careful, which is stepwise too) on two-step and find-x problems, 3/5 of them
    assert share("math", "math_steps") == pytest.approx(0.6 * (1 - (1 - toy.CAREFUL) * (1 - toy.SPECIFIC)), abs=0.04)
    # a domain's own behaviour is found in no other domain, and no arithmetic in instruction following
    for behaviour, home in [("math_steps", "math"), ("code_python", "code"), ("science_law", "science"),
                            ("if_rules", "if")]:
        assert [share(d, behaviour) for d in DOMAINS if d != home] == [0, 0, 0]
    assert share("if", "careful") == 0


def test_responses_fit_a_small_generation_budget():
    tok = Tokenizer.from_dir(ROOT / "data" / "tiny")
    lengths = []
    for domain in DOMAINS:
        for r in SPLITS["sft", domain]:
            ids, mask = tok.encode_chat_with_mask(r.messages + [{"role": "assistant", **r.response}])
            lengths.append(sum(mask))
    lengths.sort()
    # the generation budget of training and evaluation is 128 tokens: all but the rarest answers fit it
    assert lengths[int(0.999 * len(lengths))] <= 128 and lengths[-1] <= 160 and lengths[len(lengths) // 2] <= 48


def test_science_options_sit_in_the_slot_of_their_units_digit():
    """The letter follows from the computed value (A: units digit 0/4/8, B: 1/5/9, C: 2/6, D: 3/7), the options are
    four different numbers, and the SFT working names the option that holds its own computed value."""
    for split in toy.SIZES:
        for r in SPLITS[split, "science"]:
            values = [int(option.split()[0]) for option in r.verifier["options"]]
            assert [v % 10 % 4 for v in values] == [0, 1, 2, 3] and len(set(values)) == 4
            if split == "sft":
                named, letter = re.search(r"(\d+) is ([ABCD])\.$", r.response["reasoning_content"]).groups()
                assert values["ABCD".index(letter)] == int(named) and letter == r.verifier["answer"]
