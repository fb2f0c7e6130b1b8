"""Score completions with several reward functions in a pool of worker processes.

A reward function is ``fn(completion: str, example: Example) -> float``: pure, top-level (or
a picklable callable object / ``functools.partial``), so it can run in another process.
``RewardRunner`` runs every (function, completion) pair in a persistent worker pool with a
per-item deadline. A function that raises, returns a non-finite value, hangs past the
deadline, or kills its worker gives reward 0 for that item and is counted; a hung or dead
worker is killed and replaced. The trainer never blocks longer than about ``timeout_s`` per
item and never sees an exception from a reward function.

Sandboxed rewards (``sandbox.run_python`` / ``run_tests``) called in a worker get two guarantees
(``sandbox.configure``): their wall-clock limit is cut to end ``sandbox_margin_s(timeout_s)``
before the item's deadline, so the sandbox's own limit fires first and cleans up; and their
directories live in a folder the runner made for that worker, which the runner empties (killing
what runs there) whenever it kills or loses the worker, and removes on ``close``. Workers ignore
SIGINT (a Ctrl-C reaches the whole process group; the parent shuts them down) and exit quietly
on SIGTERM or when the parent goes away.
"""

import dataclasses
import functools
import math
import multiprocessing
import multiprocessing.connection
import shutil
import signal
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxrl_llm.rewards import sandbox
from jaxrl_llm.types import Example

RewardFn = Callable[[str, Example], float]


def reward_name(fn: RewardFn) -> str:
    """Logging name of a reward function: ``reward/<name>``. A ``functools.partial`` is named
    after the wrapped function; a callable object by its ``name`` attribute or its class."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__


@dataclasses.dataclass(frozen=True)
class WeightedSum:
    """``combine``'s result: ``r(y, x) = sum_k w_k * f_k(y, x)`` as one picklable reward."""

    fns_with_weights: tuple[tuple[RewardFn, float], ...]
    name: str = "combined"

    def __call__(self, completion: str, example: Example) -> float:
        return float(sum(w * float(fn(completion, example)) for fn, w in self.fns_with_weights))


def combine(fns_with_weights: Sequence[tuple[RewardFn, float]]) -> WeightedSum:
    """One reward function from weighted ones: ``r = sum_k w_k f_k``. Prefer passing the list
    to ``RewardRunner`` directly: it computes the same sum and also logs each ``f_k`` and
    isolates their failures."""
    return WeightedSum(_check_fns(fns_with_weights))


def _check_fns(fns_with_weights) -> tuple[tuple[RewardFn, float], ...]:
    pairs = tuple((fn, float(w)) for fn, w in fns_with_weights)
    if not pairs:
        raise ValueError("reward functions: need at least one (fn, weight) pair")
    for fn, w in pairs:
        if not callable(fn):
            raise TypeError(f"reward functions: {fn!r} is not callable")
        if not math.isfinite(w):
            raise ValueError(f"reward functions: weight of {reward_name(fn)} is {w}")
    names = [reward_name(fn) for fn, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"reward functions: names must be unique for logging, got {names}")
    return pairs


def _evaluate(fn: RewardFn, completion: str, example: Example) -> tuple[str, float | str]:
    try:
        value = float(fn(completion, example))
    except Exception as e:  # noqa: BLE001 -- any failure of user code is a counted 0 reward
        return "error", f"{type(e).__name__}: {e}"[:500]
    if not math.isfinite(value):
        return "error", f"non-finite reward {value}"
    return "ok", value


_MAX_STARTUP_DEATHS = 3


def sandbox_margin_s(timeout_s: float) -> float:
    """Time a sandboxed reward leaves, before the runner's per-item deadline, to kill its
    processes and remove its directory: ``min(1 s, timeout_s / 4)``."""
    return min(1.0, timeout_s / 4)


def _exit_quietly(signum, frame) -> None:
    raise SystemExit(0)


