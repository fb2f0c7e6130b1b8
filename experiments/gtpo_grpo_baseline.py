"""GRPO computed through GTPO's module, in the family-A learning regime: GTPO's baseline.

Every GTPO difference is off (no conflict weighting, gamma = 0, no entropy filter, z-scored
advantages), which gives GRPO's gradient exactly
(``tests/test_algorithms_gtpo.py::test_grpo_settings_reproduce_grpo``) and logs GTPO's
conflict-token metric, so the two runs of the pair can be compared on it. KL weight 0.04 as in
every run of the regime.

Command:
    jaxrl-llm train gtpo_grpo_baseline

Hardware: the project's 2-core CPU machine, f32. Time: 418 s (another job on the machine).

Expected result, measured once (seed 0, 2026-11-27): greedy held-out accuracy 43.4% -> 59.0%
after 400 RL steps. ``family_a_grpo`` (the same gradient through GRPO's own module) ended at
53.5%: float rounding alone moves the final accuracy by ~5 points. Details:
``experiments/results/gtpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import gtpo
from jaxrl_llm.config import Config

GRPO_VIA_GTPO = gtpo.Config(
    beta=family_a.LEARNING_BETA,
    conflict_mode="none",
    gamma=0.0,
    tau_h=float("inf"),
    entropy_gate="code",
    std_normalize=True,
)


def get_config() -> Config:
    return family_a.learning_config("gtpo_grpo_baseline", "gtpo", GRPO_VIA_GTPO)
