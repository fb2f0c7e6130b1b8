"""EPO, strategic (https://arxiv.org/abs/2502.12486): a strategist trained with process rewards
against outcome-only REINFORCE, in the built-in ``keydoor_strategy`` environment (``envs/strategic.py``).

Setting: the ``tiny`` from-scratch model (character tokenizer) is the strategist: each turn it
writes 2 characters; a frozen scripted actor walks the agent of a 4x4 key-door grid to the target
the first character names (``k``: key, ``d``: door; ``letters = True``; anything else is an
invalid strategy: penalty 0.1, a lost turn). The
optimal plan is ``key`` then ``door``; the oracle PRM (the stand-in for the paper's GPT-4o judge)
marks a turn critical when its target is the plan's next one: ``r_k = 1`` on critical turns, the
final score (1 on success) on the last turn otherwise. At most 4 turns, 8 seeds x 4 copies = 32
episodes per step, 2 new tokens per turn, Adam lr 1e-3, 25 RL steps, ``gamma = 0.99``.

Arms at the same budget:
    jaxrl-llm train epo_strategic                                                           # process rewards
    jaxrl-llm train epo_strategic --set name=epo_strategic_outcome \
        --set 'env.kwargs={"size": 4, "letters": true, "process_rewards": false}'                            # outcome-only REINFORCE
    plug-in check (the paper's transfer claim): evaluate a trained strategist with
        --set 'env.kwargs={"size": 4, "letters": true, "actor": "cols_first"}' (another frozen actor)

What to read: ``episode/success``, ``episode/invalid_frac``, ``episode/steps``.

Hardware and time: the project's 2-core CPU machine, f32; see ``experiments/results/epo_strategic.md``
for measured numbers, where they exist (none are claimed here).
"""

from bases import episodes  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import epo_strategic
from jaxrl_llm.config import Config


def get_config() -> Config:
    return episodes.config(
        "epo_strategic", epo_strategic.Config(gamma=0.99), env=episodes.gridworld(size=4, name="keydoor_strategy")
    )
