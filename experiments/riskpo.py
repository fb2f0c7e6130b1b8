"""RiskPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2510.00911 (method file: ``jaxrl_llm/algorithms/riskpo.py``). RiskPO maximizes a mixed value-at-risk of bundle scores
(``bundle_size`` questions per bundle, the k-th completions of a bundle's questions form a
"paper") instead of the mean reward, with quantiles tracked in the algorithm state. It claims
better pass@k. The MATH script's settings (``riskpo.Config``'s defaults): alpha 0.2, beta 0.9,
w 1.5, natural baseline, ``std`` credit, bundle quantiles, with ``bundle_size = 4`` (4 bundles of the
16 prompts) and the regime's KL weight 0.04. ``riskpo_dapo_math.py`` runs the DAPO-Math script's
beta 0.8, baseline and credit. The measurement below was taken with beta 0.8 (the default until
2026-12, a mix of the two scripts); it awaits a rerun at 0.9.

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train riskpo

Hardware: the project's 2-core CPU machine, f32. Time: 402 s (another job on the machine).

Expected result, measured once (seed 0, 2026-11-27): greedy held-out accuracy 43.4% -> 22.3% and
pass@4 0.617 -> 0.312 after 400 RL steps, where GRPO reached 53.5% / 59.0% and 0.703 / 0.711.
With the natural baseline every advantage is <= 0 (mean -1.35, max 0), so each step pushes down
every sampled completion, the correct ones included. The claimed pass@k gain did not appear.
Details: ``experiments/results/riskpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import riskpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("riskpo", "riskpo", riskpo.Config(bundle_size=4, beta=family_a.LEARNING_BETA))
