"""ARPO (GUI) on the ``combination_lock`` with an IMAGE screen: the agent sees a screenshot at every
turn (issue #20, GUI episodes with several images per sequence).

Paper: Lu et al., "ARPO: End-to-End Policy Optimization for GUI Agents with Experience Replay",
https://arxiv.org/abs/2505.16282 (method ``jaxrl_llm/algorithms/arpo_gui.py``, rollout kind
``jaxrl_llm/rollouts/replay_episode.py``). Differs from ``experiments/arpo_gui.py`` in:

  1. The lock's state is a 16x16 grey picture (``screen="image"``, ``envs/combination_lock.py``:
     one bar per dial, its height the digit, a mark over the selected dial and under a right
     digit); the observation text is empty. Each observation's picture enters its user message as
     16 placeholder ids; the rows carry the episode's pictures (``Rollout.images`` [B, 10, 16, 16,
     1]) and their slots (``Rollout.image_mask``), and the trainer scores the rows with them.
  2. The policy is ``tiny-vlm-16px`` (``tiny`` + a SigLIP-architecture tower for 16x16 grey
     pictures), from scratch: no SFT stage (the lock demonstrations of ``arpo_gui_sft.py`` are
     text screens).
  3. Every turn re-prefills the conversation with all its pictures (``env.kv_cache="reprefill"``:
     the growing cache takes no pictures yet), and ARPO's buffers keep each success's pictures
     (``algo.episode_images = env.max_turns``) so a replayed episode is scored with its screens.

Command:
    jaxrl-llm train arpo_gui_image --set seed=S --set name=arpo_gui_image_sS --run-dir runs/arpo_gui_image_sS

Hardware: the project's 2-core CPU machine (shared), f32. Time and result: not run at length yet.
``--stop-after 2`` takes about 70 s (the first step, with its compiles and the held-out episodes,
about 45 s; then about 7 s a step). From scratch the policy seldom names a button, so most episodes
end at their first turn with a format failure (``episode/format_fail`` 1.0, then 0.91): this file
is the plumbing of image episodes under ARPO; a comparison with ``arpo_gui.py`` needs an image SFT
stage first.
"""

import dataclasses

from jaxrl_llm.algorithms import arpo_gui
from jaxrl_llm.config import Config, default_config

LOCK = {
    "num_dials": 3,
    "num_digits": 4,
    "min_solution": 6,
    "max_solution": 9,
    "feedback": "dial",
    "screen": "image",
    "image_size": 16,
}
MAX_TURNS, EPISODE_TOKENS = 10, 512
LR, STEPS = 3e-4, 31


def config(replay: bool = True) -> Config:
    """The run above, with (ARPO) or without (GRPO) replay."""
    base = default_config()
    return dataclasses.replace(
        base,
        name="arpo_gui_image" if replay else "arpo_gui_image_grpo",
        algorithm="arpo_gui",
        algo=arpo_gui.Config(
            replay=replay,
            num_tasks=16,
            capacity=8,
            episode_tokens=EPISODE_TOKENS,
            episode_images=MAX_TURNS,
            image_shape=(16, 16, 1),
            eval_every=10,
            eval_locks=32,
        ),
        model=dataclasses.replace(base.model, name="tiny-vlm-16px"),
        env=dataclasses.replace(
            base.env,
            name="combination_lock",
            kwargs=dict(LOCK),
            max_turns=MAX_TURNS,
            max_episode_tokens=EPISODE_TOKENS,
            invalid_penalty=0.0,
            kv_cache="reprefill",
        ),
        sampling=dataclasses.replace(base.sampling, temperature=1.0, max_new_tokens=2),
        optim=dataclasses.replace(base.optim, learning_rate=LR, max_grad_norm=1.0),
        train=dataclasses.replace(base.train, steps=STEPS, prompts_per_step=8, group_size=4),
        sft=dataclasses.replace(base.sft, steps=0),
        eval=dataclasses.replace(base.eval, num_examples=0),
        checkpoint=dataclasses.replace(base.checkpoint, every=0),
    )


def get_config() -> Config:
    return config(replay=True)
