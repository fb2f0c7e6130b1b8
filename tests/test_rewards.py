"""Rewards: extraction, math-verify equivalences, format, length shaping, combining, runner."""

import functools
import os
import signal
import time

import numpy as np
import pytest

from jaxrl_llm import rewards
from jaxrl_llm.rewards import RewardRunner, extract, length
from jaxrl_llm.rewards.math import is_equivalent
from jaxrl_llm.tasks import Example


def _ex(answer):
    return Example("q", answer, {}, f"ex-{answer}")


def test_extraction_helpers():
    assert extract.last_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert extract.last_boxed(r"\boxed{a{b}c} tail") == "a{b}c"
    assert extract.last_boxed(r"\boxed 5$") == "5"
    assert extract.last_boxed(r"\fbox{7}") == "7"
    assert extract.last_boxed(r"\boxed{unclosed") is None and extract.last_boxed("no box") is None
    assert extract.answer_tag("<answer> 3 </answer> x <answer>\n4\n</answer>") == "4"
    assert extract.answer_tag("<answer>3") is None
    assert extract.last_number("pay $1,234.50 then -3, finally 2/3") == "2/3"
    assert extract.last_number("costs 1,234 dollars") == "1234"
    assert extract.last_number("values 1,2") == "2"
    assert extract.last_number("none") is None
    assert extract.final_answer(r"<answer>9</answer> \boxed{8}") == "9"
    assert extract.final_answer(r"\boxed{8}") == "8"


# (completion, gold, equivalent): the cases that decide GSM8K / MATH accuracy.
MATH_CASES = [
    (r"The answer is \boxed{72}.", "72", True),
    (r"\boxed{72.0}", "72", True),
    (r"\boxed{\$72}", "72", True),
    (r"\boxed{1,000}", "1000", True),
    (r"\boxed{7200}", "72", False),
    (r"\boxed{-5}", "5", False),
    (r"\boxed{0.5}", r"\frac{1}{2}", True),
    (r"\boxed{\dfrac{2}{4}}", r"\frac{1}{2}", True),
    (r"\boxed{1/2}", r"\frac{1}{2}", True),
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", False),
    (r"\boxed{0.33}", r"\frac{1}{3}", False),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", True),
    (r"\boxed{(x+1)^2}", "x^2+2x+1", True),
    (r"\boxed{x^2+1}", "x^2+2x+1", False),
    (r"\boxed{(1,2)}", "(1,2)", True),
    (r"\boxed{(2,1)}", "(1,2)", False),
    (r"\boxed{\{2,1\}}", r"\{1,2\}", True),
    (r"\boxed{3.14}", r"\pi", False),
    (r"\boxed{x=3}", "3", True),
    (r"first \boxed{4}, corrected: \boxed{5}", "5", True),
    ("no final answer given", "5", False),
]


@pytest.mark.parametrize("completion,gold,expected", MATH_CASES)
def test_math_verify_equivalence(completion, gold, expected):
    assert is_equivalent(completion, gold) is expected
    assert rewards.math_equivalence(completion, _ex(gold)) == float(expected)


def test_math_reward_needs_reference():
    with pytest.raises(ValueError, match="no reference answer"):
        rewards.math_equivalence(r"\boxed{1}", Example("q", None, {}, "id7"))


def test_format_rewards():
    good = "<think>2 and 2</think>\n<answer>4</answer>"
    assert rewards.think_answer_format(good, _ex("4")) == 1.0
    for bad in [
        "<answer>4</answer>",
        "<think>x</think><answer>4</answer> trailing",
        "<think><think>x</think></think><answer>4</answer>",
        "<think>x</think>",
    ]:
        assert rewards.think_answer_format(bad, _ex("4")) == 0.0, bad
    assert rewards.answer_tag_format("so <answer>4</answer>", _ex("4")) == 1.0
    assert rewards.answer_tag_format("<answer> </answer>", _ex("4")) == 0.0
    assert rewards.boxed_format(r"\boxed{4}", _ex("4")) == 1.0
    assert rewards.boxed_format(r"\boxed{4", _ex("4")) == 0.0


