"""Rewards: score a response to a record, routed by the record's domain; or a batch, in worker processes.

    score(record, response, think_gate=False, partial=False, protocol="toy") -> Score(reward, info)    never raises
    validate(record)                       at data-load time: ValueError naming the record, domain and key
    DOMAINS                                the registered domains (MODULES' keys), the one list of them
    score_batch(records, responses, ...)   / ScorePool: worker processes, a hard wall-clock limit per item

Each domain module - math, code, science, and ifeval for "if" - has `verify(response, verifier, protocol="toy") ->
(reward, info)` and `check_verifier(verifier)`, and documents its verifier fields in its docstring.

Paper semantics (M2RL, slime rm_hub `async_rm`): only the text after the last `</think>` is scored, with a
trailing `<|im_end|>` removed; with think_gate=True (thinking required), a response without `</think>` scores 0.
Rewards are binary, except code with partial=True: the fraction of tests passed (M2RL's pass_avg).

The protocol (`protocol=`, one of PROTOCOLS; every entry point's --protocol) picks the rules:
- "toy": ours, for the toy data and any model: the think gate only if asked, math takes a bare "Answer: 5" as well
  as a \\boxed{}, science the last "Answer: X", code LiveCodeBench's float-tolerant comparison and 6 s per test.
- "m2rl": the paper's code, rule for rule (each module cites the file it follows): the think gate always on and
  the text after `</think>` left unstripped unless it ends in `<|im_end|>` (rm_hub/__init__.py `async_rm`); math
  deepscaler's extraction (rewards/math.py), science gpqa.py's first-match letter (rewards/science.py), code
  slime/rewards/code.py's exact comparison and 10 s runs (rewards/code.py), and the IF ids the paper's IFEvalG
  registry leaves out score 0 as its KeyError does there (rewards/ifeval.py, PAPER_UNREGISTERED).
"""
import importlib
import io
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from multiprocessing.process import BaseProcess
from typing import NamedTuple

# The registry of domains: a domain is a key here, its verifier the module rewards/<value>.py. Every list of domains
# (record validation, --domains, the toy benchmarks, the study) reads DOMAINS, a live view of these keys: adding a
# domain is its module plus one line here (docs/extending.md).
MODULES = {"math": "math", "code": "code", "science": "science", "if": "ifeval"}
DOMAINS = MODULES.keys()
PROTOCOLS = ("toy", "m2rl")


@dataclass
class Score:
    reward: float
    info: dict = field(default_factory=dict)  # extracted answer, tests passed, failed instruction ids, error text


def score(record, response: str, think_gate: bool = False, partial: bool = False, protocol: str = "toy") -> Score:
    """Never raises: a verifier that throws scores 0 with the exception in info["error"]."""
    if "</think>" in response:
        response = response.rsplit("</think>", 1)[1]
    elif think_gate or protocol == "m2rl":
        return Score(0.0, {"error": "no </think> in the response, and thinking is required (think gate)"})
    if protocol == "toy":
        response = response.strip().removesuffix("<|im_end|>")
    elif response.endswith("<|im_end|>"):  # async_rm strips only here: IF checks see the leading newlines otherwise
        response = response.removesuffix("<|im_end|>").strip()
    try:
        options = {"partial": partial} if record.domain == "code" else {}
        reward, info = domain_module(record.domain).verify(response, record.verifier, protocol=protocol, **options)
        return Score(float(reward), info)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # BaseException: math-verify's TimeoutException derives from it
        return Score(0.0, {"error": f"{type(e).__name__}: {e}"})


def validate(record) -> None:
    """Check a record's domain and verifier fields when the data is loaded, not when a reward silently reads 0."""
    if not isinstance(record.verifier, dict):
        raise ValueError(f"record {record.id!r}: verifier must be a JSON object, got {type(record.verifier).__name__}")
    try:
        domain_module(record.domain).check_verifier(record.verifier)
    except ValueError as e:
        raise ValueError(f"record {record.id!r}: {e}") from None


def domain_module(domain: str):
    if domain not in MODULES:
        raise ValueError(f"unknown domain {domain!r}: a record's domain must be one of {', '.join(DOMAINS)}")
    # Imported on first use: math-verify pulls in sympy (~1 s), and a code-only run needs neither.
    return importlib.import_module(f".{MODULES[domain]}", __name__)


