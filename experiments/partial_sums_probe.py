"""Why outcome-only GRPO loses accuracy on the suite's ``partial_sums``: does a right total come
from right steps?

For a suite run directory this samples ``--samples`` completions (temperature 1, the rule's) for
each of ``--prompts`` training prompts, from the run's SFT start and from its newest checkpoint,
and prints for each policy:

  P(correct)                    the final answer alone (``tasks.suite.answer_correct``)
  P(steps valid)                every scratchpad line right (``scratchpad_valid == 1``)
  step score                    mean ``scratchpad_valid`` (the fraction of right lines)
  P(steps valid | correct)      how often the outcome reward pays for a right derivation
  P(correct | steps valid)      how often a right derivation ends in the right total
  held-out P(correct)           the same sampling on ``--prompts`` held-out prompts
  held-out greedy accuracy      the suite's accuracy, on the same held-out prompts

The first five are on training prompts, the ones RL sees.

An outcome reward reinforces the whole completion it pays for. When most paid completions reach
the right total through wrong lines (a low P(steps valid | correct)), it trains the wrong lines
too; the step score falls, and the greedy answer with it.

    python experiments/partial_sums_probe.py runs/suite/grpo/partial_sums/s0

Hardware and time: 2-core AMD EPYC CPU, ~3 min for two policies x 128 prompts x 8 samples.
"""

import argparse
import json
import pathlib
import sys

import jax
import numpy as np

from jaxrl_llm import config as config_lib
from jaxrl_llm import tasks
from jaxrl_llm.evaluate import restore_run
from jaxrl_llm.policy import Policy
from jaxrl_llm.tasks.suite import answer_correct, scratchpad_valid


def agreement(policy: Policy, task, num_prompts: int, samples: int, temperature: float, seed: int) -> dict[str, float]:
    """The outcome / process statistics of the module docstring for one policy."""
    correct, steps, greedy, held_out_sampled = [], [], [], []
    train_rows = [task.train_example(i) for i in range(num_prompts)]
    eval_rows = task.eval_examples(num_prompts)
    for start in range(0, num_prompts, 32):
        chunk = train_rows[start : start + 32]
        tokens, mask = policy.encode_prompts(chunk)
        out = policy.generate(tokens, mask, jax.random.key(seed + start), samples, temperature=temperature)
        rows = [x for x in chunk for _ in range(samples)]
        for text, x in zip(policy.decode(out["tokens"], out["lengths"]), rows, strict=True):
            correct.append(answer_correct(text, x))
            steps.append(scratchpad_valid(text, x))
        held_out = eval_rows[start : start + 32]
        tokens, mask = policy.encode_prompts(held_out)
        out = policy.generate(tokens, mask, jax.random.key(seed), 1, greedy=True)
        greedy += [answer_correct(t, x) for t, x in zip(policy.decode(out["tokens"], out["lengths"]), held_out)]
        out = policy.generate(tokens, mask, jax.random.key(seed + start), samples, temperature=temperature)
        rows = [x for x in held_out for _ in range(samples)]
        held_out_sampled += [answer_correct(t, x) for t, x in zip(policy.decode(out["tokens"], out["lengths"]), rows)]
    r, s = np.asarray(correct), np.asarray(steps)
    valid = s == 1.0
    return {
        "P(correct)": float(r.mean()),
        "P(steps valid)": float(valid.mean()),
        "step score": float(s.mean()),
        "P(steps valid | correct)": float(valid[r].mean()) if r.any() else float("nan"),
        "P(correct | steps valid)": float(r[valid].mean()) if valid.any() else float("nan"),
        "held-out P(correct)": float(np.mean(held_out_sampled)),
        "held-out greedy accuracy": float(np.mean(greedy)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("run_dir", help="a suite run on suite:partial_sums (its config.json names the SFT start)")
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    run = pathlib.Path(args.run_dir)
    cfg = config_lib.from_dict(json.loads((run / "config.json").read_text()))
    if cfg.task.name != "suite:partial_sums":
        print(f"{run}: task {cfg.task.name!r}, not suite:partial_sums", file=sys.stderr)
        return 2
    task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
    policies = [("SFT start", Policy.create(cfg))]
    trained, step, _ = restore_run(cfg)
    if step is not None:
        policies.append((f"step {step}", trained))
    rows = {
        name: agreement(pol, task, args.prompts, args.samples, cfg.sampling.temperature, args.seed)
        for name, pol in policies
    }
    keys = list(next(iter(rows.values())))
    print("| policy | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, stats in rows.items():
        print(f"| {name} | " + " | ".join(f"{stats[k]:.3f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
