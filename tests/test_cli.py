"""The command lines: every flag of every script reaches the script through torchrun's own parser, out-of-range values
are refused by argparse with one line naming the flag, and bad inputs end in one line naming the file, not a
traceback."""
import argparse
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch.distributed.run import get_args_parser

from cli import VLLM_AUTO_DTYPE

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train_grpo", "train_sft", "merge", "evaluate", "analyze", "generate", "experiment")


class Parsed(Exception):
    pass


def parsers(script: str) -> list[argparse.ArgumentParser]:
    """The script's parser(s): a module-level `parser`, or the one its parse_args() builds (caught as it parses),
    and each sub-command's."""
    module = importlib.import_module(script)
    if hasattr(module, "parser"):
        parser = module.parser
    else:
        def catch(self, args=None, namespace=None):
            raise Parsed(self)
        original, argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_args, catch
        try:
            with pytest.raises(Parsed) as caught:
                module.parse_args([])
        finally:
            argparse.ArgumentParser.parse_args = original
        parser = caught.value.args[0]
    subs = [a.choices.values() for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *(p for choices in subs for p in choices)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_reaches_the_script_under_torchrun(script):
    """Reference: torch.distributed.run's own argument parser, which sees the script's flags too and refuses a
    prefix of its own (`--n` was ambiguous with --nnodes and --nproc-per-node: exit 2)."""
    torchrun = get_args_parser()
    flags = {flag for p in parsers(script) for a in p._actions for flag in a.option_strings}
    assert len(flags) > 3
    for flag in sorted(flags):
        for script_args in ([flag, "1"], [f"{flag}=1"]):
            parsed = torchrun.parse_args(["--nproc_per_node", "2", f"{script}.py", *script_args])
            assert parsed.training_script_args == script_args


@pytest.mark.parametrize("script, argv, message", [
    ("train_grpo", ["--steps", "0"], "argument --steps: must be >= 1, got 0"),
    ("train_grpo", ["--prompts-per-step", "0"], "argument --prompts-per-step: must be >= 1, got 0"),
    ("train_grpo", ["--max-response-len", "0"], "argument --max-response-len: must be >= 1, got 0"),
    ("train_grpo", ["--group-size", "0"], "argument --group-size: must be >= 1, got 0"),
    ("train_grpo", ["--lr=-1e-6"], "argument --lr: must be >= 0, got -1e-6"),
    ("train_grpo", ["--lr", "nan"], "argument --lr: must be >= 0, got nan"),
    ("train_grpo", ["--temperature", "0"], "argument --temperature: must be > 0, got 0"),
    ("train_grpo", ["--top-p", "1.5"], "argument --top-p: must be in (0, 1], got 1.5"),
    ("train_grpo", ["--steps", "ten"], "argument --steps: invalid positive_int value: 'ten'"),
    ("train_grpo", ["--model", "/no/such/model"], "argument --model: /no/such/model is not a model directory"),
    ("train_grpo", ["--data", "/no/such.jsonl"], "argument --data: no such file: /no/such.jsonl"),
    ("train_sft", ["--micro-rows", "0"], "argument --micro-rows: must be >= 1, got 0"),
    ("train_sft", ["--epochs", "0"], "argument --epochs: must be > 0, got 0"),
    ("evaluate", ["--k", "0"], "argument --k: must be >= 1, got 0"),
    ("generate", ["--temperature=-1"], "argument --temperature: must be >= 0, got -1"),
])
def test_out_of_range_values_are_refused_naming_the_flag(script, argv, message, capsys):
    """Each of these crashed with a traceback, or (--temperature=-1) was accepted."""
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(script).parser.parse_args(argv)
    assert exit_.value.code == 2
    assert f": error: {message}" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("script, flags", [("generate.py", ["--max-new-tokens", "4"]),
                                           ("train_grpo.py", ["--out", "OUT", "--data", "DATA", "--domains", "math"]),
                                           ("train_sft.py", ["--out", "OUT", "--data", "DATA"])])
def test_bad_input_ends_in_one_line_naming_the_file(script, flags, tmp_path):
    """A truncated safetensors file (generate.py) or a record with a key missing (the trainers): the script ends
    with one line naming the file, where it was a 10-33-line traceback (issue 18.9). Progress bars may precede it."""
    model, data, out = tmp_path / "model", tmp_path / "bad.jsonl", str(tmp_path / "out")
    shutil.copytree(ROOT / "data/tiny-sft", model)
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:1000])
    data.write_text('{"id": "a", "domain": "math"}\n')
    argv = [{"OUT": out, "DATA": str(data)}.get(flag, flag) for flag in flags]
    if script == "generate.py":
        argv += ["--model", str(model)]
    done = subprocess.run([sys.executable, str(ROOT / script), *argv], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    expected = (f"error: {model / 'model.safetensors'}: not a readable safetensors file" if script == "generate.py"
                else f"error: {data}:1: missing key 'messages'")
    assert done.stderr.strip().splitlines()[-1].startswith(expected)


def test_engine_dtype_is_one_flag_with_one_text():
    """Every parser that opens a vLLM engine has --engine-dtype from cli.add_engine_dtype_flag: the same choices and
    default, and the same help wherever auto is vLLM's own rule (evaluate, analyze kl and self-verify); train_grpo's
    auto is its own (the trainer's dtype). Reference: argparse's own action for each parser."""
    actions = {" ".join([script, *p.prog.split()[1:]]): a for script in SCRIPTS for p in parsers(script)
               for a in p._actions if "--engine-dtype" in a.option_strings}  # a sub-command's prog ends in its name
    assert sorted(actions) == ["analyze kl", "analyze self-verify", "evaluate", "train_grpo"]
    assert {(a.choices, a.default) for a in actions.values()} == {(("auto", "bfloat16", "float32"), "auto")}
    trainer = actions.pop("train_grpo")
    assert {a.help for a in actions.values()} == {f"vLLM's compute dtype. auto: {VLLM_AUTO_DTYPE}"}
    assert trainer.help.startswith("vLLM's compute dtype. auto: the trainer's compute dtype")
