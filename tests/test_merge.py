"""merge.py against hand computations in numpy on small random "models" (a micro Qwen3, ~20 tensors, known seeds),
against the methods' defining properties, and against transformers (the merged directory loads there with our logits).

The references here re-derive each method from its formula on whole tensors held in memory; only the DARE mask is
taken from merge.py's documented contract (torch.rand from a generator seeded by crc32("seed/label/name")).
"""
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import merge
import merge_methods
from merge_methods import METHODS
from model import CheckpointError, Qwen3Config, Qwen3ForCausalLM, load_model, save_checkpoint

CFG = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
LABELS = ("math", "code", "science")


def sparse_noise(label, name, shape, seed=0):
    """A task vector: N(0, 0.01) on a random 60% of the entries, zero elsewhere (so models overlap and conflict)."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"noise/{seed}/{label}/{name}".encode()))
    return torch.randn(shape, generator=gen) * 0.01 * (torch.rand(shape, generator=gen) < 0.6)


def write_models(root: Path, delta=sparse_noise, labels=LABELS, dtype=torch.float32, cfg=CFG, shard_bytes=2**30):
    """base = a random micro Qwen3; model `label` = base + delta(label, name, shape); all saved as HF directories."""
    model = Qwen3ForCausalLM(cfg)
    model.init_weights(seed=1)
    base = {k: v.detach() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_checkpoint(root / "base", ((k, v.to(dtype)) for k, v in base.items()), cfg, max_shard_bytes=shard_bytes)
    for label in labels:
        tensors = ((k, (v + delta(label, k, v.shape)).to(dtype)) for k, v in base.items())
        save_checkpoint(root / label, tensors, cfg, max_shard_bytes=shard_bytes)
    return [f"--base={root / 'base'}", "--models", *(f"{label}={root / label}" for label in labels)]


def load(path) -> dict:
    """Every tensor of a checkpoint directory as a float32 numpy array (safetensors directly, not model.py)."""
    tensors = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        tensors.update({k: v.float().numpy() for k, v in load_file(file).items()})
    return tensors


def inputs(root, labels=LABELS):
    base = load(root / "base")
    return base, [load(root / label) for label in labels]


def run(root, argv, out="out"):
    merge.main([*argv, f"--out={root / out}"])
    return load(root / out)


def check(merged, expected, atol=1e-6):
    assert sorted(merged) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(merged[name], expected[name], rtol=0, atol=atol, err_msg=name)


def ties_reference(base, models, density, weights, scope, scale=1.0):
    """TIES from its definition: keep |δ_i| ≥ the k-th smallest |δ_i| (k = ⌊n (1 − density)⌋, n over the whole model
    or per tensor), elect s = sign(Σ w_i δ_i) (0 → +), weighted mean over the agreeing nonzero entries."""
    names, w = sorted(base), np.asarray(weights, dtype=np.float64)[:, None]
    deltas = {n: np.stack([m[n] - base[n] for m in models]).reshape(len(models), -1) for n in names}  # fp32 subtraction
    if scope == "model":
        everything = np.abs(np.concatenate([deltas[n] for n in names], axis=1))
        k = int(everything.shape[1] * (1 - density))
        threshold = np.sort(everything, axis=1)[:, k - 1]
    out = {}
    for n in names:
        d = deltas[n]
        if scope == "tensor":
            threshold = np.sort(np.abs(d), axis=1)[:, int(d.shape[1] * (1 - density)) - 1]
        d = np.where(np.abs(d) >= threshold[:, None], d, 0).astype(np.float64)
        sign = np.where((w * d).sum(0) >= 0, 1.0, -1.0)
        agree = np.sign(d) == sign
        count = (w * agree).sum(0)
        mean = (w * d * agree).sum(0) / np.where(count == 0, 1, count)
        out[n] = base[n] + scale * mean.reshape(base[n].shape)
    return out


def dare_reference(base, models, p, seed, labels=LABELS):
    """Models whose task vectors went through DARE: drop with probability p (the mask per merge.py's documented seeding
    contract), survivors × 1/(1 − p) in float32."""
    out = []
    for label, m in zip(labels, models):
        dropped = {}
        for n in base:
            gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{label}/{n}".encode()))
            keep = (torch.rand(base[n].shape, generator=gen) >= p).numpy()
            delta = m[n] - base[n]
            dropped[n] = base[n] + (delta * np.where(keep, np.float32(1 / (1 - p)), np.float32(0)))
        out.append(dropped)
    return out


# -----------------------------------------------------------------------------
# Each method against a hand computation


def test_average_and_task_arithmetic_match_their_formulas(tmp_path):
    """Reference: Σ w_i θ_i / Σ w_i and θ_b + λ Σ w_i δ_i in float64 numpy."""
    argv = write_models(tmp_path)
    base, models = inputs(tmp_path)
    w = np.array([1.0, 2.0, 0.5])
    weights = ["--weights", "math=1", "code=2", "science=0.5"]
    merged = run(tmp_path, [*argv, "--method=average", *weights])
    check(merged, {n: sum(wi * m[n].astype(np.float64) for wi, m in zip(w, models)) / w.sum() for n in base})
    merged = run(tmp_path, [*argv, "--method=task_arithmetic", "--scale=0.7", *weights])
    check(merged, {n: base[n] + 0.7 * sum(wi * (m[n] - base[n]) for wi, m in zip(w, models)) for n in base})


@pytest.mark.parametrize("scope", ["model", "tensor"])
def test_ties_matches_hand_computation(tmp_path, scope):
    """Reference: ties_reference (np.sort for the k-th magnitude, over the whole model or per tensor)."""
    argv = write_models(tmp_path)
    base, models = inputs(tmp_path)
    merged = run(tmp_path, [*argv, "--method=ties", f"--ties-scope={scope}", "--density=0.3", "--scale=0.9",
                            "--weights", "math=1", "code=2", "science=0.5"])
    check(merged, ties_reference(base, models, 0.3, [1, 2, 0.5], scope, scale=0.9))
    report = json.loads((tmp_path / "out" / "merge_report.json").read_text())
    assert ("ties_thresholds" in report) == (scope == "model")
    # about 30% of each task vector survives the trim (60% of the entries are nonzero, so the threshold is one of them)
    assert all(abs(k - 0.3) < 0.01 for k in report["kept"].values())


def test_ties_dare_and_ta_dare_with_fixed_seed(tmp_path):
    """Reference: DARE per the documented seeding (dare_reference), then ties_reference / task arithmetic in numpy."""
    argv = write_models(tmp_path)
    base, models = inputs(tmp_path)
    dropped = dare_reference(base, models, p=0.3, seed=7)
    merged = run(tmp_path, [*argv, "--method=ties_dare", "--drop=0.3", "--seed=7"])
    check(merged, ties_reference(base, dropped, 0.2, [1, 1, 1], "model"))
    merged = run(tmp_path, [*argv, "--method=ta_dare", "--drop=0.3", "--seed=7"])
    check(merged, {n: base[n] + sum(m[n] - base[n] for m in dropped) for n in base})
    other = run(tmp_path, [*argv, "--method=ta_dare", "--drop=0.3", "--seed=8"], out="other")
    assert any(not np.array_equal(other[n], merged[n]) for n in base)  # the seed is used


def test_dare_drops_p_and_rescales(tmp_path):
    """Reference: DARE's definition, checked statistically on one model: each entry of the merged task vector is 0 or
    δ / (1 − p), and the dropped fraction is p within 5 standard deviations."""
    argv = write_models(tmp_path, labels=("math",), delta=lambda label, name, shape: torch.full(shape, 2**-8))
    base, (model,) = inputs(tmp_path, labels=("math",))
    merged = run(tmp_path, [*argv, "--method=ta_dare", "--drop=0.25"])
    delta = np.concatenate([(model[n] - base[n]).ravel() for n in base]).astype(np.float64)
    kept = np.concatenate([(merged[n] - base[n]).ravel() for n in base]).astype(np.float64)
    is_kept = np.abs(kept) > 0.5 * np.abs(delta)
    np.testing.assert_allclose(kept[is_kept], delta[is_kept] / 0.75, rtol=1e-4)
    np.testing.assert_allclose(kept[~is_kept], 0, atol=1e-6)
    n = delta.size
    assert abs((~is_kept).mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)


@pytest.mark.parametrize("select_topk", [1.0, 0.5])
def test_sce_matches_hand_computation(tmp_path, select_topk):
    """Reference: SCE from its definition in numpy — top-k variance positions (np.argsort), per-tensor weights
    mean(δ_i²)/Σ, sign election on Σ δ_i, weighted mean over the agreeing entries; weights also checked in the report."""
    argv = write_models(tmp_path)
    base, models = inputs(tmp_path)
    merged = run(tmp_path, [*argv, "--method=sce", f"--select-topk={select_topk}"])
    report = json.loads((tmp_path / "out" / "merge_report.json").read_text())
    expected = {}
    for n in base:
        d = np.stack([(m[n] - base[n]).ravel() for m in models]).astype(np.float64)
        if select_topk < 1:
            variance = d.var(0)
            k = int(select_topk * np.count_nonzero(variance))
            mask = np.zeros(d.shape[1])
            mask[np.argsort(-variance)[:k]] = 1
            d = d * mask
        w = (d ** 2).mean(1)
        w = w / w.sum()
        np.testing.assert_allclose(report["tensors"][n]["sce_weights"], w, rtol=1e-5, err_msg=n)
        sign = np.where(d.sum(0) >= 0, 1.0, -1.0)
        agree = np.sign(d) == sign
        count = (w[:, None] * agree).sum(0)
        mean = (w[:, None] * d * agree).sum(0) / np.where(count == 0, 1, count)
        expected[n] = base[n] + mean.reshape(base[n].shape)
    check(merged, expected)


def test_exact_sign_tie_elects_plus():
    """Reference: mergekit's get_mask(method="sum") — where Σ δ_i is exactly 0 the elected sign is +; worked by hand:
    δ = [[+1, +1, 0, -2], [-1, 0, 0, +1]] -> [+1, +1, 0, -2]."""
    params = dict(scale=1.0, density=1.0, ties_scope="tensor")
    thetas = torch.tensor([[1.0, 1.0, 0.0, -2.0], [-1.0, 0.0, 0.0, 1.0]])
    merged, _, _ = merge_methods.merge_tensor(METHODS["ties"], params, torch.zeros(4), thetas, torch.ones(2))
    assert merged.tolist() == [1.0, 1.0, 0.0, -2.0]


class FakeCheckpoints:
    """What model_wide_thresholds reads: a base of zeros, so the task vectors are the given values."""

    def __init__(self, values: dict):
        self.values, self.names, self.labels, self.device = values, list(values), ["a", "b"], "cpu"
        self.shapes = {n: tuple(v.shape[1:]) for n, v in values.items()}
        self.numel = {n: v[0].numel() for n, v in values.items()}

    def read(self, name, rows=slice(None)):
        values = self.values[name][:, rows]
        return torch.zeros(values.shape[1:]), values.clone()


@pytest.mark.parametrize("density", [0.2, 0.5, 0.97])
def test_model_wide_threshold_is_the_exact_kth_value(density):
    """Reference: np.sort over all entries. Hard inputs for a histogram: 70% exact zeros, many repeated values,
    subnormals, values 2^-40..2^10 apart and two numbers one float32 ulp apart."""
    gen = torch.Generator().manual_seed(0)

    def tensor(shape):
        x = torch.randn(2, *shape, generator=gen) * 2.0 ** torch.randint(-40, 10, (2, *shape), generator=gen)
        x[torch.rand(x.shape, generator=gen) < 0.7] = 0
        x[torch.rand(x.shape, generator=gen) < 0.1] = 1e-3
        x.view(-1)[:4] = torch.tensor([1e-40, -1e-41, 1.0, float(np.nextafter(np.float32(1), np.float32(2)))])
        return x

    values = {"a": tensor((300, 7)), "b": tensor((1000,)), "c": tensor((3, 5, 11))}
    thresholds = merge.model_wide_thresholds(FakeCheckpoints(values), density)
    everything = np.abs(np.concatenate([v.reshape(2, -1).numpy() for v in values.values()], axis=1))
    k = int(everything.shape[1] * (1 - density))
    np.testing.assert_array_equal(thresholds.numpy(), np.sort(everything, axis=1)[:, k - 1])


@pytest.mark.parametrize("method", ["average", "task_arithmetic", "ta_dare", "ties", "ties_dare", "sce"])
def test_row_blocks_merge_as_whole_tensors(tmp_path, monkeypatch, method):
    """Reference: the same merge with every tensor read whole (the tests above check that one against numpy). Read in
    blocks of a few rows instead — the DARE masks drawn block by block from one generator, the model-wide thresholds
    and the report's fractions summed over blocks —, the output and the report are bit for bit the same."""
    argv = write_models(tmp_path, dtype=torch.bfloat16)
    whole = run(tmp_path, [*argv, f"--method={method}"], out="whole")
    monkeypatch.setattr(merge, "BLOCK_ENTRIES", 100)  # 3 rows of the (64, 32) embedding per block
    blocks = run(tmp_path, [*argv, f"--method={method}"], out="blocks")
    check(blocks, whole, atol=0)
    reports = [json.loads((tmp_path / out / "merge_report.json").read_text()) for out in ("whole", "blocks")]
    assert reports[0]["tensors"] == reports[1]["tensors"]


