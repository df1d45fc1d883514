"""--help of every script and sub-command: every flag has help text, every default worth showing is shown as
"(default: X)", and no control character leaks into the text (analyze.py's docstring printed ^H for the `\b` of
`\boxed`). The reference is each parser's own list of actions (argparse's), against the text it renders."""
import argparse
import unicodedata

import pytest

from cli import HelpFormatter
from test_cli import SCRIPTS, parsers


def shown_default(action):
    """The default HelpFormatter should show, or None (not None, False, empty, nor a help that shows its own)."""
    d = action.default
    if d is None or d is False or d is argparse.SUPPRESS or d in ("", [], ()) or "%(default)" in (action.help or ""):
        return None
    return " ".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_help_and_its_default_shown_and_no_control_characters(script):
    for parser in parsers(script):
        text = parser.format_help()  # what --help prints
        controls = {c for c in text if unicodedata.category(c) == "Cc" and c != "\n"}
        assert not controls, (parser.prog, controls)
        squeezed = "".join(text.split())  # argparse wraps lines at spaces and hyphens
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{parser.prog} {'/'.join(action.option_strings) or action.dest}: no help text"
            if (default := shown_default(action)) is not None:
                assert "".join(f"(default: {default})".split()) in squeezed, (parser.prog, action.dest, default)


def test_the_formatter_shows_defaults_worth_showing_once():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--n", type=int, default=0, help="zero is a default")
    parser.add_argument("--name", help="unset")
    parser.add_argument("--flag", action="store_true", help="off")
    parser.add_argument("--both", action=argparse.BooleanOptionalAction, default=True, help="on")
    parser.add_argument("--pair", type=float, nargs=2, default=(0.9, 0.95), help="two")
    parser.add_argument("--pct", default="50%", help="a percent")
    text = " ".join(parser.format_help().split())
    assert "zero is a default (default: 0)" in text and "unset --flag" in text and "off --both" in text
    assert text.count("(default: True)") == 1 and "two (default: 0.9 0.95)" in text and "(default: 50%)" in text
