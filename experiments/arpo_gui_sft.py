"""The shared SFT start of ``experiments/arpo_gui.py`` (ARPO and its GRPO baseline): the ``tiny``
model trained on next-button demonstrations of the ``combination_lock`` (``lock_demos``), no RL.
Both arms start from its exported policy, so they differ only in the method.

Commands:
    jaxrl-llm train arpo_gui_sft --run-dir runs/arpo_gui_sft --stop-after 100   # the SFT stage only (RL never starts)
    jaxrl-llm export runs/arpo_gui_sft runs/arpo_gui_sft_model
"""

import dataclasses

from arpo_gui import SFT_STEPS, config  # load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    cfg = config(replay=False)
    return dataclasses.replace(
        cfg,
        name="arpo_gui_sft",
        model=dataclasses.replace(cfg.model, name="tiny"),
        train=dataclasses.replace(cfg.train, steps=1),  # never reached: run with --stop-after SFT_STEPS
        sft=dataclasses.replace(cfg.sft, steps=SFT_STEPS),
        checkpoint=dataclasses.replace(cfg.checkpoint, every=20, async_save=False),
    )