# -----------------------------------------------------------------------------
# Properties


def test_average_of_identical_models_is_the_model(tmp_path):
    """Property: mean(θ, θ, θ) = θ, bit for bit in bf16; inputs sharded (index path) and the dtype kept."""
    same = lambda label, name, shape: sparse_noise("one", name, shape)
    argv = write_models(tmp_path, delta=same, dtype=torch.bfloat16, shard_bytes=20_000)
    assert (tmp_path / "math" / "model.safetensors.index.json").exists()
    merged = run(tmp_path, [*argv, "--method=average"])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    check(merged, load(tmp_path / "math"), atol=0)


def test_task_arithmetic_of_one_model_is_the_model(tmp_path):
    """Property: θ_b + 1·(θ − θ_b) = θ (bf16 in, bf16 out, bit for bit)."""
    argv = write_models(tmp_path, labels=("math",), dtype=torch.bfloat16)
    merged = run(tmp_path, [*argv, "--method=task_arithmetic"])
    base, (model,) = inputs(tmp_path, labels=("math",))
    check(merged, model, atol=0)


def test_ties_without_trim_or_conflicts_is_the_disjoint_mean(tmp_path):
    """Property: with density 1 and all task vectors ≥ 0, TIES = Σ δ_i / #{i: δ_i ≠ 0} (entries all zero stay)."""
    positive = lambda label, name, shape: sparse_noise(label, name, shape).abs()
    argv = write_models(tmp_path, delta=positive)
    base, models = inputs(tmp_path)
    merged = run(tmp_path, [*argv, "--method=ties", "--density=1"])
    expected = {}
    for n in base:
        d = np.stack([m[n] - base[n] for m in models]).astype(np.float64)
        expected[n] = base[n] + d.sum(0) / np.maximum((d != 0).sum(0), 1)
    check(merged, expected)


