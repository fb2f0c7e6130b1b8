"""GDPO (https://arxiv.org/abs/2601.05242) on a task with two rewards: correctness + answer-tag format.

GDPO is for multi-reward training, so this run leaves the default task for
``suite:tagged_arithmetic`` (reasoning-gym ``chain_sum``, 3 one-digit terms; reward 1: the answer
inside ``<answer></answer>`` is right; reward 2: any non-empty answer tag, weight 0.2; SFT
demonstrations put the answer in tags for half of the examples, so both rewards have room), the
suite's ``tagged`` setting (``experiments/suite.py``: prompts up to 160 tokens, 24 new tokens, 300
SFT steps). Everything else is the default run's (``small`` model, 1100 RL steps of 16 prompts x 8
samples, lr 5e-5), with the objective swapped to ``gdpo`` (per-reward group z-score, summed, then
token-whitened over the batch; the defaults of ``jaxrl_llm/algorithms/gdpo.py``). The group rollout
adds ``reward_components`` [B, 2] (the two functions' raw rewards) because GDPO asks for them.

Command:
    jaxrl-llm train gdpo
    jaxrl-llm train gdpo algorithm=grpo name=gdpo_grpo_baseline     # GRPO on the same two rewards
    jaxrl-llm plot runs/gdpo runs/gdpo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time: not measured; the suite's estimate for its ``tagged`` runs is 3-5 min for 300 RL steps, so
about 15 min for 1100 steps, plus 300 SFT steps.

Expected result: not measured yet for this file. The paper's claim to check: with several rewards,
GDPO raises each reward (here ``reward/answer_tag_format`` and the correctness part, logged as
``adv`` metrics ``reward/component_0`` / ``reward/component_1``) at least as fast as GRPO on their
sum; report the measured numbers here when the pair of runs is made.
"""

import dataclasses

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.config import Config


def get_config() -> Config:
    cfg = baselines.config("gdpo", "gdpo")
    return dataclasses.replace(
        cfg,
        task=dataclasses.replace(
            cfg.task,
            name="suite:tagged_arithmetic",
            kwargs={"demonstrations": True, "num_eval": 500},
            max_prompt_len=160,
        ),
        sampling=dataclasses.replace(cfg.sampling, max_new_tokens=24),
        sft=dataclasses.replace(cfg.sft, steps=300),
    )
