"""HAPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train hapo
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/hapo runs/copo_grpo_baseline

HAPO samples with a per-token temperature from the previous step's entropy statistics in the
algorithm state: the trainer passes ``hapo.temperature_from_stats`` to the sampler as one rule
whose statistics travel as traced ``temperature_rule_params`` (no recompile per step); evaluation
keeps the plain temperature. (The figures in ``experiments/results/hapo.md`` were measured before
the trainer wired this, through a wrapper that passed a new static rule each step: same
temperatures, more compiles.)

What it measures (spec group_rlvr_and_credit.md §10): the mean token entropy over training
(``entropy``; HAPO's claim: higher than the baseline), the adapted clip bounds and advantage
scale (``clip_bound/*``, ``adv_scale/mean``), accuracy and pass@k.
Settings: the paper's defaults (tau 0.05, pivot 0.8, beta_A = alpha_c = 1, eps 0.2, dual-clip 10,
token-mean, paper sign convention), except ``dynamic_sampling = False``: DAPO's filter would spend
extra generation rounds, breaking the same-budget comparison. Results:
``experiments/results/hapo.md``.
"""

import importlib.util
import pathlib

from jaxrl_llm.algorithms import hapo
from jaxrl_llm.config import Config

_here = pathlib.Path(__file__).with_name("copo_grpo_baseline.py")
_spec = importlib.util.spec_from_file_location("copo_grpo_baseline", _here)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


def get_config() -> Config:
    return baseline.base_config("hapo", "hapo", hapo.Config(dynamic_sampling=False))

