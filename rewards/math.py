"""Math reward (domain "math"): the response's final answer, checked against the gold answer with math-verify.

verifier: {"answer": str} - the gold answer as plain text ("1/2", "0.5", "[1, 2)", "50%") or LaTeX
("\\frac{1}{2}", "\\{1, 2\\}"), without surrounding "$" (a "$" or "\\boxed{}" around it is harmless).

The answer is the content of the last `\\boxed{...}`, else the text after the last `Answer:` (the format the M2RL
math prompt asks for: "The last line of your response should be of the form Answer: $Answer"). No answer, reward 0.
Equivalence is math-verify's (HF): both sides are wrapped in `$...$`, `parse`d, and `verify(gold, answer)` is called
gold first, as its docs require (the comparison is not symmetric). math-verify handles `\\frac` vs `/`, `\\dfrac`,
units and `\\text{}`, percentages, intervals, sets, and numeric tolerance; plain-text scientific notation
("3.5e4") it reads as 3.5*e*4, so that one form is rewritten to `3.5\\times 10^{4}` first.
Parsing both sides and comparing them get TIMEOUT_S in all; past it the answer scores 0 with info["error"] (a
timeout is a verifier failure, not a wrong answer: reward/error_fraction counts it).

protocol="m2rl" extracts as the paper's `deepscaler` reward (slime rm_hub/deepscaler.py, with math_utils.py's
`extract_answer`): the text after the last "Answer:" (case-sensitive; else the part after the first "###Response",
else the whole response), in which a `\\boxed{...}` is required - a bare "Answer: 5" scores 0, and so
does a boxed answer followed by a later "Answer:" line without one. `\\fbox` and `\\boxed 5` do not count. The
equivalence is the paper's too, not math-verify's: deepscaler's mathd-or-sympy grader (rewards/math_paper.py), which
for one refuses an unreduced "2/4" for "1/2"; it gets the same TIMEOUT_S.
"""
import contextlib
import re
import signal
import threading

from math_verify import parse, verify as math_verify

from . import math_paper

E_NOTATION = re.compile(r"^([+-]?\d+(?:\.\d+)?)[eE]([+-]?\d+)$")  # 3.5e4, -1.2E-03
TIMEOUT_S = 10.0


class Timeout(BaseException):
    """Not an Exception: math-verify and sympy turn those - and math-verify's own timeout - into a silent False."""


def verify(response: str, verifier: dict, protocol: str = "toy") -> tuple[float, dict]:
    if protocol == "m2rl":
        return verify_paper(response, verifier)
    answer = extract_answer(response)
    if answer is None:
        return 0.0, {"answer": None}
    try:
        with time_limit(TIMEOUT_S):  # math-verify's own limits are off: it reports their expiry as False
            gold = parse(as_latex(verifier["answer"]), parsing_timeout=None)
            pred = parse(as_latex(answer), parsing_timeout=None)
            same = math_verify(gold, pred, timeout_seconds=None)
    except Timeout:
        return 0.0, {"answer": answer, "error": f"math-verify timed out after {TIMEOUT_S} s"}
    return float(same), {"answer": answer}


def verify_paper(response: str, verifier: dict) -> tuple[float, dict]:
    """rm_hub/deepscaler.py `get_deepscaler_rule_based_reward`: a gold answer holding a \\boxed{} is its content
    (none readable, 0); equivalence by the paper's grader (rewards/math_paper.py)."""
    answer = extract_deepscaler(response)
    if answer is None:
        return 0.0, {"answer": None}
    gold = verifier["answer"]
    if "\\boxed" in gold and (gold := deepscaler_boxed(gold)) is None:
        return 0.0, {"answer": answer, "error": f"no readable \\boxed{{}} in the gold answer {verifier['answer']!r}"}
    try:
        with time_limit(TIMEOUT_S):  # the paper's grader catches Exception; Timeout is not one, so it gets here
            same = math_paper.grade(answer, gold)
    except Timeout:
        return 0.0, {"answer": answer, "error": f"the paper's math grader timed out after {TIMEOUT_S} s"}
    return float(same), {"answer": answer}


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Timeout in the block after `seconds`. SIGALRM reaches the main thread only; off it (a caller's thread
    pool) there is no bound here, and the wall-clock limit of rewards.score_batch bounds the item instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def expire(signum, frame):
        raise Timeout
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_verifier(verifier: dict) -> None:
    answer = verifier.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f'math verifier: "answer" must be a non-empty string (the gold answer), got {answer!r}')


def extract_answer(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    lines = re.findall(r"Answer\s*:(.*)", text, flags=re.IGNORECASE)  # "Answer: 5", "**Final Answer:** $5$"
    if not lines:
        return None
    answer = lines[-1].strip(" \t*$").rstrip(".").strip(" \t*$")  # "**Answer:** $5$."
    return answer or None


def extract_deepscaler(text: str) -> str | None:
    """The paper's rule (rm_hub/deepscaler.py `get_deepscaler_rule_based_reward`, math_utils.py `extract_answer`).
    Both splits read the whole response, so "Answer:" wins."""
    if "Answer:" in text:
        text = text.split("Answer:")[-1].strip()
    elif "###Response" in text:
        text = text.split("###Response")[1]
    return deepscaler_boxed(text)


def deepscaler_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}`, unstripped (math_utils.py `last_boxed_only_string`, `remove_boxed`)."""
    start = text.rfind("\\boxed")
    if start < 0 or not text.startswith("\\boxed{", start):  # remove_boxed asserts the brace follows at once
        return None
    depth = 0
    for j in range(start + len("\\boxed"), len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[start + len("\\boxed{"):j]
    return None  # unclosed


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced; None if there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip()
    return None  # unclosed: the response was cut off mid-answer


def as_latex(answer: str) -> str:
    answer = E_NOTATION.sub(r"\1\\times 10^{\2}", answer.strip())
    return f"${answer}$"


def warm_up() -> None:
    """Parse and compare a few answers of common shapes: math-verify's LaTeX parser (antlr) builds its prediction
    tables on first use, shape by shape, which costs a fresh process 0.3-1.5 s on each of its first items. Done once
    in the scoring pool's forkserver (rewards/preload.py), every worker forked from it starts with them built."""
    for gold, response in (("\\frac{1}{2}", "\\boxed{0.5}"), ("2+3x", "\\boxed{3x + 2}"), ("[1, 2)", "\\boxed{[1,2)}"),
                           ("\\sqrt{2}", "Answer: 42")):
        verify(response, {"answer": gold})
