"""Science reward (domain "science"): multiple choice, letters A-J (GPQA / MMLU-Pro / Nemotron stem_mcqa).

verifier: {"options": [str, ...] (2 to 10 option texts, in the order shown to the model), "answer": "C"}
The data layer shuffles the options with a seed and sets "answer" to the gold option's new letter; this module
only reads the letter, and the number of options to know which letters are valid.

The chosen letter is found in the paper's order (M2RL rm_hub/gpqa.py): an "Answer: X" statement, then a boxed
letter, then, as a fallback, the last standalone capital that is a valid letter. Unlike the paper's
`re.search`, the *last* "Answer: X" counts: a response that reconsiders ends with the answer it settled on.

protocol="m2rl" is the paper's extraction exactly (rm_hub/gpqa.py `_extract_letter_from_response`): three patterns
in order, each's *first* match only, ignoring case (so "the answer is a mixture" reads as A), then the last
standalone capital that is a valid letter. Valid are A-H whatever the number of options: the paper's science rows
carry no choices in their metadata (process_rl_data.py), so compute_gpqa_reward falls back to its
DEFAULT_VALID_LETTERS - a gold I or J can never score, and a 4-option question's "answer is e..." reads as E.
"""
import re

LETTERS = "ABCDEFGHIJ"
PAPER_LETTERS = "ABCDEFGH"  # gpqa.py DEFAULT_VALID_LETTERS
# "Answer: C", "answer is (C)", "Final answer: **C**"; only the word "answer" ignores case, the letter must be a
# capital, else "the answer is a mixture" would read as A.
STATEMENT = re.compile(r"(?i:answer)(?:\s+is)?\s*[:：]?\s*[*(\[]*\s*([A-J])\b")
BOXED = re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{)?\s*\(?([A-J])\)?\s*\}?\s*\}")  # \boxed{C}, \boxed{\text{(C)}}
STANDALONE = re.compile(r"\b([A-J])\b")
PAPER_PATTERNS = [re.compile(p, re.IGNORECASE) for p in (r"(?:answer|option|choice)\s*(?:is|:)?\s*([A-Z])",
                                                          r"([A-Z])\s*(?:is\s*(?:the)?\s*correct)",
                                                          r"final\s*(?:answer|option)\s*(?:is|:)?\s*([A-Z])")]


def verify(response: str, verifier: dict, protocol: str = "toy") -> tuple[float, dict]:
    if protocol == "toy":
        letter = extract_letter(response, LETTERS[: len(verifier["options"])])
    else:
        letter = extract_letter_gpqa(response, PAPER_LETTERS)
    return float(letter == verifier["answer"]), {"answer": letter}


def check_verifier(verifier: dict) -> None:
    options = verifier.get("options")
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f'science verifier: "options" must be a list of 2 to {len(LETTERS)} option texts, '
                         f"got {options!r}")
    answer = verifier.get("answer")
    if not (isinstance(answer, str) and len(answer) == 1 and answer in LETTERS[: len(options)]):
        raise ValueError(f'science verifier: "answer" must be one letter among {LETTERS[: len(options)]} '
                         f"(one per option), got {answer!r}")


def extract_letter(text: str, valid: str) -> str | None:
    for pattern in (STATEMENT, BOXED, STANDALONE):
        letters = [m for m in pattern.findall(text) if m in valid]
        if letters:
            return letters[-1]
    return None


def extract_letter_gpqa(text: str, valid: str) -> str | None:
    for pattern in PAPER_PATTERNS:
        match = pattern.search(text)
        if match and match[1].upper() in valid:
            return match[1].upper()
    return next((letter for letter in reversed(re.findall(r"\b([A-Z])\b", text)) if letter in valid), None)
