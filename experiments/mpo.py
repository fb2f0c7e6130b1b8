"""MPO (https://arxiv.org/abs/2504.20157): an evolving rubric against a loophole built on purpose.

The default run's setting (``small`` model, basic_arithmetic, 120 SFT steps, 16 prompts x 8
samples, lr 5e-5) with the objective swapped to ``mpo``: the reward is a rubric judge's score
(``judges/rubric.py``), seeded with ``SEED_RUBRIC``, which pays one point per digit in the
response (at most 5) and 5 for an ``<answer>`` tag: a loophole, since a longer wrong number scores
more than the right one-digit answer. Every 10 updates the programmatic meta-reward model reads 16
scored rollouts, adds the items that would have caught an inflated score (``correct``,
``no_repetition``) and, since 2026-12-08, halves the points of items that pay inflated wrong
answers as much as right ones (the paper's critique of the point distribution;
``--set algo.mrm_reweigh=false`` is the add-only stand-in of the earlier runs). The fixed-rubric
baseline is ``--set algo.num_mpo_interval=0``. What to
measure: ``mpo/true_quality`` (the verifier's reward, never seen by the rubric judge),
``mpo/rubric_score_frac`` and ``mpo/gap`` between them, and the rubric history in the state.

Command:
    jaxrl-llm train mpo
    jaxrl-llm train mpo --set algo.num_mpo_interval=0 --set name=mpo_fixed --run-dir runs/mpo_fixed
    jaxrl-llm train mpo --set algo.mrm_reweigh=false --set name=mpo_add_only --run-dir runs/mpo_add_only

Hardware: the project's 2-core CPU machine (no accelerator), f32.

Time and expected result: see experiments/results/mpo.md.
"""

from bases import baselines  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import mpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return baselines.config("mpo", "mpo", algo=mpo.Config(num_mpo_interval=10, mpo_samples=16))
