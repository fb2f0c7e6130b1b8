"""GRPO baseline for hbpo.py: the same model, task, SFT warm start, steps, batch (8 x 8) and seed,
GRPO objective on the plain correctness reward (no budgets). See hbpo.py for what is measured.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)


def get_config() -> Config:
    return Config(
        name="hbpo_grpo_baseline",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(),
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
