"""BNPO on two- to three-term one-digit chain sums, tiny model, vs GRPO (bnpo_grpo_baseline.py).

Spec group_rlvr_and_credit.md §7, "minimal reproduction": BNPO's Beta normalizer is the
variance-optimal choice, so the per-step gradient norm should vary less than GRPO's. The baseline
shares BNPO's loss settings (clip 0.2 / 0.28, no KL, seq-mean-token-sum): only the advantage
normalization differs. Same model, task, SFT, steps, batch and seed (``experiments/bases/family_a.py``,
``BNPO``).

Command (run sequentially):
    jaxrl-llm train bnpo
    jaxrl-llm train bnpo_grpo_baseline
    jaxrl-llm plot runs/bnpo runs/bnpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 288 s measured for this run (260 s for the baseline), on the 2 cores shared with other jobs.

Measures: the variance (and coefficient of variation) of ``grad_norm`` over RL steps, the fitted
``bnpo/alpha`` and ``bnpo/beta`` trajectory, reward and held-out accuracy.

Expected result: the paper's variance reduction does not appear at this scale (one seed,
measured): the variance of ``grad_norm`` is far lower than GRPO's (0.216 vs 104.6) only because
BNPO's advantages are much smaller (``adv/std`` 0.05 vs 0.72); relative to its mean it varies
more (CV 1.31 vs 0.85). BNPO's reward collapses to ~0 after step 23, and both runs end at 0
held-out accuracy (from 7.0%). Details: ``experiments/results/bnpo.md``.
"""

from jaxrl_llm.algorithms import bnpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.BNPO, "bnpo", "bnpo", bnpo.Config())
