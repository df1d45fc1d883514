"""analysis/weights.py (analyze.py weights) on synthetic checkpoints with planted weight shifts.

References: masks and overlaps computed by hand from the planted index sets (Python sets); the random-mask baseline
against a simulation of random masks; cosines against their defining cases (identical 1, opposite −1, independent ≈ 0
within a stated bound) and float64 numpy on whole tensors; memory by counting the tensors read from checkpoints that
are alive at once.
"""
import json
import math
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import analyze
from analysis import weights
from model import TINY_DIR, CheckpointError, CheckpointReader, Qwen3Config, Qwen3ForCausalLM, save_checkpoint

CFG = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: more threads only fight each other


def base_state(cfg=CFG, seed=1, scale=1.0):
    model = Qwen3ForCausalLM(cfg)
    model.init_weights(seed)
    return {k: v.detach() * (scale if not k.endswith("norm.weight") else 1.0)
            for k, v in model.state_dict().items() if k != "lm_head.weight"}


def write(root: Path, label: str, state: dict, cfg=CFG, dtype=torch.float32):
    save_checkpoint(root / label, ((k, v.to(dtype)) for k, v in state.items()), cfg, source_dir=TINY_DIR)
    return f"{label}={root / label}"


def run_weights(root: Path, base: dict, models: dict):
    write(root, "sft", base)
    analyze.main(["weights", f"--base={root / 'sft'}", "--models", *(write(root, k, v) for k, v in models.items()),
                  f"--out={root / 'out'}"])
    return json.loads((root / "out" / "weights.json").read_text())


def gen(key: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(key.encode()))


# -----------------------------------------------------------------------------
# Masks and Jaccard overlaps: planted index sets


def planted(base: dict, label: str, fraction: float, also: dict | None = None):
    """base with a random `fraction` of each tensor's entries scaled by 1.01 (changed: |δ| = 0.01 |θ| > η max) and
    another disjoint `fraction` scaled by 1.0005 (unchanged at η = 1e-3). Returns the state and the changed sets
    {name: set of flat indices}; entries in `also` (sets) are changed too."""
    state, changed = {}, {}
    for name, t in base.items():
        order = torch.randperm(t.numel(), generator=gen(f"{label}/{name}")).tolist()
        k = int(fraction * t.numel())
        changed[name] = set(order[:k]) | (also or {}).get(name, set())
        below = set(order[k:2 * k]) - changed[name]
        factor = torch.ones(t.numel())
        factor[list(changed[name])] = 1.01
        factor[list(below)] = 1.0005
        state[name] = t * factor.view(t.shape)
    return state, changed


