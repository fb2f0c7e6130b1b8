"""GRPO baseline for single_stream_spo.py: the same 256-prompt pool, model, SFT warm start, steps,
seed and generation budget (8 prompts x 8 samples = 64 per step), GRPO objective with its paper
defaults. See single_stream_spo.py for the command and what is measured.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

POOL = 256
EVAL = 128


def get_config() -> Config:
    return Config(
        name="single_stream_spo_grpo_baseline",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(),
        model=ModelConfig(name="tiny"),
        task=TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
                                                     "size": POOL + EVAL, "num_eval": EVAL},
                        max_prompt_len=128),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=30, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=EVAL, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
