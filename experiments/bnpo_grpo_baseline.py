"""GRPO baseline for bnpo.py: identical run, GRPO's group z-score advantage with BNPO's loss settings
(eps_low 0.2, eps_high 0.28, beta 0, seq-mean-token-sum), so only the normalizer differs.
See bnpo.py for the command and what is measured."""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)


def get_config() -> Config:
    return Config(
        name="bnpo_grpo_baseline",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(beta=0.0, eps_low=0.2, eps_high=0.28, aggregation="seq_mean_token_sum"),
        model=ModelConfig(name="tiny"),
        task=TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1},
                        max_prompt_len=128),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=40, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=128, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
