"""GRPO baseline for gtpo.py: the same run (model, task, SFT, steps, batch, seed:
``experiments/bases/family_a.py``, ``GTPO``), GRPO objective.

The objective is GRPO with beta = 0 (GTPO has no KL either), expressed through GTPO's module with
every GTPO difference switched off: conflict_mode = "none" (lambda = 1), gamma = 0 (no entropy shift),
tau_H = inf (no entropy filter), std_normalize = True (GRPO's z-score). With one update per batch
its gradient is GRPO's exactly (tests/test_algorithms_gtpo.py::test_grpo_settings_reproduce_grpo),
and it logs the same conflict-token metrics (``gtpo/conflict_logprob``) as the GTPO run, so the
format-token log-probability is measured identically in both. See gtpo.py for what is measured.

Command:
    jaxrl-llm train gtpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 359 s measured, on the 2 cores shared with other jobs.

Expected result: measured once (seed 0), the format tokens' log-prob falls from -0.17 to -0.58 (mean
of the first / last 10 steps) and the entropy rises from 0.46 to 1.79; held-out greedy accuracy
7.0% -> 0% with maximum-length completions. Details: ``experiments/results/gtpo.md``.
"""

from jaxrl_llm.algorithms import gtpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


GRPO_VIA_GTPO = gtpo.Config(conflict_mode="none", gamma=0.0, tau_h=float("inf"), entropy_gate="code", std_normalize=True)


def get_config() -> Config:
    return family_a.config(family_a.GTPO, "gtpo_grpo_baseline", "gtpo", GRPO_VIA_GTPO)
