"""The scripts' command lines: value types, config files, the resume check and --help.

Value types: argparse calls them on a flag's text; a bad value stops the script at once with argparse's one line
naming the flag ("argument --steps: must be >= 1, got 0"), instead of a traceback minutes later or, worse, a run that
quietly trains with something else. --config FILE gives flags from a file (parse_args), checked by the same types; a
resume into a run directory whose args.json holds other flags stops (check_resumed_args); HelpFormatter shows every
flag's default."""
import argparse
import json
import math
from pathlib import Path

import yaml


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


def listed(items: list[str]) -> list[str]:
    """A list flag's values (nargs="+"), each of which may be comma-separated too: ['a', 'b,c'] -> ['a', 'b', 'c']."""
    return [name for item in items for name in item.split(",") if name]


def label_pairs(items, flag, value=str):
    """A labelled list flag's values: ['math=DIR', ...] -> {'math': value('DIR'), ...}"""
    pairs = {}
    for item in items:
        label, sep, rest = item.partition("=")
        if not sep or not label or not rest:
            raise SystemExit(f"{flag} expects LABEL=VALUE items, got {item!r}")
        if "=" in rest.partition(",")[2]:  # a=X,b=Y: one syntax for every labelled list, and it is not this one
            raise SystemExit(f"{flag} takes space-separated LABEL=VALUE items ({flag} a=X b=Y), got {item!r}")
        if label in pairs:
            raise SystemExit(f"{flag}: label {label!r} appears twice")
        pairs[label] = value(rest)
    return pairs


def _checked(value, text, ok, bound):
    # int()/float() raising ValueError is argparse's own "invalid positive_int value: 'x'"
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


# Config files and resumes. A run's configuration is its flags: `--config FILE` reads them from a YAML or JSON mapping
# of flag names as argparse stores them (`max_response_len`, the `args.json` a run writes), and flags on the command
# line override it. Every value goes through its flag's own type and choices, so a config file cannot hold what the
# command line would refuse.
def add_config_flag(parser: argparse.ArgumentParser):
    # default=SUPPRESS: not an attribute of the parsed args, so args.json (vars(args)) never records it
    parser.add_argument("--config", type=existing_file, metavar="FILE", default=argparse.SUPPRESS,
                        help="YAML or JSON mapping of flag names as in args.json (max_response_len: 256) to values; "
                             "a run's args.json replays it; flags given here override the file")


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """parser.parse_args(argv) with --config: the file's values stand in for the defaults, the command line's win.

    The file's values go in as a pre-filled namespace, which argparse fills with defaults only where a flag is
    absent: parser.set_defaults would do the same but change a module-level parser for every later parse."""
    unset = object()
    given = parser.parse_args(argv, argparse.Namespace(**{a.dest: unset for a in parser._actions}))
    if getattr(given, "config", unset) is unset:
        return parser.parse_args(argv)
    values = read_config(parser, given.config)
    for group in parser._mutually_exclusive_groups:  # --blend on the command line replaces a config's --data
        dests = [a.dest for a in group._group_actions]
        if any(getattr(given, dest) is not unset for dest in dests):
            for dest in dests:
                values.pop(dest, None)
    args = parser.parse_args(argv, argparse.Namespace(**values))
    del args.config
    return args


