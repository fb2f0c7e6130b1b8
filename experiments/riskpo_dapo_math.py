"""RiskPO with the settings of its DAPO-Math script, in the family-A learning regime.

The default RiskPO run (``riskpo.py``, the MATH script's settings) uses the natural baseline
``g_R = clip(X, q_d, q_u) - q_u <= 0``, so every advantage is <= 0. This run takes the DAPO-Math
script's three settings explicitly: ``beta_upper = 0.8``, ``g_R = clip(X, q_d, q_u) - q_d >= 0``
and its ``sum_mean`` credit (each completion gets a share of its paper's advantage in proportion to
``R_i - mu_q``, so the sign varies within a question). Everything else as in ``riskpo.py``.

Command:
    jaxrl-llm train riskpo_dapo_math
    python experiments/results/family_a_sweep.py --out runs/family_a --only riskpo_dapo_math:0

Hardware: the project's 2-core CPU machine, f32. Time: ~400 s.

Expected result, measured once (seed 0, 2026-11-27): no collapse, but little learning. Greedy
held-out accuracy went 43.4% -> 43.8% after 400 RL steps and pass@4 reached 0.664 (GRPO: 53.5% /
59.0%, 0.703 / 0.711). Token entropy decayed more slowly than GRPO's (0.722 against 0.625 over the
last 100 steps). Details: ``experiments/results/riskpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import riskpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    algo = riskpo.Config(
        bundle_size=4, beta_upper=0.8, natural_baseline=False, credit="sum_mean", beta=family_a.LEARNING_BETA
    )
    return family_a.learning_config("riskpo_dapo_math", "riskpo", algo)
