"""Reward throughput (items/s): math-verify equivalence and sandboxed HumanEval tests.

Command: python benchmarks/rewards.py [--items N] [--workers W ...]
Measures ``RewardRunner.score`` wall time on N items after a warm-up call (pool started,
imports done), serial in-process (workers=0) and with worker pools. Prints a table and writes
benchmarks/results/rewards.json, with the CPU model and its vector extensions.

A HumanEval item starts two sandboxed processes (the candidate's program and the judge that
runs the tests, ``sandbox.run_tests``); before the judge/candidate split it started one.
"""

import argparse
import json
import os
import time

import _machine
import numpy as np

from jaxrl_llm import rewards
from jaxrl_llm.tasks import Example, make_task


def _math_items(n: int) -> tuple[list[str], list[Example]]:
    # Mixed GSM8K / MATH-style answers, half right and half wrong, in varied notation.
    golds = ["72", "\\frac{1}{2}", "1000", "x^2+2x+1", "\\sqrt{2}", "(1,2)", "-3", "0.25"]
    right = [
        "\\boxed{72}",
        "\\boxed{0.5}",
        "\\boxed{1,000}",
        "\\boxed{(x+1)^2}",
        "\\boxed{2^{1/2}}",
        "\\boxed{(1,2)}",
        "\\boxed{-3}",
        "\\boxed{\\frac{1}{4}}",
    ]
    wrong = [
        "\\boxed{71}",
        "\\boxed{\\frac{1}{3}}",
        "\\boxed{100}",
        "\\boxed{x^2+1}",
        "\\boxed{1.41}",
        "\\boxed{(2,1)}",
        "\\boxed{3}",
        "\\boxed{0.2}",
    ]
    comps, exs = [], []
    for i in range(n):
        k = i % len(golds)
        comps.append(f"Step by step reasoning for item {i}. So the answer is " + (right if i % 2 == 0 else wrong)[k])
        exs.append(Example("q", golds[k], {}, f"math-{i}"))
    return comps, exs


def _code_items(n: int) -> tuple[list[str], list[Example]]:
    task = make_task("humaneval", num_eval=64)
    problems = [task.eval_example(j) for j in range(task.num_eval)]
    comps, exs = [], []
    for i in range(n):
        ex = problems[i % len(problems)]
        comps.append(ex.metadata["canonical_solution"] if i % 2 == 0 else "    return None\n")
        exs.append(ex)
    return comps, exs


def _measure(fn, comps, exs, workers: int, timeout_s: float) -> dict:
    with rewards.RewardRunner([(fn, 1.0)], num_workers=workers, timeout_s=timeout_s) as runner:
        runner.score(comps[:4], exs[:4])  # warm-up: start workers, import math-verify
        start = time.perf_counter()
        r, info = runner.score(comps, exs)
        elapsed = time.perf_counter() - start
    name = rewards.reward_name(fn)
    return {
        "items": len(comps),
        "workers": workers,
        "seconds": round(elapsed, 3),
        "items_per_s": round(len(comps) / elapsed, 2),
        "mean_reward": float(np.mean(r)),
        "failures": info["failures"][name],
        "timeouts": info["timeouts"][name],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--math-items", type=int, default=400)
    parser.add_argument("--code-items", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "rewards.json"))
    args = parser.parse_args()

    rows = []
    math_items = _math_items(args.math_items)
    code_items = _code_items(args.code_items)
    for workers in args.workers:
        rows.append({"reward": "math_equivalence", **_measure(rewards.math_equivalence, *math_items, workers, 30.0)})
        rows.append(
            {"reward": "humaneval_tests (sandbox)", **_measure(rewards.humaneval_tests, *code_items, workers, 60.0)}
        )

    print(f"{'reward':28s} {'workers':>7s} {'items':>6s} {'seconds':>8s} {'items/s':>8s} {'mean r':>7s} {'fail':>5s}")
    for row in rows:
        print(
            f"{row['reward']:28s} {row['workers']:7d} {row['items']:6d} {row['seconds']:8.2f} {row['items_per_s']:8.1f} "
            f"{row['mean_reward']:7.3f} {row['failures'] + row['timeouts']:5d}"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    machine = _machine.machine_info()
    meta = {
        **machine,
        "cpu": _machine.legacy_cpu(machine),
        "isolation": rewards.sandbox.isolation(),
    }
    with open(args.out, "w") as f:
        json.dump({"machine": meta, "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
