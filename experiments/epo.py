"""EPO, entropy-regularized (https://arxiv.org/abs/2509.22576), against GRPO on episode returns, in
the built-in gridworld (``jaxrl_llm.envs``): the paper's tiny reproduction at CPU scale.

Setting: as ``experiments/gigpo.py``: the ``tiny`` from-scratch model plays a 3x3 gridworld whose
action is the first character of its turn (``u``/``d``/``l``/``r``; anything else is an invalid
action, penalty 0.1 and a lost turn), reward 1 at the goal, at most 4 turns, 8 seeds x 4 copies =
32 episodes per step, 2 new tokens per turn, Adam lr 1e-3, no KL, 25 RL steps, one row per
episode. EPO: GRPO's trajectory advantage on every policy token plus ``lambda * (L_H - beta_k
L_smooth)``; ``lambda = 0.01`` (the paper's 0.001 is sized for 3B-7B models whose entropies sit
near 0.5 nats; the tiny model starts near ln V), corridor ``[0, 2] x H_W`` over all previous steps,
``alpha = 0.05``, ``K = 25`` (``k_mid = 12``).

Arms at the same budget (every other number equal):
    jaxrl-llm train epo                                                     # EPO
    jaxrl-llm train epo --set name=epo_grpo --set algo.lam=0                # GRPO on episode returns
    jaxrl-llm train epo --set name=epo_bonus --set algo.alpha=0             # a constant entropy bonus
    (seeds: --set seed=1 --set name=..._s1, ...)

What to read (``metrics.jsonl``): ``entropy`` (batch token mean), ``entropy/in_corridor`` (share
of tokens inside ``[kappa_l H_W, kappa_r H_W]``), ``entropy/anchor`` (``H_W``),
``episode/success``, ``episode/invalid_frac``. The paper's claim: a constant bonus oscillates or
destabilises late while EPO keeps entropy in its corridor; success at least as high.

Hardware and time: the project's 2-core CPU machine, f32; see ``experiments/results/epo.md`` for
measured numbers (none are claimed here).
"""

from bases import episodes  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import epo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return episodes.config(
        "epo", epo.Config(lam=0.01, alpha=0.05, kappa_l=0.0, kappa_r=2.0, total_steps=25), env=episodes.gridworld()
    )
