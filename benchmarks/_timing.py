"""Timing rows of a benchmark in interleaved rounds, so that a change of machine load hits every
row alike (these machines are shared: timing one row's repetitions after another's turns load
changes into ratios)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import jax


def interleaved(calls: Mapping[str, Callable[[], object]], reps: int) -> tuple[dict[str, float], dict[str, float]]:
    """``(best, median)`` seconds per call of each ``name -> fn`` (no arguments; its result is
    waited on with ``jax.block_until_ready``), over ``reps`` rounds that time every call once in
    turn, after one untimed warm-up call each (compilation excluded)."""
    for fn in calls.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}, {k: float(statistics.median(v)) for k, v in times.items()}
