"""rewards/code.py sandbox: each attack is contained, scores 0, and leaves the test process and no stray behind.

Reference: the attacks are built so that, were they to succeed, the evidence would be independent of the
sandbox's own report - a file on disk, a connection accepted by a socket this test listens on, the test
process alive, the secret as the expected output (a leak would score 1), and the process table after the run.
"""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from rewards import code

ROOT = Path(__file__).resolve().parents[1]
RUNNER = str(ROOT / "rewards" / "code.py")
ONE_TEST = {"tests": {"inputs": ["1 2\n"], "outputs": ["3"]}}
FULL = ["cgroup-memory", "cgroup-pids", "net", "uid", "pid", "minimal-root", "disk-quota", "no-userns"]


def fence(src: str) -> str:
    return f"```python\n{src}\n```"


def sandbox_processes() -> list[int]:
    """Runners and anything running as a sandbox's uid, after a grace period for SIGKILL delivery."""
    def find():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if os.stat(f"/proc/{pid}").st_uid >= code.SANDBOX_UID or RUNNER.encode() in cmdline:
                    found.append(int(pid))
            except OSError:
                pass  # it exited while we looked
        return found
    for _ in range(50):
        if not find():
            return []
        time.sleep(0.1)
    return find()


@pytest.fixture(autouse=True)
def short_limits(monkeypatch):
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the attack suite asserts the root sandbox (own uid + namespaces); see test_unprivileged_path")
    monkeypatch.setitem(code.LIMITS, "time_s", 1.0)
    yield
    assert sandbox_processes() == [], "the sandbox left processes behind"


def attack(src: str, expected: str = "3") -> tuple[float, dict]:
    reward, info = code.verify(fence(src), {"tests": {"inputs": ["1 2\n"], "outputs": [expected]}})
    assert info.get("isolation") == FULL, info
    return reward, info


