"""rewards/code.py sandbox: each attack is contained, scores 0, and leaves the test process and no stray behind.

Reference: the attacks are built so that, were they to succeed, the evidence would be independent of the
sandbox's own report - a file on disk, a connection accepted by a socket this test listens on, the test
process alive, the secret as the expected output (a leak would score 1), what the program itself saw (its
children's exit codes, the errors it met, the directories it listed), and the process table and the cgroup
directories after the run.
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
from concurrent.futures import ThreadPoolExecutor
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


@pytest.fixture(autouse=True, params=["cold", "warm"])
def short_limits(monkeypatch, request):
    """Every attack twice: on a runner started for the one program, and on a warm one, as a scoring worker keeps."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the attack suite asserts the root sandbox (own uid + namespaces); see test_unprivileged_path")
    monkeypatch.setitem(code.LIMITS, "time_s", 1.0)
    with code.keep_warm() if request.param == "warm" else contextlib.nullcontext():
        yield
    assert sandbox_processes() == [], "the sandbox left processes behind"
    assert sandbox_cgroups(os.getpid()) == [], "the sandbox left its cgroup behind"


def sandbox_cgroups(owner: int) -> list[str]:
    return [entry for parent, _, _ in code.cgroup_parents(code.LIMITS) for entry in os.listdir(parent)
            if entry.startswith(f"m2rl-code-{owner}-")]


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


def test_gold_answers_on_disk_are_out_of_sight(monkeypatch):
    # Data as a user keeps it: a world-readable *.jsonl that holds the problem's tests, outputs included.
    monkeypatch.setitem(code.LIMITS, "time_s", 5.0)
    secret = uuid.uuid4().hex
    data = Path(tempfile.mkdtemp(prefix="m2rl-gold-"))
    try:
        data.chmod(0o755)
        (data / "train.jsonl").write_text(json.dumps({"tests": {"inputs": ["1 2\n"], "outputs": [secret]}}) + "\n")
        (data / "train.jsonl").chmod(0o644)
        search = f"""import json, os, sys
stdin = sys.stdin.read()
for top in ({str(data)!r}, "/tmp", "/work", "/root", "/home", "/data", "/srv", "/mnt"):
    for where, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "site-packages")]
        for name in (f for f in files if f.endswith(".jsonl")):
            try:
                for line in open(os.path.join(where, name)):
                    tests = json.loads(line)["tests"]
                    if stdin in tests["inputs"]:
                        print(tests["outputs"][tests["inputs"].index(stdin)])
                        sys.exit(0)
            except (OSError, ValueError, KeyError, TypeError):
                pass"""
        reward, info = attack(search, expected=secret)
        assert reward == 0.0 and info["failure"]["verdict"] == "wrong answer"
    finally:
        shutil.rmtree(data)


def test_the_root_holds_the_interpreter_and_its_libraries_only():
    listing = f"""import json, os, sys
cwd = os.getcwd()
top = "/" + cwd.split("/")[1]
seen = {{p: sorted(os.listdir(p)) for p in ("/", "/etc", "/dev", top, cwd, {str(ROOT)!r}) if os.path.exists(p)}}
sys.stderr.write(json.dumps([cwd, top, seen]))"""
    _, info = attack(listing, expected="nothing")
    cwd, top, seen = json.loads(info["failure"]["stderr"])
    shown = code.LIBRARIES + [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)]
    assert set(seen["/"]) <= {"proc", "dev", top[1:], "etc"} | {Path(p).parts[1] for p in shown}, seen["/"]
    assert seen["/etc"] == ["ld.so.cache"]
    assert seen["/dev"] == sorted([Path(d).name for d in code.DEVICES] + list(code.DEVICE_LINKS) + ["shm"])
    assert seen[cwd] == []
    # the temp dir's top directory (/tmp) holds only the way to it, and to a venv that sits there
    assert set(seen[top]) <= {Path(p).parts[2] for p in [cwd] + shown if p.startswith(top + "/")}, seen[top]
    assert set(seen.get(str(ROOT), [])) <= {".venv"}  # present only where the venv sits inside the checkout


def test_memory_is_bounded_for_the_sandbox_as_a_whole(monkeypatch):
    # Scaled down from the 4 x 1.46 GiB against 4 GiB: 4 x 200 MiB against 512 MiB. Each process is
    # well within its own address-space limit; together they are not.
    monkeypatch.setitem(code.LIMITS, "memory_bytes", 512 << 20)
    monkeypatch.setitem(code.LIMITS, "time_s", 6.0)
    src = """import os, sys, time
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        held = b"1" * (200 << 20)
        time.sleep(1)
        os._exit(0)
    children.append(pid)
held = b"1" * (200 << 20)
time.sleep(1)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print("children exited", codes, file=sys.stderr)
print(3 if codes == [0, 0, 0] else "a child died")"""
    reward, info = attack(src)
    assert reward == 0.0, info
    assert "-9" in info["failure"]["verdict"] or "-9" in info["failure"]["stderr"], info  # one was OOM-killed


def test_temp_dir_writes_are_bounded_for_the_sandbox_as_a_whole(monkeypatch):
    # 64 files of 16 MiB, each within RLIMIT_FSIZE: 1 GiB in all, against a 64 MiB temp dir.
    monkeypatch.setitem(code.LIMITS, "time_s", 10.0)
    src = """import sys
written = 0
try:
    for i in range(64):
        with open(f"f{i}", "wb") as f:
            f.write(b"x" * (16 << 20))
        written += 16 << 20
except OSError as e:
    print(e, "after", written, file=sys.stderr)
print(3 if written == 1 << 30 else written)"""
    reward, info = attack(src)
    assert reward == 0.0 and "No space left on device" in info["failure"]["stderr"], info
    assert int(info["failure"]["stderr"].split("after")[1]) <= code.LIMITS["disk_bytes"]


