"""The shared runs of the family-A comparisons (experiments/<method>.py vs family_a_grpo.py).

Two regimes. ``learning_config`` is the default run's setting, in which GRPO learns (``small``
model, basic_arithmetic, lr 5e-5, 16 prompts x 8 samples, KL 0.04); all methods but HBPO are
compared against GRPO there, over several GRPO seeds (``experiments/results/family_a_sweep.py``).
``Comparison`` / ``config`` is the short regime of the first comparisons (``tiny`` model, chain
sums, lr 3e-4, 30-40 steps), which HBPO still uses because its budget phrase and length budgets
need room that the two-token answers of basic_arithmetic do not give.

A run of either regime differs from its GRPO baseline only in ``name``, ``algorithm`` and
``algo`` (and, for single-stream SPO, in how the samples of a step are split into prompts x
samples). This module is imported by the experiment files (``from bases import family_a``); it
is not an experiment itself and has no ``get_config``.
"""

import dataclasses

from jaxrl_llm.config import (
    CheckpointConfig,
    Config,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    SamplingConfig,
    SFTConfig,
    TaskConfig,
    TrainConfig,
    default_config,
)

# ---------------------------------------------------------------------------------------------
# The learning regime (the default run's settings, where GRPO learns): every family-A method but
# HBPO is compared against GRPO here. ``small`` model (3.0M parameters), reasoning-gym
# basic_arithmetic (two one-digit operands, + and -) exactly as in the default run, 120 SFT steps,
# then RL with 16 prompts x 8 samples per step, Adam lr 5e-5, KL weight 0.04 to the SFT start in
# every run (so the runs of a pair differ only in the method's delta), held-out greedy accuracy and
# pass@1 / pass@4 on 256 held-out prompts every 100 steps. The per-prompt state of DCPO and
# single-stream SPO covers all LEARNING_POOL training indices. (A 256-index pool was tried first:
# SFT then memorizes the pool, training reward starts at 0.94 and RL has almost nothing to do.)
LEARNING_STEPS = 400
LEARNING_TASK_SIZE = 100_000  # the procedural task's default size, written out to size the state
LEARNING_POOL = LEARNING_TASK_SIZE - default_config().task.kwargs["num_eval"]
LEARNING_BETA = 0.04


def learning_config(
    name: str, algorithm: str, algo, prompts_per_step: int = 16, group_size: int = 8, steps: int = LEARNING_STEPS
) -> Config:
    """One run of the learning regime with the objective ``algorithm`` / ``algo`` (its Config)."""
    base = default_config()
    kwargs = {**base.task.kwargs, "size": LEARNING_TASK_SIZE}
    return dataclasses.replace(
        base,
        name=name,
        algorithm=algorithm,
        algo=algo,
        task=dataclasses.replace(base.task, kwargs=kwargs),
        train=dataclasses.replace(base.train, steps=steps, prompts_per_step=prompts_per_step, group_size=group_size),
        eval=dataclasses.replace(base.eval, every=100),
        checkpoint=dataclasses.replace(base.checkpoint, every=250),
    )


# ---------------------------------------------------------------------------------------------
# The short regime of the first comparisons (tiny model, chain sums, lr 3e-4, 30-40 steps), in
# which GRPO itself lost accuracy; HBPO's comparison still runs here (see experiments/hbpo.py).


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


# The budget phrase goes into the prompt, hence the longer prompt limit.
HBPO = Comparison(max_terms=2, steps=30, eval_examples=64, max_prompt_len=256)


def config(
    comparison: Comparison, name: str, algorithm: str, algo, prompts_per_step: int = 8, group_size: int = 8
) -> Config:
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
