"""Measures AEPO's claimed effects on finished ``images:gui`` runs, the SAME procedure for every run.

For each run directory: restore its newest checkpoint (``evaluate.load_policy``), decode the first
``n`` held-out screens greedily and score with ``rewards.gui_grounding``: top-1 accuracy (the FIRST
point in the box, whatever the run's training reward) on all, hard and easy items, exploration
success (SOME point in the box), mean N of proposals and the share of unparsable answers; then
``k`` samples per screen at temperature 1 for the sampled mean N. From the run's ``metrics.jsonl``:
``frac_zero_std_groups`` and ``completion_len/mean`` averaged over the first and the last ``window``
RL steps, and the eval before RL (after SFT).

    python experiments/results/aepo_measure.py runs/aepo_s0 runs/aepo_grpo_s0 --n 200 --k 8
"""

import argparse
import json
import pathlib

import jax
import numpy as np

from jaxrl_llm import config as config_lib
from jaxrl_llm import evaluate, metrics_log, tasks
from jaxrl_llm.rewards import gui_grounding as gg


def _split(values: np.ndarray, hard: np.ndarray) -> dict[str, float]:
    return {"all": float(values.mean()), "hard": float(values[hard].mean()), "easy": float(values[~hard].mean())}


def measure(run_dir: pathlib.Path, n: int, k: int, window: int, seed: int) -> dict:
    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    kw = dict(cfg.task.kwargs)
    think, fmt = kw.get("think", True), kw.get("point_format", "point_2d")
    task = tasks.make_task(cfg.task.name, **kw)
    policy, step = evaluate.load_policy(cfg, run_dir)
    examples = task.eval_examples(n)
    hard = np.asarray([e.metadata["hard"] for e in examples])
    prompt_tokens, prompt_mask = policy.encode_prompts(examples)
    images = policy.prompt_images(examples)
    out = policy.generate(prompt_tokens, prompt_mask, jax.random.key(seed), 1, greedy=True, images=images)
    greedy = policy.decode(out["tokens"], out["lengths"])
    top1 = np.asarray([gg.first_point_hit(c, e, think, fmt) for c, e in zip(greedy, examples)], float)
    anyhit = np.asarray([gg.any_point_hit(c, e, think, fmt) for c, e in zip(greedy, examples)], float)
    n_greedy = np.asarray([gg.num_points(c, think, fmt) for c in greedy], float)
    out = policy.generate(prompt_tokens, prompt_mask, jax.random.key(seed + 1), k, temperature=1.0, images=images)
    sampled = policy.decode(out["tokens"], out["lengths"])
    n_sampled = np.asarray([gg.num_points(c, think, fmt) for c in sampled], float)
    rows = [r for r in metrics_log.read_metrics(run_dir) if r.get("phase") == "rl"]
    curve = lambda key, part: float(np.mean([r[key] for r in part if key in r])) if part else float("nan")
    history = json.loads((run_dir / "summary.json").read_text()).get("eval", {})
    return {
        "run": str(run_dir),
        "algorithm": cfg.algorithm,
        "reward": kw.get("reward"),
        "step": step,
        "top1": _split(top1, hard),
        "exploration_success": _split(anyhit, hard),
        "greedy_mean_n": float(n_greedy[n_greedy > 0].mean()) if (n_greedy > 0).any() else 0.0,
        "greedy_unparsable": float((n_greedy == 0).mean()),
        "sampled_mean_n": float(n_sampled[n_sampled > 0].mean()) if (n_sampled > 0).any() else 0.0,
        "sampled_unparsable": float((n_sampled == 0).mean()),
        "frac_zero_std_groups": {
            "first": curve("frac_zero_std_groups", rows[:window]),
            "last": curve("frac_zero_std_groups", rows[-window:]),
            "mean": curve("frac_zero_std_groups", rows),
        },
        "completion_len": {
            "first": curve("completion_len/mean", rows[:window]),
            "last": curve("completion_len/mean", rows[-window:]),
        },
        "eval_before_rl": history.get("before"),
        "num_hard": int(hard.sum()),
        "num_examples": len(examples),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for run in args.runs:
        print(json.dumps(measure(run, args.n, args.k, args.window, args.seed)))


if __name__ == "__main__":
    main()
