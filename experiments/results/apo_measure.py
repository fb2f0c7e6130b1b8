"""Measures APO's claimed effects on finished runs, with the SAME procedure for every run.

For each run directory: restore its final checkpoint (policy and frozen reference), sample ``k``
completions for each of ``n`` held-out prompts at temperature 1, score them with the task's
reward, and report accuracy, mean generated tokens of wrong and of correct completions, and the
per-token KL to the reference, ``mean_t k3(log pi, log pi_ref)`` over the sampled tokens (the
estimator both objectives regularize with).

    python experiments/results/apo_measure.py runs/family_a/apo_s0 runs/family_a/family_a_grpo_s0 --n 64 --k 8
"""

import argparse
import json
import pathlib

import jax
import numpy as np

from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as config_lib
from jaxrl_llm import train as train_lib
from jaxrl_llm.ops import kl


def measure(run_dir: pathlib.Path, n: int, k: int, seed: int) -> dict[str, float]:
    cfg = config_lib.from_dict(json.loads((run_dir / "config.json").read_text()))
    tr = train_lib.Trainer(cfg)
    ckpt = checkpoint_lib.Checkpointer(run_dir / "checkpoints", cfg.checkpoint.max_to_keep, False)
    restored = ckpt.restore(tr.restore_target)
    if restored is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}/checkpoints")
    step, state, meta = restored
    tr.load(state, meta)
    ckpt.close()
    examples = tr.task.eval_examples(n)
    prompt_tokens, prompt_mask = tr.policy.encode_prompts(examples)
    out = tr.policy.generate(prompt_tokens, prompt_mask, jax.random.key(seed), k)
    rows = [e for e in examples for _ in range(k)]
    rewards, _ = tr.rewards.score(tr.policy.decode(out["tokens"], out["lengths"]), rows)
    rewards = np.asarray(rewards, np.float32)
    correct = rewards >= cfg.eval.correct_threshold
    lengths = out["lengths"].astype(np.float64)
    tokens = np.concatenate([out["prompt_tokens"], out["tokens"]], axis=1)
    attention = np.concatenate([out["prompt_mask"].astype(np.float32), out["mask"]], axis=1)
    t = out["tokens"].shape[1]
    lp = tr.policy.logprobs(tr.policy.params, tokens, attention, t)
    ref_params = tr.state.ref_params if tr.state.ref_params is not None else tr.policy.params
    ref = tr.policy.logprobs(ref_params, tokens, attention, t)
    m = out["mask"]
    k3 = np.asarray(kl.k3(lp, ref))
    return {
        "step": step,
        "accuracy": float(correct.mean()),
        "len_wrong": float(lengths[~correct].mean()) if (~correct).any() else float("nan"),
        "len_correct": float(lengths[correct].mean()) if correct.any() else float("nan"),
        "kl_k3_per_token": float((k3 * m).sum() / m.sum()),
        "num_samples": int(len(rewards)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    for run in args.runs:
        print(json.dumps({"run": str(run), **measure(run, args.n, args.k, args.seed)}), flush=True)


if __name__ == "__main__":
    main()
