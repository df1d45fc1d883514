"""analysis/kl.py (analyze.py kl): KL(expert || multi) on tiny checkpoints.

References: KL of a model with itself is exactly 0; Δ from hand-written evaluation files; the estimator against
explicit full-vocabulary log_softmax of our model's logits, and its mean against the exact per-prefix KL from
torch.distributions.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import analyze
from analysis import kl
from data.record import load_records
from logprobs import sample_logprobs
from model import TINY_DIR, Qwen3Config, SamplingParams, load_model
from rollout import NativeEngine
from test_analysis_gains import eval_file
from test_analysis_weights import base_state, gen, write
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: more threads only fight each other

# vocab 512 for the tiny tokenizer; large weights so that the next-token distributions are far from uniform
KL_CFG = Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=32, tie_word_embeddings=True, bos_token_id=507, eos_token_id=509)


def kl_models(root: Path):
    base = base_state(KL_CFG, seed=3, scale=10.0)
    other = {k: v + torch.randn(v.shape, generator=gen(f"kl/{k}")) * 0.01 for k, v in base.items()}
    return write(root, "expert", base, KL_CFG), write(root, "other", other, KL_CFG)


def test_kl_of_a_model_with_itself_is_zero_and_deltas_by_hand(tmp_path, monkeypatch):
    """KL(model || itself) is exactly 0 (k1 and k3); another model gives KL > 0; the responses are sampled from the
    experts (the engines opened), never from the multi-task model. Δ = Avg(multi) − Avg(expert) from hand-written
    evaluation files."""
    expert, other = kl_models(tmp_path)
    opened = []
    open_engine = kl.open_engine

    def recording(path, *args, dtype):
        opened.append((Path(path).name, dtype))
        return open_engine(path, *args, dtype=dtype)

    monkeypatch.setattr(kl, "open_engine", recording)
    ev = tmp_path / "eval" / "samples"
    eval_file(ev / "expert" / "toy_math.jsonl", {"p1": [1, 0], "p2": [0, 0]})  # Avg 0.25
    eval_file(ev / "other" / "toy_math.jsonl", {"p1": [1, 1], "p2": [1, 0]})  # 0.75
    eval_file(ev / "multi" / "toy_math.jsonl", {"p1": [1, 1], "p2": [0, 0]})  # 0.5
    for m, r in (("expert", 0.0), ("other", 1.0), ("multi", 0.5)):
        eval_file(ev / m / "toy_if.jsonl", {"q": [r]})
    out = tmp_path / "out"
    analyze.main(["kl", "--experts", expert, other, f"--multi=multi={tmp_path / 'expert'}", "--domains=math,if",
                  "--limit=2", "--samples=2", "--max-new-tokens=8", "--engine=native", "--engine-dtype=float32",
                  "--threshold=1e-9", f"--eval={tmp_path / 'eval'}", f"--out={out}"])
    report = json.loads((out / "kl.json").read_text())
    assert opened == [("expert", "float32"), ("other", "float32")]
    for d in ("math", "if"):
        cell = report["cells"]["expert"][d]
        assert cell["kl"] == 0.0 and cell["kl_k1"] == 0.0 and cell["kl_seq"] == 0.0 and cell["neighbour"]
        assert cell["responses"] == 4 and cell["tokens"] > 0
        assert report["cells"]["other"][d]["kl"] > 0 and not report["cells"]["other"][d]["neighbour"]
    assert report["cells"]["expert"]["math"]["delta"] == pytest.approx(25.0)
    assert report["cells"]["other"]["math"]["delta"] == pytest.approx(-25.0)
    assert report["cells"]["other"]["if"]["delta"] == pytest.approx(-50.0)
    assert report["neighbourhood"]["within"] == 2 and report["neighbourhood"]["mean_delta_within"] == pytest.approx(
        (25.0 + 50.0) / 2)
    assert (out / "plots" / "kl.png").stat().st_size > 0 and "KL(expert || multi)" in (out / "summary.md").read_text()


def test_kl_estimator_equals_full_vocabulary_computation(tmp_path):
    """Reference 1: each response token's logprob from explicit log_softmax(logits / T) over the whole vocabulary, and
    k1, k3 from their formulas in float64 numpy. Reference 2: the exact KL(π_e || π_m) at every sampled prefix from
    torch.distributions; the k3 mean must lie within 4 standard errors of its mean (k3 − KL are martingale
    differences: uncorrelated, so the standard error is their standard deviation / √tokens)."""
    expert_spec, other_spec = kl_models(tmp_path)
    expert, other = load_model(tmp_path / "expert").eval(), load_model(tmp_path / "other").eval()
    tok = Tokenizer.from_dir(TINY_DIR)
    records = load_records(ROOT / "data" / "toy" / "eval" / "math.jsonl")[:8]
    prompts = [(r.id, tok.encode_chat(r.messages, add_generation_prompt=True)) for r in records]
    T = 0.8
    samples = NativeEngine(expert, tok).generate(prompts, 4, SamplingParams(max_new_tokens=24, temperature=T, seed=5))
    got_e = sample_logprobs(expert, samples, T, batch_size=7, device="cpu")  # batches split unevenly
    got_m = sample_logprobs(other, samples, T, batch_size=32, device="cpu")
    got = kl.kl_estimates(got_e, got_m)

    k1, k3, exact, per_response = [], [], [], []
    with torch.no_grad():
        for s, lp_e, lp_m in zip(samples, got_e, got_m):
            ids = torch.tensor([s.prompt_ids + s.response_ids])
            P, R = len(s.prompt_ids), len(s.response_ids)
            full = [torch.log_softmax(m.logits(m(ids))[0, P - 1:P + R - 1].double() / T, -1) for m in (expert, other)]
            target = torch.tensor(s.response_ids)[:, None]
            ref_e, ref_m = (f.gather(1, target)[:, 0] for f in full)
            torch.testing.assert_close(lp_e.double(), ref_e, atol=2e-5, rtol=0)
            torch.testing.assert_close(lp_m.double(), ref_m, atol=2e-5, rtol=0)
            r = (ref_e - ref_m).numpy()
            k1 += list(r)
            k3 += list(np.exp(-r) - 1 + r)
            per_response.append(np.sum(np.exp(-r) - 1 + r))
            exact += torch.distributions.kl_divergence(torch.distributions.Categorical(logits=full[0]),
                                                       torch.distributions.Categorical(logits=full[1])).tolist()
    assert got["tokens"] == len(k3) and got["responses"] == len(samples)
    assert got["kl"] == pytest.approx(np.mean(k3), rel=1e-3)
    assert got["kl_k1"] == pytest.approx(np.mean(k1), rel=1e-3, abs=1e-5)
    assert got["kl_seq"] == pytest.approx(np.mean(per_response), rel=1e-3)
    diff = np.array(k3) - np.array(exact)
    assert np.mean(exact) > 0.05  # the models differ: a real test of the estimator, not of zeros
    assert abs(np.mean(diff)) <= 4 * np.std(diff) / math.sqrt(len(diff))
