"""training.py: what the two trainers share. Their runs (tests/test_train_sft.py, tests/test_train_grpo_run.py)
exercise open_run's resume rules end to end; here, metrics.jsonl's repair on resume."""
import json
import re

import pytest

from training import Metrics


def test_metrics_drops_a_torn_last_line_and_names_the_file_of_a_bad_one_elsewhere(tmp_path, capsys):
    """A run that died mid-write (a full disk) leaves a torn last line; every resume then failed with a
    JSONDecodeError naming no file (issue 18.7). Reference: the lines written whole, as json.dumps wrote them."""
    path = tmp_path / "metrics.jsonl"
    whole = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in (1, 2, 3)]
    path.write_text("\n".join(whole) + "\n" + whole[0][:9])
    Metrics(path, keep_below=2)
    assert path.read_text().splitlines() == whole[:2]
    assert f"{path}:4: dropped a torn last line" in capsys.readouterr().out

    path.write_text(whole[0] + "\n" + whole[1][:9] + "\n" + whole[2] + "\n")
    with pytest.raises(SystemExit, match=re.escape(f"{path}:2: not valid JSON")):
        Metrics(path, keep_below=3)


def test_adamw_steps_as_the_paper_formula_on_a_sharded_model(world_of_one):
    """training.adamw (the fused kernel, on FSDP2's DTensor parameters as the trainers hold them) against AdamW written
    out from Loshchilov & Hutter's algorithm: m, v moments with bias correction, decoupled weight decay on matrices
    only (norms and biases keep theirs). Three steps, so the moments' history counts."""
    import torch
    from torch.distributed.tensor import DTensor

    import dist as m2rl_dist
    from model import from_preset
    from training import adamw

    lr, (b1, b2), wd, eps = 1e-2, (0.9, 0.98), 0.1, 1e-8
    model = from_preset("tiny", seed=0)
    m2rl_dist.shard(model, bf16=False)
    local = lambda t: t.to_local() if isinstance(t, DTensor) else t
    ref = {n: local(p).detach().clone() for n, p in model.named_parameters()}
    m, v = ({n: torch.zeros_like(t) for n, t in ref.items()} for _ in range(2))
    optimizer = adamw(model, lr, (b1, b2), wd)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        for n, p in model.named_parameters():
            g = torch.randn(ref[n].shape, generator=gen)
            p.grad = DTensor.from_local(g, p.device_mesh, p.placements) if isinstance(p, DTensor) else g
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            decay = wd if ref[n].dim() >= 2 else 0.0
            update = (m[n] / (1 - b1**step)) / ((v[n] / (1 - b2**step)).sqrt() + eps)
            ref[n] = ref[n] * (1 - lr * decay) - lr * update
        optimizer.step()
        for n, p in model.named_parameters():
            torch.testing.assert_close(local(p).detach(), ref[n], rtol=1e-5, atol=1e-6, msg=f"{n} at step {step}")