def test_overlong_penalty_matches_formula():
    lengths = np.array([0, 10, 11, 15, 16, 20, 21, 100])
    max_len, cache_len = 20, 10
    expected = [0.0 if L <= 10 else (-1.0 if L > 20 else (10 - L) / 10) for L in lengths]
    np.testing.assert_allclose(length.overlong_penalty(lengths, max_len, cache_len), expected, rtol=1e-6)
    assert rewards.OverlongPenalty(20, 10)("x" * 15, _ex("1")) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="cache_len"):
        length.overlong_penalty(lengths, 10, 20)


def test_group_length_reward_matches_formula():
    lengths = np.array([[10, 20, 30], [5, 5, 5]])
    correct = np.array([[True, True, False], [True, False, True]])
    # group 0: lambda = 0.5, 0.0, -0.5; group 1: equal lengths -> 0.
    np.testing.assert_allclose(length.group_length_reward(lengths, correct), [[0.5, 0.0, -0.5], [0, 0, 0]])
    lam_wrong = length.group_length_reward(np.array([[10, 30]]), np.array([[False, False]]))
    np.testing.assert_allclose(lam_wrong, [[0.0, -0.5]])  # wrong answers never gain from brevity


def test_combine_and_names():
    fn = rewards.combine([(rewards.boxed_format, 0.5), (functools.partial(rewards.math_equivalence, timeout_s=2), 2.0)])
    assert fn(r"\boxed{4}", _ex("4")) == 2.5 and fn(r"\boxed{3}", _ex("4")) == 0.5
    assert rewards.reward_name(functools.partial(rewards.math_equivalence, timeout_s=2)) == "math_equivalence"
    assert rewards.reward_name(rewards.OverlongPenalty(4, 2)) == "overlong_penalty"
    with pytest.raises(ValueError, match="unique"):
        rewards.combine([(rewards.boxed_format, 1.0), (rewards.boxed_format, 2.0)])
    with pytest.raises(ValueError, match="at least one"):
        RewardRunner([], num_workers=0)


# Hostile reward functions: top level so worker processes can import them.
def hangs(completion, example):
    while True:
        pass


def sleeps(completion, example):
    time.sleep(3600)


def raises(completion, example):
    raise RuntimeError(f"cannot score {example.id}")


def returns_nan(completion, example):
    return float("nan")


def kills_own_worker(completion, example):
    os.kill(os.getpid(), signal.SIGKILL)


def test_runner_weights_and_per_fn_info():
    exs = [_ex("4"), _ex("4"), _ex(r"\frac{1}{2}")]
    comps = [r"\boxed{4}", "four", r"\boxed{0.5}"]
    with RewardRunner(
        [(rewards.math_equivalence, 1.0), (rewards.boxed_format, 0.25)], num_workers=2, timeout_s=30
    ) as runner:
        r, info = runner.score(comps, exs)
        assert r.dtype == np.float32 and r.shape == (3,)
        np.testing.assert_allclose(r, [1.25, 0.0, 1.25])
        np.testing.assert_array_equal(info["per_fn"]["boxed_format"], [1, 0, 1])
        assert info["failures"] == {"math_equivalence": 0, "boxed_format": 0}
        r2, _ = runner.score(comps, exs)  # the pool is reused
        np.testing.assert_array_equal(r, r2)
    serial, _ = RewardRunner([(rewards.math_equivalence, 1.0), (rewards.boxed_format, 0.25)], num_workers=0).score(
        comps, exs
    )
    np.testing.assert_array_equal(serial, r)


class CountingReward:
    """Records every (completion, example id) it scores; in-process runners only."""

    name = "counting"

    def __init__(self):
        self.calls = []

    def __call__(self, completion, example):
        self.calls.append((completion, example.id))
        if completion == "boom":
            raise RuntimeError("boom")
        return float(len(completion))


