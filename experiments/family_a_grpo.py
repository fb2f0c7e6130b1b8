"""GRPO in the family-A learning regime: the shared baseline of every family-A method but HBPO.

The default run's GRPO (``experiments/bases/family_a.py``, ``learning_config``): ``small`` model,
reasoning-gym basic_arithmetic as in the default run, 120 SFT steps, then 400 RL steps of 16
prompts x 8 samples, Adam lr 5e-5, KL weight 0.04, held-out evaluation every 100 steps.
The sweep runs it with seeds 0 and 1.

Command:
    jaxrl-llm train family_a_grpo --set seed=0
    python experiments/results/family_a_sweep.py --out runs/family_a   # the whole comparison

Hardware: the project's 2-core CPU machine, f32. Time: 470-580 s (other jobs on the machine).

Expected result (2026-11-27): greedy held-out accuracy 43.4% -> 53.5% after 400 RL steps with
seed 0 (44.1 / 49.6 / 56.3 / 53.5% at RL steps 100-400), and 12.9% -> 26.2% with seed 1. The
seed drives SFT as well, so the two start far apart. Details: ``experiments/results/family_a.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("family_a_grpo", "grpo", grpo.Config(beta=family_a.LEARNING_BETA))