# -----------------------------------------------------------------------------
# The output loads in transformers with our logits; validation errors come before any write


def test_merged_tiny_checkpoint_loads_in_transformers_with_equal_logits(tmp_path):
    """Reference: transformers' Qwen3ForCausalLM.from_pretrained on the merged directory (the embedded tiny demo)."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "out"
    merge.main([f"--out={out}", "--method=ties_dare", "--ties-scope=tensor"])
    assert {"config.json", "generation_config.json", "merge_args.json", "merge_report.json"} <= set(os.listdir(out))
    assert "lm_head.weight" not in load(out)  # tied embeddings stay tied
    assert json.loads((out / "merge_args.json").read_text())["method"] == "ties_dare"
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(0))
    ours = load_model(out)
    theirs = transformers.Qwen3ForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours.logits(ours(ids)), theirs(ids).logits, rtol=1e-4, atol=1e-4)


def test_mismatched_checkpoints_fail_before_writing(tmp_path):
    """Reference: the issue's validation list — each error names the model directory and the key; nothing is written."""
    argv = write_models(tmp_path)
    out = tmp_path / "out"
    wider = Qwen3Config(**{**vars(CFG), "intermediate_size": 64})
    write_models(tmp_path / "wide", cfg=wider, labels=("math",))
    with pytest.raises(CheckpointError, match=r"math=.*wide.*intermediate_size"):
        merge.main([*argv[:2], f"math={tmp_path / 'wide' / 'math'}", f"--out={out}"])
    tensors = load_file(tmp_path / "code" / "model.safetensors")
    dropped = sorted(tensors)[3]
    del tensors[dropped]
    save_checkpoint(tmp_path / "short", tensors.items(), CFG)
    with pytest.raises(CheckpointError, match=rf"code=.*short.*{dropped}"):
        merge.main([*argv[:2], f"code={tmp_path / 'short'}", f"--out={out}"])
    garbage = tmp_path / "garbage"
    save_checkpoint(garbage, tensors.items(), CFG)
    (garbage / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match=rf"{garbage / 'model.safetensors'}: not a readable safetensors file"):
        merge.main([*argv[:2], f"code={garbage}", f"--out={out}"])
    with pytest.raises(SystemExit):
        merge.main([*argv, "--method=average", "--density=0.5", f"--out={out}"])
    assert not out.exists()


