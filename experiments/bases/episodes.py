"""The shared run of the multi-turn experiments (experiments/<method>.py for gigpo, epo,
epo_strategic, poad on a built-in environment; dialtree and lspo on SmolLM2): a tiny (or SmolLM2)
policy, group rollouts of episodes, no held-out evaluation. The trainer still builds a task (the
default one, unused by these rollout kinds). Imported by the experiment files (``from bases import
episodes``); not an experiment itself.
"""

from typing import Any

from jaxrl_llm.config import (
    CheckpointConfig,
    Config,
    EnvConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    SamplingConfig,
    TaskConfig,
    TrainConfig,
    default_config,
)


def gridworld(size: int = 3, name: str = "gridworld") -> EnvConfig:
    """A built-in world (``envs.grid``) with lettered moves, 4 turns, 256 tokens an episode."""
    return EnvConfig(
        name=name, kwargs={"size": size, "letters": True}, max_turns=4, max_episode_tokens=256, invalid_penalty=0.1
    )


def config(
    name: str,
    algo: Any,
    *,
    env: EnvConfig | None = None,
    model: str = "tiny",
    max_prompt_len: int = 40,
    max_new_tokens: int = 2,
    learning_rate: float = 1e-3,
    steps: int = 25,
    prompts_per_step: int = 8,
    group_size: int = 4,
    checkpoint_every: int = 25,
) -> Config:
    """The run of method ``name`` (its ``algo`` Config) on ``env`` (None: the method's rollout kind
    brings its own game), seed 0, gradient clipping 1.0, no held-out evaluation."""
    base = default_config()
    return Config(
        name=name,
        seed=0,
        algorithm=name,
        algo=algo,
        model=ModelConfig(name=model),
        task=TaskConfig(name=base.task.name, kwargs=dict(base.task.kwargs, num_eval=8), max_prompt_len=max_prompt_len),
        env=env if env is not None else base.env,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=max_new_tokens),
        optim=OptimConfig(learning_rate=learning_rate, max_grad_norm=1.0),
        train=TrainConfig(steps=steps, prompts_per_step=prompts_per_step, group_size=group_size),
        eval=EvalConfig(num_examples=0),
        checkpoint=CheckpointConfig(every=checkpoint_every),
    )
