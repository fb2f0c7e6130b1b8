"""IPO (https://arxiv.org/abs/2310.12036) on the default task, pairs from the verifiable reward.

As ``experiments/dpo.py`` (best vs worst of K = 8 samples per prompt, judged by the task's
verifier; the default run's ``small`` model, basic_arithmetic, 120 SFT steps, 1100 RL steps of 16
prompts, lr 5e-5) with the objective swapped to ``ipo`` (tau = beta = 0.1, length-averaged
log-ratios as TRL's ``DPOTrainer``). IPO regresses the margin onto 1/(2 tau) instead of pushing it
to infinity, the difference that matters with deterministic (verifier) preferences.

Command:
    jaxrl-llm train ipo
    jaxrl-llm plot runs/ipo runs/dpo runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: not measured yet (the first run of this file is to be made).
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("ipo", "ipo")
