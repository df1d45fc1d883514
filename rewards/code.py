"""Code reward (domain "code"): run the response's last ```python block against unit tests, in a sandbox.

verifier: {"tests": {"inputs": [str, ...], "outputs": [str, ...], "fn_name": str | None}}
This is LiveCodeBench's `input_output` JSON (parsed) and exactly the `verifier_metadata.unit_tests` dict of the
Nemotron RL blend's comp_coding rows (NeMo-Gym code_gen `UnitTests`: inputs, outputs, optional fn_name).
- no fn_name: standard input. inputs[i] is fed on stdin; outputs[i] is the expected stdout.
- fn_name: call-based (LeetCode style). inputs[i] holds one JSON value per line, the positional arguments;
  outputs[i] is the JSON of the return value. A `class Solution` is instantiated and its method called.

Verdicts follow LiveCodeBench's testing_util. Stdout: both texts stripped, split into lines, each line
stripped; a line matches if equal, or if its whitespace-separated tokens are equal one by one, where two
numbers match within 1e-6 (absolute or relative) when either is written as a float - never two integers, so
10**17 + 1 != 10**17. Returns: JSON equality, tuples as lists, floats within 1e-6. A run must also exit 0.
The program sees LiveCodeBench's convenience imports (typing, collections, heapq, math, ...), as it does.
At most MAX_TESTS tests run per problem (M2RL samples 20), chosen with a seed derived from the tests, so every
rollout of a problem meets the same ones (GRPO compares the rollouts of a group). Reward 1.0 if all pass
(M2RL's pass_all); `partial=True` gives the fraction passed (M2RL's pass_avg).

protocol="m2rl" is the paper's unit-test reward (slime/rewards/code.py `reward_with_unit_test`, `extract_python`,
TOOL_CONFIGS): the program is the text from the first "```python" to the last "```" (its greedy regex: a response
with two blocks runs the prose between them too), each test may run 10 s (python_run_timeout), and a test passes
iff the stripped stdout equals the stripped expected output exactly - no float tolerance - with nothing on stderr
(its harness appends stderr to the output it compares) and no error. The paper samples its 20 tests unseeded;
here the same seeded choice as above, so a group's rollouts meet the same tests. Call-based tests (fn_name) keep
this module's harness and compare the returned JSON exactly (the paper feeds every test on stdin). Not reproduced:
its harness runs the program inside a `try` that prints captured stdout at the end, so a program ending in
`sys.exit()` loses its output there, and a few modules (resource, psutil, ...) and os functions are disabled.

The sandbox. Untrusted code never runs in the calling process, and expected outputs never enter the sandbox:
the verdict is made out here, so a program that exits early, rewrites builtins or tampers with its harness can
only ever report what it computed. Nor can it find them on disk: it sees no file it does not need.
1. `run_sandboxed` hands each program to a *runner*, this file started as a script, `python -I code.py` (-I: no
   PYTHON* variables, no user site, and this directory kept off sys.path - a solution's `import math` must get the
   stdlib): trusted, a scrubbed environment, its own session, killed if its parent dies. The runner forks a fresh
   *job process* per program, also trusted, with a fresh temp dir; so a scoring worker keeps its runner warm
   across programs (`keep_warm`, Runner) and pays the interpreter's start and imports once, not per program,
   while no program ever shares a process, namespace, uid or temp dir with another, nor finds any of the
   previous one's data in its memory (the runner never reads a job: class Runner). As root, the caller puts the
   runner in a cgroup of its own (v2, else v1's memory and pids hierarchies), in which every job process is born,
   so memory (swap included) and processes are bounded for the sandbox as a whole, not per process; the runner
   kills what is left there after each program, reaps it (as their subreaper) and waits until it is alone before
   it forks the next. (A job
   process joining a fresh cgroup per program cost 20 of a 4-test program's 55 ms here: a v1 migration waits
   for an RCU grace period, and the cgroup's removal for its processes to be gone.)
2. The job process enters new namespaces - network (no interface is up: no network, loopback included), mount,
   PID - directly as root, inside a new user namespace otherwise, and forks the namespace's pid 1, also trusted. Pid 1
   builds a minimal root on a tmpfs and chroots into it. *Hidden*: every file but the interpreter's sys.path
   (stdlib, lib-dynload, site-packages), the shared libraries (LIBRARIES: /lib, /usr/lib, ld.so.cache...),
   /dev/null, zero, random, urandom, and a /proc that shows only the sandbox - so no project, no data, no home,
   no other temp dir. All of it is read-only except the program's temp dir (its cwd, HOME, TMPDIR), a tmpfs of
   LIMITS["disk_bytes"] for the sandbox as a whole. The chroot also refuses nested user namespaces (EPERM).
3. Pid 1 forks one child per test (cheaper than a fresh interpreter per test: bench/rewards.py). The child sets
   rlimits (address space, CPU seconds, processes, file size, open files, no core file), drops to a uid of this
   sandbox alone as root - so RLIMIT_NPROC counts this sandbox's processes only - (else to no capabilities),
   forbids privilege gain (no_new_privs, empty capability bounding set), then compiles and runs the program on
   stdin from a memfd. Pid 1 reads stdout/stderr up to a cap and a wall-clock limit, then kills every other
   process of the namespace - fork bombs and daemons included - and reaps them.
4. Where namespaces are refused (Docker without CAP_SYS_ADMIN, user namespaces disabled), the job falls
   back to what is left: the sandbox's uid when root, sockets disabled in the child, the child's process group
   killed; the filesystem is then visible. info["isolation"] lists the layers that held, of: cgroup-memory,
   cgroup-pids, user, net, pid, minimal-root, disk-quota, no-userns, and uid or no-caps.
"""
import contextlib
import ctypes
import gc
import json
import math
import os
import random
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib

