"""RiskPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train riskpo
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/riskpo runs/copo_grpo_baseline

What it measures (spec group_rlvr_and_credit.md §9): held-out pass@k (k = 8) against pass@1 and
greedy accuracy (RiskPO's claim: pass@k at least GRPO's), the policy entropy over training
(``entropy``; RiskPO should decay it more slowly), and the quantiles used / tracked.
Settings: the paper's defaults (alpha 0.2, beta 0.8, w 1.5, natural baseline, std credit,
bundle quantiles as the released runs used, the tracker in the algorithm state), except
``bundle_size = 4`` so that the 8 prompts of a step form two full bundles (5 would leave a bundle
of 3). Everything else is the shared baseline run. Results: ``experiments/results/riskpo.md``.
"""

import importlib.util
import pathlib

from jaxrl_llm.algorithms import riskpo
from jaxrl_llm.config import Config

_here = pathlib.Path(__file__).with_name("copo_grpo_baseline.py")
_spec = importlib.util.spec_from_file_location("copo_grpo_baseline", _here)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


def get_config() -> Config:
    return baseline.base_config("riskpo", "riskpo", riskpo.Config(bundle_size=4))
