"""GEPO (https://arxiv.org/abs/2505.12723): REINFORCE++ on-policy rows + the group preference term.

The default run's setting (``small`` model, basic_arithmetic prompts, 120 SFT steps, 16 prompts x
8 samples per step, lr 5e-5) with the objective swapped to ``gepo``: each step also carries 4
static preference groups (``rollouts/pairs.py``, kind ``pref_groups``), each 2 equivalent winners
(forms of the reference answer the task's verifier scores 1: ``<answer>v</answer>``,
``<answer> v </answer>``, ``v``) and 2 losers (wrong values), labelled by the verifier itself;
w_rl = 1, w_gepo = 0.01, lambda = 1, beta = 0.1 (paper). The comparison the paper's ablation makes
is GEPO against itself without the group term: ``--set algo.w_gepo=0`` (REINFORCE++ alone on the
same rows). What to measure: held-out greedy accuracy, ``gepo/winner_var`` (spread of the
winners' implicit rewards) and ``gepo/accuracy`` (fraction of groups whose winners' mean beats the
losers').

Command:
    jaxrl-llm train gepo
    jaxrl-llm train gepo --set algo.w_gepo=0 --set name=gepo_no_group --run-dir runs/gepo_no_group
    jaxrl-llm plot runs/gepo runs/gepo_no_group

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: see experiments/results/gepo.md (short runs only so far).
"""

import dataclasses

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import gepo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("gepo", "gepo", algo=dataclasses.replace(gepo.Config(), groups_per_step=4))
