"""GRPO baseline of ``experiments/papo.py``: the same run with GRPO (token-mean, no reference).

Command:
    jaxrl-llm train papo_grpo_baseline --set seed=0 --set name=papo_grpo_s0
"""

from papo import config  # load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return config("grpo")
