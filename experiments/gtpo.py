"""GTPO on one- to three-term chain sums, tiny model, vs GRPO (gtpo_grpo_baseline.py).

Spec group_rlvr_and_credit.md §1, "minimal reproduction": after an SFT warm start every completion
shares the format tokens ``<answer>`` ... ``</answer>``; GRPO without KL pushes those shared tokens
down in every wrong completion, GTPO protects them (weight W in correct completions, 0 in wrong
ones) and filters high-entropy completions. Same model, task, SFT, steps, batch and seed as the
baseline; both run without KL (GTPO's default; the baseline sets beta = 0).

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train gtpo
    jaxrl-llm train gtpo_grpo_baseline
    jaxrl-llm plot runs/gtpo runs/gtpo_grpo_baseline

Measures: ``gtpo/conflict_logprob`` (mean sampler log-prob of the conflict tokens, the shared
format tokens) and ``entropy`` over training, plus held-out accuracy. The GRPO run logs entropy;
the format-token log-probability of both runs is measured by
``experiments/gtpo_measure.py`` (results: ``experiments/results/gtpo.md``).
"""

from jaxrl_llm.algorithms import gtpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)


def get_config() -> Config:
    return Config(
        name="gtpo",
        seed=0,
        algorithm="gtpo",
        algo=gtpo.Config(),
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
