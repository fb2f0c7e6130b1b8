"""RiskPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget
(``experiments/bases/family_a.py``, ``MIXED_DIFFICULTY``).

Command (run sequentially):
    jaxrl-llm train riskpo
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/riskpo runs/copo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 402 s measured (GRPO baseline 428 s), on the 2 cores shared with other jobs (load average
13-15).

What it measures (spec group_rlvr_and_credit.md §9): held-out pass@k (k = 8) against pass@1 and
greedy accuracy (RiskPO's claim: pass@k at least GRPO's), the policy entropy over training
(``entropy``; RiskPO should decay it more slowly), and the quantiles used / tracked.
Settings: the paper's defaults (alpha 0.2, beta 0.8, w 1.5, natural baseline, std credit,
bundle quantiles as the released runs used, the tracker in the algorithm state), except
``bundle_size = 4`` so that the 8 prompts of a step form two full bundles (5 would leave a bundle
of 3). Everything else is the shared baseline run.

Expected result: measured once (seed 0), the claimed effect does not appear at this scale: RiskPO
drives held-out greedy accuracy, pass@1 and pass@8 to 0 (from 8.6%, 4.3% and 28%) while GRPO keeps
pass@8 at 0.20; its reward falls from 0.072 to 0.003 (mean of the first / last 5 steps) and its
entropy rises 0.26 -> 0.39 with it. Details: ``experiments/results/riskpo.md``.
"""

from jaxrl_llm.algorithms import riskpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.MIXED_DIFFICULTY, "riskpo", "riskpo", riskpo.Config(bundle_size=4))