def test_model_equal_to_base_warns(tmp_path):
    """Reference: the issue's rule — a zero task vector is worth a warning, not an error."""
    def zero_for_code(label, name, shape):
        return torch.zeros(shape) if label == "code" else sparse_noise(label, name, shape)

    argv = write_models(tmp_path, delta=zero_for_code)
    with pytest.warns(UserWarning, match="code=.*task vector is zero"):
        merge.main([*argv, "--method=ties", f"--out={tmp_path / 'out'}"])


# -----------------------------------------------------------------------------
# Issue 18: --out never loses data; a wrong base is caught; user errors are one line


def test_out_is_replaced_only_when_it_is_an_earlier_merge(tmp_path, monkeypatch):
    """Reference: the rule of DESIGN.md's conventions — an output directory is replaced only when it is the script's
    own earlier output (merge_report.json) or empty; never a foreign directory, an input, a directory holding an input,
    or the working directory. Each refusal comes before any model is read (a missing --base would fail otherwise)."""
    argv = write_models(tmp_path)
    users = tmp_path / "users"
    (users / "sub").mkdir(parents=True)
    (users / "notes.txt").write_text("mine")
    nowhere = ["--base", str(tmp_path / "no-such-base"), "--models", f"math={tmp_path / 'math'}"]
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # empty: only being the working directory forbids it
    for out, pattern in [(users, "exists and is not an earlier output of this script"),
                         (tmp_path / "math", r"is \(or holds\) the input .*math"),
                         (tmp_path, r"is \(or holds\) the input .*no-such-base"), (".", "the working directory")]:
        with pytest.raises(CheckpointError, match=rf"--out {out} {pattern}" if out != "." else pattern):
            merge.main([*nowhere, f"--out={out}"])
    assert (users / "notes.txt").read_text() == "mine" and (users / "sub").is_dir()
    monkeypatch.chdir(tmp_path)
    first = run(tmp_path, [*argv, "--method=average"], out="merged")  # new: written
    (tmp_path / "empty").mkdir()
    run(tmp_path, [*argv, "--method=average"], out="empty")  # empty: written
    second = run(tmp_path, [*argv, "--method=task_arithmetic"], out="merged")  # an earlier merge: replaced
    assert json.loads((tmp_path / "merged" / "merge_report.json").read_text())["method"] == "task_arithmetic"
    assert any(not np.array_equal(first[n], second[n]) for n in first)
    with pytest.raises(CheckpointError, match="is .*the input"):  # a merge of merges may not overwrite its base
        merge.main(["--base", str(tmp_path / "merged"), "--models", f"math={tmp_path / 'math'}",
                    f"--out={tmp_path / 'merged'}"])
    assert load(tmp_path / "merged").keys() == second.keys()