MAX_TESTS = 20
LIMITS = {
    "time_s": 6.0,              # wall clock per test, as LiveCodeBench's default timeout
    "memory_bytes": 4 << 30,    # RLIMIT_AS, as M2RL's sandbox (4 GiB); and the cgroup's, for all processes
    "output_bytes": 4 << 20,    # stdout beyond this fails the test and kills it
    "file_bytes": 16 << 20,     # RLIMIT_FSIZE: one file the program writes in its temp dir
    "disk_bytes": 64 << 20,     # the temp dir's tmpfs: all files together
    "processes": 64,            # RLIMIT_NPROC and the cgroup's pids.max (threads count too)
    "open_files": 64,           # RLIMIT_NOFILE
}
# LiveCodeBench runs every solution after a block of convenience imports (testing_util.import_string), and
# LeetCode-style solutions rely on it (`List[int]` annotations without an import); `from builtins import *`
# last, so math's pow does not shadow the builtin.
PRELUDE = """\
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
from math import *
from string import *
from builtins import *
import bisect, collections, functools, heapq, itertools, math, re, string, sys
"""
FENCE = re.compile(r"```(?i:python3?|py)[ \t]*\r?\n(.*?)```", re.DOTALL)
PAPER_FENCE = re.compile(r"```python\s*(.*)?```", re.DOTALL)  # greedy, as slime/rewards/code.py extract_python
PAPER_TIME_S = 10.0  # slime/rewards/code.py TOOL_CONFIGS["python_run_timeout"]


def verify(response: str, verifier: dict, partial: bool = False, protocol: str = "toy") -> tuple[float, dict]:
    blocks = FENCE.findall(response) if protocol == "toy" else [m.strip() for m in PAPER_FENCE.findall(response)]
    if not blocks:
        return 0.0, {"passed": 0, "tests": 0, "error": "no ```python block in the response"}
    limits = LIMITS if protocol == "toy" else {**LIMITS, "time_s": PAPER_TIME_S}
    judge_run = judge if protocol == "toy" else judge_exactly
    tests = verifier["tests"]
    chosen = pick_tests(tests["inputs"])
    inputs = [tests["inputs"][i] for i in chosen]
    outputs = [tests["outputs"][i] for i in chosen]
    fn_name = tests.get("fn_name")
    info = {"passed": 0, "tests": len(chosen)}
    with contextlib.closing(run_sandboxed(blocks[-1], inputs, fn_name, limits, not partial)) as runs:
        header = next(runs, {"error": "the sandbox runner died before it started"})
        if "error" in header:
            return 0.0, {**info, "error": header["error"]}
        info["isolation"] = header["isolation"]
        for test, expected, run in zip(chosen, outputs, runs):
            verdict = judge_run(run, expected, fn_name)
            if verdict == "passed":
                info["passed"] += 1
                continue
            info.setdefault("failure", {"test": test, "verdict": verdict, "stderr": run.get("stderr", "")})
            if not partial:
                break  # leaving the `with` kills the job
    if info["passed"] < info["tests"] and "failure" not in info:
        info["failure"] = {"verdict": "sandbox gave no result (its time budget ran out, or it crashed)"}
    reward = info["passed"] / info["tests"] if partial else float(info["passed"] == info["tests"])
    return reward, info


