"""GiGPO (https://arxiv.org/abs/2505.10978) against GRPO on episode-level rewards, in the built-in
gridworld (``jaxrl_llm.envs``): the paper's minimal reproduction at CPU scale.

Setting: the ``tiny`` from-scratch model (synthetic character tokenizer, no SFT) plays a 3x3
gridworld whose action is the first character of its turn (``u``/``d``/``l``/``r``; anything else
is an invalid action that costs a turn and ``env.invalid_penalty = 0.1``, verl-agent's
coefficient), reward 1 at the goal, at most 4 turns, ``8 seeds x 4 copies`` = 32 episodes per
step, 2 new tokens per turn, Adam lr 1e-3, no KL (a from-scratch model has no reference worth
keeping), 25 RL steps (~50 s each on the loaded 2-core machine), one row per episode (the loss covers the policy's tokens only).

The baseline is GRPO on episode returns at the same budget: the same file with ``algo.omega=0``
(no step advantage) and ``algo.mode=mean_std_norm``, i.e. ``A = (R - mean_G R) / std_G R`` on every
token of the episode; every other number equal.

Commands:
    jaxrl-llm train gigpo
    jaxrl-llm train gigpo --set name=gigpo_grpo --set algo.omega=0 --set algo.mode=mean_std_norm
    (more seeds: --set seed=1 --set name=gigpo_s1, ...)

What to read (``metrics.jsonl``): ``episode/success`` (sampled episodes of the step),
``episode/steps``, ``episode/invalid_frac``, and ``adv/frac_nonzero_step`` (GiGPO's step-level
signal: the share of steps whose anchor group gives a nonzero step advantage; 0 for the baseline
by construction).

Hardware and time: the project's 2-core CPU machine, f32; see ``experiments/results/gigpo.md``
for measured numbers (none are claimed here).
"""

from bases import episodes  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import gigpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return episodes.config("gigpo", gigpo.Config(beta=0.0), env=episodes.gridworld())
