"""APO (text part: DADS + STCR) vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2506.21655 (method file: ``jaxrl_llm/algorithms/apo.py``). DADS relaxes the KL weight on positive samples of hard
prompts. STCR penalizes the length of negative samples (weight ``stcr_base ** length``).
``stcr_base = 1.05``: the code's 1.00001 is invisible below ~100 tokens (spec note (b)).
``beta = 0.04``, the regime's KL weight in every run.

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train apo

Hardware: the project's 2-core CPU machine, f32. Time: ~400 s (another job on the machine).

Expected result, measured once (seed 0, 2026-11-27): greedy held-out accuracy 43.4% -> 59.4%
after 400 RL steps (GRPO: 53.5% / 59.0%). Wrong completions are 2.576 tokens long on average over
RL, against GRPO's 2.624 / 2.614: shorter as STCR predicts, but by 0.04 tokens on 2-3-token
answers. KL 0.169 against 0.170 / 0.179. Details: ``experiments/results/apo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import apo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("apo", "apo", apo.Config(beta=family_a.LEARNING_BETA, stcr_base=1.05))