def check_verifier(verifier: dict) -> None:
    tests = verifier.get("tests")
    if not isinstance(tests, dict):
        raise ValueError('code verifier: "tests" must be a dict {"inputs": [...], "outputs": [...], "fn_name": ...} '
                         f"(LiveCodeBench input_output / Nemotron unit_tests), got {type(tests).__name__}")
    inputs, outputs, fn_name = tests.get("inputs"), tests.get("outputs"), tests.get("fn_name")
    for key, value in (("inputs", inputs), ("outputs", outputs)):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f'code verifier: "tests.{key}" must be a non-empty list of strings')
    if len(inputs) != len(outputs):
        raise ValueError(f'code verifier: "tests.inputs" has {len(inputs)} tests but "tests.outputs" {len(outputs)}')
    if fn_name is None:
        return
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
        raise ValueError(f'code verifier: "tests.fn_name" must be a function name or null, got {fn_name!r}')
    for key, texts in (("inputs", [line for text in inputs for line in text.split("\n")]), ("outputs", outputs)):
        for text in texts:
            try:
                json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f'code verifier: call-based "tests.{key}" must be JSON (one argument per line '
                                 f"for inputs), {text[:80]!r} is not: {e}") from None


def pick_tests(inputs: list[str]) -> list[int]:
    if len(inputs) <= MAX_TESTS:
        return list(range(len(inputs)))
    rng = random.Random(zlib.crc32("\0".join(inputs).encode()))
    return sorted(rng.sample(range(len(inputs)), MAX_TESTS))


# ----------------------------------------------------------------------------------------------------------
# Verdicts, made here in the trusted process


def judge(run: dict, expected: str, fn_name: str | None) -> str:
    if "error" in run:
        return f"sandbox error: {run['error']}"
    if run["timeout"]:
        return "time limit exceeded"
    if run["overflow"]:
        return "output limit exceeded"
    if run["exit"] != 0:
        return f"runtime error (exit {run['exit']})"
    if fn_name is None:
        return "passed" if stdout_matches(run["stdout"], expected) else "wrong answer"
    try:
        got = json.loads(run["stdout"])
    except json.JSONDecodeError:
        return "wrong answer (the return value is not JSON)"
    return "passed" if values_match(got, json.loads(expected)) else "wrong answer"


def judge_exactly(run: dict, expected: str, fn_name: str | None) -> str:
    """The m2rl protocol's verdict: judge's failures, then exact equality of stripped outputs, stderr empty."""
    verdict = judge(run, expected, fn_name)
    if verdict.startswith(("sandbox error", "time limit", "output limit", "runtime error")):
        return verdict
    if run["stderr"]:
        return "wrong answer (stderr not empty: the paper's harness appends it to the output)"
    if fn_name is None:
        return "passed" if run["stdout"].strip() == expected.strip() else "wrong answer"
    try:
        return "passed" if json.loads(run["stdout"]) == json.loads(expected) else "wrong answer"
    except json.JSONDecodeError:
        return "wrong answer (the return value is not JSON)"


def stdout_matches(got: str, expected: str) -> bool:
    got_lines, expected_lines = stripped_lines(got), stripped_lines(expected)
    return len(got_lines) == len(expected_lines) and all(map(line_matches, got_lines, expected_lines))


def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def line_matches(got: str, expected: str) -> bool:
    if got == expected:
        return True
    got_tokens, expected_tokens = got.split(), expected.split()
    return len(got_tokens) == len(expected_tokens) and all(map(token_matches, got_tokens, expected_tokens))


def token_matches(got: str, expected: str) -> bool:
    if got == expected:
        return True
    if not any(c in token for token in (got, expected) for c in ".eE"):
        return False  # two integers (or words) that differ
    try:
        return math.isclose(float(got), float(expected), rel_tol=1e-6, abs_tol=1e-6)
    except ValueError:
        return False


