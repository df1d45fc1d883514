"""The checkpoints merge.py and analyze.py run on when given none: the tiny preset and planted shifts of it."""
from pathlib import Path

import torch

from model import TINY_DIR, from_preset, save_model
from rewards import DOMAINS


def demo_checkpoints(root: Path, seed: int, std: float, multi: bool = False) -> tuple[Path, dict[str, Path]]:
    """The tiny preset as the base (root/base) and one model per domain, each shifting its own random 10% of the
    entries by N(0, std²), independently: a stand-in for the sparse updates of RL, whose masks overlap as random masks
    of equal density do (Jaccard ≈ the random baseline) and whose shifts are uncorrelated (cosine ≈ 0). With `multi`,
    also a model "multi" carrying all four shifts, as a multi-task model would (its cosine with each ≈ 1/√4 = 0.5).
    Returns the base directory and {label: directory}."""
    model = from_preset("tiny", seed)
    save_model(model, root / "base", source_dir=TINY_DIR)
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    shifts = {}
    for i, label in enumerate(DOMAINS):
        gen = torch.Generator().manual_seed(seed * 1000 + i + 1)
        shifts[label] = {name: (torch.rand(p.shape, generator=gen) < 0.1) * torch.randn(p.shape, generator=gen) * std
                         for name, p in base.items()}
    if multi:
        shifts["multi"] = {name: sum(s[name] for s in shifts.values()) for name in base}
    for label, shift in shifts.items():
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(base[name] + shift[name])
        save_model(model, root / label, source_dir=TINY_DIR)
    return root / "base", {label: root / label for label in shifts}
