"""KL-reward frontier of suite runs: the sampled reward of each saved checkpoint against its KL to the start.

    python experiments/results/kl_frontier.py ARM=RUN_DIR[,RUN_DIR...] [ARM=...] [--n 256] [--k 8]
        [--json OUT.json] [--plot OUT.png]

The same procedure for every run and every checkpoint it keeps (the suite's runs save every 50 RL
steps; ``--set checkpoint.max_to_keep=9`` keeps them all), whatever the method and wherever its KL
sits (a loss term, the reward, or nowhere), so the methods' own ``kl`` metrics, which measure
different things, are not used. For each checkpoint, ``k`` completions of each of the first ``n``
held-out prompts are sampled at temperature 1 with a fixed key, and

- ``reward``: the task's reward of the samples, averaged (the run's verifier);
- ``kl``: the sequence KL to the start, ``KL(pi || pi_ref) = E_{y ~ pi}[sum_t log pi(y_t) - log
  pi_ref(y_t)]``, estimated by the mean of ``sum_t (log pi - log pi_ref)`` over the samples (k1,
  unbiased; ``pi_ref`` is the run's ``model.name``, the SFT start every arm shares);
- ``kl_token``: the same sum divided by the completion tokens (nats a token).

The start itself is row "step 0" (KL 0 by construction). Per arm: each run's frontier
``F(x) = max reward over its checkpoints with KL <= x`` (the best reward the run reached within a
KL budget x; P3O's claim, Wu et al. 2023, https://arxiv.org/abs/2310.00212, Fig. 2, is a frontier
above PPO's and DPO's), at budgets ``--budgets``; mean +- sample std over the arm's runs and
Welch's p of every arm against the first. A budget beyond a run's largest KL reads its best
reward; a run that never got below a budget's KL would read the start's reward.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/
import jax  # noqa: E402
import numpy as np  # noqa: E402
import suite  # noqa: E402
from results.window_means import welch_p  # noqa: E402

from jaxrl_llm import checkpoint as checkpoint_lib  # noqa: E402
from jaxrl_llm import config as config_lib  # noqa: E402
from jaxrl_llm import evaluate, tasks  # noqa: E402
from jaxrl_llm.policy import Policy  # noqa: E402

BUDGETS = (0.2, 0.3, 0.4, 0.6, 0.8)


def sample_reward_and_kl(policy, ref_params, scorer, examples, k: int, seed: int) -> dict[str, float]:
    """Reward and KL to ``ref_params`` of ``k`` temperature-1 samples per example from ``policy``'s
    live params (see the module docstring)."""
    prompt_tokens, prompt_mask = policy.encode_prompts(examples)
    out = policy.generate(prompt_tokens, prompt_mask, jax.random.key(seed), k, temperature=1.0)
    texts = policy.decode(out["tokens"], out["lengths"])
    rows = [e for e in examples for _ in range(k)]
    rewards, _ = scorer.score(texts, rows)
    tokens = np.concatenate([np.repeat(prompt_tokens, k, axis=0), out["tokens"]], axis=1)
    attention = np.concatenate([np.repeat(np.asarray(prompt_mask, np.float32), k, axis=0), out["mask"]], axis=1)
    T = out["tokens"].shape[1]
    mask = np.asarray(out["mask"], np.float64)
    # pi's log-probs by the same full forward pass as pi_ref's (not the sampler's cached-decode ones),
    # so their difference carries no decode-path rounding
    own = policy.logprobs(policy.params, tokens, attention, T, k).astype(np.float64)
    ref = policy.logprobs(ref_params, tokens, attention, T, k).astype(np.float64)
    seq_kl = ((own - ref) * mask).sum(axis=1)
    return {
        "reward": float(np.mean(rewards)),
        "kl": float(seq_kl.mean()),
        "kl_token": float(seq_kl.sum() / mask.sum()),
        "completion_len": float(mask.sum(axis=1).mean()),
    }


def checkpoint_steps(cfg, run_dir: pathlib.Path) -> list[int]:
    ckpt = checkpoint_lib.Checkpointer(run_dir / "checkpoints", cfg.checkpoint.max_to_keep, async_save=False)
    try:
        steps = ckpt.all_steps()  # ascending
    finally:
        ckpt.close()
    if not steps:
        raise FileNotFoundError(f"{run_dir}/checkpoints: no checkpoint to measure")
    return steps


def measure_run(run_dir: pathlib.Path, n: int, k: int, seed: int) -> dict:
    """Rows ``{step, reward, kl, kl_token, completion_len}`` for the start (step 0) and every checkpoint."""
    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    examples = [task.eval_example(i) for i in range(min(n, task.num_eval))]
    policy = Policy.create(cfg)  # the run's model.name: the start every arm of a task shares
    ref_params = policy.params
    scorer = evaluate.make_scorer(task, cfg)
    rows = []
    try:
        rows.append({"step": 0, **sample_reward_and_kl(policy, ref_params, scorer, examples, k, seed)})
        for step in checkpoint_steps(cfg, run_dir):
            policy.params = evaluate.load_policy(cfg, run_dir, step)[0].params
            rows.append({"step": int(step), **sample_reward_and_kl(policy, ref_params, scorer, examples, k, seed)})
            print(f"  {run_dir} step {step}: {rows[-1]}", file=sys.stderr)
    finally:
        scorer.close()
    return {"run": str(run_dir), "algorithm": cfg.algorithm, "seed": cfg.seed, "rows": rows}


def frontier(rows: list[dict], budget: float) -> float:
    """The best reward among ``rows`` whose KL is at most ``budget`` (the start's row always is)."""
    return max(r["reward"] for r in rows if r["kl"] <= budget or r["step"] == 0)


def summarize(arms: dict[str, list[dict]], budgets) -> list[dict]:
    """Per arm and budget: each run's frontier, their mean +- sample std, Welch's p against the first arm."""
    first = next(iter(arms))
    ref = {b: [frontier(r["rows"], b) for r in arms[first]] for b in budgets}
    out = []
    for arm, runs in arms.items():
        for b in budgets:
            vals = [frontier(r["rows"], b) for r in runs]
            stats = suite._stats(vals)
            p = welch_p(vals, ref[b]) if arm != first else None
            out.append({"arm": arm, "budget": b, "values": vals, **stats, "p_vs_first": p})
    return out


def plot(arms: dict[str, list[dict]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (arm, runs) in enumerate(arms.items()):
        color = f"C{i}"
        for j, run in enumerate(runs):
            kl = [r["kl"] for r in run["rows"]]
            rew = [r["reward"] for r in run["rows"]]
            ax.plot(kl, rew, "o-", color=color, alpha=0.6, ms=3, lw=1, label=arm if j == 0 else None)
    ax.set_xlabel("KL(pi || start), nats a completion (sampled, k1)")
    ax.set_ylabel("sampled reward (held-out prompts, temperature 1)")
    ax.set_title("KL-reward along training (a line a seed, a point a checkpoint)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "arms", nargs="*", help="ARM=RUN_DIR[,RUN_DIR...]; the first arm is the one the others are tested against"
    )
    p.add_argument("--n", type=int, default=256, help="held-out prompts")
    p.add_argument("--k", type=int, default=8, help="samples per prompt")
    p.add_argument("--seed", type=int, default=0, help="sampling key (the same for every checkpoint)")
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    p.add_argument("--json", type=pathlib.Path, help="write every row and the summary here")
    p.add_argument(
        "--from-json",
        type=pathlib.Path,
        nargs="+",
        help="summarize earlier --json files (arms in order of first appearance, an arm's runs pooled across files) instead of measuring",
    )
    p.add_argument("--plot", type=pathlib.Path)
    args = p.parse_args(argv)
    if args.from_json:
        arms = {}
        for path in args.from_json:  # runs of an arm named in several files are pooled
            for name, runs in json.loads(path.read_text())["arms"].items():
                arms.setdefault(name, []).extend(runs)
    else:
        arms = {}
        for spec in args.arms:
            name, _, dirs = spec.partition("=")
            if not dirs:
                p.error(f"{spec!r}: expected ARM=RUN_DIR[,RUN_DIR...]")
            arms[name] = [measure_run(pathlib.Path(d), args.n, args.k, args.seed) for d in dirs.split(",")]
    summary = summarize(arms, args.budgets)
    print("| arm | step | reward (mean over runs) | KL, nats a completion | KL, nats a token |")
    print("|---|---|---|---|---|")
    for arm, runs in arms.items():
        for i, row in enumerate(runs[0]["rows"]):
            at = [r["rows"][i] for r in runs if i < len(r["rows"]) and r["rows"][i]["step"] == row["step"]]
            rew, kl, klt = (suite._stats([r[key] for r in at]) for key in ("reward", "kl", "kl_token"))
            print(
                f"| {arm} | {row['step']} | {rew['mean']:.3f} ± {rew['std']:.3f} | {kl['mean']:.3f} ± {kl['std']:.3f} "
                f"| {klt['mean']:.4f} ± {klt['std']:.4f} |"
            )
    print()
    print("| arm | KL budget | best reward within it, per run | mean ± std | p vs the first arm |")
    print("|---|---|---|---|---|")
    for s in summary:
        pv = "" if s["p_vs_first"] is None else f"{s['p_vs_first']:.3f}"
        vals = ", ".join(f"{v:.3f}" for v in s["values"])
        print(f"| {s['arm']} | {s['budget']} | {vals} | {s['mean']:.3f} ± {s['std']:.3f} | {pv} |")
    if args.json:
        args.json.write_text(json.dumps({"arms": arms, "summary": summary}, indent=1))
    if args.plot:
        plot(arms, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
