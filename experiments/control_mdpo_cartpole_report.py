"""Table, mechanism numbers and plot of the CartPole-v1 MDPO comparison (experiments/results/mdpo.md,
section "CartPole-v1 (second environment)"): for PPO, on-policy MDPO, off-policy MDPO and SAC, seeds
0-2, the mean return of the training episodes that ended in the last 20% of the run (20,480 env
steps on-policy, 10,000 off-policy; as mdpo.md's Pendulum windows), the deterministic evaluation of
the final checkpoint (``<run>/eval_deterministic.json`` of ``python -m jaxrl_llm.control.evaluate``),
and the KL the methods predict: on-policy MDPO's KL(pi_{k+1} || pi_k) (``kl/final``) over the first
and last 10 iterations; the exact KL(pi_theta || pi_k) of off-policy MDPO and SAC over the last 10
iterations. Plot: ``experiments/results/mdpo_cartpole.png`` (the helpers of control_ppo_report.py).

    python experiments/control_mdpo_cartpole_report.py [RUNS_DIR]   # default runs/
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from control_ppo_report import _curve, _final_train_return, _rows, _stats  # noqa: E402

SEEDS = (0, 1, 2)
# row: (run prefix, training-return window in env steps)
ROWS = {
    "PPO (Zoo tuned)": ("control_ppo_cartpole_s", 20_480),
    "MDPO on-policy (paper defaults)": ("control_mdpo_cartpole_s", 20_480),
    "MDPO on-policy, lr 1e-3": ("control_mdpo_cartpole_lr1e3_s", 20_480),
    "MDPO off-policy": ("control_mdpo_offpolicy_cartpole_s", 10_000),
    "SAC (discrete)": ("control_sac_cartpole_s", 10_000),
}


def main(runs: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    print(
        "| method | env steps | training episodes, last 20%: mean ± std [min, max] | deterministic eval | per seed (train / eval) |"
    )
    print("|---|---|---|---|---|")
    mechanism = []
    for label, (prefix, window) in ROWS.items():
        trains, evals, curves, kls = [], [], [], []
        steps, edges = None, None
        for s in SEEDS:
            run = runs / f"{prefix}{s}"
            if not (run / "metrics.jsonl").exists():
                continue
            rows = _rows(run)
            steps = int(rows[-1]["env_steps"])
            if edges is None:
                edges = np.linspace(0, steps, min(41, len(rows) + 1))
            curves.append(_curve(rows, edges))
            trains.append(_final_train_return(rows, window))
            ev = run / "eval_deterministic.json"
            if ev.exists() and ev.read_text().strip():
                evals.append(json.loads(ev.read_text())["return_mean"])
            if "mdpo_cartpole" in prefix and "offpolicy" not in prefix:
                kl = [r["kl/final"] for r in rows]
                kls.append(f"{np.mean(kl[:10]):.2e} -> {np.mean(kl[-10:]):.2e}")
            elif "offpolicy" in prefix or "sac" in prefix:
                kls.append(f"{np.mean([r['kl'] for r in rows[-10:]]):.4f}")
        if not trains:
            continue
        per_seed = ", ".join(
            f"{t:.1f} / {e:.1f}" for t, e in zip(trains, evals + [float("nan")] * (len(trains) - len(evals)))
        )
        print(f"| {label} | {steps:,} | {_stats(trains)} | {_stats(evals) if evals else '-'} | {per_seed} |")
        if kls:
            mechanism.append(f"{label}: " + "; ".join(kls))
        ax = axes[0] if "off" not in label and "SAC" not in label else axes[1]
        c = np.array(curves)
        mid = 0.5 * (edges[1:] + edges[:-1])
        (line,) = ax.plot(mid, np.nanmean(c, 0), label=f"{label} (mean of {len(curves)} seeds)")
        ax.fill_between(mid, np.nanmin(c, 0), np.nanmax(c, 0), alpha=0.2, color=line.get_color())
    for ax, title in zip(axes, ("CartPole-v1, on-policy (1e5 steps)", "CartPole-v1, off-policy (5e4 steps)")):
        ax.set_title(title)
        ax.set_xlabel("env steps")
        ax.set_ylabel("training-episode return")
        ax.legend(fontsize=7)
    print(
        "\nKL (on-policy: kl/final, first 10 -> last 10 iterations; off-policy: exact KL to pi_k, last 10 iterations):"
    )
    print("\n".join(mechanism))
    fig.tight_layout()
    out = pathlib.Path(__file__).parent / "results" / "mdpo_cartpole.png"
    fig.savefig(out, dpi=110)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
