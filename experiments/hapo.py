"""HAPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2509.16591 (method file: ``jaxrl_llm/algorithms/hapo.py``). HAPO samples each token at a temperature set by its entropy
(the sampler's ``temperature_rule`` hook, from statistics of the previous step). It also uses a
token-level group average, differential advantage redistribution and asymmetric adaptive
clipping. Paper defaults, except ``dynamic_sampling = False`` (DAPO's filter would spend extra
generation rounds and break the equal budget), plus the regime's KL weight 0.04.

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train hapo

Hardware: the project's 2-core CPU machine, f32. Time: 392 s (another job on the machine).

Expected result, two seeds (2026-11-27). Seed 0: greedy held-out accuracy 43.4% -> 61.3% after 400 RL
steps (GRPO: 53.5% / 59.0%, within noise) and pass@4 0.793 (GRPO: 0.703 / 0.711). Token entropy
decayed as under GRPO. Seed 1: 12.9% -> 38.7% (GRPO 26.2%), pass@4 0.551 (GRPO 0.398), and higher
entropy over the last 100 steps (0.879 against 0.798). Details: ``experiments/results/hapo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import hapo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("hapo", "hapo", hapo.Config(dynamic_sampling=False, beta=family_a.LEARNING_BETA))
