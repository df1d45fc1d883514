"""The paper's math grader: is a given answer the gold one? (the m2rl protocol's math equivalence)

M2RL's `deepscaler` reward (slime rm_hub/deepscaler.py) judges with `grade_answer_mathd(given, truth) or
grade_answer_sympy(given, truth)` from rm_hub/math_utils.py (deepscaler's, itself Hendrycks' MATH code plus a sympy
check). This module is that rule, rewritten; it lives apart from rewards/math.py because it is a second grader, not
an option of math-verify: its verdicts differ by design, both ways, and a paper run must get the paper's. Where they
differ (math-verify's first):
- an unreduced fraction "2/4" against "1/2": equal / not equal (both are fractions: compared as strings);
- a mixed number "7 3/4" against "31/4": not equal / equal (7 + 3/4); "10 meters^2" against "10": not equal / equal;
- "4.9999999999" against "5": not equal / equal (within 1e-7 of an integer is that integer);
- sets "\\{1,2\\}" against "\\{2,1\\}": equal / not equal (tuples, sets and intervals are compared in order);
- "\\frac{a+b}{c}": (a+b)/c / a+b/c (pylatexenc writes no brackets: the paper's code has the same slip);
- an expression with more than two distinct letters ("x+y+z") is never evaluated, only compared as a string.

grade(given, truth) = the two checks below, either enough:
- mathd: both sides through Hendrycks' string normaliser (`mathd_normalize`), then equal as strings.
- sympy: both through deepscaler's normaliser (`normalize`: units and text dropped, LaTeX to plain text by pylatexenc,
  mixed numbers "7 3/4" -> 7+3/4, lower case), then equal as strings, or element by element for tuples and
  intervals: same brackets, same length, each pair equal - as strings when both are fractions, never when just one
  is an integer, else by `sympy.simplify(truth - given) == 0`.
Every failure inside is a "not equal", as in the paper's code (its try/excepts); the caller's time limit bounds sympy.
"""
import re

import sympy
from pylatexenc.latex2text import LatexNodes2Text
from sympy.parsing import sympy_parser


def grade(given: str, truth: str) -> bool:
    return mathd_normalize(given) == mathd_normalize(truth) or sympy_grade(given, truth)


# --- mathd: Hendrycks' MATH normaliser (math_utils.py `mathd_normalize_answer`, `_strip_string`) ---

class Unnormalizable(Exception):
    """A step of `_strip_string` that throws in the paper's code; the whole answer then stays as it came."""


def mathd_normalize(answer: str) -> str:
    answer = answer.strip()
    if m := re.search(r"^\\text\{(?P<text>.+?)\}$", answer):  # the whole answer in one \text{}
        answer = m["text"].strip()
    try:
        return strip_string(answer)
    except Unnormalizable:
        return answer


def strip_string(s: str) -> str:
    for old, new in [("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", "")]:
        s = s.replace(old, new)
    if "\\text{ " in s:  # "\text{ " marks units in MATH: keep what precedes the one occurrence
        before, *after = s.split("\\text{ ")
        if len(after) != 1:
            raise Unnormalizable
        s = before
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    if len(parts := s.split("=")) == 2 and len(parts[0]) <= 2:  # "x = 5", "k=5": the value
        s = parts[1]
    if "\\sqrt" in s:
        head, *rests = s.split("\\sqrt")
        s = head + "".join("\\sqrt" + braced_first(rest, 1) for rest in rests)  # \sqrt3 -> \sqrt{3}
    s = s.replace(" ", "")
    s = fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    if (m := re.fullmatch(r"(-?[0-9]+)/(-?[0-9]+)", s)) and all(str(int(x)) == x for x in m.groups()):
        s = f"\\frac{{{m[1]}}}{{{m[2]}}}"  # "3/4" -> \frac{3}{4}, only for integers written plainly
    return s


def braced_first(rest: str, n: int) -> str:
    """`rest` (what follows a \\sqrt or \\frac) with its first n characters braced one by one, unless it opens a brace;
    a brace among those n stops there ("\\frac1{72}" -> \\frac{1}{72})."""
    if not rest:
        raise Unnormalizable  # "\sqrt" or "\frac" at the very end: an IndexError in the paper's code
    out = ""
    for i in range(n):
        if rest[i] == "{":
            return out + rest[i:]
        out += "{" + rest[i] + "}"
    return out + rest[n:]


def fix_fracs(s: str) -> str:
    head, *rests = s.split("\\frac")
    for rest in rests:
        if rest and rest[0] != "{" and len(rest) < 2:  # "\frac1" at the end: the paper gives up on the fix
            return s
        head += "\\frac" + braced_first(rest, 2)  # \frac12 -> \frac{1}{2}, \frac1b -> \frac{1}{b}
    return head


# --- sympy: deepscaler's normaliser and comparison (math_utils.py `grade_answer_sympy` and what it calls) ---

UNITS = ["degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week", "month", "year",
         "foot", "feet", "inch", "yard"]  # removed in this order, each with a plural and a power: "cm^2", "inches"
TUPLE_CHARS = "()[]"


