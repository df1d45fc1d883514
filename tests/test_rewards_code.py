"""rewards/code.py: test selection, verdicts, and end-to-end scoring of programs in the sandbox.

References: the comparison rules of LiveCodeBench's testing_util (stripped lines; numbers within 1e-6 when
written as floats; call-based returns compared as JSON, tuples as lists), and programs whose right and wrong
answers are known by construction (a+b, and the same with an off-by-one).
"""

import pytest

from rewards import code

ADD = {"tests": {"inputs": ["1 2\n", "3 4\n", "10 -5\n"], "outputs": ["3\n", "7", "5"]}}


def fence(src: str) -> str:
    return f"Here is my solution.\n```python\n{src}\n```\n"


# --- verdicts (pure functions, no sandbox) ------------------------------------------------------------

@pytest.mark.parametrize("got, expected, same", [
    ("3\n", "3", True),
    ("  1 2 3  \r\n\n", "1 2 3", True),       # outer blank lines, spaces and \r are stripped
    ("1  2 3", "1 2 3", True),                # token by token
    ("1 2", "1 2 3", False),
    ("a\nb", "a\n\nb", False),               # inner blank lines count
    ("0.333333", "0.3333333333", True),       # float within 1e-6
    ("1.0", "1", True),
    ("0.33", "0.333333", False),
    ("100000000000000001", "100000000000000000", False),  # integers compare exactly
    ("1e3", "1000", True),
    ("YES", "yes", False),
    ("nan", "nan", True),
])
def test_stdout_matches(got, expected, same):
    assert code.stdout_matches(got, expected) is same


@pytest.mark.parametrize("got, expected, same", [
    ([1, 2], [1, 2], True),
    ([[1, 2], [3]], [[1, 2], [3]], True),
    (0.30000000000000004, 0.3, True),
    ([0.1 + 0.2, 1], [0.3, 1], True),
    (2, 2.0, True),
    (True, 1, False),
    ("1", 1, False),
    ({"a": [1]}, {"a": [1]}, True),
    ([1, 2], [2, 1], False),
    (None, None, True),
])
def test_values_match(got, expected, same):
    assert code.values_match(got, expected) is same


def test_pick_tests_is_seeded_by_the_problem():
    inputs = [str(i) for i in range(50)]
    chosen = code.pick_tests(inputs)
    assert len(chosen) == code.MAX_TESTS == 20 and len(set(chosen)) == 20 and chosen == sorted(chosen)
    assert code.pick_tests(list(inputs)) == chosen               # every rollout of a problem meets the same tests
    assert code.pick_tests([s + "!" for s in inputs]) != chosen  # another problem, another draw
    assert code.pick_tests(inputs[:7]) == list(range(7))


@pytest.mark.parametrize("tests, key", [
    ({"inputs": ["1"]}, '"tests.outputs"'),
    ({"inputs": ["1", "2"], "outputs": ["1"]}, '"tests.inputs" has 2 tests'),
    ({"inputs": [], "outputs": []}, '"tests.inputs"'),
    ({"inputs": ["1"], "outputs": ["1"], "fn_name": "not a name"}, '"tests.fn_name"'),
    ({"inputs": ["[1, 2"], "outputs": ["1"], "fn_name": "f"}, 'call-based "tests.inputs"'),
])
def test_check_verifier_names_the_key(tests, key):
    with pytest.raises(ValueError, match=key):
        code.check_verifier({"tests": tests})


def test_check_verifier_accepts_both_forms():
    code.check_verifier(ADD)
    code.check_verifier({"tests": {"inputs": ["[1, 2]\n3"], "outputs": ["4"], "fn_name": "f"}})


# Layouts written from proc(5) (mountinfo: field 4 the root inside the filesystem, field 5 the mount point,
# the super options last) and cgroups(7) (/proc/self/cgroup: "id:controllers:path", "0::path" for v2).
HYBRID = ("""26 21 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
30 21 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 21 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
27 21 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu""",
          "8:pids:/\n4:memory:/process_api/ac31\n1:cpu:/\n0::/")
