"""Clip-Cov (https://arxiv.org/abs/2505.22617) on the default task.

The default run's setting (``experiments/bases/baselines.py``: ``small`` model, basic_arithmetic,
120 SFT steps, 1100 RL steps of 16 prompts x 8 samples, lr 5e-5) with the objective swapped to
``clip_cov`` (PPO clip plus a detached gradient on the 0.02% of tokens with the largest advantage/log-prob covariance; the defaults of ``jaxrl_llm/algorithms/clip_cov.py``). Compare with the default
run (GRPO).

Command:
    jaxrl-llm train clip_cov
    jaxrl-llm plot runs/clip_cov runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: about the default run's (~8-9 min alone on the 2 cores).

Expected result: not measured yet for this file; the default run's GRPO gives 43.4% -> 78.9% greedy
held-out accuracy in this setting (experiments/default.py). A method that trains should end well
above its SFT start; report the measured numbers here when the run is made.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("clip_cov", "clip_cov")
