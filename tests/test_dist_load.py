"""Rank-local sharded loading (dist.load_sharded, dist.init_sharded) and checkpoint hygiene (--save-dtype,
--keep-last).

Two torchrun ranks (gloo) load small random checkpoints whose every dimension is odd, so FSDP2's dim-0 shards are
uneven (the last rank's is shorter): each parameter's full_tensor() equals the one model.load_model reads whole (the
independent reference: no sharding, no row slicing), a tied head stays the embedding, and a forward pass equals the
unsharded model's. A sharded fresh init equals model.init_weights on one process. Then the bf16 round trip: GRPO
from a bf16 checkpoint saves bf16, merge.py merges it with the bf16 base, and --keep-last prunes old trainer states.

Run as a script under torchrun, this file is the per-rank side of the two-rank test.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from model import PRESETS, CheckpointReader, Qwen3Config, Qwen3ForCausalLM, load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_SFT = ROOT / "data/tiny-sft"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # two ranks on two cores: one thread each
ODD = dict(PRESETS["tiny"], vocab_size=37, hidden_size=33, intermediate_size=75, num_hidden_layers=2)


def make_checkpoint(path, tied: bool, dtype):
    """Random weights, norms included (a mixed-up norm must show), in `dtype`."""
    model = Qwen3ForCausalLM(Qwen3Config(**{**ODD, "tie_word_embeddings": tied}))
    model.init_weights(seed=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.1)
    save_checkpoint(path, model.state_dict().items(), model.config, dtype=dtype)


def test_two_ranks_load_their_rows_of_every_tensor(tmp_path):
    make_checkpoint(tmp_path / "tied_bf16", tied=True, dtype=torch.bfloat16)
    make_checkpoint(tmp_path / "untied_fp32", tied=False, dtype=torch.float32)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          __file__, str(tmp_path)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # the shards are uneven and rank-local: the embedding's 37 rows split 19 + 18
    assert [r["embedding_rows"] for r in ranks] == [19, 18]
    for r in ranks:
        assert r["mismatched"] == [] and r["tied"] == [True, False], r
        assert r["logprob_max_diff"] <= 1e-5, r
        assert r["init_mismatched"] == [], r


def rank_main(work):
    import dist as m2rl_dist

    rank, world, device = m2rl_dist.init()
    work, result = Path(work), {"mismatched": [], "tied": [], "init_mismatched": []}
    ids = torch.randint(0, ODD["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    for name in ("tied_bf16", "untied_fp32"):
        sharded = m2rl_dist.load_sharded(work / name, device, bf16=False, frozen=True)
        whole = load_model(work / name, dtype=torch.float32)
        expected = dict(whole.named_parameters())
        for key, p in sharded.named_parameters():
            if not p.full_tensor().equal(expected[key]) or p.requires_grad:
                result["mismatched"].append(f"{name}: {key}")
        result["tied"].append(sharded.lm_head.weight is sharded.model.embed_tokens.weight)
        result["embedding_rows"] = sharded.model.embed_tokens.weight.to_local().shape[0]
        with torch.no_grad():
            diff = (sharded.token_logprobs(ids, ids)[0] - whole.token_logprobs(ids, ids)[0]).abs().max().item()
        result["logprob_max_diff"] = max(result.get("logprob_max_diff", 0.0), diff)

    config = Qwen3Config(**PRESETS["tiny"])
    fresh = m2rl_dist.init_sharded(config, seed=5, device=device, bf16=False)
    reference = Qwen3ForCausalLM(config)
    reference.init_weights(seed=5)
    expected = dict(reference.named_parameters())
    result["init_mismatched"] = [k for k, p in fresh.named_parameters() if not p.full_tensor().equal(expected[k])]
    (work / f"rank{rank}.json").write_text(json.dumps(result))


def test_keep_last_prunes_old_trainer_states_but_not_latest_nor_weights(tmp_path):
    from dist import prune_trainer_states
    for step in range(1, 5):
        (tmp_path / f"step_{step:07d}" / "trainer_state").mkdir(parents=True)
        (tmp_path / f"step_{step:07d}" / "model.safetensors").write_text("weights")
    (tmp_path / "latest").symlink_to("step_0000001")
    prune_trainer_states(tmp_path, keep=2)
    assert [s.parent.name for s in sorted(tmp_path.glob("step_*/trainer_state"))] == \
        ["step_0000001", "step_0000003", "step_0000004"]
    assert len(list(tmp_path.glob("step_*/model.safetensors"))) == 4
    assert not list(tmp_path.glob("step_*/.trainer_state*"))


def dtypes(path) -> set:
    reader = CheckpointReader(path)
    out = set()
    for file in set(reader.file_of.values()):
        with safe_open(file, "pt") as f:
            out |= {f.get_slice(k).get_dtype() for k in f.keys()}
    return out


def test_bf16_round_trip_grpo_then_merge_with_the_bf16_base(tmp_path):
    """GRPO from a bf16 checkpoint saves bf16 weights (--save-dtype auto) every step (--save-every 1) and keeps only
    the newest trainer state (--keep-last 1); merge.py merges both steps with the bf16 base; SFT from the same
    checkpoint with --save-dtype float32 saves fp32. Reference: the dtypes safetensors records in each file. The
    entropy bonus at lr 1e-3 moves every weight by more than bf16's spacing, whatever the (mostly zero) rewards, so
    the bf16 outputs carry a task vector for the merge to act on."""
    base = tmp_path / "base_bf16"
    sft_model = load_model(TINY_SFT)
    save_checkpoint(base, sft_model.state_dict().items(), sft_model.config, source_dir=TINY_SFT, dtype=torch.bfloat16)
    assert dtypes(base) == {"BF16"}
    out = tmp_path / "grpo"
    grpo = subprocess.run([sys.executable, str(ROOT / "train_grpo.py"), "--model", str(base), "--out", str(out),
                           "--data", str(ROOT / "data/toy/rl/math.jsonl"), "--domains", "math", "--steps", "2",
                           "--save-every", "1", "--keep-last", "1", "--prompts-per-step", "2", "--group-size", "2",
                           "--max-response-len", "16", "--lr", "1e-3", "--entropy-coef", "0.1",
                           "--reward-workers", "1"], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert grpo.returncode == 0, grpo.stderr[-4000:]
    steps = [out / "step_0000001", out / "step_0000002"]
    for step in steps:
        assert dtypes(step) == {"BF16"}
        assert json.loads((step / "config.json").read_text())["dtype"] == "bfloat16"
    assert [s.parent for s in out.glob("step_*/trainer_state")] == [steps[1]]  # step 1 keeps its weights only
    name = "model.layers.0.mlp.up_proj.weight"
    assert not CheckpointReader(steps[1]).get(name).equal(CheckpointReader(base).get(name))

    merged = tmp_path / "merged"
    merge = subprocess.run([sys.executable, str(ROOT / "merge.py"), "--base", str(base), "--method", "ties", "--models",
                            f"a={steps[0]}", f"b={steps[1]}", "--out", str(merged)],
                           env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert merge.returncode == 0, merge.stderr[-4000:]
    assert dtypes(merged) == {"BF16"}
    assert not CheckpointReader(merged).get(name).equal(CheckpointReader(base).get(name))

    records = tmp_path / "sft.jsonl"
    records.write_text("".join((ROOT / "data/toy/sft/math.jsonl").read_text().splitlines(keepends=True)[:16]))
    sft = subprocess.run([sys.executable, str(ROOT / "train_sft.py"), "--model", str(base), "--data", str(records),
                          "--out", str(tmp_path / "sft"), "--seq-len", "128", "--batch-rows", "2", "--micro-rows", "2",
                          "--epochs", "0.25", "--save-dtype", "float32"],
                         env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert sft.returncode == 0, sft.stderr[-4000:]
    assert dtypes(tmp_path / "sft" / "latest") == {"F32"}

if __name__ == "__main__":
    rank_main(sys.argv[1])
