"""Markdown comparison of a short-regime family-A run (COPO, RiskPO, HAPO) against its GRPO baseline, and its plot.

Used for the "Earlier: short regime" sections (configs as of commit b067191); the learning-regime
tables come from family_a_report.py.

Usage (from the repository root, after both runs finished):
    python experiments/results/copo_compare.py METHOD KEY1,KEY2,...
Reads runs/METHOD and runs/copo_grpo_baseline (metrics.jsonl, summary.json); prints the table of
eval metrics before/after RL and RL-phase means (first/last 5 steps) of the given keys; writes
experiments/results/METHOD.png.
"""

import json
import pathlib
import sys

import numpy as np

from jaxrl_llm import metrics_log, plot

method, keys = sys.argv[1], sys.argv[2].split(",")
runs = {method: f"runs/{method}", "grpo": "runs/copo_grpo_baseline"}
print("| metric | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
summ = {n: json.loads(pathlib.Path(d, "summary.json").read_text()) for n, d in runs.items()}
for when in ("before", "after"):
    for k in ("eval/accuracy", "eval/pass@1", "eval/pass@k", "eval/completion_len"):
        print(f"| {k} ({when} RL) | " + " | ".join(f"{summ[n]['eval'][when][k]:.4f}" for n in runs) + " |")
recs = {n: [r for r in metrics_log.read_metrics(d) if r.get("phase") == "rl"] for n, d in runs.items()}
for k in keys:
    row = []
    for n in runs:
        vals = [r[k] for r in recs[n] if k in r]
        if not vals:
            row.append("-")
            continue
        first, last = np.mean(vals[:5]), np.mean(vals[-5:])
        row.append(f"{np.mean(vals):.4f} (first 5: {first:.4f}, last 5: {last:.4f})")
    print(f"| {k} (RL mean) | " + " | ".join(row) + " |")
for n in runs:
    print(
        f"\n{n}: wall {summ[n]['wall_time_s']:.0f} s, compiles_after_warmup {summ[n]['counters'].get('compiles_after_warmup')}"
    )
plot.plot_runs(
    list(runs.values()),
    f"experiments/results/{method}.png",
    keys=["reward/mean", "eval/accuracy", "eval/pass@k", "entropy"] + keys,
)
