"""GRPO baseline for gtpo.py: identical run (model, task, SFT, steps, batch, seed), GRPO objective.

The objective is GRPO with beta = 0 (GTPO has no KL either), expressed through GTPO's module with
every GTPO difference switched off: conflict_mode = "none" (lambda = 1), gamma = 0 (no entropy shift),
tau_H = inf (no entropy filter), std_normalize = True (GRPO's z-score). With one update per batch
its gradient is GRPO's exactly (tests/test_algorithms_gtpo.py::test_grpo_settings_reproduce_grpo),
and it logs the same conflict-token metrics (``gtpo/conflict_logprob``) as the GTPO run, so the
format-token log-probability is measured identically in both. See gtpo.py for the command.
"""

from jaxrl_llm.algorithms import gtpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

GRPO_VIA_GTPO = gtpo.Config(conflict_mode="none", gamma=0.0, tau_h=float("inf"), entropy_gate="code", std_normalize=True)


def get_config() -> Config:
    return Config(
        name="gtpo_grpo_baseline",
        seed=0,
        algorithm="gtpo",
        algo=GRPO_VIA_GTPO,
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
