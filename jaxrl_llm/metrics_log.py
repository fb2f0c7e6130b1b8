"""Run observability: JSONL + TensorBoard metrics, a progress display, step timers, compile
counts, and the final summary table.

Every record is one JSON line ``{"phase": ..., "step": ..., <metric>: <float>, ...}`` in
``<run_dir>/metrics.jsonl``. ``step`` is the run's global step (SFT steps first, then RL steps),
the same number the checkpoints use, so that on resume from checkpoint ``s`` every record with
``step > s`` is dropped (it will be produced again) and the file ends up identical to an
uninterrupted run's. Keys starting with ``time/`` are wall-clock measurements and differ run to run.

TensorBoard (``pip install 'jaxrl_llm[tensorboard]'``, then ``tensorboard --logdir runs``) shows
each metric under one tag: ``<phase>/<key>`` for keys without a phase prefix
(``rl/reward/mean``), the key itself when it already starts with its phase (``eval/accuracy``,
``sft/loss``).
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
import warnings
from collections.abc import Iterable, Mapping
from typing import IO, Any

import jax
import numpy as np
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


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


def tb_tag(phase: str, key: str) -> str:
    """The TensorBoard tag of metric ``key`` logged in ``phase``: ``key`` itself when it already
    starts with ``<phase>/`` (``eval/accuracy``), else ``<phase>/<key>`` (``rl/loss``)."""
    return key if key.startswith(phase + "/") else f"{phase}/{key}"


class MetricsLogger:
    """Writes metric records to JSONL (always) and TensorBoard (optional).

    What happens to the records already in ``<run_dir>/metrics.jsonl`` when it opens:

      * ``resume_step=s`` (the caller restored checkpoint ``s``, so pass it only after a
        successful restore): the records with ``step <= s`` are kept in place; the records with
        ``step > s`` are removed, since the resumed run writes them again (an uninterrupted run's
        file results); TensorBoard hides its events after ``s`` (``purge_step=s + 1``).
      * ``resume_step=None`` (nothing restored) and the file holds records: the file is renamed
        ``metrics-<UTC time>.jsonl`` and the ``tb`` folder ``tb-<UTC time>`` (kept, with a
        warning naming them), and the run's metrics start in new ones, so a restarted run never
        mixes its records with those of the attempt it replaces.
      * otherwise the file is created.

    No record is deleted except those the resumed run writes again.

    Args:
      run_dir: the run directory.
      resume_step: the checkpoint step the run resumed from, or None.
      tensorboard: also write TensorBoard event files under ``<run_dir>/tb``.
      enabled: False on non-zero processes of a multi-process run (only process 0 writes).
    """

    def __init__(
        self,
        run_dir: str | pathlib.Path,
        resume_step: int | None = None,
        tensorboard: bool = True,
        enabled: bool = True,
    ):
        self.run_dir = pathlib.Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS_FILE
        if resume_step is not None:
            records = read_metrics(self.run_dir)
            kept = [r for r in records if r.get("step", 0) <= resume_step]
            if len(kept) != len(records) or (path.exists() and not _ends_with_newline(path)):
                tmp = path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, path)
        elif read_metrics(self.run_dir):
            self._set_aside()
        self._file = open(path, "a")
        if tensorboard:
            # Imported here: tensorboardX imports torch whenever torch is installed (~2 s), a cost
            # only the runs that write events should pay.
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(self.run_dir / TB_DIR), purge_step=purge)

    def _set_aside(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = []
        for name, target in ((METRICS_FILE, f"metrics-{stamp}.jsonl"), (TB_DIR, f"{TB_DIR}-{stamp}")):
            src = self.run_dir / name
            if src.exists():
                src.rename(self.run_dir / target)
                moved.append(target)
        warnings.warn(
            f"{self.run_dir / METRICS_FILE} held records but no checkpoint was restored: kept them as "
            f"{' and '.join(moved)} in {self.run_dir}; this run's metrics start anew",
            stacklevel=3,
        )

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
                    self._tb.add_scalar(tb_tag(phase, k), v, step)
        return record

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _ends_with_newline(path: pathlib.Path) -> bool:
    """False when the file's last line is torn (a writer killed mid-line)."""
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


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
    """The run's progress on stderr, and the place to print messages during it.

    On a terminal: a tqdm bar with ETA and a few key metrics. Otherwise (output redirected to a
    file or a pipe): plain lines ``<desc> step N/TOTAL (P%), <elapsed> elapsed, ETA <t>: key=value
    ...``, the first and last step's and at most one per ``interval`` seconds between them
    (a bar's carriage returns would make the whole log one line).

    ``write(text)`` prints a message on its own line (above the bar, which is redrawn below it)
    on process 0, also when the bar is disabled (``enabled=False``, e.g. ``log.progress=false``).

    Args:
      total, initial: the step count and the step the run starts from.
      desc: a name shown before the bar or line.
      enabled: show the progress (bar or lines); messages of ``write`` are printed either way.
      file: where to print (default ``sys.stderr``).
      interval: seconds between plain lines (not on a terminal).
      is_main: whether this process prints at all (default: ``jax.process_index() == 0``).
    """

    KEYS = ("reward/mean", "loss", "kl", "entropy", "completion_len/mean", "time/step")

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "",
        enabled: bool = True,
        *,
        file: IO[str] | None = None,
        interval: float = 30.0,
        is_main: bool | None = None,
    ):
        self._file = file if file is not None else sys.stderr
        self._main = jax.process_index() == 0 if is_main is None else is_main
        self._enabled = enabled and self._main
        self._total, self._initial, self._n, self._desc = total, initial, initial, desc
        self._interval = interval
        self._bar = None
        self._start = time.monotonic()
        self._last_line: float | None = None
        self._pending: str | None = None
        if self._enabled and _is_terminal(self._file):
            self._bar = tqdm(
                total=total, initial=initial, desc=desc, dynamic_ncols=True, file=self._file, mininterval=0.5
            )

    def update(self, metrics: Mapping[str, Any], keys: Iterable[str] = KEYS) -> None:
        """Advances one step and shows ``metrics``' values of ``keys``."""
        if not self._enabled:
            return
        post = {k.split("/")[0] if k.endswith("/mean") else k: f"{float(metrics[k]):.3g}" for k in keys if k in metrics}
        self._n += 1
        if self._bar is not None:
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        self._pending = self._line(post, now)
        if self._last_line is None or self._n >= self._total or now - self._last_line >= self._interval:
            self._emit(self._pending, now)

    def write(self, text: str) -> None:
        """Prints ``text`` on its own line(s), never glued to the bar."""
        if not self._main:
            return
        if self._bar is not None:
            self._bar.write(text, file=self._file)
        else:
            print(text, file=self._file, flush=True)

    def close(self) -> None:
        """Closes the bar; in plain mode prints the last step's line if it was held back."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending is not None:
            self._emit(self._pending, time.monotonic())

    def _line(self, post: Mapping[str, str], now: float) -> str:
        elapsed = now - self._start
        done = self._n - self._initial
        eta = _duration(elapsed / done * (self._total - self._n)) if done > 0 else "?"
        pct = 100 * self._n / self._total if self._total else 100.0
        head = f"{self._desc} " if self._desc else ""
        tail = " ".join(f"{k}={v}" for k, v in post.items())
        return f"{head}step {self._n}/{self._total} ({pct:.0f}%), {_duration(elapsed)} elapsed, ETA {eta}" + (
            f": {tail}" if tail else ""
        )

    def _emit(self, line: str, now: float) -> None:
        print(line, file=self._file, flush=True)
        self._last_line = now
        self._pending = None


def _is_terminal(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def _duration(seconds: float) -> str:
    """``75.0`` -> ``1m15s``; ``3725`` -> ``1h02m05s``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


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


