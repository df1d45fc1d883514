"""What the scoring pool's forkserver runs once before it forks any worker (ScorePool sets it as the preload): every
verifier imported (math-verify and sympy take seconds, which would count against an item's limit) and math-verify's
parser tables built. Not done at import of rewards.math itself: every script that imports rewards would pay for it."""
import importlib

from rewards import MODULES

for name in MODULES.values():
    importlib.import_module(f"rewards.{name}")
importlib.import_module("rewards.math").warm_up()
