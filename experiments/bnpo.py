"""BNPO on one- to three-term chain sums, tiny model, vs GRPO (bnpo_grpo_baseline.py).

Spec group_rlvr_and_credit.md §7, "minimal reproduction": BNPO's Beta normalizer is the
variance-optimal choice, so the per-step gradient norm should vary less than GRPO's. The baseline
shares BNPO's loss settings (clip 0.2 / 0.28, no KL, seq-mean-token-sum): only the advantage
normalization differs. Same model, task, SFT, steps, batch and seed.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train bnpo
    jaxrl-llm train bnpo_grpo_baseline
    jaxrl-llm plot runs/bnpo runs/bnpo_grpo_baseline

Measures: the variance (and coefficient of variation) of ``grad_norm`` over RL steps, the fitted
``bnpo/alpha`` and ``bnpo/beta`` trajectory, reward and held-out accuracy.
Results: ``experiments/results/bnpo.md``.
"""

from jaxrl_llm.algorithms import bnpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)


def get_config() -> Config:
    return Config(
        name="bnpo",
        seed=0,
        algorithm="bnpo",
        algo=bnpo.Config(),
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