def values_match(got, expected) -> bool:
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(map(values_match, got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(values_match(got[k], expected[k]) for k in got)
    if isinstance(got, float) or isinstance(expected, float):
        return is_number(got) and is_number(expected) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-6)
    return got == expected and type(got) is type(expected)  # True != 1


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------------------
# The trusted side of the sandbox: start the runner, stream its results


def run_sandboxed(program: str, inputs: list[str], fn_name: str | None, limits: dict, stop_on_error: bool):
    """Yields the runner's header {"isolation": [...]}, then one {"exit", "timeout", "overflow", "stdout",
    "stderr"} per test run. Closing the generator kills the program's job process and everything under it."""
    with tempfile.TemporaryDirectory(prefix="m2rl-code-", ignore_cleanup_errors=True) as workdir:
        runner = warm_runner(limits) or Runner(limits)
        job = {"code": program, "inputs": inputs, "fn_name": fn_name, "limits": limits,
               "stop_on_error": stop_on_error, "workdir": workdir}
        results = runner.start(job)
        try:
            deadline = time.monotonic() + len(inputs) * (limits["time_s"] + 1) + 10
            for i, line in enumerate(read_lines(results, deadline)):
                run = json.loads(line)
                if i == 0 and "isolation" in run:
                    run["isolation"] = runner.layers + run["isolation"]
                yield run
        finally:
            runner.stop()
            os.close(results)
            if runner is not local.runner:
                runner.close()


class Runner:
    """The trusted process that starts every program: `python -I code.py <our pid>` (-I: no PYTHON* variables, no
    user site, and this directory kept off sys.path - a solution's `import math` must get the stdlib), in a scrubbed
    environment and a session of its own, killed if we die. It imports once what every program's process needs,
    then forks a fresh *job process* per program (runner_main). It never reads a job itself: the job travels as a
    file descriptor straight to the job process, so nothing of one program is in the memory the next one's fork
    copies. A scoring worker keeps one warm for its life (keep_warm); a lone call starts one and stops it after.
    As root it lives in cgroups of its own (make_cgroups), bounded by `limits` and joined before it is handed a
    job, so that every job process is born there; layers names the cgroup controllers that hold."""

    def __init__(self, limits: dict):
        self.limits = dict(limits)  # a copy: a caller may change LIMITS in place while this runner lives
        self.layers, self.cgroups = make_cgroups(uuid.uuid4().hex[:12], limits)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # HOME and TMPDIR: each job's temp dir
        self.process = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), str(os.getpid()),
                                         *self.cgroups], stdin=theirs, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, cwd="/", env=env, start_new_session=True)
        theirs.close()
        for directory in self.cgroups:
            write_text(f"{directory}/cgroup.procs", str(self.process.pid))

    def start(self, job: dict) -> int:
        """Hand the runner a job; returns the read end of its result pipe (one JSON line per result)."""
        description = os.memfd_create("job")
        with open(description, "wb", closefd=False) as f:
            f.write(json.dumps(job).encode())
        os.lseek(description, 0, os.SEEK_SET)  # the job process reads it through the same open file
        results, results_w = os.pipe()
        try:
            socket.send_fds(self.control, [b"j"], [description, results_w])
        except OSError:
            pass  # the runner is gone (killed from outside): the job reads as a runner that died before it started
        finally:
            os.close(description)
            os.close(results_w)
        return results

    def stop(self) -> None:
        """Kill the job's processes, finished or not."""
        with contextlib.suppress(OSError):
            self.control.send(b"k")

    def close(self) -> None:
        self.process.kill()  # and the job process with it (PR_SET_PDEATHSIG)
        self.process.wait()
        self.control.close()
        for directory in self.cgroups:  # whatever the last job left, killed
            remove_cgroup(directory)


class Local(threading.local):
    runner: Runner | None = None  # the calling thread's warm runner, inside keep_warm()


local = Local()


def warm_runner(limits: dict) -> Runner | None:
    """This thread's warm runner, restarted if it died or was started for other limits than the caller's (the paper
    protocol's, a test's: its cgroups were made with them); None outside keep_warm()."""
    runner = local.runner
    if runner is not None and (runner.process.poll() is not None or runner.limits != limits):
        runner.close()
        runner = local.runner = Runner(limits)
    return runner


@contextlib.contextmanager
def keep_warm():
    """Within, this thread's programs share one runner started here (its job processes stay one per program)
    instead of starting one each. Per thread: a runner dies with the thread that started it (PR_SET_PDEATHSIG)."""
    outer, local.runner = local.runner, Runner(LIMITS)
    try:
        yield
    finally:
        local.runner.close()
        local.runner = outer


def read_lines(fd: int, deadline: float):
    """Lines from a pipe until EOF or the deadline."""
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            *lines, buffer = (buffer + chunk).split(b"\n")
            yield from lines


