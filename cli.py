"""Value types for the scripts' command lines. argparse calls them on a flag's text; a bad value stops the script
at once with argparse's one line naming the flag ("argument --steps: must be >= 1, got 0"), instead of a traceback
minutes later or, worse, a run that quietly trains with something else."""
import argparse
import math
from pathlib import Path


def positive_int(text: str) -> int:
    return _checked(int(text), text, lambda x: x >= 1, ">= 1")


def non_negative_int(text: str) -> int:
    return _checked(int(text), text, lambda x: x >= 0, ">= 0")


def positive_float(text: str) -> float:
    return _checked(float(text), text, lambda x: math.isfinite(x) and x > 0, "> 0")


def non_negative_float(text: str) -> float:
    return _checked(float(text), text, lambda x: math.isfinite(x) and x >= 0, ">= 0")


def probability(text: str) -> float:
    """A top-p: the mass kept, in (0, 1]."""
    return _checked(float(text), text, lambda x: 0 < x <= 1, "in (0, 1]")


def model_dir(text: str) -> str:
    """An HF checkpoint directory: checked for its config.json here, so a mistyped --model fails before anything
    is loaded."""
    if not (Path(text) / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a model directory (no config.json in it)")
    return text


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def _checked(value, text, ok, bound):
    # int()/float() raising ValueError is argparse's own "invalid positive_int value: 'x'"
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value
