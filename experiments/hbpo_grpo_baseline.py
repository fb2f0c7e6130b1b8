"""GRPO baseline for hbpo.py: the same model, task, SFT warm start, steps, batch (8 x 8) and seed
(``experiments/bases/family_a.py``, ``HBPO``), GRPO objective (paper defaults, beta = 0.04) on the
plain correctness reward (no budgets). See hbpo.py for what is measured.

Command:
    jaxrl-llm train hbpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 89.5 s measured, on the 2 cores shared with other jobs.

Expected result: measured once (seed 0), completions stay at ~21 tokens, about 60% of groups are
all-equal (``frac_zero_std_groups``), held-out greedy accuracy 4.7% -> 1.6%.
Details: ``experiments/results/hbpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.config(family_a.HBPO, "hbpo_grpo_baseline", "grpo", grpo.Config())
