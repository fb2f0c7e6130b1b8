"""BNPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2506.02864 (method file: ``jaxrl_llm/algorithms/bnpo.py``). BNPO normalizes rewards with a Beta distribution whose
parameters it tracks during training (algorithm state, checkpointed), in place of GRPO's group
z-score. It claims lower gradient variance. Paper defaults, plus the regime's KL weight 0.04
(the paper uses none).

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train bnpo

Hardware: the project's 2-core CPU machine, f32. Time: 392 s (another job on the machine).

Expected result, measured once (seed 0, 2026-11-27): greedy held-out accuracy 43.4% -> 62.1%
after 400 RL steps, pass@4 0.762. The GRPO runs reached 53.5% / 59.0% and 0.703 / 0.711, within
noise. The gradient norm's spread across steps matched GRPO's (std / mean 0.54 against 0.53): the
lower variance did not appear. Details: ``experiments/results/bnpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import bnpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("bnpo", "bnpo", bnpo.Config(beta=family_a.LEARNING_BETA))
