"""--config FILE (cli.parse_args): a run's args.json replays it exactly, flags on the command line override the file,
every value is checked by its flag's own argparse type; resuming into an --out whose args.json holds other flags
stops and lists them (old -> new) unless --allow-changed-args; a run that fails validation leaves no --out. The
reference for what a value must become is argparse itself: the same flags parsed from the command line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train_grpo
import train_sft
from cli import parse_args

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--domains", "math", "--prompts-per-step", "2", "--group-size", "2", "--max-response-len", "16",
        "--eval-every", "0", "--reward-workers", "1", "--lr", "1e-4"]
FLAGS = ["--domains", "math,code", "--steps", "7", "--betas", "0.8", "0.9", "--mask-truncated", "--no-balance-data",
         "--top-p", "0.5", "--dry-run", "cpu", "--data", str(ROOT / "data/toy/rl/math.jsonl")]
YAML = """\
domains: math,code
steps: 7
betas: [0.8, 0.9]
mask_truncated: true
balance_data: false
top_p: 0.5
dry_run: cpu
data: [{data}]
"""


def grpo(out, *flags):
    return subprocess.run([sys.executable, str(ROOT / "train_grpo.py"), "--out", str(out), *flags], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def as_json(args) -> dict:
    return json.loads(json.dumps(vars(args)))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_gives_what_the_same_flags_give(tmp_path, suffix):
    """Reference: argparse on the same values as command-line flags."""
    path = tmp_path / f"run{suffix}"
    text = YAML.format(data=ROOT / "data/toy/rl/math.jsonl")
    import yaml
    path.write_text(text if suffix == ".yaml" else json.dumps(yaml.safe_load(text)))
    from_file, from_flags = parse_args(train_grpo.parser, ["--config", str(path)]), train_grpo.parser.parse_args(FLAGS)
    assert vars(from_file) == vars(from_flags)
    assert from_file.betas == [0.8, 0.9] and from_file.balance_data is False and from_file.steps == 7
    assert vars(parse_args(train_grpo.parser, [])) == vars(train_grpo.parser.parse_args([]))  # parser unchanged


def test_command_line_flags_override_the_file_and_a_group_member_replaces_the_files(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML.format(data=ROOT / "data/toy/rl/math.jsonl"))
    blend = str(ROOT / "data/blends/toy_sft.json")
    args = parse_args(train_grpo.parser, ["--config", str(path), "--steps", "9", "--balance-data", "--blend", blend])
    assert (args.steps, args.balance_data, args.domains) == (9, True, "math,code")
    assert args.data is None and args.blend == blend  # --data and --blend exclude each other: the command line's wins


@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "steps: 0\n", "steps: must be >= 1, got 0"),                   # the flag's own check, positive_int
    ("bad.yaml", "steps: ten\n", "steps: invalid positive_int value: 'ten'"),
    ("bad.yaml", "steps: 1.5\n", "steps: invalid positive_int value: 1.5"),      # as int("1.5") on the command line
    ("bad.yaml", "top_p: 1.5\n", "top_p: must be in (0, 1], got 1.5"),
    ("bad.yaml", "engine: tpu\n", "engine: invalid choice: 'tpu'"),
    ("bad.yaml", "mask_truncated: 1\n", "mask_truncated: expected true or false, got 1"),
    ("bad.yaml", "domains: no\n", "domains: expected a string, got False (quote it in YAML)"),  # YAML 1.1's `no`
    ("bad.yaml", "betas: 0.9\n", "betas: expected a list, got 0.9"),
    ("bad.yaml", "betas: [0.9]\n", "betas: expected 2 values, got [0.9]"),
    ("bad.yaml", "out: null\n", "out: null, but the flag has a value (default 'runs/grpo')"),
    ("bad.yaml", "data: [/no/such.jsonl]\n", "data: no such file: /no/such.jsonl"),
    ("bad.yaml", "data: [ROOT/data/toy/rl/math.jsonl]\nblend: ROOT/data/blends/toy_sft.json\n",
     "data and blend exclude each other"),
    ("bad.yaml", "stpes: 3\n", "unknown key 'stpes'"),
    ("bad.yaml", "config: other.yaml\n", "unknown key 'config'"),
    ("bad.yaml", "allow_changed_args: true\n", "unknown key 'allow_changed_args'"),
    ("bad.yaml", "- steps\n", "expected a mapping of flag names to values, got list"),
    ("bad.yaml", "steps: [1\n", "not valid YAML"),
    ("bad.json", '{"steps": 3,}', ":1: not valid JSON"),
])
def test_a_bad_config_value_fails_as_the_flag_would_naming_file_and_key(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    path.write_text(text.replace("ROOT", str(ROOT)))
    with pytest.raises(SystemExit) as exit_:
        parse_args(train_grpo.parser, ["--config", str(path)])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert f": error: --config {path}" in last and message in last, last


def test_resuming_with_other_flags_stops_listing_them_unless_allowed_and_args_json_replays_the_run(tmp_path):
    """Issue 21.4: a rerun into an existing --out with other flags resumed anyway and overwrote args.json. Now it
    stops before touching anything, listing each changed flag old -> new (--steps, which extends the run, may
    change); --allow-changed-args goes on and records the new flags, without itself. The reference for a replay is
    the recorded file: parsed back through --config it gives every value it holds."""
    out = tmp_path / "run"
    first = grpo(out, *TINY, "--steps", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    recorded, text = json.loads((out / "args.json").read_text()), (out / "args.json").read_text()
    assert as_json(parse_args(train_grpo.parser, ["--config", str(out / "args.json")])) == recorded

    changed = ["--config", str(out / "args.json"), "--steps", "2", "--lr", "0", "--top-k", "5"]
    refused = grpo(out, *changed)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"--out {out} holds a run with other flags: --lr 0.0001 -> 0.0, --top-k 0 -> 5; resume it with its own "
        f"(--config {out / 'args.json'} replays them), choose another --out, or pass --allow-changed-args")
    assert (out / "args.json").read_text() == text and not (out / "step_0000002").exists()

    allowed = grpo(out, *changed, "--allow-changed-args")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert f"--allow-changed-args: resuming {out} with --lr 0.0001 -> 0.0, --top-k 0 -> 5" in allowed.stdout
    assert "resumed from" in allowed.stdout and (out / "step_0000002").is_dir()
    now = json.loads((out / "args.json").read_text())
    assert now == {**recorded, "steps": 2, "lr": 0.0, "top_k": 5}  # and no allow_changed_args


def test_sft_args_replay_through_config(tmp_path, capsys):
    """train_sft resolves its defaults (lr, weight decay, the blend) into args before args.json records them; the
    recorded values, read back through --config, are the same run (reference: the values recorded)."""
    args = parse_args(train_sft.parser, ["--epochs", "0.5", "--seq-len", "128", "--dry-run", "cpu"])
    train_sft.main(args)  # a dry run: resolves the defaults, prints the plan, writes nothing
    path = tmp_path / "args.json"
    path.write_text(json.dumps(vars(args), indent=2))  # as dist.record_args writes it
    replayed = parse_args(train_sft.parser, ["--config", str(path)])
    assert as_json(replayed) == json.loads(path.read_text())
    assert replayed.lr == 2e-3 and replayed.blend.endswith("data/blends/toy_sft.json")
    data = str(ROOT / "data/toy/sft/math.jsonl")  # --data replaces the file's --blend: they exclude each other
    assert vars(parse_args(train_sft.parser, ["--config", str(path), "--data", data]))["blend"] is None
    assert "plan" in capsys.readouterr().out


def test_a_run_that_fails_validation_leaves_no_out_dir(tmp_path):
    """Issue 21.4: a run that failed validation left an args.json behind. GRPO: unknown --domains (in process, it
    stops before any process group); SFT: a record missing its messages, found while the data is indexed."""
    with pytest.raises(SystemExit, match="--domains 'math,chem': unknown domain"):
        train_grpo.main(parse_args(train_grpo.parser, ["--out", str(tmp_path / "grpo"), "--domains", "math,chem"]))
    assert not (tmp_path / "grpo").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "domain": "math"}\n')
    done = subprocess.run([sys.executable, str(ROOT / "train_sft.py"), "--data", str(bad), "--out", str(tmp_path / "sft")],
                          env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and f"{bad}:1: missing key 'messages'" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "sft").exists()


def test_merge_and_evaluate_args_replay_through_config(tmp_path, capsys):
    """merge.py records merge_args.json and evaluate.py args.json as vars(args), their defaults filled in (the
    method's parameters; the protocol's sampling): read back through --config they give the same values."""
    import evaluate
    import merge
    args = merge.parse_args(["--method", "ties_dare", "--weights", "a=2", "--base", "s", "--models", "a=x", "b=y"])
    path = tmp_path / "merge_args.json"
    path.write_text(json.dumps(vars(args), indent=2))  # as merge.main writes it
    assert as_json(merge.parse_args(["--config", str(path)])) == json.loads(path.read_text())
    assert merge.parse_args(["--config", str(path), "--density", "0.5"]).density == 0.5

    args = parse_args(evaluate.parser, ["--benchmarks", "toy_math", "--limit", "2", "--protocol", "m2rl",
                                        "--out", str(tmp_path / "eval"), "--dry-run"])
    evaluate.main(args)  # fills in the protocol's sampling, prints the plan, writes nothing
    path = tmp_path / "args.json"
    path.write_text(json.dumps(vars(args), indent=2))  # as evaluate.main writes it
    assert as_json(parse_args(evaluate.parser, ["--config", str(path)])) == json.loads(path.read_text())
    assert (args.temperature, args.top_p) == (1.0, 0.7) and "plan" in capsys.readouterr().out
