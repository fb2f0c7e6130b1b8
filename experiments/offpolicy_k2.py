"""Off-policy GRPO with staleness bound k = 2 and token TIS on the suite's ``arith`` task.

The suite's recipe rule on ``arith`` (``experiments/suite.py``: the ``small`` model after its SFT
start, ``rg:basic_arithmetic`` with two one-digit operands, 16 prompts x 8 samples a step at
temperature 1, Adam lr 5e-5, KL weight 0.04, 400 RL steps, held-out accuracy every 100 steps),
with the update at version t trained on the rollout sampled by version t - 2
(``train.staleness=2``, ``jaxrl_llm/offpolicy.py``): pi_old is recomputed under the learner's
params and each token's loss term is weighted by the truncated importance weight
``min(pi_old / mu, 2)`` (``train.rollout_correction="token_tis"``, Yao et al. 2025,
https://fengyao.notion.site/off-policy-rl), ``mu`` the sampling version's distribution. The claim
under test (issue #22): with k = 2 the run learns the task to within the noise of the synchronous
GRPO run.

Commands:
    jaxrl-llm train offpolicy_k2                       # one run, seed 0, SFT inline
    # the comparison: the suite's GRPO seeds (the noise floor) beside the k = 2 seeds
    python experiments/suite.py --method grpo --tasks arith --seeds 0 1 2
    python experiments/suite.py --method grpo --name grpo_k2_tis --tasks arith --seeds 0 1 2 \\
        --set train.staleness=2 --set train.rollout_correction=token_tis

Hardware: the project's 2-core CPU machine (no accelerator), f32; colocated (the sampler shares the
learner's devices), so sampling does not overlap the update here: the step costs what a GRPO step
costs plus one log-prob pass (pi_old is recomputed).

Time: as the suite's ``arith`` GRPO run (~3-5 min a run alone) plus the recomputed log-probs.

Expected result: not measured yet (the lead runs the comparison; results go to
``experiments/results/offpolicy.md``).
"""

import dataclasses

import suite  # experiments/: load_experiment puts it on sys.path

from jaxrl_llm import config as config_lib
from jaxrl_llm.config import Config

OVERRIDES = ("train.staleness=2", "train.rollout_correction=token_tis")


def get_config() -> Config:
    cfg = dataclasses.replace(suite.get_config(), name="offpolicy_k2")
    return config_lib.apply_overrides(cfg, list(OVERRIDES))
