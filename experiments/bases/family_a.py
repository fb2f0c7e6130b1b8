"""The shared run of the family-A comparisons (experiments/<method>.py vs <method>_grpo_baseline.py).

Every family-A experiment trains the ``tiny`` model from scratch (character-level ChatML tokenizer)
on reasoning-gym chain sums of one-digit terms: an SFT warm start on ``<answer>N</answer>``
demonstrations, then RL at temperature 1 with AdamW, seed 0, evaluated on held-out prompts before
and after RL. A ``Comparison`` fixes what a method and its GRPO baseline share (the task, the
generation and update budget, the evaluation); ``config`` builds one run of it with the objective
swapped in, so the two runs of a pair differ only in ``name``, ``algorithm`` and ``algo`` (and,
for single-stream SPO, in how the 64 samples of a step are split into prompts x samples).

This file is loaded by path from the experiment files (the experiments folder is not a package);
it is not an experiment itself and has no ``get_config``.
"""

import dataclasses

from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What the two runs of one comparison share."""

    max_terms: int  # chain sums of 2 to max_terms one-digit terms
    steps: int  # RL steps
    eval_examples: int  # held-out prompts, evaluated after SFT and after RL
    eval_k: int = 4  # pass@k
    train_pool: int | None = None  # a finite pool of training prompts (revisited); None: the task's default
    max_prompt_len: int = 128
    max_new_tokens: int = 32
    learning_rate: float = 3e-4  # RL
    sft_steps: int = 150

    def task(self) -> TaskConfig:
        kwargs = {"min_terms": 2, "max_terms": self.max_terms, "min_digits": 1, "max_digits": 1}
        if self.train_pool is not None:
            # Training examples are the generator's indices below train_pool, held-out ones the rest.
            kwargs.update(size=self.train_pool + self.eval_examples, num_eval=self.eval_examples)
        return TaskConfig(name="rg:chain_sum", kwargs=kwargs, max_prompt_len=self.max_prompt_len)


APO = Comparison(max_terms=2, steps=30, eval_examples=64)
BNPO = Comparison(max_terms=3, steps=40, eval_examples=128)
GTPO = Comparison(max_terms=3, steps=40, eval_examples=128)
DCPO = Comparison(max_terms=3, steps=40, eval_examples=128, train_pool=64)  # each prompt revisited every 8 steps
# The budget phrase goes into the prompt, hence the longer prompt limit.
HBPO = Comparison(max_terms=2, steps=30, eval_examples=64, max_prompt_len=256)
SINGLE_STREAM_SPO = Comparison(max_terms=2, steps=30, eval_examples=128, train_pool=256)
# COPO, RiskPO and HAPO share one GRPO baseline (copo_grpo_baseline.py, whose docstring says why
# this setting): 2-4 terms, so easy and hard prompts mix and many groups are all-equal.
MIXED_DIFFICULTY = Comparison(max_terms=4, steps=30, eval_examples=128, eval_k=8, max_new_tokens=24,
                              learning_rate=1e-4, sft_steps=200)


def config(comparison: Comparison, name: str, algorithm: str, algo, prompts_per_step: int = 8,
           group_size: int = 8) -> Config:
    """One run of ``comparison`` with the objective ``algorithm`` / ``algo`` (its Config)."""
    return Config(
        name=name,
        seed=0,
        algorithm=algorithm,
        algo=algo,
        model=ModelConfig(name="tiny"),
        task=comparison.task(),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=comparison.max_new_tokens),
        optim=OptimConfig(learning_rate=comparison.learning_rate),
        train=TrainConfig(steps=comparison.steps, prompts_per_step=prompts_per_step, group_size=group_size),
        sft=SFTConfig(steps=comparison.sft_steps, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=comparison.eval_examples, k=comparison.eval_k),
        checkpoint=CheckpointConfig(every=20),
    )
