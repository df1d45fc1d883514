"""The m2rl protocol's math equivalence: the paper's grader (rewards/math_paper.py), through rewards.score.

Reference: M2RL's slime/slime/rollout/rm_hub/math_utils.py (deepscaler's grader), `grade_answer_mathd(given, truth)
or grade_answer_sympy(given, truth)` as rm_hub/deepscaler.py calls it. Each verdict below is worked out from that
code (the rule it exercises is named beside it) and was checked once by running the paper's file on the same pair;
math-verify's verdict - what the toy protocol gives - is listed too, and the two disagree in both directions.
"""
import time

import pytest

import rewards
from data.record import Record


def score(given, truth, protocol="m2rl", **extra):
    record = Record(id="r0", domain="math", messages=[{"role": "user", "content": "q"}], verifier={"answer": truth})
    response = "<think>x</think>\n\nAnswer: \\boxed{" + given + "}"
    return rewards.score(record, response, protocol=protocol, **extra)


# (given, truth, the paper's verdict, math-verify's verdict)
CASES = [
    # mathd (Hendrycks' _strip_string), then equal strings
    (r"\dfrac{1}{2}", r"\frac{1}{2}", 1, 1),        # tfrac/dfrac -> frac
    (r"\frac12", r"\frac{1}{2}", 1, 1),              # \frac12 -> \frac{1}{2}
    (r"\sqrt3", r"\sqrt{3}", 1, 1),                  # \sqrt3 -> \sqrt{3}
    (r"\left(1, 2\right)", "(1,2)", 1, 1),           # \left, \right and spaces dropped
    (r"90^\circ", "90", 1, 1),                       # degrees
    (r"50\%", "50", 1, 1),                           # percent
    (r"\$5", "5", 1, 1),                             # dollars
    (r"5\text{ cm}", "5", 1, 1),                     # "\text{ " starts the units on the right
    ("x = 5", "5", 1, 1),                            # a left-hand side of at most 2 characters goes
    ("abc = 5", "5", 0, 1),                          # a longer one stays, and sympy never sees 3 letters
    ("0.5", "1/2", 1, 1),                            # "0.5" and "1/2" both become \frac{1}{2}
    ("01/2", "1/2", 0, 1),                           # a/b -> \frac only for plainly written integers
    # the sympy path: deepscaler's _normalize
    ("5 cm", "5", 1, 1),                             # unit words, anywhere
    ("10 meters^2", "10", 1, 0),                     # ... with their plural and power
    ("1,000", "1000", 1, 1),                         # thousands commas
    (r"1,\!000", "1000", 1, 1),                      # LaTeX's thousands separator
    (r"\text{Yes}", "yes", 1, 1),                    # an enclosing \text{}, and case
    ("5.0", "5", 1, 1),                              # a float that is an integer is that integer
    ("4.9999999999", "5", 1, 0),                     # ... to within 1e-7
    ("3.5e4", "35000", 1, 1),
    ("7 3/4", "31/4", 1, 0),                         # a mixed number: 7 + 3/4
    (r"7\frac{3}{4}", r"\frac{31}{4}", 1, 1),        # the same in LaTeX
    ("1 or 2", "1, 2", 1, 1),                        # " or " is a comma
    (r"(0,1)\cup(2,3)", "(0,1)U(2,3)", 1, 0),        # pylatexenc's ∪ is written U
    (r"\frac{\sqrt{8}}{2}", r"\sqrt{2}", 1, 1),      # LaTeX to text, then sympy.simplify(truth - given) == 0
    ("x^2+2x+1", "(x+1)^2", 1, 1),                   # implicit multiplication
    (r"\frac{x+1}{y}", "(x+1)/y", 0, 1),             # pylatexenc writes x+1/y: no brackets (the paper's slip)
    # fractions, integers, tuples
    ("2/4", "1/2", 0, 1),                            # two fractions: strings, so an unreduced one is wrong
    (r"\frac{2}{4}", r"\frac{1}{2}", 0, 1),
    ("2.5", "5/2", 1, 1),                            # a fraction against a decimal goes to sympy
    ("2 million", "2000000", 0, 0),                  # an integer against a non-integer ("2*10^6"): never sympy
    ("(2, 1)", "(1,2)", 0, 0),                       # tuples element by element, in order
    (r"\{1,2\}", r"\{2,1\}", 0, 1),                  # ... sets too
    ("(1,2)", "[1,2)", 0, 0),                        # an interval's brackets must match
    # what is never evaluated
    ("x+y+z", "z+y+x", 0, 1),                        # more than two distinct letters
    ("(x^5)^2", "x^10", 0, 1),                       # a power of two digits
    ("x^{10}", "x^10", 1, 1),                        # ... though equal strings still match
    # a boxed gold answer is its content (deepscaler.py)
    ("1/2", r"\boxed{\frac{1}{2}}", 1, 1),
]


@pytest.mark.parametrize("given, truth, paper, math_verify", CASES)
def test_the_paper_grader_and_math_verify(given, truth, paper, math_verify):
    assert score(given, truth).reward == paper
    assert score(given, truth, protocol="toy").reward == math_verify


def test_the_cases_disagree_both_ways():
    pairs = {(paper, math_verify) for _, _, paper, math_verify in CASES}
    assert {(0, 1), (1, 0)} <= pairs


def test_a_gold_with_an_unreadable_box_scores_zero():
    # deepscaler.py: a truth holding "\boxed" is extract_answer(truth); None leaves no ground truth, reward 0
    result = score("1/2", r"\boxed 1/2")
    assert result.reward == 0.0 and "gold answer" in result.info["error"]


def test_a_timeout_scores_zero_with_the_error(monkeypatch):
    # degree-30 rational functions written as products pass every guard on powers; sympy needs seconds (7 s here)
    # to tell them apart
    monkeypatch.setattr(rewards.domain_module("math"), "TIMEOUT_S", 0.5)
    up, down = ("*".join(f"(x{sign}{i})" for i in range(1, 31)) for sign in "+-")
    start = time.monotonic()
    result = score(f"({up})/({down})", f"({down})/({up})")
    assert result.reward == 0.0 and result.info["error"] == "the paper's math grader timed out after 0.5 s"
    assert time.monotonic() - start < 3
    assert score("2.5", "5/2").reward == 1.0


def test_python_powers_and_dunders_are_never_evaluated():
    # an exponent tower in Python's own syntax would hang a scoring worker in a bigint loop that no signal interrupts
    from rewards.math_paper import allow_eval
    assert not allow_eval("(8)-(9**9**9**9)") and not allow_eval("(1)-(().__class__)")
    assert allow_eval("(8)-(2^3)")  # the paper's own caret powers, small ones, still are
