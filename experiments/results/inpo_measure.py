"""Measures a preference run under the cyclic oracle (experiments/inpo.py), the SAME procedure for
every run and every saved checkpoint.

For each run directory and each checkpoint step it keeps, and for the run's start (its reference
parameters, the policy after SFT): sample ``k`` completions at temperature 1 for each of the first
``n`` held-out prompts, class each by ``judges.oracle.text_class`` and form each prompt's class mix
``p`` (3 probabilities). Reported, averaged over prompts:

- ``class_entropy``: the mix's entropy over ``log 3`` (1 = the cyclic game's Nash mix, 0 = one
  class);
- ``exploitability``: the best pure class's expected margin against the mix,
  ``max_c margin (p[c - 1] - p[c + 1])`` (0 at the Nash mix, ``margin`` against a single class);
- ``win_vs_start``: the oracle's expected preference of the policy's samples over the start's,
  ``1/2 + margin sum_{c,d} p[c] q[d] (beats(c, d) - beats(d, c))``;
- ``reward``: the task's reward of the samples (how far the mix has moved off the right answer).

With ``k`` samples a prompt the estimates are biased: even the exact Nash mix reads below 1 in
entropy and above 0 in exploitability. ``nash_floor`` is what the Nash mix itself reads under the
same ``n`` and ``k`` (multinomial draws), the floor to read every row against.

    python experiments/results/inpo_measure.py runs/inpo_cyc_s0 runs/odpo_cyc_s0 --n 100 --k 64
"""

import argparse
import json
import math
import pathlib

import jax
import numpy as np

from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as config_lib
from jaxrl_llm import evaluate, tasks
from jaxrl_llm.judges import oracle


def class_mix(classes: np.ndarray) -> np.ndarray:
    """``[n, k]`` class ids -> ``[n, 3]`` per-prompt class frequencies."""
    return np.stack([(classes == c).mean(axis=1) for c in range(3)], axis=1)


def beats_matrix() -> np.ndarray:
    """``B[c, d] = 1`` when class ``c`` beats class ``d`` (``(c - d) % 3 == 1``), -1 when it loses."""
    c = np.arange(3)
    diff = (c[:, None] - c[None, :]) % 3
    return (diff == 1).astype(float) - (diff == 2).astype(float)


def mix_stats(p: np.ndarray, q: np.ndarray, margin: float) -> dict[str, float]:
    """Entropy, exploitability of ``p`` and its win rate over ``q`` (both ``[n, 3]``)."""
    b = beats_matrix()
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / math.log(3)
    exploit = margin * np.max(p @ b.T, axis=1)  # row c of B: what pure c scores against the mix
    win = 0.5 + margin * np.einsum("nc,cd,nd->n", p, b, q)
    return {
        "class_entropy": float(ent.mean()),
        "exploitability": float(exploit.mean()),
        "win_vs_start": float(win.mean()),
        "class_frac": [float(x) for x in p.mean(axis=0)],
    }


def nash_floor(n: int, k: int, margin: float, seed: int = 0, draws: int = 20) -> dict[str, float]:
    """``mix_stats`` of ``n`` prompts' class mixes, each ``k`` draws from the uniform (Nash) mix,
    averaged over ``draws`` repetitions: the reading of an exact Nash policy at this sample size."""
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(draws):
        p = rng.multinomial(k, [1 / 3] * 3, size=n) / k
        reps.append(mix_stats(p, np.full((n, 3), 1 / 3), margin))
    return {key: float(np.mean([r[key] for r in reps])) for key in ("class_entropy", "exploitability")}


def _sample_classes(policy, scorer, examples, k: int, seed: int) -> tuple[np.ndarray, float]:
    tokens, mask = policy.encode_prompts(examples)
    out = policy.generate(tokens, mask, jax.random.key(seed), k, temperature=1.0)
    texts = policy.decode(out["tokens"], out["lengths"])
    rows = [e for e in examples for _ in range(k)]
    rewards, _ = scorer.score(texts, rows)
    classes = np.asarray([oracle.text_class(t) for t in texts]).reshape(len(examples), k)
    return classes, float(np.mean(rewards))


def measure(run_dir: pathlib.Path, n: int, k: int, seed: int) -> dict:
    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    margin = float(getattr(cfg.algo, "oracle_margin", 0.5))
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    examples = task.eval_examples(n)
    ckpt = checkpoint_lib.Checkpointer(run_dir / "checkpoints", cfg.checkpoint.max_to_keep, async_save=False)
    try:
        steps = ckpt.all_steps()
    finally:
        ckpt.close()
    if not steps:
        raise FileNotFoundError(f"{run_dir}: no checkpoints to measure")
    policy, _, tree = evaluate.restore_run(cfg, run_dir, steps[-1])
    if tree.get("ref_params") is None:
        raise ValueError(f"{run_dir}: the checkpoint holds no ref_params (the start) to compare against")
    end_params = policy.params
    policy.params = tree["ref_params"]
    scorer = evaluate.make_scorer(task, cfg)
    try:
        start_classes, start_reward = _sample_classes(policy, scorer, examples, k, seed)
        q = class_mix(start_classes)
        rows = [{"step": "start", "reward": start_reward, **mix_stats(q, q, margin)}]
        for step in steps:
            policy.params = end_params if step == steps[-1] else evaluate.load_policy(cfg, run_dir, step)[0].params
            classes, reward = _sample_classes(policy, scorer, examples, k, seed)
            rows.append({"step": step, "reward": reward, **mix_stats(class_mix(classes), q, margin)})
    finally:
        scorer.close()
    oracle_name = getattr(cfg.algo, "oracle", None)
    return {
        "run": str(run_dir),
        "algorithm": cfg.algorithm,
        "oracle": oracle_name,
        "seed": cfg.seed,
        "nash_floor": nash_floor(n, k, margin, seed),
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--n", type=int, default=100, help="held-out prompts")
    p.add_argument("--k", type=int, default=64, help="samples per prompt")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for run in args.runs:
        print(json.dumps(measure(run, args.n, args.k, args.seed)))


if __name__ == "__main__":
    main()