# ----------------------------------------------------------------------------------------------------------
# Cgroups, made by the trusted side: one per sandbox, named after its owner's pid so a dead owner's are found


SWAP_FILES = {"memory.swap.max", "memory.memsw.limit_in_bytes"}  # absent where swap is not accounted


def make_cgroups(name: str, limits: dict) -> tuple[list[str], list[str]]:
    """A new cgroup with the sandbox's limits per hierarchy that we may write (as root, mostly): the layers that
    hold ("cgroup-memory", "cgroup-pids") and the directories. v2 (one directory) is preferred to v1."""
    layers, directories = [], []
    for parent, controllers, settings in cgroup_parents(limits):
        sweep_stale_cgroups(parent)
        path = f"{parent}/m2rl-code-{os.getpid()}-{name}"
        try:
            os.mkdir(path)
            for file, value in settings:
                if file not in SWAP_FILES or os.path.exists(f"{path}/{file}"):  # swap is accounted: bound it
                    write_text(f"{path}/{file}", str(value))
        except OSError:  # read-only cgroupfs (a container), not ours to write (not root), an unknown file
            remove_cgroup(path)
            continue
        layers += [f"cgroup-{controller}" for controller in controllers]
        directories.append(path)
    return layers, directories


def cgroup_parents(limits: dict) -> list[tuple[str, list[str], list[tuple[str, int]]]]:
    """(our own cgroup's directory, its controllers, the files that set a child's limits) per hierarchy."""
    own = own_cgroups(read_text("/proc/self/mountinfo"), read_text("/proc/self/cgroup"))
    memory, processes = limits["memory_bytes"], limits["processes"] + 1  # the runner lives in the cgroup too
    # v2 gives a child the controllers its parent enables; enabling them in a cgroup that holds processes (ours)
    # is refused, so they count only where someone delegated them.
    if "" in own and {"memory", "pids"} <= set(read_text(f"{own['']}/cgroup.subtree_control").split()):
        settings = [("memory.max", memory), ("memory.swap.max", 0), ("pids.max", processes)]
        return [(own[""], ["memory", "pids"], settings)]
    parents = []
    if "memory" in own:  # memsw: memory and swap together, set after memory (it may not be below it)
        settings = [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)]
        parents.append((own["memory"], ["memory"], settings))
    if "pids" in own:
        parents.append((own["pids"], ["pids"], [("pids.max", processes)]))
    return parents


def own_cgroups(mountinfo: str, cgroup: str) -> dict[str, str]:
    """The directory of a process's cgroup per hierarchy - "" for v2, "memory" and "pids" for v1 - from its
    /proc/self/mountinfo and /proc/self/cgroup."""
    mounts = {}  # hierarchy -> (its root inside the cgroupfs, where that is mounted)
    for line in mountinfo.splitlines():
        fields = line.split()
        fstype, options = fields[fields.index("-") + 1], fields[-1].split(",")
        if fstype == "cgroup2":
            mounts[""] = (unescape(fields[3]), unescape(fields[4]))
        for controller in ("memory", "pids") if fstype == "cgroup" else ():
            if controller in options:
                mounts[controller] = (unescape(fields[3]), unescape(fields[4]))
    own = {}
    for line in cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts and path.startswith(mounts[controller][0]):
                root, point = mounts[controller]
                own[controller] = (point + "/" + path[len(root):].strip("/")).rstrip("/")
    return own


def sweep_stale_cgroups(directory: str) -> None:
    """Remove the cgroups of owners that died without removing them (a scoring worker killed mid-item)."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            owner = re.fullmatch(r"m2rl-code-(\d+)-.*", entry)
            if owner and not os.path.exists(f"/proc/{owner[1]}"):
                with contextlib.suppress(OSError):  # still busy: its processes are dying; the next sweep
                    os.rmdir(f"{directory}/{entry}")


def remove_cgroup(path: str) -> None:
    """rmdir once the processes are gone. They die with the runner (PDEATHSIG down the chain); without a PID
    namespace, a program's daemons outlive it, and the cgroup names them all."""
    for _ in range(500):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: processes left, or still exiting
            kill_all_but(path, None)
            time.sleep(0.01)


def empty_cgroups(directories: list[str]) -> None:
    """The runner, between two jobs: kill every process of its cgroups but itself, and wait until they are gone,
    so that the next program meets none of the last one's processes and has the whole bound to itself."""
    for directory in directories:
        for _ in range(5000):
            if not kill_all_but(directory, os.getpid()):
                break
            time.sleep(0.001)


