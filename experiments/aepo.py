"""AEPO vs single-answer GRPO on ``images:gui``, through the trainer (SFT, then RL).

Paper: Liu et al., "InfiGUI-G1: Advancing GUI Grounding with Adaptive Exploration Policy
Optimization", https://arxiv.org/abs/2508.05731; code https://github.com/InfiXAI/InfiGUI-G1 (method
file ``jaxrl_llm/algorithms/aepo.py``, reward ``jaxrl_llm/rewards/gui_grounding.py``, task
``jaxrl_llm/tasks/gui.py``). The claims measured: with the multi-answer Adaptive Exploration Reward
(AER) fewer groups have zero reward spread than with a +1/-1 single-answer reward
(``frac_zero_std_groups``, logged every step), top-1 accuracy on the HARD items (the target's
look-alike is on screen) rises above single-answer GRPO's at the same budget, and the mean number
of proposals N falls as the policy grows confident.

The run: ``tiny-vlm-16px`` (the ``tiny`` decoder + a from-scratch SigLIP-architecture tower, 16x16
grey screens in 4x4 patches = one soft token per grid cell), 4 elements per screen, half the items
hard. Answers in the compact tiny-model format (``think=False``, ``point_format="pair"``:
``[[x,y],...]``; the reward's rules are otherwise the code's). SFT: 1000 steps of 32 demonstrations
(one centre point; on a quarter of the hard items two points, target and look-alike in random
order: ``explore_demos=0.25``), a non-trivial but imperfect start (about 30% top-1). RL: 200 steps of 8 prompts x 8
samples, Adam lr 5e-5, at most 26 new tokens (three 2-digit points). No reference model for either
method. AEPO: RLOO, clip 0.2 / 0.4, token-mean. The baseline (``aepo_grpo_baseline.py``): GRPO with
the same token-mean and no KL, the task's ``reward="single"`` (+1 when the first point is in the
box, -1 otherwise).

What the trainer's eval reports: ``eval/accuracy`` is "reward >= 1.0": for the single-answer reward
that is top-1 (first point in the box); for AER it is exploration success (SOME point in the box,
R = 1 + 1/sqrt(Nk) > 1; a miss gives 1 - 1/N < 1). Top-1 on all vs hard items, exploration success
and mean N of the final policies come from ``experiments/results/aepo_measure.py`` (the same
procedure for both runs). ``completion_len/mean`` (logged every step) tracks N during training:
one point is 7-9 characters.

Commands (one seed each):
    jaxrl-llm train aepo --set seed=0 --set name=aepo_s0
    jaxrl-llm train aepo_grpo_baseline --set seed=0 --set name=aepo_grpo_s0
    python experiments/results/aepo_measure.py runs/aepo_s0 runs/aepo_grpo_s0

Hardware: the project's 2-core CPU machine, f32. Time and result: ``experiments/results/aepo.md``.
"""

import dataclasses

from jaxrl_llm.algorithms import aepo, grpo
from jaxrl_llm.config import Config, default_config

ALGOS = {
    "aepo": aepo.Config(),
    "grpo": grpo.Config(beta=0.0, aggregation="token_mean"),
}
REWARDS = {"aepo": "aer", "grpo": "single"}
TASK_KWARGS = {
    "num_elements": 4,
    "hard_fraction": 0.5,
    "think": False,
    "point_format": "pair",
    "explore_demos": 0.25,
    "num_eval": 200,
}


def config(method: str) -> Config:
    """The run above with ``method``'s objective (``ALGOS``) and reward (``REWARDS``)."""
    base = default_config()
    return dataclasses.replace(
        base,
        name="aepo" if method == "aepo" else f"aepo_{method}",
        algorithm=method,
        algo=ALGOS[method],
        model=dataclasses.replace(base.model, name="tiny-vlm-16px"),
        task=dataclasses.replace(
            base.task, name="images:gui", kwargs={**TASK_KWARGS, "reward": REWARDS[method]}, max_prompt_len=64
        ),
        sampling=dataclasses.replace(base.sampling, max_new_tokens=26),
        optim=dataclasses.replace(base.optim, learning_rate=5e-5),
        train=dataclasses.replace(base.train, steps=200, prompts_per_step=8, group_size=8),
        sft=dataclasses.replace(base.sft, steps=1000, batch_size=32, template="{answer}"),
        eval=dataclasses.replace(base.eval, every=50, num_examples=200, batch_size=200, correct_threshold=1.0),
        checkpoint=dataclasses.replace(base.checkpoint, every=100),
    )


def get_config() -> Config:
    return config("aepo")
