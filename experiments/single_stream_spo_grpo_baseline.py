"""GRPO baseline for single_stream_spo.py: the same 256-prompt pool, model, SFT warm start, steps,
seed and generation budget (8 prompts x 8 samples = 64 per step; ``experiments/bases/family_a.py``,
``SINGLE_STREAM_SPO``), GRPO objective with its paper defaults. See single_stream_spo.py for what
is measured.

Command:
    jaxrl-llm train single_stream_spo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 141 s measured, on the 2 cores shared with other jobs (load average 5-7).

Expected result: measured once (seed 0), 44% of samples sit in all-equal groups and get zero
advantage (52.5% over the first 10 steps, 35% over the last 10); 60 samples/s; held-out greedy
accuracy 10.2% -> 4.7%. Details: ``experiments/results/single_stream_spo.md``.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.SINGLE_STREAM_SPO, "single_stream_spo_grpo_baseline", "grpo", grpo.Config())
