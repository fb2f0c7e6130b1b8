"""COPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train copo
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/copo runs/copo_grpo_baseline

COPO needs ``rollout["answer_ids"]`` (which completions of a group gave the same final answer);
the trainer computes them on the host from the decoded completions with ``copo.host_extras``.
(The figures in ``experiments/results/copo.md`` were measured before the trainer called that hook,
through a wrapper around ``train.collect_rollout`` that did the same.)

What it measures (spec group_rlvr_and_credit.md §8): the fraction of rows that carry gradient
(COPO: ``frac_signal_rows``; GRPO: 1 - ``frac_zero_std_groups`` with binary rewards), the answer
entropy (``answer_entropy/mean``), held-out greedy accuracy and pass@k.
Settings: the paper's defaults (``soft_with_forced``, k=20, b=0.5, eps 0.2, seq-mean-token-mean,
no KL); everything else is the shared baseline run. Results: ``experiments/results/copo.md``.
"""

import importlib.util
import pathlib

from jaxrl_llm.algorithms import copo
from jaxrl_llm.config import Config

_here = pathlib.Path(__file__).with_name("copo_grpo_baseline.py")
_spec = importlib.util.spec_from_file_location("copo_grpo_baseline", _here)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


def get_config() -> Config:
    return baseline.base_config("copo", "copo", copo.Config())