def reap_children(wait: bool) -> None:
    """The runner, between two jobs: reap every child that has exited - it is the subreaper of its jobs' processes,
    and a zombie keeps its pid counted in pids.max until reaped - and with `wait`, those still exiting too."""
    deadline = time.monotonic() + 5
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left
            return
        if pid == 0:  # some still running: with `wait`, every one was killed and is on its way out
            if not wait or time.monotonic() > deadline:
                return
            time.sleep(0.001)


def kill_all_but(directory: str, spared: int | None) -> bool:
    """SIGKILL every process of a cgroup but `spared`; whether there were any."""
    pids = [pid for pid in map(int, read_text(f"{directory}/cgroup.procs").split()) if pid != spared]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def unescape(path: str) -> str:
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m[1], 8)), path)  # mountinfo writes a space as \040


# ----------------------------------------------------------------------------------------------------------
# The runner, `python -I code.py <caller's pid>`, and the job process it forks per program: one JSON line per
# result on the job's result pipe.

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 24, 36, 38
# As root, a sandbox's program runs as SANDBOX_UID + the job process's pid: a uid no file and no other live
# sandbox has (pids are unique while the job process lives, and everything in the sandbox dies with it), so
# RLIMIT_NPROC counts this sandbox only. The base sits above the subordinate ranges container tools hand out.
SANDBOX_UID = 1 << 30
# What the minimal root shows besides the interpreter's sys.path: the shared libraries its extension modules
# load (/lib and /lib64 are often symlinks into /usr) and the harmless devices.
LIBRARIES = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache"]
DEVICES = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"]
DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2"}


def runner_main() -> None:
    """The runner's loop, `code.py <caller's pid> [its cgroup directories]`. Messages on stdin (a socket): b"j"
    with two file descriptors - the job's description and the write end of its result pipe - forks a job process;
    b"k" kills the last one's processes, which by then have finished or are being abandoned; end of input ends the
    runner."""
    die_with_parent(int(sys.argv[1]))
    # Orphans come back to us, not to the machine's init: a job's namespace pid 1 outlives the job process for a moment,
    # and its zombie would hold a pid of the cgroup's bound until someone reaped it (this machine's init never did).
    check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "PR_SET_CHILD_SUBREAPER")
    cgroups = sys.argv[2:]
    control = socket.socket(fileno=0)
    prelude = {}
    exec(PRELUDE, prelude)  # imported once here: every job's fork, and every test's, inherits the modules
    # Out of the collector's sight: a collection in a forked process would otherwise walk, and so copy, every page
    # of the modules above (a test's child took 6.2 ms, 4.0 ms so).
    gc.freeze()
    runner, job = os.getpid(), None
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1, 2)
        if job is not None:
            with contextlib.suppress(ProcessLookupError):  # not reaped yet: the ids cannot have been reused
                os.killpg(job, signal.SIGKILL)  # the job process and the namespace's pid 1
            os.kill(job, signal.SIGKILL)  # in case it was killed before it made its own process group
            os.waitpid(job, 0)
            empty_cgroups(cgroups)
            reap_children(wait=bool(cgroups))
            job = None
        if message == b"j":
            job = os.fork()
            if job == 0:
                run_job(runner, *fds, prelude)
        for fd in fds:
            os.close(fd)
        if not message:
            return


def run_job(runner: int, description: int, results_fd: int, prelude: dict) -> None:
    """The job process, forked fresh per program in the runner's cgroups: it enters new namespaces and runs the
    tests. Never returns."""
    code = 1
    try:
        os.setsid()
        die_with_parent(runner)
        os.dup2(os.open(os.devnull, os.O_RDWR), 0)  # the control socket is the runner's alone
        with open(description, "rb") as f:
            job = json.loads(f.read())
        os.chdir(job["workdir"])
        os.environ.update(HOME=job["workdir"], TMPDIR=job["workdir"])
        results = os.fdopen(results_fd, "w")  # the result channel; fd 1 is replaced in each test's child
        run_tests(job, results, prelude)
        code = 0
    except BaseException:
        os.write(results_fd, (json.dumps({"error": traceback.format_exc()}) + "\n").encode())
    finally:
        os._exit(code)


