"""DPO (https://arxiv.org/abs/2305.18290) on the default task, with pairs built honestly from the
verifiable reward: each step samples K = 8 completions of 16 prompts from the current policy, the
task's verifier ranks them, and the best and worst of each prompt become a (chosen, rejected) pair
(a prompt whose samples all score the same gives no pair: its rows count in no loss). This is the
iterative ("on-policy pairs") form; on a ``preference`` task with stored pairs the same method
trains offline on them (``--set task.name=preference --set 'task.kwargs={"path": "pairs.jsonl"}'
--set sft.steps=0``).

The default run's setting (``experiments/bases/baselines.py``: ``small`` model, basic_arithmetic,
120 SFT steps, 1100 RL steps of 16 prompts x 8 samples, lr 5e-5) with the objective swapped to
``dpo`` (beta = 0.1, the reference is the SFT start). Compare with the default run (GRPO) and
``online_dpo`` / ``ipo``.

Command:
    jaxrl-llm train dpo
    jaxrl-llm plot runs/dpo runs/default

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: not measured yet (the first run of this file is to be made); a step
costs about GRPO's (the same sampling; 32 of the 128 samples enter the update).
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("dpo", "dpo")
