"""HBPO on two-term one-digit chain sums, tiny model, vs GRPO (hbpo_grpo_baseline.py).

Budgets scaled to this model's completions (spec group_rlvr_and_credit.md §6, "minimal
reproduction": budgets a fraction of L_max): 4 subgroups of 2 samples with budgets
{20, 24, 28, 32} tokens, L_max = 32 = max_new_tokens (the tokenizer is character level and the
SFT answer "<answer>N</answer>" takes ~19 tokens); reward scale and alpha as in the paper
(beta_reward = 4, alpha = 1/L_max rescaled to the shorter context). A compact budget phrase
(``<think>budget b</think>``) replaces the paper's sentence, which would cost ~45 characters.

Command (2-core CPU, each run a few minutes; run sequentially):
    jaxrl-llm train hbpo
    jaxrl-llm train hbpo_grpo_baseline
    jaxrl-llm plot runs/hbpo runs/hbpo_grpo_baseline

Uses the trainer's call of ``group_prompts`` (each group's G prompts carry their budget phrase;
one sample per prompt; ``rollout["budgets"]``). What it measures: tokens used
(``completion_len/mean``, per budget ``hbpo/len_b{b}``, ``eval/completion_len``) against held-out
accuracy. Results: ``experiments/results/hbpo.md``.
"""

from jaxrl_llm.algorithms import hbpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)


def get_config() -> Config:
    return Config(
        name="hbpo",
        seed=0,
        algorithm="hbpo",
        algo=hbpo.Config(budgets=(20, 24, 28, 32), l_max=32, alpha=1.0 / 32,
                         budget_template="<think>budget {budget}</think>"),
        model=ModelConfig(name="tiny"),
        task=TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
                        max_prompt_len=256),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=30, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=64, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
