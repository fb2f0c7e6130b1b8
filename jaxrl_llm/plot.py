"""``jaxrl-llm plot RUN_DIR [RUN_DIR ...]``: PNG curves comparing runs, one panel per metric.

Reads each run's ``metrics.jsonl`` and draws, for every metric key present in at least one run
(or the ``keys`` asked for), the curve of each run against its global step. Training metrics are
smoothed with an exponential moving average, ``s_t = smooth * s_{t-1} + (1 - smooth) * x_t``
(about ``1 / (1 - smooth)`` logged points wide), drawn over the raw values in a faint line; the
figure's title and each smoothed panel's title say so. Evaluation metrics are drawn raw with
markers.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import matplotlib
import matplotlib.figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxrl_llm import metrics_log  # noqa: E402

DEFAULT_KEYS = (
    "reward/mean",
    "eval/accuracy",
    "eval/pass@1",
    "eval/pass@k",
    "loss",
    "kl",
    "entropy",
    "completion_len/mean",
    "grad_norm",
    "clip_frac",
    "frac_zero_std_groups",
    "sft/loss",
)


def _ema(values: list[float], alpha: float) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None or not math.isfinite(acc) else alpha * acc + (1 - alpha) * v
        out.append(acc)
    return out


def smoothing_note(smooth: float) -> str:
    """The figure title that says how the curves were drawn."""
    if not smooth:
        return "training curves raw; eval points raw"
    return (
        f"training curves smoothed: exponential moving average, weight {smooth:g} "
        f"(~{1 / (1 - smooth):.3g}-point window), raw values faint; eval points raw"
    )


def plot_runs(
    run_dirs: Sequence[str | pathlib.Path],
    out: str | pathlib.Path,
    keys: Sequence[str] | None = None,
    smooth: float = 0.6,
) -> list[str]:
    """Writes ``figure(run_dirs, keys, smooth)`` as a PNG to ``out``; returns the metric keys drawn."""
    fig, wanted = figure(run_dirs, keys, smooth)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return wanted


def figure(
    run_dirs: Sequence[str | pathlib.Path], keys: Sequence[str] | None = None, smooth: float = 0.6
) -> tuple[matplotlib.figure.Figure, list[str]]:
    """One panel per metric, one curve per run; returns the figure and the metric keys drawn.

    ``smooth`` in [0, 1) is the EMA weight of the training curves (0 draws them raw).

    Raises ``FileNotFoundError`` naming a run directory without ``metrics.jsonl`` and
    ``ValueError`` when none of the requested keys exist in any run.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth={smooth} must be in [0, 1)")
    runs = {}
    for d in run_dirs:
        records = metrics_log.read_metrics(d)
        if not records:
            raise FileNotFoundError(f"{d}: no {metrics_log.METRICS_FILE} with records")
        runs[str(d)] = records
    present = {
        k
        for recs in runs.values()
        for r in recs
        for k, v in r.items()
        if isinstance(v, (int, float)) and k not in ("step",)
    }
    wanted = [k for k in (keys or DEFAULT_KEYS) if k in present]
    if not wanted:
        raise ValueError(
            f"none of the metric keys {list(keys or DEFAULT_KEYS)} appear in {list(runs)}; available: {sorted(present)}"
        )
    ncols = min(3, len(wanted))
    nrows = math.ceil(len(wanted) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, wanted):
        is_eval = key.startswith("eval/")
        for name, records in runs.items():
            points = [(r["step"], float(r[key])) for r in records if key in r]
            if not points:
                continue
            xs, ys = zip(*points)
            label = pathlib.Path(name).name or name
            if is_eval or not smooth:
                ax.plot(xs, ys, marker="o" if is_eval else None, label=label)
            else:
                (line,) = ax.plot(xs, _ema(list(ys), smooth), label=label)
                ax.plot(xs, ys, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_title(key if is_eval or not smooth else f"{key} (EMA {smooth:g})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(wanted) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(smoothing_note(smooth), fontsize=9)
    fig.tight_layout()
    return fig, wanted
