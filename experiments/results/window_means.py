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
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/
import suite  # noqa: E402

from jaxrl_llm import metrics_log  # noqa: E402


def window_means(rl: list[dict], key: str, window: int) -> tuple[float, float] | None:
    """(mean over the first ``window`` RL records, mean over the last ``window``) of ``key``, by
    the suite table's ``_window_mean``; None when the key is in neither window."""
    head, tail = suite._window_mean(rl[:window], key), suite._window_mean(rl[-window:], key)
    return None if head is None or tail is None else (head, tail)


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value of two samples (``suite.welch_p`` on their mean / std / n;
    nan where a sample has fewer than 2 values or neither has a spread)."""
    p = suite.welch_p(suite._stats(list(a)), suite._stats(list(b)))
    return float("nan") if p is None else p


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
        rls = [[r for r in metrics_log.read_metrics(run) if r.get("phase") == "rl"] for run in runs]
        for key in args.keys:
            pairs = [w for w in (window_means(rl, key, args.window) for rl in rls) if w is not None]
            if not pairs:
                print(f"| {name} | `{key}` | - | - | 0 |")
                continue
            head, tail = suite._stats([a for a, _ in pairs]), suite._stats([b for _, b in pairs])
            (h, hs), (t, ts) = (head["mean"], head["std"]), (tail["mean"], tail["std"])
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