def score_batch(records, responses, think_gate: bool = False, partial: bool = False, protocol: str = "toy",
                workers: int | None = None, timeout_s: float = 240.0) -> list[Score]:
    """One batch in a pool started and stopped here; a trainer keeps one ScorePool open across steps instead."""
    with ScorePool(workers, timeout_s) as pool:
        return pool.score(records, responses, think_gate, partial, protocol)


class Worker(NamedTuple):
    process: BaseProcess
    conn: Connection
    scratch: str  # its temp dir


class MainlessPopen(popen_forkserver.Popen):
    """A forkserver start that does not tell the child the caller's main script.

    multiprocessing hands every child its parent's main script (spawn.get_preparation_data), which the child runs
    again at start as "__mp_main__" (spawn.prepare) so that what the script defines unpickles there. A worker needs
    nothing from the caller's script - `serve` lives here - yet each would re-import a trainer's modules, torch
    included: 13 s before a new pool's first score on a 2-core machine. (The forkserver could run the script once
    for all, but Python 3.11's never does - forkserver.py looks for a "main_path" that get_preparation_data does not
    return - and the server would then hold torch.) The main entries are left out of this one child's data; the
    caller's own __main__ is never touched, so its other threads see it whole while a worker starts.
    """

    def _launch(self, process_obj):
        # CPython's popen_forkserver.Popen._launch (the same in 3.10-3.14) but for the pop of the main entries
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        # the child watches this duplicate of the data pipe's write end to learn that its parent died
        parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class WorkerProcess(ForkServerProcess):
    _Popen = staticmethod(MainlessPopen)