def report_run(
    directory: pathlib.Path,
    eval_history: Mapping[str, Mapping[str, float]],
    had_sft: bool,
    counters: Mapping[str, Any],
    summary: dict[str, Any],
    summary_file: str,
) -> None:
    """A finished run's report: prints the before/after evaluation table, the greedy-accuracy
    change, the mean time split of an RL step and the counters, and writes ``summary`` (with the
    time split added) to ``directory / summary_file``."""
    rows = {name: ev for name, ev in eval_history.items() if name in ("before", "after")}
    if rows:
        print(summary_table(rows), flush=True)
    if len(rows) == 2:
        before, after = rows["before"]["eval/accuracy"], rows["after"]["eval/accuracy"]
        start = "after SFT" if had_sft else "at the start"
        print(
            f"held-out accuracy (greedy): {100 * before:.1f}% {start} -> {100 * after:.1f}% after RL "
            f"({100 * (after - before):+.1f} points)",
            flush=True,
        )
    records = [r for r in read_metrics(directory) if r.get("phase") == "rl"]
    if records:
        keys = ("time/sample", "time/reward", "time/update", "time/logprobs", "time/other", "time/step")
        split = {k: float(np.mean([r[k] for r in records if k in r])) for k in keys if k in records[-1]}
        print(summary_table({"seconds per RL step (mean)": split}), flush=True)
        summary["time_split"] = split
    print(f"wall time {summary['wall_time_s']:.1f} s; counters {dict(counters)}", flush=True)
    (pathlib.Path(directory) / summary_file).write_text(json.dumps(summary, indent=2, default=float))
