"""ARPO (GUI) vs GRPO without replay on the ``combination_lock`` GUI stand-in, through the trainer
(SFT, then RL on episodes): the paper's tiny reproduction.

Paper: Lu et al., "ARPO: End-to-End Policy Optimization for GUI Agents with Experience Replay",
https://arxiv.org/abs/2505.16282; code https://github.com/dvlab-research/ARPO (method file
``jaxrl_llm/algorithms/arpo_gui.py``, rollout kind ``jaxrl_llm/rollouts/replay_episode.py``,
environment ``jaxrl_llm/envs/combination_lock.py``, SFT data ``jaxrl_llm/tasks/lock_demos.py``).
The claims measured: with a per-task buffer of successes replayed into all-failure groups, fewer
groups have zero advantage variance (``frac_zero_std_groups``) and the training success rate
(``episode/success`` of the step's own sampled episodes) and the held-out success rate
(``heldout/success``: sampled episodes on 32 locks never trained on, every 10 updates from 0)
rise faster than with GRPO on the same rows.

The run: the ``tiny`` from-scratch model (character tokenizer), warm-started by one shared SFT
stage (``arpo_gui_sft.py``: 100 steps of 32 next-button demonstrations of 256 other locks,
``lock_demos``), so both arms start from the same imperfect policy (sampled success about 6-20%).
The lock: 3 dials of 4 digits, shortest solutions of 6-9 steps, per-dial ``*`` feedback, a wrong
``open`` ends the episode, an unparsable action ends it with format -1. RL: 16 training locks
(``algo.num_tasks``), each step 8 of them x 4 episodes (<= 10 turns, 2 new tokens a turn,
temperature 1), Adam lr ``LR``, one update per step, no KL, ``STEPS`` steps (held-out episodes
at the steps that follow 0, 10, 20 and 30 updates). ARPO: buffers of 8 successes per lock. The
baseline (``arpo_gui_grpo_baseline.py``): the same file with ``algo.replay=False`` (every other
number equal; its buffers fill but are never read).

Commands:
    jaxrl-llm train arpo_gui_sft --run-dir runs/arpo_gui_sft --stop-after 100
    jaxrl-llm export runs/arpo_gui_sft runs/arpo_gui_sft_model
    jaxrl-llm train arpo_gui --set seed=S --set name=arpo_gui_sS --run-dir runs/arpo_gui_sS
    jaxrl-llm train arpo_gui_grpo_baseline --set seed=S --set name=arpo_gui_grpo_sS --run-dir runs/arpo_gui_grpo_sS

Hardware: the project's 2-core CPU machine (shared), f32. Time and result:
``experiments/results/arpo_gui.md``.
"""

import dataclasses

from jaxrl_llm.algorithms import arpo_gui
from jaxrl_llm.config import Config, default_config

LOCK = {"num_dials": 3, "num_digits": 4, "min_solution": 6, "max_solution": 9, "feedback": "dial"}
MAX_TURNS, EPISODE_TOKENS = 10, 384
SFT_STEPS, LR, STEPS = 200, 3e-4, 31  # SFT_STEPS: the SFT run's length; it is stopped at 100
SFT_MODEL = "runs/arpo_gui_sft_model"  # experiments/arpo_gui_sft.py, exported


def config(replay: bool) -> Config:
    """The run above, with (ARPO) or without (GRPO) replay."""
    base = default_config()
    return dataclasses.replace(
        base,
        name="arpo_gui" if replay else "arpo_gui_grpo",
        algorithm="arpo_gui",
        algo=arpo_gui.Config(
            replay=replay, num_tasks=16, capacity=8, episode_tokens=EPISODE_TOKENS, eval_every=10, eval_locks=32
        ),
        model=dataclasses.replace(base.model, name=SFT_MODEL),
        task=dataclasses.replace(
            base.task, name="lock_demos", kwargs={"num_locks": 256, "num_eval_locks": 4, **LOCK}, max_prompt_len=512
        ),
        env=dataclasses.replace(
            base.env,
            name="combination_lock",
            kwargs=dict(LOCK),
            max_turns=MAX_TURNS,
            max_episode_tokens=EPISODE_TOKENS,
            invalid_penalty=0.0,
        ),
        sampling=dataclasses.replace(base.sampling, temperature=1.0, max_new_tokens=2),
        optim=dataclasses.replace(base.optim, learning_rate=LR, max_grad_norm=1.0),
        train=dataclasses.replace(base.train, steps=STEPS, prompts_per_step=8, group_size=4),
        sft=dataclasses.replace(base.sft, steps=0, batch_size=32, template="{answer}"),
        eval=dataclasses.replace(base.eval, num_examples=0),
        checkpoint=dataclasses.replace(base.checkpoint, every=0),
    )


def get_config() -> Config:
    return config(replay=True)