def test_wrong_base_is_refused_unless_overridden(tmp_path):
    """Issue 18.11: models fine-tuned from base A merged onto base B of the same shapes. Reference: B is an independent
    random init (its matrices are uncorrelated with A's: cosine ~0). Refused in the threshold pass (ties) and in the
    writing pass (task arithmetic) alike, leaving no output and no temporary; --skip-base-check merges."""
    argv = write_models(tmp_path)
    other = Qwen3ForCausalLM(CFG)
    other.init_weights(seed=2)
    save_checkpoint(tmp_path / "other", other.state_dict().items(), CFG)
    wrong = [f"--base={tmp_path / 'other'}", *argv[1:]]
    before = sorted(os.listdir(tmp_path))
    for method in ("ties", "task_arithmetic"):
        with pytest.raises(CheckpointError, match=r"--models math=.*cosine -?0\.\d\d with the base .*other.*another "
                                                  r"base\? \(--skip-base-check"):
            run(tmp_path, [*wrong, f"--method={method}"])
        assert sorted(os.listdir(tmp_path)) == before
    merged = run(tmp_path, [*wrong, "--method=task_arithmetic", "--skip-base-check"])
    base, models = load(tmp_path / "other"), inputs(tmp_path)[1]
    check(merged, {n: base[n] + sum(m[n] - base[n] for m in models) for n in base}, atol=1e-5)


