"""Reward scoring throughput on this machine: items per second through rewards.ScorePool, per domain.

Code is measured three ways: 1 test per program, 20 tests per program (the most a problem runs), and wrong
answers (stopped at the first failing test, the common case early in RL). The peer is the plain way to sandbox
a program: a fresh `python -I` per test (subprocess.run, stdin in, stdout compared) with no isolation at all;
the ratio is what the warm fork per test buys, namespaces included. Then the time a program takes, one after
another on one warm runner as a scoring worker runs them: 20 tests, and a toy RL problem (4 call-based tests). Last,
each attack of the sandbox test suite with its wall time against its bound - the tests check verdicts, timings live
here.

    python bench/rewards.py [--workers N] [--programs 32] [--out runs/bench-rewards]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# This file is itself named rewards.py: put the repository, not bench/, first on sys.path.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from data.record import Record  # noqa: E402
from files import write_atomic  # noqa: E402
import rewards  # noqa: E402
from rewards import code  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--workers", type=int, default=os.cpu_count(), help="scoring worker processes")
parser.add_argument("--programs", type=int, default=32, help="items per workload")
parser.add_argument("--out", default="runs/bench-rewards", help="directory for results.json and args.json")

ADD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
ADD_WRONG = ADD.replace("a + b", "a + b + 1")
TOY = "```python\ndef f(x):\n    return x * 10\n```"  # a toy code problem: 4 call-based tests (data/toy/rl)
TOY_TESTS = {"tests": {"inputs": ["22", "21", "33", "47"], "outputs": ["220", "210", "330", "470"], "fn_name": "f"}}
ATTACKS = {  # name -> (program, bound in seconds: the time limit of 1 s plus the sandbox's start and stop)
    "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", 3.0),
    "infinite loop": ("while True:\n    pass", 3.0),
    "8 GB allocation": ("x = bytearray(8 << 30)", 2.0),
    "write outside the temp dir": ("open('/tmp/m2rl-bench-pwned', 'w')", 2.0),
    "environment secret": ("import os\nprint(os.environ.get('M2RL_BENCH_SECRET'))", 2.0),
    "network connection": ("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", 2.0),
    "kill the parent": ("import os\nos.kill(os.getppid(), 9)", 2.0),
    "100 MB of output": ("import sys\nsys.stdout.write('x' * 100_000_000)", 3.0),
    "sys.exit(0) first": ("import sys\nsys.exit(0)", 2.0),
}


def add_tests(n: int) -> dict:
    return {"tests": {"inputs": [f"{i} {i + 1}\n" for i in range(n)], "outputs": [str(2 * i + 1) for i in range(n)]}}


def record(domain: str, verifier: dict, i: int) -> Record:
    return Record(id=f"{domain}-{i}", domain=domain, messages=[], verifier=verifier)


def throughput(pool, records, responses) -> dict:
    start = time.perf_counter()
    scores = pool.score(records, responses)
    seconds = time.perf_counter() - start
    return {"items": len(records), "seconds": round(seconds, 3), "items_per_s": round(len(records) / seconds, 2),
            "mean_reward": sum(s.reward for s in scores) / len(scores)}


def naive_program(program: str, verifier: dict) -> float:
    """The peer: a fresh interpreter per test, no sandbox."""
    source = program.split("```python\n")[1].split("```")[0]
    tests = verifier["tests"]
    for given, expected in zip(tests["inputs"], tests["outputs"]):
        run = subprocess.run([sys.executable, "-I", "-c", source], input=given, capture_output=True, text=True,
                             timeout=code.LIMITS["time_s"])
        if run.returncode != 0 or not code.stdout_matches(run.stdout, expected):
            return 0.0
    return 1.0


def seconds_per_program(score_one, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        assert score_one() == 1.0
    return (time.perf_counter() - start) / n


def main():
    args = parser.parse_args()
    print(vars(args))
    n = args.programs
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}

    with rewards.ScorePool(workers=args.workers) as pool:
        pool.score([record("math", {"answer": "1"}, 0)] * args.workers, ["\\boxed{1}"] * args.workers)  # warm
        workloads = {
            "code, 1 test, correct": ([record("code", add_tests(1), i) for i in range(n)], [ADD] * n),
            "code, 20 tests, correct": ([record("code", add_tests(20), i) for i in range(n)], [ADD] * n),
            "code, 20 tests, wrong at the first": ([record("code", add_tests(20), i) for i in range(n)],
                                                   [ADD_WRONG] * n),
            "math": ([record("math", {"answer": f"\\frac{{{i}}}{{{i + 1}}}"}, i) for i in range(n)],
                     [f"So the answer is $\\boxed{{{i}/{i + 1}}}$." for i in range(n)]),
            "science": ([record("science", {"options": list("abcd"), "answer": "C"}, i) for i in range(n)],
                        ["The answer is (C)."] * n),
        }
        results["pool"] = {name: throughput(pool, *workload) for name, workload in workloads.items()}

    twenty = add_tests(20)
    with code.keep_warm():  # as a scoring worker runs them: one warm runner, one program after another
        ours = seconds_per_program(lambda: code.verify(ADD, twenty)[0], max(n // 4, 4))
        toy = seconds_per_program(lambda: code.verify(TOY, TOY_TESTS)[0], 2 * n)
    naive = seconds_per_program(lambda: naive_program(ADD, twenty), max(n // 4, 4))
    results["per_program_20_tests_one_process"] = {
        "sandbox_s": round(ours, 4), "naive_subprocess_per_test_s": round(naive, 4),
        "naive_over_sandbox": round(naive / ours, 2)}
    results["per_program_toy_one_process"] = {"sandbox_s": round(toy, 4)}  # the toy RL split's shape

    code.LIMITS["time_s"] = 1.0
    os.environ["M2RL_BENCH_SECRET"] = "hunter2"
    results["attacks"] = {}
    for name, (program, bound) in ATTACKS.items():
        start = time.perf_counter()
        reward, info = code.verify(f"```python\n{program}\n```", {"tests": {"inputs": ["1"], "outputs": ["hunter2"]}})
        seconds = time.perf_counter() - start
        results["attacks"][name] = {"reward": reward, "seconds": round(seconds, 3), "bound_s": bound,
                                    "within_bound": seconds <= bound, "verdict": info["failure"]["verdict"]}

    print(json.dumps(results, indent=2))
    out = Path(args.out)
    for name, payload in (("args.json", vars(args)), ("results.json", results)):
        write_atomic(out / name, json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
