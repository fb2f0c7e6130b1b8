"""GRPO baseline for copo.py, riskpo.py and hapo.py: the same run (model, task, SFT warm start, steps,
prompts x samples, optimizer, seed, no KL), GRPO objective (paper defaults except ``beta = 0``).

The three family-A comparisons of COPO, RiskPO and HAPO share this one baseline: their experiment
files differ from it only in ``name``, ``algorithm`` and ``algo``. Task: reasoning-gym chain sums of
2-4 terms with 1- or 2-digit numbers, a mix of prompts the SFT-warm-started tiny model solves
almost always (one digit) and almost never (two digits), so many groups are all-correct or
all-wrong. ``beta = 0`` because none of the three methods uses a KL term (their papers' scripts
run without one); the baseline then differs from them only in the objective.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train copo_grpo_baseline
See copo.py / riskpo.py / hapo.py for what each comparison measures.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

TASK = TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 2},
                  max_prompt_len=128)


def base_config(name: str, algorithm: str, algo) -> Config:
    """The shared run of the COPO / RiskPO / HAPO comparisons, with the objective swapped in."""
    return Config(
        name=name,
        seed=0,
        algorithm=algorithm,
        algo=algo,
        model=ModelConfig(name="tiny"),
        task=TASK,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=24),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=40, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=128, k=8),
        checkpoint=CheckpointConfig(every=20),
    )


def get_config() -> Config:
    return base_config("copo_grpo_baseline", "grpo", grpo.Config(beta=0.0))
