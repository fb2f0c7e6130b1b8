"""Summarizes two runs' metrics.jsonl side by side (the short-regime sections of experiments/results/*.md).

    python experiments/results/gtpo_compare.py RUN_A RUN_B OUT.png KEY [KEY ...]

Prints a markdown table (per key: mean over the first and the last 10 RL steps, over all RL steps,
and the std / coefficient of variation over RL steps), the eval rows, and writes one panel per
key (RL step on x) to OUT.png. A key missing from a run is shown as "-".
"""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(run):
    rows = [json.loads(line) for line in (pathlib.Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("phase") == "rl"], [r for r in rows if r.get("phase") == "eval"]


def series(rows, key):
    return np.array([r[key] for r in rows if key in r], float)


def fmt(x):
    return "-" if x is None or not np.isfinite(x) else f"{x:.4g}"


def main(argv):
    run_a, run_b, out, keys = argv[0], argv[1], argv[2], argv[3:]
    runs = {pathlib.Path(run_a).name: load(run_a), pathlib.Path(run_b).name: load(run_b)}
    print("| metric | run | first 10 | last 10 | all steps | std | CV |")
    print("|---|---|---|---|---|---|---|")
    for key in keys:
        for name, (rl, _) in runs.items():
            s = series(rl, key)
            if s.size == 0:
                print(f"| `{key}` | {name} | - | - | - | - | - |")
                continue
            cv = s.std() / abs(s.mean()) if s.mean() != 0 else float("nan")
            print(
                f"| `{key}` | {name} | {fmt(s[:10].mean())} | {fmt(s[-10:].mean())} | {fmt(s.mean())} | {fmt(s.std())} | {fmt(cv)} |"
            )
    print()
    print("| run | eval step | accuracy | pass@1 | pass@k | completion_len |")
    print("|---|---|---|---|---|---|")
    for name, (_, ev) in runs.items():
        for r in ev:
            print(
                f"| {name} | {r['step']} | {fmt(r.get('eval/accuracy'))} | {fmt(r.get('eval/pass@1'))} | "
                f"{fmt(r.get('eval/pass@k'))} | {fmt(r.get('eval/completion_len'))} |"
            )
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, (rl, _) in runs.items():
            steps = np.array([r["step"] for r in rl if key in r])
            if steps.size:
                ax.plot(steps - steps.min() + 1, series(rl, key), label=name)
        ax.set(title=key, xlabel="RL step")
    axes[0, 0].legend(fontsize=8)
    plt.tight_layout()
    plt.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:])