def test_masks_and_jaccard_equal_the_planted_sets(tmp_path):
    """Reference: |A ∩ B| / |A ∪ B| and |A| / n from the planted index sets, per module type and over the model;
    sub-threshold shifts (0.05% < η) must not count."""
    base = base_state()
    a, set_a = planted(base, "a", 0.2)
    shared = {name: set(list(s)[:len(s) // 2]) for name, s in set_a.items()}  # half of a's entries also move in b
    b, set_b = planted(base, "b", 0.1, also=shared)
    report = run_weights(tmp_path, base, {"a": a, "b": b})

    for kind in ("q", "down", "other", "all"):
        names = [n for n in base if kind == "all" or weights.module_type(n) == kind]
        n = sum(base[name].numel() for name in names)
        size_a, size_b = (sum(len(s[name]) for name in names) for s in (set_a, set_b))
        inter = sum(len(set_a[name] & set_b[name]) for name in names)
        assert report["entries"][kind] == n
        assert report["density"][kind]["a"] == pytest.approx(size_a / n, abs=1e-12)
        assert report["density"][kind]["b"] == pytest.approx(size_b / n, abs=1e-12)
        assert report["jaccard"][kind]["a"]["b"] == pytest.approx(inter / (size_a + size_b - inter), abs=1e-12)
        assert report["jaccard"][kind]["a"]["a"] == 1.0
    name = "model.layers.1.mlp.up_proj.weight"
    assert report["tensors"][name]["density"]["b"] == pytest.approx(len(set_b[name]) / base[name].numel())
    assert weights.module_type("model.layers.0.self_attn.q_norm.weight") == "other"


def test_random_baseline_formula_equals_simulation():
    """Reference: the mean Jaccard of independent uniform random masks of densities p_i, p_j, simulated."""
    density = torch.tensor([0.05, 0.2, 0.5], dtype=torch.float64)
    n, draws = 20_000, 50
    g = torch.Generator().manual_seed(0)
    simulated = torch.zeros(3, 3, dtype=torch.float64)
    for _ in range(draws):
        masks = torch.rand(3, n, generator=g, dtype=torch.float64) < density[:, None]
        for i in range(3):
            for j in range(3):
                if i != j:
                    simulated[i, j] += (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum() / draws
    formula = weights.random_jaccard(density)
    off = ~torch.eye(3, dtype=torch.bool)
    # relative spread of one draw's Jaccard is ~1/sqrt(n p_i p_j) <= 7%; over 50 draws, 1%
    torch.testing.assert_close(simulated[off], formula[off], rtol=0.03, atol=0)


# -----------------------------------------------------------------------------
# Cosines of the shifts: exact and after the random projection


def shifts(base: dict, key: str, scale=0.01) -> dict:
    return {name: torch.randn(t.shape, generator=gen(f"{key}/{name}")) * scale for name, t in base.items()}


def cosine_models(base: dict):
    d, other, third = shifts(base, "d"), shifts(base, "other"), shifts(base, "third")
    return {"same": {k: base[k] + d[k] for k in base},
            "twin": {k: base[k] + d[k] for k in base},
            "opposite": {k: base[k] - d[k] for k in base},
            "independent": {k: base[k] + other[k] for k in base},
            "partial": {k: base[k] + 0.6 * d[k] + 0.8 * third[k] for k in base}}  # exact cosine with d ≈ 0.6


def test_cosines_identical_opposite_independent(tmp_path):
    """Identical shifts: 1; opposite: −1; independent: exact |cos| ≤ 4/√n, projected |cos| ≤ 4/√256 = 0.25
    (4σ of N(0, 1/k)); projected within 0.25 of exact for a correlated pair. Exact cosines against float64 numpy on
    the concatenated shifts of each module type."""
    base = base_state()
    models = cosine_models(base)
    report = run_weights(tmp_path, base, models)
    for kind, exact in report["cosine"].items():
        projected = report["cosine_projected"][kind]
        names = [n for n in base if kind == "all" or weights.module_type(n) == kind]
        flat = {m: np.concatenate([(models[m][n].numpy().astype(np.float64) - base[n].numpy()).ravel()
                                   for n in names]) for m in models}
        for a in models:
            for b in models:
                u, v = flat[a], flat[b]
                assert exact[a][b] == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-6)
        for cos in (exact, projected):
            assert cos["same"]["twin"] == pytest.approx(1.0, abs=1e-6)
            assert cos["same"]["opposite"] == pytest.approx(-1.0, abs=1e-6)
        assert abs(exact["same"]["independent"]) <= 4 / math.sqrt(report["entries"][kind])
        assert abs(projected["same"]["independent"]) <= 4 / math.sqrt(weights.PROJ_DIM)
        assert abs(projected["same"]["partial"] - exact["same"]["partial"]) <= 0.25
    assert report["cosine"]["all"]["same"]["partial"] == pytest.approx(0.6, abs=0.02)


def test_chunking_changes_no_exact_number(tmp_path, monkeypatch):
    """Reference: the same analysis in one chunk per tensor. Chunks of 100 entries (every tensor but the norms is
    split, the last chunk short) leave masks, overlaps and exact cosines unchanged, and the projection still maps the
    same entries alike in every model (identical 1, opposite −1)."""
    base = base_state()
    models = cosine_models(base)
    whole = run_weights(tmp_path / "whole", base, models)
    monkeypatch.setattr(weights, "CHUNK", 100)
    chunked = run_weights(tmp_path / "chunked", base, models)
    for key in ("entries", "density", "jaccard", "jaccard_random"):
        assert chunked[key] == whole[key]
    for kind in whole["cosine"]:
        for a in models:
            for b in models:
                assert chunked["cosine"][kind][a][b] == pytest.approx(whole["cosine"][kind][a][b], abs=1e-12)
        assert chunked["cosine_projected"][kind]["same"]["opposite"] == pytest.approx(-1.0, abs=1e-6)
    assert chunked["projected"]["all"]["same"] != whole["projected"]["all"]["same"]  # other chunks, other matrices


def test_overlap_cosine_is_the_cosine_on_the_jointly_changed_entries(tmp_path):
    """Fig. 3's cosine "in the overlapping regions". Planted: a and b shift the same middle third of every tensor
    identically, and each also its own disjoint third: all-entries cosine 1/2, overlap cosine exactly 1; c shifts
    the middle third the other way: -1 on the overlap. Reference: float64 numpy on the concatenated shifts restricted
    to the entries both masks hold, per module type, and Fig. 3 = the mean of attention's and FFN's."""
    base = base_state()
    d = shifts(base, "d", scale=0.05)
    thirds = {n: torch.arange(t.numel()).view(t.shape) * 3 // t.numel() for n, t in base.items()}  # 0, 1, 2
    models = {"a": {n: base[n] + d[n] * (thirds[n] <= 1) for n in base},
              "b": {n: base[n] + d[n] * (thirds[n] >= 1) for n in base},
              "c": {n: base[n] - d[n] * (thirds[n] == 1) for n in base}}
    report = run_weights(tmp_path, base, models)

    def reference(names, a, b):
        u, v, mu, mv = [], [], [], []
        for n in names:
            for delta, m, theta in ((u, mu, models[a][n]), (v, mv, models[b][n])):
                shift = theta.numpy() - base[n].numpy()  # fp32, as analyze's masks
                delta.append(shift.astype(np.float64).ravel())
                m.append((np.abs(shift) > 1e-3 * np.maximum(np.abs(theta.numpy()), np.abs(base[n].numpy()))).ravel())
        u, v, joint = np.concatenate(u), np.concatenate(v), np.concatenate(mu) & np.concatenate(mv)
        return u[joint] @ v[joint] / np.linalg.norm(u[joint]) / np.linalg.norm(v[joint])

    for kind in ("q", "down", "all"):
        names = [n for n in base if kind == "all" or weights.module_type(n) == kind]
        for a, b in (("a", "b"), ("a", "c"), ("b", "c")):
            assert report["cosine_overlap"][kind][a][b] == pytest.approx(reference(names, a, b), abs=1e-9)
    assert report["cosine_overlap"]["all"]["a"]["b"] == pytest.approx(1.0, abs=1e-6)
    assert report["cosine"]["all"]["a"]["b"] == pytest.approx(0.5, abs=0.05)  # what the all-entries cosine says
    assert report["cosine_overlap"]["all"]["a"]["c"] == pytest.approx(-1.0, abs=1e-6)
    groups = [[n for n in base if weights.module_type(n) in kinds] for kinds in weights.FIG3_GROUPS.values()]
    assert report["cosine_overlap_fig3"]["a"]["c"] == pytest.approx(np.mean([reference(g, "a", "c") for g in groups]))
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Fig. 3" in summary and "| a / b |" in summary


def test_four_checkpoints_hold_one_tensor_each_at_most(tmp_path, monkeypatch):
    """Memory bound: at any moment at most one tensor read from each checkpoint is alive (base + 4 models = 5), each
    read exactly once. Counted by wrapping CheckpointReader.get and finalizing every tensor it returns; chunks of 100
    entries so the chunk loop runs."""
    base = base_state()
    models = {label: shifts(base, label) for label in ("math", "code", "science", "if")}
    models = {label: {k: base[k] + d[k] for k in base} for label, d in models.items()}
    alive, peak, reads = [0], [0], []
    get = CheckpointReader.get

    def counting_get(self, name, device="cpu"):
        tensor = get(self, name, device)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        reads.append((str(self.path), name))
        weakref.finalize(tensor, lambda: alive.__setitem__(0, alive[0] - 1))
        return tensor

    monkeypatch.setattr(CheckpointReader, "get", counting_get)
    monkeypatch.setattr(weights, "CHUNK", 100)
    run_weights(tmp_path, base, models)
    assert peak[0] == 5 and alive[0] == 0
    assert len(reads) == len(set(reads)) == 5 * len(base)


def test_models_in_another_dtype_count_only_real_shifts(tmp_path):
    """Issue 17.7: bf16 models of an fp32 SFT model (and an fp32 model of a bf16 one) are analysed, not refused.
    Reference: the planted shifts (10% of the entries moved by 10% of their value): bf16 rounding of the untouched
    entries, up to 2^-9 of their value and so above η = 1e-3, must count as no shift at all."""
    base = base_state()
    planted = {k: (torch.rand(v.shape, generator=gen(f"planted/{k}")) < 0.1) for k, v in base.items()}
    moved = {k: v * (1 + 0.1 * planted[k]) for k, v in base.items()}
    write(tmp_path, "sft", base)
    models = [write(tmp_path, "copy", base, dtype=torch.bfloat16), write(tmp_path, "moved", moved, dtype=torch.bfloat16)]
    analyze.main(["weights", f"--base={tmp_path / 'sft'}", "--models", *models, f"--out={tmp_path / 'out'}"])
    density = json.loads((tmp_path / "out" / "weights.json").read_text())["density"]["all"]
    assert density["copy"] == 0
    assert density["moved"] == sum(p.sum().item() for p in planted.values()) / sum(p.numel() for p in planted.values())
    write(tmp_path, "sft16", base, dtype=torch.bfloat16)
    up = write(tmp_path, "up", {k: v.bfloat16().float() for k, v in base.items()})  # the bf16 base, saved as fp32
    analyze.main(["weights", f"--base={tmp_path / 'sft16'}", "--models", up, f"--out={tmp_path / 'out'}"])
    assert json.loads((tmp_path / "out" / "weights.json").read_text())["density"]["all"]["up"] == 0


def test_mismatched_checkpoints_are_refused(tmp_path):
    """As merge.py: a model missing a tensor."""
    base = base_state()
    write(tmp_path, "sft", base)
    short = write(tmp_path, "short", {k: v for k, v in base.items() if k != "model.norm.weight"})
    with pytest.raises(CheckpointError, match=r"--models short=.*'model.norm.weight' of the base .* is missing"):
        analyze.main(["weights", f"--base={tmp_path / 'sft'}", "--models", short, f"--out={tmp_path / 'out'}"])
