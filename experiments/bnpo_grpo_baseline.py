"""GRPO baseline for bnpo.py: the same run (``experiments/bases/family_a.py``, ``BNPO``), GRPO's
group z-score advantage with BNPO's loss settings (eps_low 0.2, eps_high 0.28, beta 0,
seq-mean-token-sum), so only the normalizer differs. See bnpo.py for what is measured.

Command:
    jaxrl-llm train bnpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 260 s measured, on the 2 cores shared with other jobs.

Expected result: measured once (seed 0), ``grad_norm`` mean 12.05, std 10.23 (CV 0.85) over the 40
steps, entropy drifting up from 0.33 to 1.61 (first / last 10 steps), held-out greedy accuracy
7.0% -> 0% with maximum-length completions. Details: ``experiments/results/bnpo.md``.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    algo = grpo.Config(beta=0.0, eps_low=0.2, eps_high=0.28, aggregation="seq_mean_token_sum")
    return family_a.config(family_a.BNPO, "bnpo_grpo_baseline", "grpo", algo)
