"""Online DPO (https://arxiv.org/abs/2402.04792; TRL's OnlineDPOTrainer) on the default task.

TRL's setting: K = 2 samples per prompt from the current policy, the judge (here the task's
verifier) picks the chosen one, the DPO loss with beta = 0.1. To spend the default run's sampling
budget (128 samples per step) it draws 64 prompts x 2 samples; pairs the verifier cannot separate
(both right or both wrong) count in no loss. Otherwise the default run's setting (``small`` model,
basic_arithmetic, 120 SFT steps, 1100 RL steps, lr 5e-5). Compare with the default run (GRPO) and
``experiments/dpo.py`` (best vs worst of 8).

Command:
    jaxrl-llm train online_dpo
    jaxrl-llm plot runs/online_dpo runs/dpo runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: not measured yet (the first run of this file is to be made).
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("online_dpo", "online_dpo", prompts_per_step=64, group_size=2)
