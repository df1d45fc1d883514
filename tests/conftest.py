"""Fixtures shared by several test files."""
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: OpenMP threads only fight each other (and other jobs) here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