def test_a_fork_bomb_does_not_starve_a_concurrent_sandbox(monkeypatch):
    monkeypatch.setitem(code.LIMITS, "time_s", 4.0)
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    threads = "import threading\nts = [threading.Thread(target=sum, args=([1],)) for _ in range(32)]\n" \
              "[t.start() for t in ts]\n[t.join() for t in ts]\nprint(3)"
    with ThreadPoolExecutor(1) as pool:
        bombed = pool.submit(attack, bomb)
        time.sleep(1.5)  # the bomb has filled its sandbox's process limit
        assert not bombed.done()
        reward, info = code.verify(fence(threads), ONE_TEST)
    assert reward == 1.0, info
    assert bombed.result()[0] == 0.0


def test_nested_user_namespaces_are_refused():
    src = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n" \
          "if libc.unshare(0x10000000) != 0:\n    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n" \
          "print(3)"
    reward, info = attack(src)
    assert reward == 0.0 and "Operation not permitted" in info["failure"]["stderr"], info


@pytest.mark.parametrize("short_limits", ["cold"], indirect=True)  # the sweep runs as a runner starts
def test_a_killed_callers_cgroup_is_removed_by_the_next_runner(tmp_path):
    caller = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                               "from rewards import code\n"
                               "code.verify('```python\\nwhile True:\\n    pass\\n```', "
                               "{'tests': {'inputs': [''], 'outputs': ['']}})"],
                              env={**os.environ, "TMPDIR": str(tmp_path)})  # where its temp dir is left
    try:
        for _ in range(100):  # until its sandbox runs
            if sandbox_cgroups(caller.pid):
                break
            time.sleep(0.1)
        assert sandbox_cgroups(caller.pid), "the caller's sandbox never got a cgroup"
    finally:
        caller.kill()  # as a scoring worker past its item's limit: it cleans up nothing
        caller.wait()
    assert sandbox_cgroups(caller.pid), "left behind"
    time.sleep(0.5)  # its sandbox dies with it (PDEATHSIG), emptying the cgroup
    assert code.verify(fence("print(3)"), ONE_TEST)[0] == 1.0
    assert sandbox_cgroups(caller.pid) == []


@pytest.mark.parametrize("short_limits", ["cold"], indirect=True)  # the test keeps its own runner warm
def test_consecutive_programs_on_a_warm_runner_see_nothing_of_each_other():
    # The first leaves what it can - a file in its temp dir and in /dev/shm, a changed module and builtin, an
    # environment variable, a daemon - and is abandoned at its first failing test, its second still to run.
    first = """import builtins, math, os, sys, time
open("left.txt", "w").write("first")
open("/dev/shm/left", "w").write("first")
builtins.LEFT = math.LEFT = "first"
math.pi = 3
os.environ["LEFT"] = "first"
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
print(os.getuid(), file=sys.stderr)
print("not 3")"""
    second = """import builtins, json, math, os, sys
seen = {"files": os.listdir(".") + os.listdir("/dev/shm"), "globals": [hasattr(builtins, "LEFT"),
        hasattr(math, "LEFT"), math.pi == 3], "env": os.environ.get("LEFT"),
        "processes": [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]}
print(json.dumps([os.getuid(), seen]), file=sys.stderr)
print("not 3")"""
    two_tests = {"tests": {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3", "7"]}}
    with code.keep_warm():
        runner = code.local.runner.process.pid
        reward, info = code.verify(fence(first), two_tests)
        assert reward == 0.0 and info["failure"]["test"] == 0, info
        first_uid = int(info["failure"]["stderr"])
        time.sleep(0.5)  # SIGKILL delivery
        assert [pid for pid in sandbox_processes() if os.stat(f"/proc/{pid}").st_uid >= code.SANDBOX_UID] == []
        for directory in code.local.runner.cgroups:  # where the next job process is born: the runner alone
            assert Path(f"{directory}/cgroup.procs").read_text().split() == [str(runner)]
        reward, info = code.verify(fence(second), two_tests)
        second_uid, seen = json.loads(info["failure"]["stderr"])
        assert seen == {"files": [], "globals": [False, False, False], "env": None, "processes": []}
        assert first_uid != second_uid  # each ran in a job process of its own (the uid holds its pid)
        assert code.local.runner.process.pid == runner and code.local.runner.process.poll() is None


@pytest.mark.parametrize("short_limits", ["cold"], indirect=True)  # the test keeps its own runner warm
def test_a_warm_runner_scores_more_programs_than_its_process_bound(monkeypatch):
    # Reference: the verdict of each program alone. A program's processes must be gone - killed and reaped - before
    # the next one is born in the runner's cgroup: one zombie left per program (its namespace's pid 1, orphaned to an
    # init that never reaped it) used up pids.max after a few programs, and every later one failed to fork.
    monkeypatch.setitem(code.LIMITS, "processes", 6)
    with code.keep_warm():
        assert [code.verify(fence("print(3)"), ONE_TEST)[0] for _ in range(20)] == [1.0] * 20


@pytest.mark.parametrize("short_limits", ["cold"], indirect=True)  # the test keeps its own runner warm
def test_a_warm_runner_killed_from_outside_is_replaced():
    with code.keep_warm():
        killed = code.local.runner.process
        killed.kill()
        killed.wait()
        assert code.verify(fence("print(3)"), ONE_TEST)[0] == 1.0
        assert code.local.runner.process.pid != killed.pid


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
