"""P3O (https://arxiv.org/abs/2310.00212) on the default task: two samples per prompt, the
pairwise clipped sequence-ratio objective on the reward difference (KL-in-reward beta = 0.05).

P3O's K = 2 samples per prompt; to spend the default run's sampling budget (128 samples per step)
it draws 64 prompts x 2. Otherwise the default run's setting (``small`` model, basic_arithmetic,
120 SFT steps, 1100 RL steps, lr 5e-5). ``--set algo.clip=joint`` runs V2 (ratio rho1 / rho2).
The paper's claim measured here: invariance to a reward translation (see
experiments/results/p3o.md for the gradient-level measurement).

Command:
    jaxrl-llm train p3o
    jaxrl-llm plot runs/p3o runs/default
    python experiments/p3o.py --invariance     # the gradient-level measurement (seconds)

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: this file's own run (the default run's 1100 steps) is not measured yet.
The paper's KL-reward claim was measured on the learning suite's ``arith`` instead (400 RL steps,
64 x 2 samples, 3 seeds against online DPO; ~20 min a run beside another job): commands, figures
and the frontier in experiments/results/p3o.md.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path
from flax import nnx

from jaxrl_llm import algorithms, models
from jaxrl_llm.config import Config
from jaxrl_llm.types import Rollout


def get_config() -> Config:
    return baselines.config("p3o", "p3o", prompts_per_step=64, group_size=2)


def measure_translation_invariance(seed: int = 0) -> dict[str, dict[str, float]]:
    """Gradient-level measurement of the paper's claim, on the ``tiny`` decoder (its parameters'
    gradient of each method's loss): 8 rows = 4 prompts x 2 completions of 6 random tokens, the
    rows' old log-probs perturbed (ratios != 1), rewards r in {0, 1}. For each method the relative
    change ``|g(r') - g(r)| / |g(r)|`` of the parameter gradient when r' = r + 5 (a constant) and
    r' = r + delta(x), delta ~ U[-10, 10] per prompt (P3O's tiny-reproduction offset)."""
    model, _ = models.get_model("tiny", dtype="float32", seed=seed)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(seed)
    B, T, Sp = 8, 6, 4
    vocab = int(params["embed"][...].shape[0])
    tokens = jnp.asarray(rng.integers(3, vocab, size=(B, Sp + T)), jnp.int32)
    attention = jnp.ones((B, Sp + T), jnp.float32)

    def logprobs(p):
        return models.completion_logprobs(nnx.merge(graphdef, p), tokens, attention, T, chunk_size=None)

    lp0 = np.asarray(logprobs(params))
    old = lp0 + 0.05 * rng.normal(size=lp0.shape).astype(np.float32)
    ref = old + 0.05 * rng.normal(size=lp0.shape).astype(np.float32)
    rewards = np.asarray([1, 0, 0, 1, 1, 1, 0, 1], np.float32)
    delta = np.repeat(rng.uniform(-10, 10, size=4), 2).astype(np.float32)
    base = {
        "tokens": tokens[:, Sp:],
        "mask": jnp.ones((B, T)),
        "group_ids": jnp.repeat(jnp.arange(4, dtype=jnp.int32), 2),
        "group_size": 2,
        "old_logprobs": jnp.asarray(old),
        "ref_logprobs": jnp.asarray(ref),
        "sampler_logprobs": jnp.asarray(old),
        "chosen": jnp.asarray([1.0, 0.0] * 4),
        "values": jnp.zeros((B, T)),
    }

    def grad(name, cfg, r):
        algo = algorithms.get(name)
        batch, _ = algorithms.make_batch(algo, Rollout.from_mapping({**base, "rewards": jnp.asarray(r)}), cfg)
        g = jax.grad(lambda p: algo.loss(logprobs(p), batch, cfg)[0])(params)
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])

    methods = {
        "p3o (V1, separate clip)": ("p3o", algorithms.get("p3o").Config(clip="separate")),
        "p3o (V2, joint clip)": ("p3o", algorithms.get("p3o").Config(clip="joint")),
        "grpo": ("grpo", algorithms.get("grpo").Config()),
        "ppo (critic V=0, whitened GAE)": ("ppo", algorithms.get("ppo").Config()),
        "ppo (critic V=0, not whitened)": ("ppo", algorithms.get("ppo").Config(whiten_advantages=False)),
    }
    out = {}
    for label, (name, cfg) in methods.items():
        g0 = grad(name, cfg, rewards)
        rel = lambda r: float(np.linalg.norm(grad(name, cfg, r) - g0) / np.linalg.norm(g0))
        out[label] = {
            "r + 5": rel(rewards + 5.0),
            "r + delta(x)": rel(rewards + delta),
            "|g|": float(np.linalg.norm(g0)),
        }
    return out


if __name__ == "__main__":
    if "--invariance" in sys.argv:
        print(json.dumps(measure_translation_invariance(), indent=1))
