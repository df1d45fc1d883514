"""rewards/math.py: answer extraction and equivalence.

Reference: the expected verdicts below are written by hand from the mathematics (is the answer the same
number, set or interval as the gold?), independently of math-verify, which the module delegates to.
"""
import time

import pytest

from rewards import math as math_reward

# (gold, the model's final answer, same answer?)
EQUIVALENCE = [
    # fractions, \frac vs /, \dfrac, \tfrac
    ("1/2", r"\frac{1}{2}", True),
    (r"\frac{1}{2}", "0.5", True),
    (r"\dfrac{3}{4}", "3/4", True),
    ("3/4", r"\tfrac{3}{4}", True),
    (r"\frac{2}{4}", r"\frac{1}{2}", True),
    (r"\frac12", "1/2", True),
    ("1/3", "0.33", False),
    ("1/2", "2", False),
    # negative numbers
    (r"-\frac{1}{2}", "-0.5", True),
    (r"\frac{-1}{2}", r"-\frac{1}{2}", True),
    (r"-\frac{1}{2}", r"\frac{1}{2}", False),
    ("-3", "-3", True),
    ("-3", "3", False),
    ("-3", "\u22123", True),  # unicode minus sign
    # percentages
    (r"50\%", "50", True),
    (r"50\%", "0.5", True),
    ("0.25", r"25\%", True),
    (r"12\%", "0.12", True),
    # scientific notation
    (r"3.5 \times 10^{4}", "35000", True),
    ("35000", "3.5e4", True),
    (r"1.5\times10^{-3}", "0.0015", True),
    (r"6.02 \times 10^{23}", "6.02e23", True),
    ("0.1", "1e-1", True),
    ("100", "10^2", True),
    # units and text
    ("10", r"10 \text{ cm}", True),
    (r"10 \text{ cm}", "10", True),
    ("7", r"7 \text{ apples}", True),
    (r"90^\circ", "90", True),
    (r"\frac{\pi}{2}", "90", False),
    # intervals
    ("[1, 2)", "[1,2)", True),
    ("(1, 2]", "[1, 2]", False),
    (r"(-\infty, 3)", r"(-\infty, 3)", True),
    (r"(-\infty, 3)", r"(-\infty, 3]", False),
    # sets and lists of solutions
    (r"\{1, 2, 3\}", r"\{3, 2, 1\}", True),
    (r"\{1, 2\}", r"\{1, 2, 3\}", False),
    ("2, 3", "3, 2", True),
    # radicals, pi, expressions, equations
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}", True),
    (r"2\sqrt{3}", r"\sqrt{12}", True),
    (r"\pi/4", r"\frac{\pi}{4}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("x = 5", "5", True),
    ("5", "x=5", True),
    (r"\infty", r"\infty", True),
    # number formats and plain wrong answers
    ("12", "12.0", True),
    ("1000", "1,000", True),
    ("2", "3", False),
    ("42", "24", False),
]


@pytest.mark.parametrize("gold, answer, same", EQUIVALENCE)
def test_equivalence(gold, answer, same):
    reward, info = math_reward.verify(f"Let me compute.\nThe result is $\\boxed{{{answer}}}$.", {"answer": gold})
    assert info["answer"] == answer
    assert reward == float(same)


@pytest.mark.parametrize("response, answer", [
    (r"First \boxed{3}, but wait, finally \boxed{4}.", "4"),
    (r"So $x = \boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
    (r"\fbox{7}", "7"),
    ("Steps...\nAnswer: $\\frac{1}{2}$.", r"\frac{1}{2}"),
    ("Steps...\n**Final Answer:** 12", "12"),
    ("answer: 3\nActually, Answer: 5.", "5"),
    (r"Answer: 1, but the box wins: \boxed{2}", "2"),
    (r"Truncated \boxed{\frac{1}{2", None),
    ("I am not sure.", None),
])
def test_extract_answer(response, answer):
    assert math_reward.extract_answer(response) == answer


def test_no_answer_scores_zero():
    assert math_reward.verify("The answer is probably five.", {"answer": "5"}) == (0.0, {"answer": None})


def test_check_verifier_names_the_key():
    math_reward.check_verifier({"answer": r"\frac{1}{2}"})
    for bad in ({}, {"answer": ""}, {"answer": 5}):
        with pytest.raises(ValueError, match='"answer"'):
            math_reward.check_verifier(bad)


def test_a_timeout_scores_zero_with_the_error(monkeypatch):
    # Two rational functions of degree 60: sympy needs seconds to tell them apart, past a 0.5 s limit.
    monkeypatch.setattr(math_reward, "TIMEOUT_S", 0.5)
    start = time.monotonic()
    reward, info = math_reward.verify(r"\boxed{\frac{(x+2)^{60}}{(x-3)^{60}}}", {"answer": r"\frac{(x+1)^{60}}{(x-1)^{60}}"})
    assert reward == 0.0 and info["error"] == "math-verify timed out after 0.5 s"  # reward/error_fraction counts it
    assert time.monotonic() - start < 3
    assert math_reward.verify(r"\boxed{\frac{1}{2}}", {"answer": "0.5"}) == (1.0, {"answer": r"\frac{1}{2}"})
