"""POAD (https://arxiv.org/abs/2405.15821) against token-level PPO with intra-action discounting
(NTPO, the paper's baseline) in the built-in gridworld (``jaxrl_llm.envs``), at CPU scale.

Setting: the ``tiny`` from-scratch model plays a 3x3 gridworld whose action is one policy turn of
up to 4 tokens (the first character ``u``/``d``/``l``/``r`` is the move; anything else is an
invalid action that costs a turn and ``env.invalid_penalty = 0.1``), reward 1 at the goal, at most
4 turns, ``8 seeds x 4 copies`` = 32 episodes per step, one row per episode, a separate critic
(``train.critic = "separate"``: a copy of the policy's trunk plus a value head), Adam lr 1e-3,
gamma = lam = 0.95, no KL, 20 RL steps.

The baseline is the same file with ``algo.gamma_w=0.95`` (= gamma): the discount also applies
between the tokens of one action (NTPO), every other number equal.

Commands:
    jaxrl-llm train poad
    jaxrl-llm train poad --set name=poad_ntpo --set algo.gamma_w=0.95
    (more seeds: --set seed=1 --set name=poad_s1, ...)

What to read (``metrics.jsonl``): ``episode/success``, ``episode/invalid_frac``, ``reward/mean``,
``loss/value``. Hardware and time: the project's 2-core CPU machine, f32; measured numbers are in
``experiments/results/poad.md`` (none are claimed here).
"""

from jaxrl_llm.algorithms import poad
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


def get_config() -> Config:
    base = default_config()
    return Config(
        name="poad",
        seed=0,
        algorithm="poad",
        algo=poad.Config(),
        model=ModelConfig(name="tiny"),
        # the trainer still builds a task (unused by the episode rollout): the default one
        task=TaskConfig(name=base.task.name, kwargs=dict(base.task.kwargs, num_eval=8), max_prompt_len=40),
        env=EnvConfig(
            name="gridworld",
            kwargs={"size": 3, "letters": True},
            max_turns=4,
            max_episode_tokens=256,
            invalid_penalty=0.1,
        ),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=4),
        optim=OptimConfig(learning_rate=1e-3, max_grad_norm=1.0),
        train=TrainConfig(steps=20, prompts_per_step=8, group_size=4),
        eval=EvalConfig(num_examples=0),
        checkpoint=CheckpointConfig(every=0),
    )