def read_config(parser: argparse.ArgumentParser, path: str) -> dict:
    """The file's {dest: value}, each value checked as its flag's command-line text would be: an unknown key or a
    value the flag would refuse stops with argparse's error line naming the file and the key."""
    text = Path(path).read_text()
    try:
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        parser.error(f"--config {path}:{e.lineno}: not valid JSON ({e.msg})")
    except yaml.YAMLError as e:  # its str() is several lines: the line number and the problem make one
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None) or type(e).__name__
        parser.error(f"--config {path}{f':{mark.line + 1}' if mark else ''}: not valid YAML ({problem})")
    if not isinstance(values, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values, got {type(values).__name__}")
    actions = {a.dest: a for a in parser._actions if a.default is not argparse.SUPPRESS}
    checked = {}
    for key, value in values.items():
        if key not in actions:
            parser.error(f"--config {path}: unknown key {key!r} (the flags' names with '_' for '-': "
                         f"{', '.join(sorted(actions))})")
        try:
            checked[key] = _config_value(actions[key], value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            parser.error(f"--config {path}: {key}: {e}")
    for group in parser._mutually_exclusive_groups:
        both = [a.dest for a in group._group_actions if checked.get(a.dest) is not None]
        if len(both) > 1:
            parser.error(f"--config {path}: {' and '.join(both)} exclude each other (as their flags do)")
    return checked


def _config_value(action: argparse.Action, value):
    if value is None:  # args.json's record of a flag not given, where its default is None
        if action.default is not None:
            raise ValueError(f"null, but the flag has a value (default {action.default!r})")
        return None
    if action.nargs == 0:  # store_true and --x/--no-x
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many != isinstance(value, list):
        raise ValueError(f"expected {'a list' if many else 'one value'}, got {value!r}")
    items = value if many else [value]
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise ValueError(f"expected {action.nargs} values, got {value!r}")
    if action.nargs == "+" and not items and action.default != []:  # [] is args.json's record of a default []
        raise ValueError(f"expected one or more values, got {value!r}")
    converted = [_config_item(action, item) for item in items]
    return converted if many else converted[0]


def _config_item(action: argparse.Action, item):
    if isinstance(item, (dict, list)) or action.type is None and not isinstance(item, str):
        # YAML reads `no` as false and `1.10` as 1.1: a text flag takes only a string (quote it)
        raise ValueError(f"expected a string, got {item!r} (quote it in YAML)")
    if action.type is not None:
        try:
            item = action.type(str(item))  # the flag's own check, on the text the command line would carry
        except ValueError:
            raise ValueError(f"invalid {getattr(action.type, '__name__', repr(action.type))} value: {item!r}")
    if action.choices is not None and item not in action.choices:
        raise ValueError(f"invalid choice: {item!r} (choose from {', '.join(map(repr, action.choices))})")
    return item


def add_engine_flag(parser: argparse.ArgumentParser, role: str):
    """--engine, one definition (and one default) for every script that generates; `role` names what it generates."""
    parser.add_argument("--engine", default="native", choices=("native", "vllm", "auto"),
                        help=f"{role} engine (rollout.py): native PyTorch, vLLM, or auto (vLLM where it is installed). "
                             "native by default: it needs nothing optional and starts at once, as the default tiny "
                             "models want; a real model on GPUs wants vllm (the recipes pass it)")


# What --engine-dtype auto means where a script leaves the dtype to vLLM (evaluate.py, analyze.py)
VLLM_AUTO_DTYPE = ("vLLM's own rule, the checkpoint's dtype but bf16 for an fp32 checkpoint; float32 computes as the "
                   "native engine does (always fp32), so the two engines' greedy texts agree")


def add_engine_dtype_flag(parser: argparse.ArgumentParser, auto: str = VLLM_AUTO_DTYPE):
    """--engine-dtype, one definition for every script that opens a vLLM engine; `auto` says what auto means there
    where the script decides it (train_grpo.py: the trainer's compute dtype)."""
    parser.add_argument("--engine-dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help=f"vLLM's compute dtype. auto: {auto}")


def add_resume_flag(parser: argparse.ArgumentParser):
    parser.add_argument("--allow-changed-args", action="store_true", default=argparse.SUPPRESS,
                        help="resume into an --out whose args.json holds other flags, and record these instead")


def check_resumed_args(out_dir: Path, flags: dict, exempt: tuple, announce: bool):
    """Resuming the run in out_dir with `flags` (vars(args): the parsed flags, by dest): stop, listing each flag that
    differs from the run's args.json (old -> new), unless --allow-changed-args; the `exempt` flags may differ (e.g.
    --steps, which extends a run). --allow-changed-args is a choice of this invocation, not a setting of the run: it
    leaves `flags` (so vars(args) too), so args.json never records it and a replay does not inherit it."""
    allowed = flags.pop("allow_changed_args", False)
    recorded = Path(out_dir) / "args.json"
    old = json.loads(recorded.read_text())
    new = json.loads(json.dumps(flags))  # as args.json will hold them: tuples as lists
    changed = [f"--{key.replace('_', '-')} {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}"
               for key in sorted(old.keys() | new.keys()) if key not in exempt and old.get(key) != new.get(key)]
    if changed and not allowed:
        raise SystemExit(f"--out {out_dir} holds a run with other flags: {', '.join(changed)}; resume it with its own "
                         f"(--config {recorded} replays them), choose another --out, or pass --allow-changed-args")
    if changed and announce:
        print(f"--allow-changed-args: resuming {out_dir} with {', '.join(changed)}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help as the scripts write it (their docstrings are laid out by hand), with each flag's default after its
    help, "(default: X)", where it has one to show: not None (the help says what happens then), False or empty."""

    def _get_help_string(self, action):
        default, help = action.default, action.help or ""
        if (default is None or default is False or default is argparse.SUPPRESS or default in ("", [], ())
                or "%(default)" in help):  # BooleanOptionalAction writes its own
            return help
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{help} (default: {shown.replace('%', '%%')})"
