"""PPO with a critic (https://arxiv.org/abs/1707.06347; LLM details after Huang et al. 2024, arXiv
2403.17031) on the default task.

The default run's setting (``experiments/bases/baselines.py``: ``small`` model, basic_arithmetic,
120 SFT steps, 1100 RL steps of 16 prompts x 8 samples, lr 5e-5) with the objective swapped to
``ppo`` (a value head trained with the clipped value loss (train.critic="separate": a copy of the
policy's trunk initialised from it at RL start, a zero-initialised linear head; "shared" puts the
head on the policy's trunk), GAE(gamma=1, lambda=0.95) advantages whitened over the batch, KL to the
SFT start in the reward (beta=0.05)). Compare with the default run (GRPO).

Command:
    jaxrl-llm train ppo
    jaxrl-llm plot runs/ppo runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: not measured alone. Under equal load (a shared, overloaded 2-core machine) a PPO RL step took
~2.7x GRPO's (39 s vs 14 s: the separate critic's forward and backward passes, and its values at
sampling time), so expect ~20-25 min alone where the default run takes ~8.

Expected result: measured so far only with a shortened budget, one seed, on a loaded machine
(2026-12-05, `jaxrl-llm train ppo --set train.steps=300 --set eval.every=100`, and the same for the
default run): PPO 43.4% -> 60.9% greedy held-out accuracy (pass@1 0.247 -> 0.456, pass@4 0.617 ->
0.758); GRPO in the same setting 43.4% -> 60.9% (pass@1 0.444, pass@4 0.695). One seed each, inside
the +-6-point floor: PPO learns; it is not ranked against GRPO. The full 1100-step run is to be made.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("ppo", "ppo")
