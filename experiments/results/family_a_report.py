"""Tables and plots of the family-A sweep (experiments/results/family_a_sweep.py), one per method.

    python experiments/results/family_a_report.py runs/family_a [METHOD ...]

For each method: a markdown table of held-out evaluations (greedy accuracy, pass@1, pass@4 at
every evaluation step) of the method's runs and of its GRPO baselines, a table of the metrics its
paper's claim is about (mean over the first and last 100 RL steps, over all steps, and the std
over steps), and ``experiments/results/<method>.png`` with the same metrics over training
(``jaxrl_llm.plot.plot_runs``). Runs missing from the sweep directory are skipped with a note.
"""

from __future__ import annotations

import json
import pathlib
import sys

from jaxrl_llm import plot

GRPO = ("family_a_grpo_s0", "gtpo_grpo_baseline_s0", "family_a_grpo_s1")  # the first two: same gradient, seed 0
# method: (its runs, its baselines, the metrics its claim is about)
CLAIMS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "gtpo": (("gtpo_s0",), GRPO, ("gtpo/conflict_logprob", "entropy", "reward/mean", "kl")),
    "dcpo": (
        ("dcpo_s0",),
        GRPO,
        (
            "dcpo/frac_tokens_with_grad",
            "dcpo/frac_nonzero_adv",
            "dcpo/frac_revisited",
            "frac_zero_std_groups",
            "clip_frac",
            "reward/mean",
            "kl",
        ),
    ),
    "bnpo": (("bnpo_s0",), GRPO, ("grad_norm", "adv/std", "reward/mean", "kl")),
    "copo": (
        ("copo_s0", "copo_tagged_s0"),
        GRPO,
        (
            "frac_signal_rows",
            "frac_signal_rows/local",
            "local_weight/mean",
            "answer_entropy/mean",
            "frac_zero_std_groups",
            "reward/mean",
            "kl",
        ),
    ),
    "riskpo": (("riskpo_s0", "riskpo_dapo_math_s0"), GRPO, ("adv/mean", "adv/max", "entropy", "reward/mean", "kl")),
    "hapo": (("hapo_s0", "hapo_s1"), GRPO, ("entropy", "clip_frac", "reward/mean", "kl")),
    "single_stream_spo": (
        ("single_stream_spo_s0",),
        GRPO,
        ("frac_zero_adv", "frac_zero_std_groups", "time/step", "time/sample", "time/update", "reward/mean"),
    ),
    "apo": (
        ("apo_s0",),
        GRPO,
        ("completion_len/wrong", "completion_len/correct", "kl", "apo/kl_weight_pos", "reward/mean"),
    ),
}


def fmt(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def report(sweep_dir: pathlib.Path, method: str, summary: dict, out_dir: pathlib.Path) -> str:
    runs, baselines, keys = CLAIMS[method]
    present = [r for r in runs + baselines if r in summary and "error" not in summary[r]]
    missing = [r for r in runs + baselines if r not in present]
    lines = [f"### {method}", ""]
    if missing:
        lines += [f"(not in {sweep_dir}: {', '.join(missing)})", ""]
    steps = sorted({e["step"] for r in present for e in summary[r]["evals"]})
    lines += [
        "| run | RL steps | " + " | ".join(f"acc @ {s}" for s in steps) + " | pass@1 (last) | pass@4 (last) |",
        "|---|---|" + "---|" * len(steps) + "---|---|",
    ]
    for r in present:
        ev = {e["step"]: e for e in summary[r]["evals"]}
        last = summary[r]["evals"][-1] if summary[r]["evals"] else {}
        accs = " | ".join(fmt(ev.get(s, {}).get("eval/accuracy")) for s in steps)
        lines.append(
            f"| {r} | {summary[r]['rl_steps']} | {accs} | {fmt(last.get('eval/pass@1'))} | "
            f"{fmt(last.get('eval/pass@k'))} |"
        )
    lines += ["", "| metric | run | first 100 | last 100 | all steps | std over steps |", "|---|---|---|---|---|---|"]
    for key in keys:
        for r in present:
            m = summary[r]["means"].get(key)
            if m:
                lines.append(
                    f"| `{key}` | {r} | {fmt(m['first100'])} | {fmt(m['last100'])} | {fmt(m['mean'])} | "
                    f"{fmt(m['std'])} |"
                )
    if present:
        png = out_dir / f"{method}.png"
        plot.plot_runs([sweep_dir / r for r in present], png, keys=("eval/accuracy", "eval/pass@k") + keys, smooth=0.9)
        lines += ["", f"Plot: `{png}` (RL metrics smoothed with an EMA of 0.9)."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    sweep_dir = pathlib.Path(argv[0])
    methods = argv[1:] or list(CLAIMS)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    out_dir = pathlib.Path(__file__).resolve().parent
    for method in methods:
        print(report(sweep_dir, method, summary, out_dir), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