def _worker_main(conn, fns: Sequence[RewardFn], scratch_root: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        conn.send("ready")
        while True:
            msg = conn.recv()
            if msg is None:
                return
            job, fn_index, completion, example, deadline = msg
            sandbox.configure(scratch_root=scratch_root, deadline=deadline)
            conn.send((job, *_evaluate(fns[fn_index], completion, example)))
    except (EOFError, OSError):  # the parent went away: nobody is left to answer
        return
    finally:
        sandbox.remove_runs(scratch_root)
        shutil.rmtree(scratch_root, ignore_errors=True)


class _Worker:
    def __init__(self, ctx, fns):
        self.scratch_root = sandbox.new_scratch_root()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fns, self.scratch_root), daemon=True)
        try:
            self.proc.start()
        except BaseException:
            shutil.rmtree(self.scratch_root, ignore_errors=True)
            raise
        finally:
            child.close()
        self.ready = False
        self.job: tuple[int, int] | None = None
        self.deadline = math.inf

    def kill(self) -> None:
        """Stop the process and remove what its sandboxes left (processes, directories)."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()
        sandbox.remove_runs(self.scratch_root)
        shutil.rmtree(self.scratch_root, ignore_errors=True)


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        try:
            w.conn.send(None)
        except OSError:
            pass
    for w in workers:
        w.proc.join(timeout=1.0)
        w.kill()
    workers.clear()


class RewardRunner:
    """Weighted rewards computed in parallel with per-item timeouts.

    ``score`` returns ``rewards[i] = sum_k w_k * r_k[i]`` with ``r_k[i] = fn_k(completions[i],
    examples[i])``, or 0 where ``fn_k`` failed or timed out on item ``i``.

    Args:
      fns_with_weights: ``[(fn, weight), ...]``; function names (``reward_name``) must be unique.
      num_workers: worker processes; 0 runs in this process (exceptions are still caught, but
        hangs are not: for debugging only).
      timeout_s: wall-clock limit per (function, item). A sandboxed reward inside gets
        ``timeout_s - sandbox_margin_s(timeout_s)`` at most (see the module docstring).
      start_method: multiprocessing start method; ``forkserver`` (default) avoids forking a
        multithreaded JAX process.

    Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        fns_with_weights: Sequence[tuple[RewardFn, float]],
        num_workers: int = 2,
        timeout_s: float = 30.0,
        start_method: str = "forkserver",
    ):
        self.fns_with_weights = _check_fns(fns_with_weights)
        self.names = [reward_name(fn) for fn, _ in self.fns_with_weights]
        if num_workers < 0:
            raise ValueError(f"RewardRunner: num_workers must be >= 0, got {num_workers}")
        if not timeout_s > 0:
            raise ValueError(f"RewardRunner: timeout_s must be > 0, got {timeout_s}")
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.worker_restarts = 0
        self._startup_deaths = 0  # workers in a row that died before saying "ready"
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Workers fork from the server with these already imported, so replacing a killed
            # worker costs milliseconds instead of a fresh sympy / math-verify import. Only
            # the first runner's list counts (the server starts once per process).
            modules = {"jaxrl_llm.rewards", "jaxrl_llm.tasks"}
            modules |= {getattr(fn, "__module__", None) for fn, _ in self.fns_with_weights} - {None, "__main__"}
            self._ctx.set_forkserver_preload(sorted(modules))
        self._fns = [fn for fn, _ in self.fns_with_weights]
        self._workers = [_Worker(self._ctx, self._fns) for _ in range(num_workers)]
        # Also at interpreter exit without close(): before multiprocessing SIGTERMs the workers
        # (atexit runs this later-registered hook first), so their folders are removed.
        self._shutdown = weakref.finalize(self, _shutdown, self._workers)

    def __enter__(self) -> "RewardRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (politely, then by force) and remove their folders."""
        self._shutdown()

    def score(self, completions: Sequence[str], examples: Sequence[Example]) -> tuple[np.ndarray, dict[str, Any]]:
        """Score ``completions[i]`` against ``examples[i]``.

        Reward functions are pure, so a completion repeated for the same ``Example`` object (a
        group's samples share their prompt's object) is scored once and its result, failure or
        timeout copied to the repeats: a group of 8 identical programs costs one sandboxed test
        run, not 8. Counts in ``info`` are still per item.

        Returns:
          rewards: [N] f32 weighted sums.
          info: ``per_fn`` {name: [N] f32 raw (unweighted) rewards, 0 where failed},
            ``failures`` {name: count of raised / non-finite / worker died},
            ``timeouts`` {name: count}, ``errors`` {name: first error message},
            ``worker_restarts`` (cumulative over this runner's life).
        """
        if len(completions) != len(examples):
            raise ValueError(f"RewardRunner.score: {len(completions)} completions but {len(examples)} examples")
        n = len(completions)
        first: dict[tuple[int, str], int] = {}
        source = np.array([first.setdefault((id(examples[i]), completions[i]), i) for i in range(n)], np.int64)
        per_fn = np.zeros((len(self._fns), n), dtype=np.float64)  # [K, N]
        failed = np.zeros((len(self._fns), n), dtype=bool)
        timed_out = np.zeros((len(self._fns), n), dtype=bool)
        errors: dict[str, str] = {}

        def record(job, status, value):
            k, i = job
            if status == "ok":
                per_fn[k, i] = value
                return
            (timed_out if status == "timeout" else failed)[k, i] = True
            errors.setdefault(self.names[k], f"item {i}: {value}")

        jobs = [(k, i) for i in np.flatnonzero(source == np.arange(n)).tolist() for k in range(len(self._fns))]
        if self.num_workers == 0:
            for k, i in jobs:
                record((k, i), *_evaluate(self._fns[k], completions[i], examples[i]))
        else:
            self._run_pool(deque(jobs), completions, examples, record)
        per_fn, failed, timed_out = per_fn[:, source], failed[:, source], timed_out[:, source]
        failures, timeouts = failed.sum(axis=1), timed_out.sum(axis=1)

        weights = np.array([w for _, w in self.fns_with_weights])
        rewards = (weights[:, None] * per_fn).sum(axis=0).astype(np.float32)  # [N]
        info = {
            "per_fn": {name: per_fn[k].astype(np.float32) for k, name in enumerate(self.names)},
            "failures": {name: int(failures[k]) for k, name in enumerate(self.names)},
            "timeouts": {name: int(timeouts[k]) for k, name in enumerate(self.names)},
            "errors": errors,
            "worker_restarts": self.worker_restarts,
        }
        return rewards, info

    def _replace(self, index: int) -> None:
        self._workers[index].kill()
        self._workers[index] = _Worker(self._ctx, self._fns)
        self.worker_restarts += 1

    def _run_pool(self, pending: deque, completions, examples, record) -> None:
        if not self._workers:
            raise RuntimeError("RewardRunner: score() after close()")
        while pending or any(w.job is not None for w in self._workers):
            for idx, w in enumerate(self._workers):
                if not w.ready or w.job is not None or not pending:
                    continue
                job = pending.popleft()
                k, i = job
                deadline = time.monotonic() + self.timeout_s
                try:
                    w.conn.send((job, k, completions[i], examples[i], deadline - sandbox_margin_s(self.timeout_s)))
                except OSError:  # died while idle: replace it and retry the job elsewhere
                    pending.appendleft(job)
                    self._replace(idx)
                    continue
                w.job, w.deadline = job, deadline
            now = time.monotonic()
            wait_s = min([w.deadline for w in self._workers if w.job is not None], default=now + 0.1) - now
            ready = multiprocessing.connection.wait(
                [w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers],
                timeout=max(wait_s, 0.0),
            )
            for idx, w in enumerate(self._workers):
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg == "ready":
                        w.ready, self._startup_deaths = True, 0
                    elif msg is not None:
                        job, status, value = msg
                        w.job, w.deadline = None, math.inf
                        record(job, status, value)
                        continue
                if not w.proc.is_alive():
                    if not w.ready:
                        self._startup_deaths += 1
                        if self._startup_deaths >= _MAX_STARTUP_DEATHS:
                            raise RuntimeError(
                                f"RewardRunner: {self._startup_deaths} reward workers in a row died while "
                                f"starting (last exit code {w.proc.exitcode}); their stderr above says why"
                            )
                    if w.job is not None:
                        record(w.job, "error", f"worker died (exit code {w.proc.exitcode})")
                    self._replace(idx)
                elif w.job is not None and time.monotonic() >= w.deadline:
                    record(w.job, "timeout", f"no result within {self.timeout_s} s")
                    self._replace(idx)
