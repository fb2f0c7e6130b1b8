"""HBPO on two-term one-digit chain sums, tiny model, vs GRPO (hbpo_grpo_baseline.py); the shared
run is ``experiments/bases/family_a.py``, ``HBPO``.

Budgets scaled to this model's completions (the paper's minimal reproduction:
budgets a fraction of L_max): 4 subgroups of 2 samples with budgets
{20, 24, 28, 32} tokens, L_max = 32 = max_new_tokens (the tokenizer is character level and the
SFT answer "<answer>N</answer>" takes ~19 tokens); reward scale and alpha as in the paper
(beta_reward = 4, alpha = 1/L_max rescaled to the shorter context). A compact budget phrase
(``<think>budget b</think>``) replaces the paper's sentence, which would cost ~45 characters.

Command (run sequentially):
    jaxrl-llm train hbpo
    jaxrl-llm train hbpo_grpo_baseline
    jaxrl-llm plot runs/hbpo runs/hbpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 91.5 s measured (the baseline 89.5 s), on the 2 cores shared with other jobs.

Uses the trainer's call of ``group_prompts`` (each group's G prompts carry their budget phrase;
one sample per prompt; ``rollout["budgets"]``). What it measures: tokens used
(``completion_len/mean``, per budget ``hbpo/len_b{b}``, ``eval/completion_len``) against held-out
accuracy.

Expected result: measured once (seed 0), the effect does not show at this scale: the budget phrase
takes the prompts out of the SFT distribution (0.1% of RL samples correct vs GRPO's 4.7%), so
every group is all-wrong, completions grow to the 32-token limit at every budget (budget 20: 20.3
-> 31.9 tokens) and held-out greedy accuracy falls 4.7% -> 0% (GRPO 4.7% -> 1.6%).
Details: ``experiments/results/hbpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import hbpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    algo = hbpo.Config(
        budgets=(20, 24, 28, 32), l_max=32, alpha=1.0 / 32, budget_template="<think>budget {budget}</think>"
    )
    return family_a.config(family_a.HBPO, "hbpo", "hbpo", algo)
