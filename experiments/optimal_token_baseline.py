"""Optimal Token Baseline (verl; https://richardli.xyz/optimal-token-baseline) on the default task.

The default run's setting (``experiments/bases/baselines.py``: ``small`` model, basic_arithmetic,
120 SFT steps, 1100 RL steps of 16 prompts x 8 samples, lr 5e-5) with the objective swapped to
``optimal_token_baseline`` (the optimal token baseline (a per-token group baseline weighted by the accumulated squared score norm 1 - 2 pi + sum pi^2; one extra forward pass per step gives sum_v pi_old(v)^2 for every completion token); the defaults of ``jaxrl_llm/algorithms/optimal_token_baseline.py``). Compare with the default
run (GRPO).

Command:
    jaxrl-llm train optimal_token_baseline
    jaxrl-llm plot runs/optimal_token_baseline runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: about the default run's (~8-9 min alone on the 2 cores) plus one forward pass over the batch per step.

Expected result: not measured yet for this file; the default run's GRPO gives 43.4% -> 78.9% greedy
held-out accuracy in this setting (experiments/default.py). A method that trains should end well
above its SFT start; report the measured numbers here when the run is made.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("optimal_token_baseline", "optimal_token_baseline")
