"""The default run: ``jaxrl-llm train`` with no arguments runs exactly this config.

A from-scratch ``small`` model (4 layers, d=256, 3.0M parameters, character-level ChatML
tokenizer) learns reasoning-gym ``basic_arithmetic`` (two one-digit operands, + and -, e.g.
"Calculate 7 - 9." -> "-2"): first an SFT warm start on generated demonstrations (the generator's
reference answer, then the stop token; prompt tokens masked), then GRPO (group size 8, 16 prompts
per step, KL weight beta=0.04 to the frozen SFT start) on the task's own verifier. Held-out
accuracy (greedy; and sampled pass@1 / pass@4) is measured on 256 held-out generator indices
after SFT, every 25 RL steps and at the end.

Command:
    jaxrl-llm train                 # the same as: jaxrl-llm train default
    jaxrl-llm plot runs/default     # curves (also written to runs/default/curves.png)

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: see the measurement in the report of issue #5 / README (wall time depends heavily on other
load on the 2 cores; the first SFT and RL steps include ~1 minute of XLA compilation each).

Expected result: printed at the end as "held-out accuracy (greedy): X% after SFT -> Y% after RL".
Note: two one-digit operands with + and - give only 200 distinct questions, so held-out generator
indices repeat questions seen in training; the comparison measures what GRPO adds over the SFT
start on the same distribution, not generalization to unseen arithmetic.
"""

from jaxrl_llm.config import default_config


def get_config():
    return default_config()