def test_fork_bomb():
    reward, info = attack("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert reward == 0.0 and info["failure"]["verdict"] == "time limit exceeded"


def test_infinite_loop():
    reward, info = attack("while True:\n    pass")
    assert reward == 0.0 and info["failure"]["verdict"] == "time limit exceeded"


def test_8gb_allocation():
    reward, info = attack("x = bytearray(8 << 30)\nprint(3)")
    assert reward == 0.0 and "MemoryError" in info["failure"]["stderr"]


@pytest.mark.parametrize("where", ["/tmp", str(ROOT)])
def test_write_outside_the_temp_dir(where):
    target = Path(where) / f"m2rl-sandbox-{uuid.uuid4().hex}"
    reward, info = attack(f"open({str(target)!r}, 'w').write('pwned')\nprint(3)")
    # the minimal root is read-only, and holds the project's directory only on the way to a venv inside it
    assert reward == 0.0 and any(e in info["failure"]["stderr"] for e in ("Read-only file system", "No such file"))
    assert not target.exists()


def test_writing_inside_the_temp_dir_is_allowed():
    reward, _ = attack("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read() and 3)")
    assert reward == 1.0


def test_environment_secret(monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("M2RL_TEST_SECRET", secret)
    reward, _ = attack("import os\nprint(os.environ.get('M2RL_TEST_SECRET', 'none'))", expected=secret)
    assert reward == 0.0
    src = f"print(open('/proc/{os.getpid()}/environ').read().split('M2RL_TEST_SECRET=')[1].split(chr(0))[0])"
    assert attack(src, expected=secret)[0] == 0.0  # nor through /proc


def test_network_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        reward, info = attack(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint(3)")
        assert reward == 0.0 and "Network is unreachable" in info["failure"]["stderr"]
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody called


def test_killing_the_parent():
    src = f"import os, signal\nfor pid in ({os.getpid()}, os.getppid(), -1):\n" \
          "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print(pid, e)"
    reward, info = attack(src)
    assert reward == 0.0 and info["failure"]["verdict"] == "wrong answer"
    # still here: the test process, and a sandbox that scores the next program
    assert code.verify(fence("print(3)"), ONE_TEST)[0] == 1.0


def test_100mb_of_output():
    reward, info = attack("import sys\nsys.stdout.write('x' * 100_000_000)")
    assert reward == 0.0 and info["failure"]["verdict"] == "output limit exceeded"


def test_sys_exit_before_the_tests_run():
    assert attack("import sys\nsys.exit(0)\nprint(3)")[0] == 0.0
    verifier = {"tests": {"inputs": ["1\n2"], "outputs": ["3"], "fn_name": "add"}}
    src = "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b"
    assert code.verify(fence(src), verifier)[0] == 0.0


def test_redefining_builtins_cannot_pass_a_wrong_program():
    # Each trick fools an in-process harness that compares with == or calls json after the program ran.
    verifier = {"tests": {"inputs": ["1\n2"], "outputs": ["3"], "fn_name": "add"}}
    tricks = [
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "def add(a, b):\n    return Anything()",
        "import builtins, json\nbuiltins.isinstance = lambda *a: True\njson.dumps = lambda *a, **k: '3'\n"
        "json.loads = lambda *a, **k: 3\ndef add(a, b):\n    return a - b",
        "import builtins\nbuiltins.print = lambda *a, **k: None\nimport os\nos._exit = lambda code: None\n"
        "def add(a, b):\n    return a - b",
    ]
    for src in tricks:
        reward, info = code.verify(fence(src), verifier)
        assert reward == 0.0, (src, info)


def nobody_python() -> str:
    """A Python that nobody may run: ours may live under /root (pyenv), then the system's may do."""
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        with contextlib.suppress(OSError):
            ok = subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 10)"], user=65534,
                                group=65534, extra_groups=[], capture_output=True, cwd="/").returncode == 0
            if ok:
                return python
    pytest.skip("no Python >= 3.10 that the user nobody may run")


PROBE = """
import json, os, sys
sys.path.insert(0, ROOT)
from rewards import code
one = {"tests": {"inputs": ["1 2"], "outputs": ["3"]}}
attacks = ["a, b = map(int, input().split())\\nprint(a + b)",
           f"open({os.path.join(ROOT, 'pwned')!r}, 'w')",
           "import socket\\nsocket.create_connection(('127.0.0.1', 1), timeout=1)",
           f"import os\\nos.kill({os.getpid()}, 9)"]
print(json.dumps([code.verify(f"```python\\n{src}\\n```", one) for src in attacks]))
"""


@pytest.mark.skipif(not Path("/proc/self/uid_map").exists(), reason="needs Linux user namespaces")
def test_unprivileged_path():
    """Run by a non-root user, the runner isolates itself inside a user namespace instead."""
    python = nobody_python()
    as_nobody = dict(user=65534, group=65534, extra_groups=[], capture_output=True, text=True, cwd="/")
    userns = "import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare(0x10000000) != 0)"  # CLONE_NEWUSER
    if subprocess.run([python, "-c", userns], **as_nobody).returncode != 0:
        pytest.skip("this kernel refuses user namespaces to unprivileged users")
    # The checkout may sit in a directory nobody cannot search (mktemp -d, a 0700 home): run a copy of rewards/.
    probe_root = Path(tempfile.mkdtemp(prefix="m2rl-probe-"))
    try:
        probe_root.chmod(0o755)
        shutil.copytree(ROOT / "rewards", probe_root / "rewards", ignore=shutil.ignore_patterns("__pycache__"))
        reach = f"import sys; sys.path.insert(0, {str(probe_root)!r}); import rewards.code"
        if subprocess.run([python, "-c", reach], **as_nobody).returncode != 0:
            pytest.skip(f"nobody cannot reach {probe_root} (TMPDIR in a private directory?)")
        run = subprocess.run([python, "-c", f"ROOT = {str(probe_root)!r}" + PROBE], **as_nobody)
        results = json.loads(run.stdout)  # printed after the last attack: the probe outlived the kill attempt
        isolation = ["user", "net", "no-caps", "pid", "minimal-root", "disk-quota", "no-userns"]
        assert [info["isolation"] for _, info in results] == [isolation] * 4
        assert [reward for reward, _ in results] == [1.0, 0.0, 0.0, 0.0]
        assert "No such file" in results[1][1]["failure"]["stderr"]  # the probe's directory is not in its root
        assert "Network is unreachable" in results[2][1]["failure"]["stderr"]
        assert "No such process" in results[3][1]["failure"]["stderr"]  # the parent is outside its PID namespace
        assert not (probe_root / "pwned").exists()
    finally:
        shutil.rmtree(probe_root)
