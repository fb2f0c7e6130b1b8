"""GTPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2508.03772 (method file: ``jaxrl_llm/algorithms/gtpo.py``). GRPO lowers the tokens that positive and negative completions
share (the conflict tokens: format tags, stop token, shared leading digits) in every wrong
completion. GTPO protects them (weight W in correct completions, 0 in wrong ones) and filters
high-entropy completions. Paper defaults (W = 2, gamma = 0.1, tau_H = 0.7, paper gate) plus the
regime's KL weight 0.04, the one change from the paper (it drops the KL), so that the pair
differs only in GTPO's delta.

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train gtpo
    jaxrl-llm train gtpo_grpo_baseline

Hardware: the project's 2-core CPU machine, f32. Time: 388 s (another job on the machine).

Expected result, measured once (seed 0, 2026-11-27): greedy held-out accuracy 43.4% -> 61.7%
after 400 RL steps, against 59.0% (gtpo_grpo_baseline) and 53.5% (family_a_grpo). Those two GRPO
runs differ only in float rounding, so the gap is within noise. The conflict-token log-prob is
-0.068 (GTPO) against -0.070 (GRPO): with the KL anchor and lr 5e-5, GRPO does not push the
shared tokens down here. Details: ``experiments/results/gtpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import gtpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("gtpo", "gtpo", gtpo.Config(beta=family_a.LEARNING_BETA))
