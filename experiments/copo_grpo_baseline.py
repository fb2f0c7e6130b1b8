"""GRPO baseline for copo.py, riskpo.py and hapo.py: the same run (model, task, SFT warm start, steps,
prompts x samples, optimizer, seed, no KL: ``experiments/bases/family_a.py``, ``MIXED_DIFFICULTY``),
GRPO objective (paper defaults except ``beta = 0``).

The three family-A comparisons of COPO, RiskPO and HAPO share this one baseline: their experiment
files differ from it only in ``name``, ``algorithm`` and ``algo``. Task: reasoning-gym chain sums of
2-4 one-digit terms, easier (two terms) and harder (four terms) prompts mixed. After the SFT warm
start the tiny model is right on ~9% of held-out prompts (greedy), so over half the groups are
all-equal (mostly all-wrong): the regime where COPO's global signal and RiskPO's risk weighting
are supposed to matter. ``beta = 0`` because none of the three methods uses a KL term (their
papers' scripts run without one); the baseline then differs from them only in the objective.
An earlier setting (1-2 digit terms, lr 3e-4, 150 SFT steps) left the SFT model at 4% and GRPO
drove it to 0%, so it was replaced by this one before any method was run.

Command:
    jaxrl-llm train copo_grpo_baseline
See copo.py / riskpo.py / hapo.py for what each comparison measures.

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 428 s measured, on the 2 cores shared with other jobs (load average 13-15).

Expected result: measured once (seed 0), 56% of groups all-equal (``frac_zero_std_groups``), reward
0.066 -> 0.048 (mean of the first / last 5 steps), held-out greedy accuracy 8.6% -> 3.1% and
pass@8 0.28 -> 0.20. Details: ``experiments/results/copo.md``, ``riskpo.md``, ``hapo.md``.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.MIXED_DIFFICULTY, "copo_grpo_baseline", "grpo", grpo.Config(beta=0.0))