def run_tests(job: dict, results, prelude: dict) -> None:
    root = os.geteuid() == 0
    uid = SANDBOX_UID + os.getpid()
    try:
        isolation = enter_namespaces(root)
    except OSError:
        isolation = []  # namespaces refused: the fallback described in the module docstring
    isolation += ["uid"] if root else ["no-caps"] if isolation else []
    if "net" not in isolation:
        if root:
            os.chown(os.getcwd(), uid, uid)  # the program's one writable place
        serve(job, isolation, results, uid, prelude)
        return
    pid = os.fork()
    if pid == 0:  # pid 1 of the new PID namespace
        code = 1
        try:
            die_with_parent(None)
            enter_minimal_root(os.getcwd(), job["limits"]["disk_bytes"], uid if root else 0)
            serve(job, isolation + ["pid", "minimal-root", "disk-quota", "no-userns"], results, uid, prelude)
            code = 0
        except BaseException:
            results.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        finally:
            results.flush()
            os._exit(code)
    os.waitpid(pid, 0)


def enter_namespaces(root: bool) -> list[str]:
    """New network, mount and PID namespaces (the PID one takes effect for our next child), inside a new user
    namespace unless root."""
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | (0 if root else CLONE_NEWUSER)), "unshare")
    if not root:
        for path, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{path}", "w") as f:
                f.write(text)
    # Nothing mounted or re-mounted below may propagate back to the host's mount namespace.
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    return ["net"] if root else ["user", "net"]


def enter_minimal_root(workdir: str, disk_bytes: int, owner: int) -> None:
    """Chroot into a read-only tmpfs that holds only what a program needs (module docstring, 2.), with the
    program's temp dir at its usual path, a tmpfs of disk_bytes. Pid 1 of the new PID namespace calls this."""
    root = workdir  # a mount point for the new root that no one else uses
    check(libc.mount(b"tmpfs", root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"), "mount root")
    shown = []  # real paths, each below none of the others
    for path in sorted({os.path.realpath(p) for p in LIBRARIES + sys.path if os.path.exists(p)}):
        if not any(path.startswith(above + "/") for above in shown):
            shown.append(path)
    for path in LIBRARIES:
        if os.path.islink(path):  # merged /usr: /lib -> usr/lib
            os.symlink(os.readlink(path), root + path)
    for path in shown + DEVICES:
        if os.path.isdir(path):
            os.makedirs(root + path)
        else:
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.close(os.open(root + path, os.O_CREAT | os.O_WRONLY, 0o644))
        # MS_REC: in a user namespace, a mount with mounts below it may only be bound whole
        check(libc.mount(path.encode(), (root + path).encode(), None, MS_BIND | MS_REC, None), f"bind {path}")
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + workdir)
    os.symlink(workdir, f"{root}/dev/shm")  # POSIX shared memory and semaphores land in the quota
    options = f"mode=0700,size={disk_bytes},nr_inodes=4096,uid={owner},gid={owner}".encode()
    check(libc.mount(b"tmpfs", (root + workdir).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), "mount temp dir")
    os.makedirs(f"{root}/proc")
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    check(libc.mount(b"proc", f"{root}/proc".encode(), b"proc", flags, None), "mount /proc")  # the sandbox's only
    with open("/proc/self/mountinfo") as f:
        targets = [unescape(line.split()[4]) for line in f]
    for target in targets:
        if (target == root or target.startswith(root + "/")) and target not in (root + workdir, f"{root}/proc"):
            # Keep the flags a user namespace may not drop (nosuid, nodev, noexec, atime); add read-only.
            flags = os.statvfs(target).f_flag
            kept = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
            kept |= MS_RELATIME if flags & os.ST_RELATIME else 0
            check(libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, None),
                  f"remount {target} read-only")
    # The host's tree stays below, out of reach: leaving a chroot takes CAP_SYS_CHROOT, which no program has.
    os.chroot(root)
    os.chdir(workdir)


def serve(job: dict, isolation: list[str], results, uid: int, prelude: dict) -> None:
    results.write(json.dumps({"isolation": isolation}) + "\n")
    results.flush()
    for test_input in job["inputs"]:
        run = run_test(job, test_input, prelude, isolation, uid)
        results.write(json.dumps(run) + "\n")
        results.flush()
        if job["stop_on_error"] and (run["timeout"] or run["overflow"] or run["exit"] != 0):
            break


