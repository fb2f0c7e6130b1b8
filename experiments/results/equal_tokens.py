"""Held-out accuracy against sampled tokens, for comparing methods whose steps sample different
amounts (SPO-chain's Monte Carlo continuations, SPO-tree's nodes, ARPO's branches) at equal
sampled tokens rather than equal steps.

For each run directory: every held-out evaluation's step, the tokens sampled in RL up to that step
(``experiments/suite.py::step_tokens`` summed: a kind's own ``*/sampled_tokens`` where it logs
one, else completion length x rows), greedy accuracy and pass@1. With ``--at T`` it also prints,
per run, the accuracy interpolated linearly between the two evaluations around T tokens (a run
that never reached T is reported as "-").

    python experiments/results/equal_tokens.py runs/suite/grpo/partial_sums/s{0,1,2} \
        runs/suite/spo_chain/partial_sums/s0 --at 2.9e6
"""

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/
import suite  # noqa: E402

from jaxrl_llm import metrics_log  # noqa: E402


def curve(run_dir: pathlib.Path) -> list[dict[str, float]]:
    """The run's evaluations, each with the tokens sampled in RL before it."""
    records = metrics_log.read_metrics(run_dir)
    batch = suite.rows_per_step(run_dir)
    rl = sorted((r for r in records if r.get("phase") == "rl"), key=lambda r: r["step"])
    steps = np.asarray([r["step"] for r in rl])
    cum = np.cumsum([suite.step_tokens(r, batch) for r in rl])
    out = []
    for e in (r for r in records if r.get("phase") == "eval" and "eval/accuracy" in r):
        n = int(np.searchsorted(steps, e["step"], side="right"))  # RL steps done before this evaluation
        out.append(
            {
                "step": e["step"],
                "tokens": float(cum[n - 1]) if n else 0.0,
                "accuracy": e["eval/accuracy"],
                "pass@1": e.get("eval/pass@1", float("nan")),
            }
        )
    return out


def at_tokens(points: list[dict[str, float]], tokens: float, key: str = "accuracy") -> float | None:
    """``key`` interpolated linearly at ``tokens`` (None when the run stopped short of it)."""
    xs = [p["tokens"] for p in points]
    if not points or tokens > xs[-1]:
        return None
    return float(np.interp(tokens, xs, [p[key] for p in points]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=pathlib.Path)
    ap.add_argument("--at", type=float, default=None, help="also interpolate each run at this many sampled tokens")
    args = ap.parse_args(argv)
    print("| run | step | tokens sampled | greedy acc | pass@1 |\n|---|---|---|---|---|")
    curves = {}
    for run in args.runs:
        curves[run] = curve(run)
        for p in curves[run]:
            print(f"| {run} | {p['step']} | {p['tokens']:.3g} | {p['accuracy']:.3f} | {p['pass@1']:.3f} |")
    if args.at is not None:
        print(f"\n| run | greedy acc at {args.at:.3g} tokens | pass@1 at {args.at:.3g} tokens |\n|---|---|---|")
        for run, points in curves.items():
            acc, p1 = at_tokens(points, args.at), at_tokens(points, args.at, "pass@1")
            fmt = lambda v: "-" if v is None else f"{v:.3f}"
            print(f"| {run} | {fmt(acc)} | {fmt(p1)} |")


if __name__ == "__main__":
    main()
