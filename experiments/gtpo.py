"""GTPO on two- to three-term one-digit chain sums, tiny model, vs GRPO (gtpo_grpo_baseline.py).

Spec group_rlvr_and_credit.md §1, "minimal reproduction": after an SFT warm start every completion
shares the format tokens ``<answer>`` ... ``</answer>``; GRPO without KL pushes those shared tokens
down in every wrong completion, GTPO protects them (weight W in correct completions, 0 in wrong
ones) and filters high-entropy completions. Same model, task, SFT, steps, batch and seed as the
baseline (``experiments/bases/family_a.py``, ``GTPO``); both run without KL (GTPO's default; the
baseline sets beta = 0).

Command (run sequentially):
    jaxrl-llm train gtpo
    jaxrl-llm train gtpo_grpo_baseline
    jaxrl-llm plot runs/gtpo runs/gtpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 636 s measured (the baseline 359 s), on the 2 cores shared with other jobs.

Measures: ``gtpo/conflict_logprob`` (mean sampler log-prob of the conflict tokens, the shared
format tokens) and ``entropy`` over training, plus held-out accuracy. Both runs log both metrics
(the baseline runs through GTPO's module); ``experiments/results/gtpo_compare.py`` tabulates and
plots the two runs.

Expected result: measured once (seed 0), the two predicted effects appear: the shared format tokens'
log-prob stays near 0 under GTPO (-0.043 over the last 10 steps) while GRPO pushes it to -0.583,
and GTPO's entropy stays at 0.26-0.32 while GRPO's drifts to 1.79. Neither run learns the task:
both end at 0 held-out accuracy (from 7.0%) with maximum-length completions.
Details: ``experiments/results/gtpo.md``.
"""

from jaxrl_llm.algorithms import gtpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.GTPO, "gtpo", "gtpo", gtpo.Config())