def run_test(job: dict, test_input: str, prelude: dict, isolation: list[str], uid: int) -> dict:
    limits = job["limits"]
    stdin = os.memfd_create("stdin")
    os.write(stdin, test_input.encode() if job["fn_name"] is None else b"")
    os.lseek(stdin, 0, os.SEEK_SET)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        run_program(job, test_input, prelude, (stdin, out_w, err_w), isolation, uid)
    for fd in (stdin, out_w, err_w):
        os.close(fd)
    stdout, stderr, timeout, overflow = collect(out_r, err_r, time.monotonic() + limits["time_s"],
                                                limits["output_bytes"])
    with contextlib.suppress(ProcessLookupError):  # nothing left to kill
        if os.getpid() == 1:
            os.kill(-1, signal.SIGKILL)  # from a namespace's pid 1: every other process in it. Never outside!
        else:
            os.killpg(pid, signal.SIGKILL)  # fallback: the child's process group (it called setsid)
    _, status = os.waitpid(pid, 0)
    while os.getpid() == 1:  # reap the orphans re-parented to us
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    exit_code = os.waitstatus_to_exitcode(status)
    return {"exit": exit_code, "timeout": timeout, "overflow": overflow,
            "stdout": stdout.decode(errors="replace"), "stderr": stderr.decode(errors="replace")}


def collect(out_r: int, err_r: int, deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Read stdout (up to cap) and stderr (its last 2 KiB) until both close or the deadline passes."""
    stdout, stderr = bytearray(), b""
    # A program that leaves a process holding its stdout open runs into the deadline.
    with selectors.DefaultSelector() as selector, os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"):
        selector.register(out_r, selectors.EVENT_READ)
        selector.register(err_r, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(stdout), stderr, True, False
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.fd == out_r:
                    stdout += chunk
                    if len(stdout) > cap:
                        return bytes(stdout[:cap]), stderr, False, True
                else:
                    stderr = (stderr + chunk)[-2048:]
    return bytes(stdout), stderr, False, False


def run_program(job, test_input, prelude, fds, isolation, uid) -> None:
    """In the forked child: confine this process, then run the untrusted program. Never returns."""
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the result channel and every other descriptor
        os.setsid()
        confine(job["limits"], isolation, uid)
        sys.stdin = open(0, encoding="utf-8", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        sys.setrecursionlimit(50_000)  # as LiveCodeBench
        namespace = dict(prelude, __name__="__main__")
        if job["fn_name"] is None:
            exec(compile(job["code"], "solution.py", "exec"), namespace)
            sys.stdout.flush()
            sys.stderr.flush()  # a wrong answer keeps its stderr too
            os._exit(0)
        # Call-based: parse the arguments and keep json.dumps *before* the program runs; its prints go nowhere.
        args = [json.loads(line) for line in test_input.split("\n")]
        dumps, write, result_fd = json.dumps, os.write, os.dup(1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        exec(compile(job["code"], "solution.py", "exec"), namespace)
        fn = getattr(namespace["Solution"](), job["fn_name"]) if "Solution" in namespace else namespace[job["fn_name"]]
        result = dumps(fn(*args))  # tuples become lists here, as LiveCodeBench compares them
        write(result_fd, result.encode())
        os._exit(0)
    except SystemExit as e:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def confine(limits: dict, isolation: list[str], uid: int) -> None:
    cpu = math.ceil(limits["time_s"]) + 1
    for res, value in ((resource.RLIMIT_AS, limits["memory_bytes"]), (resource.RLIMIT_CPU, cpu),
                       (resource.RLIMIT_NPROC, limits["processes"]), (resource.RLIMIT_FSIZE, limits["file_bytes"]),
                       (resource.RLIMIT_NOFILE, limits["open_files"]), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))
    if "uid" in isolation or "no-caps" in isolation:
        # An empty bounding set: no execve (of a setuid binary, or as uid 0) can bring a capability back.
        cap = 0
        while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
    if "uid" in isolation:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # cannot signal, trace, or read the private files of root's (or another sandbox's) processes
    elif "no-caps" in isolation:
        drop_capabilities()  # uid 0 of our user namespace, with no capability in it
    die_with_parent(None)  # a uid change cleared it
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if "net" not in isolation:
        sys.modules["socket"] = sys.modules["_socket"] = None  # best effort: `import socket` fails


def drop_capabilities() -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")  # _LINUX_CAPABILITY_VERSION_3


def die_with_parent(expected_parent: int | None) -> None:
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)  # the parent died before the line above took effect


def check(ret: int, what: str) -> None:
    if ret != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"sandbox: {what} failed: {os.strerror(errno)}")


if __name__ == "__main__":
    runner_main()
