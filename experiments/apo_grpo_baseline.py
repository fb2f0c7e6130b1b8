"""GRPO baseline for apo.py: identical run (model, task, SFT, steps, batch, seed, beta = 0.04), GRPO objective.

See apo.py for the command and what is measured.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig, SFTConfig, TaskConfig,
                              TrainConfig, CheckpointConfig)


def get_config() -> Config:
    return Config(
        name="apo_grpo_baseline",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(beta=0.04),
        model=ModelConfig(name="tiny"),
        task=TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
                        max_prompt_len=128),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=30, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=64, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
