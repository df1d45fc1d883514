"""--report-to: the trainers' metrics.jsonl rows, and the run's flags once, also sent to Weights & Biases and/or
TensorBoard, as TRL's and HF Trainer's `report_to`. The rows are the same objects, with the same namespaced keys
(`reward/math/mean`) at the same `step`; rank 0 sends them (they are already reduced over the ranks).

Both packages are optional (pip install ".[track]"). W&B runs offline unless WANDB_MODE says otherwise, so a run
never waits on a login or the network: `wandb sync OUT/wandb/offline-run-*` uploads it afterwards.
"""
import argparse
import importlib.util
import json
import os
from pathlib import Path

SINKS = ("wandb", "tensorboard")  # each is also the name of the module it needs


def installed(sink: str) -> str:
    """argparse type of --report-to: the flag fails at parse time, before anything runs, when a sink's package is
    missing (an unknown name is left to argparse's choices)."""
    if sink in SINKS and importlib.util.find_spec(sink) is None:
        raise argparse.ArgumentTypeError(f"{sink} is not installed: pip install \".[track]\" in the m2rl folder")
    return sink


class Tracker:
    """Fans each metrics row out to the chosen sinks; with none chosen, log and close do nothing."""

    def __init__(self, sinks, out: Path, config: dict, run_name: str, keep_below: int):
        self.tensorboard = self.wandb = None
        if "tensorboard" in sinks:
            from torch.utils.tensorboard import SummaryWriter
            # purge_step: TensorBoard hides the events of steps after the checkpoint that a died run wrote, as
            # Metrics(keep_below) drops its lines
            self.tensorboard = SummaryWriter(out / "tensorboard", purge_step=keep_below + 1)
            self.tensorboard.add_text("config", "```json\n" + json.dumps(config, indent=2) + "\n```", keep_below)
        if "wandb" in sinks:
            import wandb
            # each launch is a W&B run of its own: a resumed one starts at the checkpoint's step (offline, a W&B
            # run's history cannot be rewound to it)
            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "m2rl"), name=run_name, config=config,
                                    dir=os.environ.get("WANDB_DIR", str(out)),
                                    mode=os.environ.get("WANDB_MODE", "offline"))

    def log(self, row: dict):
        values = {k: v for k, v in row.items() if k != "step"}
        if self.tensorboard:
            for key, value in values.items():
                self.tensorboard.add_scalar(key, value, row["step"])
            self.tensorboard.flush()  # on disk each step, as metrics.jsonl is: a crash loses no row
        if self.wandb:
            self.wandb.log(values, step=row["step"])

    def close(self):
        if self.tensorboard:
            self.tensorboard.close()
        if self.wandb:
            self.wandb.finish()
