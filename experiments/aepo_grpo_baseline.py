"""Single-answer GRPO baseline of ``experiments/aepo.py``: the same task, SFT and budget, with the
+1/-1 first-point reward (``reward="single"``) and GRPO (token-mean, no reference model).

Command:
    jaxrl-llm train aepo_grpo_baseline --set seed=0 --set name=aepo_grpo_s0
"""

from aepo import config  # load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return config("grpo")
