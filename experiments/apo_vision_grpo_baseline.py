"""GRPO baseline of ``experiments/apo_vision.py``: the same run with GRPO's objective.

Command:
    jaxrl-llm train apo_vision_grpo_baseline --set seed=0 --set name=apo_vision_grpo_s0
"""

from apo_vision import config  # load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return config("grpo")