def test_runner_scores_a_completion_repeated_for_the_same_example_once():
    group, other = _ex("1"), _ex("1")  # equal examples, distinct objects: scored apart
    comps = ["ab", "ab", "abc", "ab", "ab", "boom", "boom"]
    exs = [group, group, group, group, other, group, group]
    fn = CountingReward()
    r, info = RewardRunner([(fn, 1.0)], num_workers=0).score(comps, exs)
    np.testing.assert_array_equal(r, [2, 2, 3, 2, 2, 0, 0])
    assert fn.calls == [("ab", "ex-1"), ("abc", "ex-1"), ("ab", "ex-1"), ("boom", "ex-1")]
    assert info["failures"] == {"counting": 2}  # per item: both repeats of the failed one count
    with RewardRunner([(rewards.boxed_format, 1.0)], num_workers=2, timeout_s=30) as runner:
        pooled, _ = runner.score([r"\boxed{1}", r"\boxed{1}", "x", r"\boxed{1}"], [group, group, group, other])
    np.testing.assert_array_equal(pooled, [1, 1, 0, 1])
    with RewardRunner([(hangs, 1.0)], num_workers=1, timeout_s=1.0) as runner:
        _, info = runner.score(["x", "x", "x"], [group] * 3)  # one timeout, not three
    assert info["timeouts"] == {"hangs": 3} and info["worker_restarts"] == 1


def test_runner_survives_hostile_reward_functions():
    fns = [
        (hangs, 1.0),
        (sleeps, 1.0),
        (raises, 1.0),
        (returns_nan, 1.0),
        (kills_own_worker, 1.0),
        (rewards.boxed_format, 1.0),
    ]
    exs = [_ex("1"), _ex("2")]
    start = time.monotonic()
    with RewardRunner(fns, num_workers=2, timeout_s=1.0) as runner:
        r, info = runner.score([r"\boxed{1}", "x"], exs)
        np.testing.assert_array_equal(r, [1.0, 0.0])  # only boxed_format scored
        assert info["timeouts"] == {
            "hangs": 2,
            "sleeps": 2,
            "raises": 0,
            "returns_nan": 0,
            "kills_own_worker": 0,
            "boxed_format": 0,
        }
        assert info["failures"] == {
            "hangs": 0,
            "sleeps": 0,
            "raises": 2,
            "returns_nan": 2,
            "kills_own_worker": 2,
            "boxed_format": 0,
        }
        assert "cannot score ex-1" in info["errors"]["raises"] and "worker died" in info["errors"]["kills_own_worker"]
        assert info["worker_restarts"] == 6
        # A worker killed from outside between calls is replaced transparently.
        os.kill(runner._workers[0].proc.pid, signal.SIGKILL)
        runner._workers[0].proc.join()
    elapsed = time.monotonic() - start
    assert elapsed < 30, elapsed
    with RewardRunner([(rewards.boxed_format, 1.0)], num_workers=1, timeout_s=5.0) as runner:
        os.kill(runner._workers[0].proc.pid, signal.SIGKILL)
        runner._workers[0].proc.join()
        r, info = runner.score([r"\boxed{1}"], [_ex("1")])
        assert r.tolist() == [1.0] and info["failures"]["boxed_format"] == 0 and info["worker_restarts"] == 1


def _cannot_unpickle():
    raise RuntimeError("this reward cannot be rebuilt in a worker")


class UnpicklableReward:
    """Pickles, but fails to unpickle: every worker dies while starting."""

    name = "unpicklable"

    def __call__(self, completion, example):
        return 0.0

    def __reduce__(self):
        return (_cannot_unpickle, ())


def test_runner_stops_when_workers_die_while_starting():
    # Replacing them forever would spin (thousands of processes); a clear error ends it.
    start = time.monotonic()
    with RewardRunner([(UnpicklableReward(), 1.0)], num_workers=1, timeout_s=5.0) as runner:
        with pytest.raises(RuntimeError, match="3 reward workers in a row died while starting"):
            runner.score(["x"], [_ex("1")])
    assert time.monotonic() - start < 60


def test_runner_checks_inputs():
    with pytest.raises(ValueError, match="2 completions but 1 examples"):
        RewardRunner([(rewards.boxed_format, 1.0)], num_workers=0).score(["a", "b"], [_ex("1")])
