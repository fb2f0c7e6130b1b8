"""Run observability: JSONL + TensorBoard metrics, a progress bar, step timers, compile counts,
and the final summary table.

Every record is one JSON line ``{"phase": ..., "step": ..., <metric>: <float>, ...}`` in
``<run_dir>/metrics.jsonl``. ``step`` is the run's global step (SFT steps first, then RL steps),
the same number the checkpoints use, so that on resume from checkpoint ``s`` every record with
``step > s`` is dropped (it will be produced again) and the file ends up identical to an
uninterrupted run's. Keys starting with ``time/`` are wall-clock measurements and differ run to run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import sys
import threading
import time
from typing import Any, Iterable, Mapping

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """All complete records of a run (a torn last line from a killed writer is skipped)."""
    path = pathlib.Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _to_float(x: Any) -> float:
    return float(np.asarray(x))


class MetricsLogger:
    """Writes metric records to JSONL (always) and TensorBoard (optional).

    Args:
      run_dir: the run directory.
      resume_step: when resuming from checkpoint step ``s``, records with ``step > s`` are
        removed from the JSONL file and TensorBoard purges events after ``s``.
      tensorboard: also write TensorBoard event files under ``<run_dir>/tb``.
      enabled: False on non-zero processes of a multi-process run (only process 0 writes).
    """

    def __init__(self, run_dir: str | pathlib.Path, resume_step: int | None = None,
                 tensorboard: bool = True, enabled: bool = True):
        self.run_dir = pathlib.Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS_FILE
        kept = [r for r in read_metrics(self.run_dir) if resume_step is not None and r.get("step", 0) <= resume_step]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
        self._file = open(path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge)

    def log(self, phase: str, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Writes one record; values are converted to Python floats. Returns the record."""
        record: dict[str, Any] = {"phase": phase, "step": int(step)}
        for k, v in metrics.items():
            record[k] = v if isinstance(v, str) else _to_float(v)
        if not self.enabled:
            return record
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("phase", "step") and isinstance(v, float) and math.isfinite(v):
                    self._tb.add_scalar(f"{phase}/{k}", v, step)
        return record

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


class Timer:
    """Accumulates wall time per named section: ``with timer("sample"): ...``.

    ``split()`` returns ``{"time/<name>": seconds}`` plus ``time/other`` = step total minus the
    named sections, then resets.
    """

    def __init__(self):
        self._acc: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._acc[name] = self._acc.get(name, 0.0) + time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        """Adds time measured elsewhere to section ``name``."""
        self._acc[name] = self._acc.get(name, 0.0) + seconds

    def split(self) -> dict[str, float]:
        total = time.perf_counter() - self._start
        out = {f"time/{k}": v for k, v in self._acc.items()}
        out["time/other"] = max(total - sum(self._acc.values()), 0.0)
        out["time/step"] = total
        self._acc = {}
        self._start = time.perf_counter()
        return out


class CompileCounter:
    """Counts XLA backend compilations (all jitted functions) via ``jax.monitoring``.

    ``take()`` returns the number since the previous call. A steady-state step should report 0.
    """

    _EVENT = "/jax/core/compile/backend_compile_duration"
    _lock = threading.Lock()
    _count = 0
    _installed = False

    def __init__(self):
        with CompileCounter._lock:
            if not CompileCounter._installed:
                jax.monitoring.register_event_duration_secs_listener(CompileCounter._listener)
                CompileCounter._installed = True
        self._last = CompileCounter._count

    @staticmethod
    def _listener(event: str, duration: float, **kwargs) -> None:
        if event == CompileCounter._EVENT:
            with CompileCounter._lock:
                CompileCounter._count += 1

    def take(self) -> int:
        now = CompileCounter._count
        n, self._last = now - self._last, now
        return n


class Progress:
    """A tqdm bar with ETA and a few key metrics; a no-op when disabled or not process 0."""

    KEYS = ("reward/mean", "loss", "kl", "entropy", "completion_len/mean", "time/step")

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                             file=sys.stderr, mininterval=0.5)

    def update(self, metrics: Mapping[str, Any], keys: Iterable[str] = KEYS) -> None:
        if self._bar is None:
            return
        post = {k.split("/")[0] if k.endswith("/mean") else k: f"{float(metrics[k]):.3g}"
                for k in keys if k in metrics}
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def summary_table(rows: Mapping[str, Mapping[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A plain-text table: one row per name, one column per metric (missing cells show ``-``)."""
    names = list(rows)
    cols = list(columns) if columns is not None else sorted({k for r in rows.values() for k in r})

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        v = float(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"

    cells = [[n] + [fmt(rows[n].get(c)) for c in cols] for n in names]
    header = [""] + cols
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    line = lambda row: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in cells])
