"""GRPO baseline for copo.py, riskpo.py and hapo.py: the same run (model, task, SFT warm start, steps,
prompts x samples, optimizer, seed, no KL), GRPO objective (paper defaults except ``beta = 0``).

The three family-A comparisons of COPO, RiskPO and HAPO share this one baseline: their experiment
files differ from it only in ``name``, ``algorithm`` and ``algo``. Task: reasoning-gym chain sums of
2-4 one-digit terms, easier (two terms) and harder (four terms) prompts mixed. After the SFT warm
start the tiny model is right on ~9% of held-out prompts (greedy), so over half the groups are
all-equal (mostly all-wrong): the regime where COPO's global signal and RiskPO's risk weighting
are supposed to matter. ``beta = 0`` because none of the three methods uses a KL term (their
papers' scripts run without one); the baseline then differs from them only in the objective.
An earlier setting (1-2 digit terms, lr 3e-4, 150 SFT steps) left the SFT model at 4% and GRPO
drove it to 0%, so it was replaced by this one before any method was run.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train copo_grpo_baseline
See copo.py / riskpo.py / hapo.py for what each comparison measures.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

TASK = TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 1},
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
        optim=OptimConfig(learning_rate=1e-4),
        train=TrainConfig(steps=30, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=200, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=128, k=8),
        checkpoint=CheckpointConfig(every=20),
    )


def get_config() -> Config:
    return base_config("copo_grpo_baseline", "grpo", grpo.Config(beta=0.0))
