"""GRPO baseline of ``experiments/arpo_gui.py``: the same file, rows, SFT and budget with
``algo.replay=False`` (no buffered success replaces a row; R = eval + 0.5 format, GRPO advantages,
clip 0.2 / 0.3, token-mean, no KL).

Command:
    jaxrl-llm train arpo_gui_grpo_baseline --set seed=S --set name=arpo_gui_grpo_sS
"""

from arpo_gui import config  # load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return config(replay=False)