V2_SESSION = ("35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate",
              "0::/user.slice/user-1000.slice/session-2.scope")
V2_CONTAINER_ROOT = ("677 675 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup rw", "0::/")
V1_DOCKER = ("690 688 0:27 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
             "691 688 0:33 /docker/abc /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids",
             "12:pids:/docker/abc\n9:memory:/docker/abc\n0::/system.slice/docker.service")


@pytest.mark.parametrize("layout, own", [
    (HYBRID, {"": "/sys/fs/cgroup/unified", "memory": "/sys/fs/cgroup/memory/process_api/ac31",
              "pids": "/sys/fs/cgroup/pids"}),
    (V2_SESSION, {"": "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"}),
    (V2_CONTAINER_ROOT, {"": "/sys/fs/cgroup"}),
    (V1_DOCKER, {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}),  # no v2 mount: not listed
])
def test_own_cgroups(layout, own):
    assert code.own_cgroups(*layout) == own


# --- end to end, through the sandbox -------------------------------------------------------------------

def test_correct_solution_passes():
    src = "import sys\n\ndef main():\n    a, b = map(int, sys.stdin.read().split())\n    print(a + b)\n\n" \
          "if __name__ == '__main__':\n    main()"
    reward, info = code.verify(fence(src), ADD)
    assert reward == 1.0 and info["passed"] == info["tests"] == 3, info


def test_off_by_one_fails():
    reward, info = code.verify(fence("a, b = map(int, input().split())\nprint(a + b + 1)"), ADD)
    assert reward == 0.0
    assert info["failure"]["verdict"] == "wrong answer" and info["failure"]["test"] == 0


def test_partial_counts_the_tests_passed():
    src = "a, b = map(int, input().split())\nprint(a + b if a < 10 else 0)"  # wrong on the third test only
    assert code.verify(fence(src), ADD, partial=True)[0] == pytest.approx(2 / 3)
    assert code.verify(fence(src), ADD)[0] == 0.0


def test_the_last_python_block_is_run():
    wrong, right = "print(0)", "a, b = map(int, input().split())\nprint(a + b)"
    assert code.verify(fence(wrong) + "Fixed:\n" + fence(right), ADD)[0] == 1.0
    assert code.verify(fence(right) + "Or:\n" + fence(wrong), ADD)[0] == 0.0


def test_no_code_block_scores_zero():
    reward, info = code.verify("print(3)", ADD)
    assert reward == 0.0 and "no ```python block" in info["error"]


def test_runtime_error_fails_with_its_traceback():
    reward, info = code.verify(fence("raise ValueError('boom')"), ADD)
    assert reward == 0.0 and info["failure"]["verdict"] == "runtime error (exit 1)"
    assert "ValueError: boom" in info["failure"]["stderr"]


def test_call_based_function_and_leetcode_class():
    verifier = {"tests": {"inputs": ["[3, 1, 2]\n2", "[5]\n1", "[]\n0"], "outputs": ["[1, 2]", "[5]", "[]"],
                          "fn_name": "smallest"}}
    function = "def smallest(xs, k):\n    print('debug output is ignored')\n    return tuple(sorted(xs)[:k])"
    leetcode = ("class Solution:\n    def smallest(self, xs: List[int], k: int) -> List[int]:\n"
                "        return heapq.nsmallest(k, xs)")  # List and heapq come from LiveCodeBench's prelude
    assert code.verify(fence(function), verifier)[0] == 1.0
    assert code.verify(fence(leetcode), verifier)[0] == 1.0
    assert code.verify(fence("def smallest(xs, k):\n    return sorted(xs)[:k + 1]"), verifier)[0] == 0.0


def test_at_most_twenty_tests_run():
    verifier = {"tests": {"inputs": [f"{i} {i}" for i in range(30)], "outputs": [str(2 * i) for i in range(30)]}}
    reward, info = code.verify(fence("a, b = map(int, input().split())\nprint(a + b)"), verifier)
    assert reward == 1.0 and info["tests"] == 20