def sympy_grade(given: str, truth: str) -> bool:
    truth, given = normalize(truth), normalize(given)
    if truth == given:
        return True
    if not given:
        return False
    truths, givens = split_tuple(truth), split_tuple(given)
    if len(truths) > 1 and (truth[0] != given[0] or truth[-1] != given[-1]):
        return False  # an interval's brackets must match: [1,2) is not (1,2)
    if len(truths) != len(givens):
        return False
    for t, g in zip(truths, givens):
        if is_frac(t) and is_frac(g):
            same = t == g  # an unreduced fraction is not the answer: no simplification here
        elif str_is_int(t) != str_is_int(g):
            same = False  # an integer against a non-integer: never worth sympy
        else:
            same = sympy_equal(t, g)
        if not same:
            return False
    return True


def normalize(expr: str) -> str:
    if m := re.search(r"^\\text\{(?P<text>.+?)\}$", expr):
        expr = m["text"]
    for old, new in [("\\%", "%"), ("\\$", "$"), ("$", ""), ("%", ""), (" or ", " , "), (" and ", " , "),
                     ("million", "*10^6"), ("billion", "*10^9"), ("trillion", "*10^12")]:
        expr = expr.replace(old, new)
    for unit in UNITS:
        expr = re.sub(rf"{unit}(es)?(s)? *(\^[0-9]+)?", "", expr)
    expr = re.sub(r"\^ *\\circ", "", expr)
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    expr = re.sub(r",\\! *", "", expr)  # LaTeX's thousands separator "1,\!000"
    if is_float(expr) and is_int(float(expr)):
        expr = str(round(float(expr)))  # "5.0", "1e3" -> "5", "1000"
    if "\\" in expr:
        try:
            expr = latex_to_text(expr)
        except Exception:  # pylatexenc on malformed LaTeX: the paper's code keeps the string as it is
            pass
    expr = re.sub(r"- *", "-", expr)
    expr = re.sub(r"([0-9]) +([0-9])", r"\1+\2", expr)  # a mixed number "7 3/4" -> 7+3/4 (also "1 000" -> 1+000)
    expr = re.sub(r"[ {}]", "", expr).lower()  # leftover LaTeX braces; text answers ignore case
    if str_is_int(expr):
        expr = str(int(float(expr.replace(",", ""))))  # "1,000" -> "1000"; truncated, as the paper's int() does
    return expr


def latex_to_text(expr: str) -> str:
    """LaTeX to what sympy's parser reads (math_utils.py `_parse_latex`): pylatexenc's text, then its symbols named.
    pylatexenc rather than a hand-written step: its output decides the verdicts, slips included (\\frac{a+b}{c} ->
    "a+b/c", \\sqrt{2} -> "√(2)", an unknown macro dropped), so anything else would be a different grader."""
    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    expr = expr.replace("\\frac", " \\frac")  # "3\frac{1}{2}" -> "3 1/2", which becomes 3+1/2
    expr = LatexNodes2Text().latex_to_text(expr)
    for symbol, name in [("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*")]:
        expr = expr.replace(symbol, name)
    return expr.strip()


def sympy_equal(truth: str, given: str) -> bool:
    expr = f"({truth})-({given})"
    if not allow_eval(expr):
        return False
    try:
        transformations = sympy_parser.standard_transformations + (sympy_parser.implicit_multiplication_application,)
        difference = sympy_parser.parse_expr(expr.replace("^", "**"), transformations=transformations)
        return sympy.simplify(difference) == 0
    except Exception:  # unparsable text; our Timeout is a BaseException and passes
        return False


def allow_eval(expr: str) -> bool:
    """parse_expr evaluates Python, and simplify can hang: only expressions in at most two unknowns (words are many
    letters: an answer in prose is never evaluated), and no large or stacked powers."""
    letters = {c for c in expr.replace("sqrt", "").replace("frac", "") if c.isalpha()}
    # Ours, not the paper's: a model may write Python's own power "**" (9**9**9 is a bigint no time limit stops:
    # signals wait for the C loop) or reach for dunders; neither is evaluated here
    return (len(letters) <= 2 and "^{" not in expr and "^(" not in expr and "**" not in expr and "_" not in expr
            and not re.search(r"\^[0-9]+\^", expr) and not re.search(r"\^[0-9][0-9]+", expr))


def split_tuple(expr: str) -> list[str]:
    expr = strip_thousands_commas(expr)
    if not expr:
        return []
    inner = expr[1:-1]
    bracketed = expr[0] in TUPLE_CHARS and expr[-1] in TUPLE_CHARS and not any(c in inner for c in TUPLE_CHARS)
    if len(expr) > 2 and bracketed:  # "(1,2)", "[0,1)"; not "(1,(2,3))" nor "f(x)"
        return [e.strip() for e in inner.split(",")]
    return [expr]


def strip_thousands_commas(expr: str) -> str:
    """"1,000,000" -> "1000000", but a tuple's "(1,2)" keeps its comma: only commas before three digits go."""
    while (stripped := re.sub(r"(\d)(,)(\d\d\d)($|\D)", r"\1\3\4", expr)) != expr:
        expr = stripped
    return expr


def is_frac(expr: str) -> bool:
    return re.search(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$", expr) is not None  # "." any character, as in the paper's code


def is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def is_int(x: float) -> bool:
    try:
        return abs(x - round(x)) <= 1e-7
    except (OverflowError, ValueError):  # inf, nan
        return False


def str_is_int(s: str) -> bool:
    try:
        return is_int(float(strip_thousands_commas(s)))
    except ValueError:
        return False
