"""GRPO baseline for apo.py: the same run (model, task, SFT warm start, steps, prompts x samples,
seed, beta = 0.04: ``experiments/bases/family_a.py``, ``APO``), GRPO objective. See apo.py for
what is measured.

Command:
    jaxrl-llm train apo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: about 410 s measured (~150 s SFT, then ~4.2 s per RL step), on the 2 cores shared with
other jobs.

Expected result: measured once (seed 0), GRPO stays stable (KL 0.057 -> 0.069, mean of the first /
last 10 steps; completions ~21 tokens) but does not learn from a 4.7% start: held-out greedy
accuracy 4.7% -> 0%, pass@4 0.19 -> 0.09. Details: ``experiments/results/apo.md``.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.APO, "apo_grpo_baseline", "grpo", grpo.Config(beta=0.04))
