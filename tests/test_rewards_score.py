"""rewards/__init__.py: routing, the think gate, validation, and pooled scoring.

References: M2RL's slime rm_hub `async_rm` for the think gate (score only after the last </think>, strip a
trailing <|im_end|>, 0 without </think>); in-process `score()` for what the pool must return, item by item.
"""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rewards
from data.record import Record

ADD = {"tests": {"inputs": ["1 2"], "outputs": ["3"]}}
ADD_OK = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
SLEEPER = "```python\nimport time\ntime.sleep(30)\n```"


def record(domain, verifier, id="r0"):
    return Record(id=id, domain=domain, messages=[{"role": "user", "content": "q"}], verifier=verifier)


MATH = record("math", {"answer": "1/2"})
SCIENCE = record("science", {"options": ["a", "b", "c"], "answer": "B"})
CODE = record("code", ADD)


@pytest.mark.parametrize("response, think_gate, reward", [
    ("<think>maybe \\boxed{3}</think>So \\boxed{\\frac{1}{2}}<|im_end|>", True, 1.0),
    ("<think>surely \\boxed{\\frac{1}{2}}</think>So \\boxed{3}", True, 0.0),  # the thinking is never scored
    ("<think>a</think><think>b</think>\\boxed{1/2}", True, 1.0),              # the last </think> splits
    ("\\boxed{1/2}<|im_end|>", True, 0.0),                                     # thinking required, absent
    ("\\boxed{1/2}<|im_end|>", False, 1.0),
    ("<think>no end... \\boxed{1/2}", True, 0.0),                              # cut off while thinking
])
def test_think_gate(response, think_gate, reward):
    assert rewards.score(MATH, response, think_gate=think_gate).reward == reward


def test_im_end_is_stripped_before_scoring():
    assert rewards.score(SCIENCE, "Answer: B<|im_end|>").reward == 1.0
    assert rewards.score(CODE, ADD_OK + "<|im_end|>").reward == 1.0


def test_routes_by_domain():
    assert rewards.score(MATH, "\\boxed{0.5}") == rewards.Score(1.0, {"answer": "0.5"})
    assert rewards.score(SCIENCE, "Answer: B") == rewards.Score(1.0, {"answer": "B"})
    assert rewards.score(CODE, ADD_OK).info["passed"] == 1


def test_a_verifier_that_throws_scores_zero_with_the_error():
    broken = record("code", {"tests": {"inputs": ["1"]}})  # no "outputs": a KeyError inside the verifier
    result = rewards.score(broken, ADD_OK)
    assert result.reward == 0.0 and result.info["error"] == "KeyError: 'outputs'"
    result = rewards.score(record("chemistry", {}), "x")
    assert result.reward == 0.0 and "unknown domain 'chemistry'" in result.info["error"]


def test_math_scores_off_the_main_thread():
    # math-verify's signal-based timeout would raise there; the pool's wall-clock limit covers that case.
    results = []
    thread = threading.Thread(target=lambda: results.append(rewards.score(MATH, "\\boxed{\\dfrac{2}{4}}")))
    thread.start()
    thread.join()
    assert results[0].reward == 1.0


def test_validate_names_domain_and_key():
    for good in (MATH, SCIENCE, CODE):
        rewards.validate(good)
    with pytest.raises(ValueError, match=r"record 'r0'.*unknown domain 'chemistry'.*math, code, science, if"):
        rewards.validate(record("chemistry", {}))
    with pytest.raises(ValueError, match=r"record 'r0'.*\"answer\""):
        rewards.validate(record("math", {"gold": "1/2"}))
    with pytest.raises(ValueError, match=r"record 'r0'.*verifier must be a JSON object"):
        rewards.validate(record("math", "1/2"))


def test_pool_matches_in_process_scoring():
    records = [MATH, SCIENCE, CODE, MATH, SCIENCE, CODE]
    responses = ["\\boxed{1/2}", "Answer: C", ADD_OK, "Answer: 0.25", "B", ADD_OK.replace("a + b", "a - b")]
    pooled = rewards.score_batch(records, responses, workers=2)
    assert pooled == [rewards.score(r, s) for r, s in zip(records, responses)]
    assert [s.reward for s in pooled] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_pool_kills_an_item_over_its_limit_and_carries_on():
    with rewards.ScorePool(workers=2, timeout_s=1.0) as pool:
        scores = pool.score([CODE, CODE, MATH], [SLEEPER, ADD_OK, "\\boxed{1/2}"])
        assert scores[0].reward == 0.0 and "timed out after 1.0 s" in scores[0].info["error"]
        assert [s.reward for s in scores[1:]] == [1.0, 1.0]
        assert pool.score([CODE], [ADD_OK])[0].reward == 1.0  # the replaced worker serves the next batch


def test_pool_survives_a_worker_that_dies():
    with rewards.ScorePool(workers=1, timeout_s=60.0) as pool:
        victim = pool.workers[0].process.pid
        killer = threading.Timer(1.0, os.kill, (victim, 9))  # dies while its sandbox sleeps
        killer.start()
        scores = pool.score([CODE, CODE], [SLEEPER, ADD_OK])
        killer.join()
        assert scores[0].reward == 0.0 and "scoring worker died" in scores[0].info["error"]
        assert scores[1].reward == 1.0 and pool.workers[0].process.pid != victim


