"""Table and plot of the PPO control comparison (experiments/results/control_ppo.md): per env, the
deterministic-policy evaluation of each seed's final checkpoint (``python -m jaxrl_llm.control.evaluate
... > <run>/eval_deterministic.json``), the training-episode return at the end of training, the SB3
reference runs (``experiments/control_ppo_sb3_reference.py`` > ``runs/sb3_reference/<env>_s<S>.json``)
when present, and ``experiments/results/control_ppo.png`` (training-episode return against env steps:
mean over seeds 0-2 of the mean return of the episodes that ended in each of <= 40 bins (a bin
where none ended carries the previous one), min-max band, and the Zoo's published mean +- std).

    python experiments/control_ppo_report.py [RUNS_DIR]   # default runs/
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

SEEDS = tuple(range(10))  # the seeds present are used; the plot shows seeds 0-2
# env: (run prefix, SB3-reference file prefix, Zoo figure (mean, std), training-return window in env steps)
ENVS = {
    "Pendulum-v1": ("control_ppo_rs_s", None, (-172.225, 104.159), 20_480),
    "CartPole-v1": ("control_ppo_cartpole_s", "cartpole_s", (500.0, 0.0), 20_480),
    "MountainCarContinuous-v0": ("control_ppo_mountaincar_s", "mountaincar_s", (88.343, 2.572), 4_000),
    # the same experiment with gymnax's own left-wall rule (before envs.GymMountainCarContinuous),
    # from two builds of ppo.py that differ only in float rounding (explicit broadcasts): see control_ppo.md
    "MountainCarContinuous-v0 (gymnax wall)": ("control_ppo_mountaincar_gymnaxwall_s", None, (88.343, 2.572), 4_000),
    "MountainCarContinuous-v0 (gymnax wall, build 1)": (
        "control_ppo_mountaincar_build1_s",
        None,
        (88.343, 2.572),
        4_000,
    ),
}


def _rows(run: pathlib.Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("phase") == "control"]


def _stats(xs: list[float]) -> str:
    a = np.asarray(xs, float)
    sd = a.std(ddof=1) if a.size > 1 else float("nan")
    return f"{a.mean():.1f} ± {sd:.1f} [{a.min():.1f}, {a.max():.1f}]"


def _final_train_return(rows: list[dict], window: int) -> float:
    end = rows[-1]["env_steps"]
    last = [r for r in rows if r["env_steps"] > end - window and r["episode/count"] > 0]
    count = sum(r["episode/count"] for r in last)
    return sum(r["episode/count"] * r["episode/return"] for r in last) / count if count else float("nan")


def _curve(rows: list[dict], edges: np.ndarray) -> np.ndarray:
    steps = np.array([r["env_steps"] for r in rows])
    cnt = np.array([r["episode/count"] for r in rows])
    ret = np.nan_to_num(np.array([r["episode/return"] for r in rows]))
    idx = np.digitize(steps, edges[1:-1])
    out = np.full(len(edges) - 1, np.nan)
    for b in range(len(out)):
        m = idx == b
        if cnt[m].sum() > 0:
            out[b] = (cnt[m] * ret[m]).sum() / cnt[m].sum()
        elif b > 0:  # no episode ended in this bin: carry the last one (long episodes)
            out[b] = out[b - 1]
    return out


def main(runs: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    axes = [*axes, None, None]
    print(
        "| env | ours: deterministic eval, final | ours: training episodes, end | SB3 Zoo code, our seeds | Zoo benchmark |"
    )
    print("|---|---|---|---|---|")
    for ax, (env, (prefix, ref_prefix, (ref_mean, ref_std), window)) in zip(axes, ENVS.items()):
        evals, trains, curves, refs = [], [], [], []
        edges = None
        for s in SEEDS:
            run = runs / f"{prefix}{s}"
            if not (run / "metrics.jsonl").exists():
                continue
            rows = _rows(run)
            if edges is None:
                edges = np.linspace(0, rows[-1]["env_steps"], min(41, len(rows) + 1))
            if s < 3:
                curves.append(_curve(rows, edges))
            trains.append(_final_train_return(rows, window))
            ev = run / "eval_deterministic.json"
            if ev.exists():
                evals.append(json.loads(ev.read_text())["return_mean"])
            if ref_prefix and (runs / "sb3_reference" / f"{ref_prefix}{s}.json").exists():
                text = (runs / "sb3_reference" / f"{ref_prefix}{s}.json").read_text().strip()
                if text:
                    refs.append(json.loads(text)["return_mean"])
        if not curves:
            print(f"| {env} | (no runs under {runs}) | | | |")
            continue
        windows = [("seeds 0-2", 3)] + ([(f"seeds 0-{len(trains) - 1}", len(trains))] if len(trains) > 3 else [])
        for label, n in windows:
            ev, rf = evals[:n], refs[:n]
            print(
                f"| {env}, {label} | {_stats(ev) if ev else '-'} (per seed {', '.join(f'{x:.1f}' for x in ev)}) "
                f"| {_stats(trains[:n])} | {_stats(rf) if rf else '-'}"
                f"{' (per seed ' + ', '.join(f'{x:.1f}' for x in rf) + ')' if rf else ''} "
                f"| {ref_mean} ± {ref_std} |"
            )
        if ax is None:
            continue
        c = np.array(curves)
        mid = 0.5 * (edges[1:] + edges[:-1])
        ax.plot(mid, np.nanmean(c, 0), label=f"ours, mean of seeds 0-{len(curves) - 1}")
        ax.fill_between(mid, np.nanmin(c, 0), np.nanmax(c, 0), alpha=0.3, label="ours, min-max")
        ax.axhline(ref_mean, color="k", ls="--", lw=1, label="Zoo benchmark ± std")
        if ref_std:
            ax.axhspan(ref_mean - ref_std, ref_mean + ref_std, color="k", alpha=0.1)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("training-episode return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = pathlib.Path(__file__).parent / "results" / "control_ppo.png"
    fig.savefig(out, dpi=110)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
