"""Training metrics over the first and last RL steps of runs, averaged over seeds, arm by arm.

    python experiments/results/window_means.py ARM=RUN_DIR[,RUN_DIR...] [ARM=...] --keys K [K ...] [--window 50]

For each arm (a name and its runs, one per seed) and each key of ``metrics.jsonl``: the mean of
the key over a run's first ``--window`` RL steps and over its last ``--window``, then the mean +-
sample std of those over the arm's runs, and Welch's t-test p-value between the first two arms'
last-window values. Used by experiments/results/gepo.md and urpo.md for the metrics the papers'
claims are about (``gepo/accuracy``, ``urpo/referee_accuracy``), which the suite table
(experiments/suite.py) does not carry.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

from jaxrl_llm import metrics_log


def window_means(run: pathlib.Path, key: str, window: int) -> tuple[float, float] | None:
    """(mean over the first ``window`` RL steps, mean over the last ``window``) of ``key``."""
    values = [r[key] for r in metrics_log.read_metrics(run) if r.get("phase") == "rl" and key in r]
    if not values:
        return None
    head, tail = values[:window], values[-window:]
    return sum(head) / len(head), sum(tail) / len(tail)


def mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan"))


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value (scipy's ``ttest_ind(equal_var=False)``)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("arms", nargs="+", help="NAME=RUN_DIR[,RUN_DIR...]")
    p.add_argument("--keys", nargs="+", required=True)
    p.add_argument("--window", type=int, default=50)
    args = p.parse_args(argv)
    arms = {}
    for spec in args.arms:
        name, _, dirs = spec.partition("=")
        arms[name] = [pathlib.Path(d) for d in dirs.split(",") if d]
    print(f"| arm | key | first {args.window} RL steps | last {args.window} | runs |")
    print("|---|---|---|---|---|")
    last: dict[str, dict[str, list[float]]] = {}
    for name, runs in arms.items():
        for key in args.keys:
            pairs = [w for w in (window_means(r, key, args.window) for r in runs) if w is not None]
            if not pairs:
                print(f"| {name} | `{key}` | - | - | 0 |")
                continue
            (h, hs), (t, ts) = mean_std([a for a, _ in pairs]), mean_std([b for _, b in pairs])
            last.setdefault(key, {})[name] = [b for _, b in pairs]
            print(f"| {name} | `{key}` | {h:.3f} +- {hs:.3f} | {t:.3f} +- {ts:.3f} | {len(pairs)} |")
    if len(arms) >= 2:
        a, b = list(arms)[:2]
        for key, by_arm in last.items():
            if a in by_arm and b in by_arm:
                print(f"\n`{key}`, last window, {a} vs {b}: Welch p = {welch_p(by_arm[a], by_arm[b]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