def test_user_errors_are_one_line(tmp_path):
    """Issue 18.9: run as a script, a bad input is one line on stderr naming it, and exit status 1 (no traceback)."""
    import subprocess
    import sys
    argv = write_models(tmp_path, labels=("math",))
    (tmp_path / "math" / "config.json").write_text("{not json")
    result = subprocess.run([sys.executable, str(Path(merge.__file__)), *argv, f"--out={tmp_path / 'out'}"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1
    assert result.stderr.strip() == f"merge.py: {tmp_path / 'math' / 'config.json'}: not valid JSON (Expecting " \
                                    f"property name enclosed in double quotes: line 1 column 2 (char 1))"


def test_inputs_in_other_float_dtypes_merge_in_fp32(tmp_path):
    """Issue 17.7: a bf16 base with fp32 fine-tunes (a Hugging Face Qwen3 and our RL outputs), and an fp32 base with a
    bf16 fine-tune. Reference: task arithmetic in float64 numpy, where a model stored coarser than the base is measured
    against the base rounded to its dtype (so pure rounding is no task vector: a bf16 copy of an fp32 base keeps 0)."""
    def bf16(x):
        return torch.from_numpy(x).bfloat16().float().numpy()

    argv = write_models(tmp_path, dtype=torch.bfloat16)  # base and models bf16 ...
    for label in LABELS:  # ... then the models re-saved as fp32, moved off the bf16 grid
        tensors = {n: torch.from_numpy(v) + 1e-4 for n, v in load(tmp_path / label).items()}
        save_checkpoint(tmp_path / label, tensors.items(), CFG)
    base, models = inputs(tmp_path)
    merged = run(tmp_path, [*argv, "--method=task_arithmetic"])
    assert {str(t.dtype) for t in load_file(tmp_path / "out" / "model.safetensors").values()} == {"torch.bfloat16"}
    check(merged, {n: bf16(base[n] + sum(m[n] - base[n] for m in models)) for n in base}, atol=1e-3)  # 1 bf16 ulp
    merged = run(tmp_path, [*argv, "--method=task_arithmetic", "--dtype=float32"])
    check(merged, {n: base[n] + sum(m[n] - base[n] for m in models) for n in base}, atol=1e-6)

    fp32 = write_models(tmp_path / "fp32", labels=("math", "code"))
    math_ = {n: torch.from_numpy(v).bfloat16() for n, v in load(tmp_path / "fp32" / "math").items()}
    save_checkpoint(tmp_path / "fp32" / "math", math_.items(), CFG)
    copy = {n: torch.from_numpy(v).bfloat16() for n, v in load(tmp_path / "fp32" / "base").items()}
    save_checkpoint(tmp_path / "fp32" / "copy", copy.items(), CFG)
    base, (m, c) = inputs(tmp_path / "fp32", labels=("math", "code"))
    with pytest.warns(UserWarning, match="copy=.*task vector is zero"):
        merged = run(tmp_path, [*fp32, f"copy={tmp_path / 'fp32' / 'copy'}", "--method=task_arithmetic"], out="mixed")
    assert {str(t.dtype) for t in load_file(tmp_path / "mixed" / "model.safetensors").values()} == {"torch.float32"}
    check(merged, {n: base[n] + (m[n] - bf16(base[n])) + (c[n] - base[n]) for n in base}, atol=1e-6)
    report = json.loads((tmp_path / "mixed" / "merge_report.json").read_text())
    assert report["kept"]["copy"] == 0 and report["kept"]["math"] > 0.5


def test_a_killed_merges_temporary_is_removed_by_the_next_merge(tmp_path):
    """Issue 18.12: a merge killed while writing leaves its hidden temporary directory (a whole model) beside --out.
    Reference: its writer's pid is dead (a process we started and reaped), so the next merge there removes it."""
    import subprocess
    import sys
    from files import HOST
    argv = write_models(tmp_path, labels=("math",))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".out.m2rl-{dead.pid}-k1ll3d@{HOST}.tmp"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\0" * 1000)
    run(tmp_path, [*argv, "--method=average"])
    assert not leftover.exists() and not list(tmp_path.glob(".*"))
