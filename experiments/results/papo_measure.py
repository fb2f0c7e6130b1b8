"""Measures PAPO's perception claim on finished runs of ``experiments/papo.py``, the same way for
every run: restore the run's final checkpoint, answer the held-out questions greedily with their
pictures and again with every picture black (blind), and split accuracy by whether the question
needs the picture (``metadata["needs_image"]``) or the hint answers it. A policy that reads the
picture loses accuracy when blinded on the questions that need it; one that rides the text prior
does not.

    python experiments/results/papo_measure.py runs/papo/papo_s0 runs/papo/papo_grpo_s0 ... [--json out.json]
"""

import argparse
import dataclasses
import json
import pathlib

import jax
import numpy as np

from jaxrl_llm import config as config_lib
from jaxrl_llm import evaluate, tasks
from jaxrl_llm.tasks.images import answer_reward


def greedy_hits(policy, examples) -> np.ndarray:
    prompt_tokens, prompt_mask = policy.encode_prompts(examples)
    out = policy.generate(
        prompt_tokens, prompt_mask, jax.random.key(0), 1, greedy=True, images=policy.prompt_images(examples)
    )
    texts = policy.decode(out["tokens"], out["lengths"])
    return np.asarray([answer_reward(t, e) for t, e in zip(texts, examples)])


def measure(run_dir: pathlib.Path) -> dict[str, float]:
    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    policy, step = evaluate.load_policy(cfg, run_dir)
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}/checkpoints")
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    examples = task.eval_examples(cfg.eval.num_examples)
    blind = [
        dataclasses.replace(e, metadata={**e.metadata, "image": np.zeros_like(e.metadata["image"])}) for e in examples
    ]
    need = np.asarray([e.metadata["needs_image"] for e in examples])
    seen, dark = greedy_hits(policy, examples), greedy_hits(policy, blind)
    return {
        "step": step,
        "acc": float(seen.mean()),
        "acc/needs_image": float(seen[need].mean()),
        "acc/text_answerable": float(seen[~need].mean()),
        "blind/needs_image": float(dark[need].mean()),
        "blind/text_answerable": float(dark[~need].mean()),
        "blind_drop/needs_image": float(seen[need].mean() - dark[need].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=pathlib.Path)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    results = {}
    for run in args.runs:
        results[str(run)] = measure(run)
        print(run, {k: round(v, 3) for k, v in results[str(run)].items()}, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