class ScorePool:
    """Worker processes that score items with a hard wall-clock limit each.

    Not concurrent.futures or multiprocessing.Pool: neither can stop one stuck item - the worker stays busy
    forever, or the whole pool breaks. Here a worker that overruns its item's limit, or dies, is killed and
    replaced, and the item scores 0 with the reason in info. Workers run the verifiers on their main thread,
    where math-verify's signal-based timeouts work, and keep a code sandbox runner warm (rewards/code.py). A
    forkserver starts them: forking a trainer that holds CUDA state and threads is unsafe. The default limit sits
    above code's worst case, 20 tests x (10 + 1) s + 10 s (the m2rl protocol's 10 s runs; the toy's 6 s give 150 s).

    score(records, responses) scores a batch and waits for it. submit(key, record, response) and collect() score
    while the caller does something else - a rollout engine still generating the rest of the batch: a thread here
    hands out the items as workers free up, from the first submit until every item is scored.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 240.0):
        self.context = multiprocessing.get_context("forkserver")
        # Workers, and those that replace them, fork from a server that already imported the verifiers (math-verify
        # and sympy take seconds, which would count against an item's limit) and built math-verify's parser tables.
        self.context.set_forkserver_preload([f"{__name__}.preload"])
        self.timeout_s = timeout_s
        remove_stale_scratch()
        self.workers = [self.start_worker() for _ in range(workers or os.cpu_count())]
        self.todo = deque()  # (key, item) not handed out yet
        self.scores = {}  # key -> Score, since the last collect
        self.lock = threading.Lock()
        self.dispatcher = None  # the thread handing out items, while any are left
        self.wake_r, self.wake_w = os.pipe()  # a submit wakes the dispatcher for a worker that idles
        self.error = None  # what stopped the dispatcher, raised by collect
        # Also at interpreter exit, when the caller's `close` never came (an exception left the trainer).
        self.close = weakref.finalize(self, stop_workers, self.workers, [self.wake_r, self.wake_w])

    def score(self, records, responses, think_gate: bool = False, partial: bool = False,
              protocol: str = "toy") -> list[Score]:
        records, responses = list(records), list(responses)
        if len(records) != len(responses):
            raise ValueError(f"{len(records)} records but {len(responses)} responses")
        for i, (record, response) in enumerate(zip(records, responses)):
            self.submit(i, record, response, think_gate, partial, protocol)
        scores = self.collect()
        return [scores[i] for i in range(len(records))]

    def submit(self, key, record, response: str, think_gate: bool = False, partial: bool = False,
               protocol: str = "toy") -> None:
        """Start scoring one item as soon as a worker is free; its Score comes back from collect() under key."""
        with self.lock:
            self.todo.append((key, (record, response, think_gate, partial, protocol)))
            if self.dispatcher is None:
                self.dispatcher = threading.Thread(target=self.dispatch, daemon=True)
                self.dispatcher.start()
            else:
                os.write(self.wake_w, b"x")

    def collect(self) -> dict:
        """Wait until every submitted item is scored: {key: Score}."""
        with self.lock:
            dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        scores, self.scores = self.scores, {}
        return scores

    def dispatch(self) -> None:
        running = {}  # worker slot -> (key, deadline)
        try:
            while True:
                with self.lock:
                    if not self.todo and not running:
                        self.dispatcher = None
                        return
                    for slot, worker in enumerate(self.workers):
                        if slot not in running and self.todo:
                            key, item = self.todo.popleft()
                            worker.conn.send(item)
                            running[slot] = (key, time.monotonic() + self.timeout_s)
                conns = {self.workers[slot].conn: slot for slot in running}
                next_deadline = min(deadline for _, deadline in running.values())
                for conn in wait([*conns, self.wake_r], timeout=max(0.0, next_deadline - time.monotonic())):
                    if conn == self.wake_r:
                        os.read(self.wake_r, 1 << 16)
                        continue
                    slot = conns[conn]
                    key, _ = running.pop(slot)
                    try:
                        self.scores[key] = conn.recv()
                    except (EOFError, OSError):  # it died mid-item: OOM killer, a segfault in a C extension
                        self.scores[key] = Score(0.0, {"error": f"scoring worker died (exit code "
                                                                f"{self.workers[slot].process.exitcode}); replaced"})
                        self.replace(slot)
                for slot, (key, deadline) in list(running.items()):
                    if time.monotonic() >= deadline:
                        self.scores[key] = Score(0.0, {"error": f"scoring timed out after {self.timeout_s} s; "
                                                                f"worker replaced"})
                        self.replace(slot)
                        del running[slot]
        except BaseException as e:  # handed to collect(), which raises it (a worker that died between items)
            with self.lock:
                self.todo.clear()
                self.dispatcher, self.error = None, e

    def start_worker(self):
        # A worker's temp files go in a directory of its own, removed here: a killed worker cleans up nothing.
        # Its name holds our pid: a killed pool's directories are removed by the next pool to start.
        scratch = tempfile.mkdtemp(prefix=f"m2rl-score-{os.getpid()}-")
        os.chmod(scratch, 0o711)  # the code sandbox's user must reach its work dir inside
        conn, child_conn = self.context.Pipe()
        process = WorkerProcess(target=serve, args=(child_conn, scratch), daemon=True)
        process.start()
        child_conn.close()
        return Worker(process, conn, scratch)

    def replace(self, slot: int) -> None:
        stop_worker(self.workers[slot])
        self.workers[slot] = self.start_worker()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stop_worker(worker: Worker) -> None:
    worker.process.kill()  # a code item's sandbox dies with it (PR_SET_PDEATHSIG down the chain)
    worker.process.join()
    worker.conn.close()
    shutil.rmtree(worker.scratch, ignore_errors=True)


def stop_workers(workers: list[Worker], fds: list[int]) -> None:
    for worker in workers:
        stop_worker(worker)
    workers.clear()
    for fd in fds:
        os.close(fd)


def remove_stale_scratch() -> None:
    """Remove the worker directories of pools whose process is gone (killed, so nothing cleaned up)."""
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        owner = re.fullmatch(r"m2rl-score-(\d+)-\w+", entry)
        if owner and not os.path.exists(f"/proc/{owner[1]}"):
            shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)


def serve(conn: Connection, scratch: str) -> None:
    """A worker's loop: (record, response, think_gate, partial, protocol) in, Score out, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the pool
    tempfile.tempdir = scratch
    with domain_module("code").keep_warm():  # one sandbox runner for this worker's life, not one per program
        while True:
            try:
                item = conn.recv()
            except EOFError:
                return
            conn.send(score(*item))
