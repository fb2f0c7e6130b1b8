"""GRPO baseline for dcpo.py: identical run (model, the same 64-prompt pool, SFT, steps, batch,
seed), GRPO objective with beta = 0 (DCPO has no KL). See dcpo.py for the command and what is
measured."""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

NUM_EVAL, NUM_TRAIN = 128, 64  # as in dcpo.py
TASK = TaskConfig(name="rg:chain_sum",
                  kwargs={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1,
                          "size": NUM_EVAL + NUM_TRAIN, "num_eval": NUM_EVAL},
                  max_prompt_len=128)


def get_config() -> Config:
    return Config(
        name="dcpo_grpo_baseline",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(beta=0.0),
        model=ModelConfig(name="tiny"),
        task=TASK,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=40, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=128, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
