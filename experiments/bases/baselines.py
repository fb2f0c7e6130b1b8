"""The shared run of the baseline experiments (experiments/<method>.py for cispo, dapo, dr_grpo,
gspo, ppo, reinforce_pp, rloo): the default run (``experiments/default.py``: ``small`` model,
reasoning-gym basic_arithmetic, 120 SFT steps, then 1100 RL steps of 16 prompts x 8 samples, Adam
lr 5e-5, held-out evaluation every 220 steps) with only the objective swapped, so each is compared
against the default run's GRPO. The method's ``Config`` keeps its paper defaults unless the
experiment file says otherwise. Imported by the experiment files (``from bases import baselines``);
not an experiment itself.
"""

import dataclasses

from jaxrl_llm.config import Config, default_config


def config(name: str, algorithm: str, algo=None, **train) -> Config:
    """The default run with ``algorithm`` / ``algo`` (its Config; None = its paper defaults) and
    ``train`` field overrides (e.g. ``group_size``)."""
    base = default_config()
    return dataclasses.replace(
        base, name=name, algorithm=algorithm, algo=algo, train=dataclasses.replace(base.train, **train)
    )
