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

from bases import episodes  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import poad
from jaxrl_llm.config import Config


def get_config() -> Config:
    return episodes.config(
        "poad", poad.Config(), env=episodes.gridworld(), max_new_tokens=4, steps=20, checkpoint_every=0
    )