def test_order_is_kept_and_lengths_must_match():
    responses = [f"\\boxed{{{i}}}" for i in range(5)]
    records = [record("math", {"answer": str(i)}, id=str(i)) for i in reversed(range(5))]
    assert [s.reward for s in rewards.score_batch(records, responses, workers=2)] == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError):
        rewards.score_batch(records, responses[:2], workers=1)


def test_a_domain_registered_in_one_line_is_a_domain_everywhere(tmp_path, monkeypatch):
    """docs/extending.md, "Add a reward domain", made true: a throwaway domain - a module with `verify` and
    `check_verifier`, registered by one MODULES entry and nothing else - is accepted and checked when records load,
    by a blend source and by --domains, and scored. Reference: what the module itself says of each response."""
    import types
    from data.blend import parse_source
    from data.record import RecordError, load_records
    from train_grpo import parse_domains

    def check_verifier(verifier):
        if not isinstance(verifier.get("word"), str):
            raise ValueError("verifier key 'word' must be a string")
    echo = types.ModuleType("rewards.echo")
    echo.check_verifier = check_verifier
    echo.verify = lambda response, verifier, protocol="toy": (float(response == verifier["word"]), {})
    monkeypatch.setitem(sys.modules, "rewards.echo", echo)
    monkeypatch.setitem(rewards.MODULES, "echo", "echo")

    assert "echo" in rewards.DOMAINS and parse_domains("math,echo") == ["math", "echo"]
    data = tmp_path / "echo.jsonl"
    data.write_text(json.dumps({"id": "e0", "domain": "echo", "messages": [{"role": "user", "content": "say hi"}],
                                "verifier": {"word": "hi"}}) + "\n")
    (loaded,) = load_records(data)
    assert [rewards.score(loaded, r).reward for r in ("hi", "<think>x</think>hi", "bye")] == [1.0, 1.0, 0.0]
    data.write_text(data.read_text().replace('"word": "hi"', '"word": 3'))
    with pytest.raises(RecordError, match="echo.jsonl:1: key 'verifier': .*'word' must be a string"):
        load_records(data)
    source = {"name": "echo", "paths": [str(data)], "converter": "nemotron_sft", "domain": "echo", "method": "all"}
    assert parse_source(source, tmp_path, "blend").domain == "echo"
    monkeypatch.delitem(rewards.MODULES, "echo")
    with pytest.raises(RecordError, match="key 'domain' is 'echo'; it must be one of math, code, science, if"):
        load_records(data)


def test_submitted_items_are_scored_before_collect_is_called():
    """Reference: in-process score(), item by item. The pool scores in the background from the first submit: every
    item is scored while the caller is busy elsewhere (generating), before it ever calls collect()."""
    records = [MATH, CODE, SCIENCE, CODE]
    responses = ["\\boxed{1/2}", ADD_OK, "Answer: C", ADD_OK.replace("a + b", "a - b")]
    with rewards.ScorePool(workers=2, timeout_s=60.0) as pool:
        for key, record, response in reversed(list(zip("abcd", records, responses))):
            pool.submit(key, record, response)
        deadline = time.monotonic() + 120
        while len(pool.scores) < len(records):  # no collect() yet: only the pool's own thread can fill these
            assert time.monotonic() < deadline, f"only {len(pool.scores)} of 4 scored without collect()"
            time.sleep(0.05)
        scores = pool.collect()
        assert scores == dict(zip("abcd", (rewards.score(r, s) for r, s in zip(records, responses))))
        assert pool.collect() == {}  # each collect returns what was submitted since the last
        pool.submit("e", MATH, "\\boxed{0.5}")  # and the pool serves on
        assert pool.collect() == {"e": rewards.score(MATH, "\\boxed{0.5}")}

# A caller's script: its top level leaves a file named by the pid of every process that runs it, and it defines a
# class and a function that pickle by reference to __main__ (as a trainer's do when handed to a DataLoader worker).
CALLER = """
import os, pickle, sys, threading
from pathlib import Path
Path(sys.argv[1], str(os.getpid())).touch()

class Job:
    pass

def job():
    pass

if __name__ == "__main__":
    import rewards
    from data.record import Record
    with rewards.ScorePool(workers=1) as pool:
        replaced = threading.Event()
        def churn():
            for _ in range(20):
                pool.replace(0)
            replaced.set()
        threading.Thread(target=churn).start()
        while not replaced.is_set():
            pickle.dumps(Job()), pickle.dumps(job)
        record = Record(id="r", domain="math", messages=[{"role": "user", "content": "q"}], verifier={"answer": "2"})
        assert pool.score([record], ["\\\\boxed{2}"])[0].reward == 1.0
"""


def test_workers_start_without_the_callers_script(tmp_path):
    """The pool's workers neither run the caller's script again (a trainer's would import torch in each: seconds
    before the first score) nor make its __main__ look empty to the caller's other threads while one starts: the
    script pickles its own class and function without a failure from its main thread while another thread replaces
    workers (the pickle module's lookup of __main__.Job is the reference). The markers say which processes ran the
    script's top level: this one only."""
    script, markers = tmp_path / "caller.py", tmp_path / "markers"
    script.write_text(CALLER)
    markers.mkdir()
    root = Path(__file__).resolve().parents[1]
    caller = subprocess.Popen([sys.executable, str(script), str(markers)], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
    _, err = caller.communicate(timeout=300)
    assert caller.returncode == 0, err[-3000:]
    assert [p.name for p in markers.iterdir()] == [str(caller.pid)]
