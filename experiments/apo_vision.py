"""APO (DADS + STCR) vs GRPO on an image task: counting shapes out loud (``images:count``, worked).

Paper: Hong et al., "APO: Enhancing Reasoning Ability of MLLMs via Asymmetric Policy
Optimization", https://arxiv.org/abs/2506.21655 (method file: ``jaxrl_llm/algorithms/apo.py``;
official code https://github.com/Indolent-Kawhi/View-R1). The paper trains a vision-language
model; this is its setting in small: ``tiny-vlm-16px`` (the ``tiny`` decoder + a from-scratch
SigLIP-architecture tower, 16x16 grey canvases in 4x4 patches = 16 soft tokens), trained from
scratch by the SFT stage, then RL with a KL to the SFT start.

The task makes both of APO's terms act. The completion counts the shapes out loud and ends on the
total ("1 2 3 4 so 4"; reward 1 when the last integer is the count), so
* difficulty spreads over prompts (1 to ``MAX_COUNT`` shapes; more shapes are harder), which is
  what DADS reads (``d = 1 - pass rate``: the KL weight of a hard prompt's positives drops), and
* a wrong completion can be longer than the group's correct ones (over-counting), which is what
  STCR penalizes (``w = 1 + (1 - b^-Delta)``, ``stcr_base = 1.05`` as in ``experiments/apo.py``:
  the code's 1.00001 is invisible at these lengths).

Every setting in which the runs differ (``ALGOS``): APO aggregates the policy term ``token_mean``,
weights the KL per sequence by DADS' kappa, divides by ``std + 1e-9``, and scales negatives by
STCR; GRPO (``grpo.Config``) uses ``seq_mean_token_mean`` and ``std + 1e-6``. Same: clip 0.2 / 0.2,
no dual clip, KL 0.04 (k3) to the SFT start, 300 RL steps of 8 prompts x 8 samples, Adam lr 1e-4.

Commands (one seed each; ``experiments/results/apo_vision.md`` runs seeds 0, 1, 2 of both):
    jaxrl-llm train apo_vision --set seed=0 --set name=apo_vision_s0
    jaxrl-llm train apo_vision_grpo_baseline --set seed=0 --set name=apo_vision_grpo_s0

Hardware: the project's 2-core CPU machine, f32. Time and result: ``experiments/results/apo_vision.md``.
"""

import dataclasses

from jaxrl_llm.algorithms import apo, grpo
from jaxrl_llm.config import Config, default_config

BETA = 0.04
MAX_COUNT = 12
ALGOS = {
    "apo": apo.Config(beta=BETA, stcr_base=1.05),
    "grpo": grpo.Config(beta=BETA),
}


def config(method: str) -> Config:
    """The run above with ``method``'s objective (``ALGOS``)."""
    base = default_config()
    return dataclasses.replace(
        base,
        name="apo_vision" if method == "apo" else f"apo_vision_{method}",
        algorithm=method,
        algo=ALGOS[method],
        model=dataclasses.replace(base.model, name="tiny-vlm-16px"),
        task=dataclasses.replace(
            base.task,
            name="images:count",
            kwargs={"max_count": MAX_COUNT, "worked": True, "num_eval": 200},
            max_prompt_len=64,
        ),
        sampling=dataclasses.replace(base.sampling, max_new_tokens=36),
        optim=dataclasses.replace(base.optim, learning_rate=1e-4),
        train=dataclasses.replace(base.train, steps=300, prompts_per_step=8, group_size=8),
        sft=dataclasses.replace(base.sft, steps=65, batch_size=32),
        eval=dataclasses.replace(base.eval, every=100, num_examples=200, batch_size=200),
        checkpoint=dataclasses.replace(base.checkpoint, every=100),
    )


def get_config() -> Config:
    return config("apo")
