"""DCPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2509.02333 (method file: ``jaxrl_llm/algorithms/dcpo.py``). DCPO gives each token clip bounds that depend on its
probability, and standardizes advantages smoothly over the prompt's cumulative history (SAS),
so that revisited all-equal groups still carry gradient. Paper defaults, plus the regime's KL
weight 0.04 (the paper uses none). The SAS table covers the regime's 99,500 training indices
(``num_prompts``). The trainer checkpoints the table with the algorithm state.

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train dcpo

Hardware: the project's 2-core CPU machine, f32. Time: 388 s (another job on the machine).

Expected result, measured once (seed 0, 2026-11-27) under the OLD default aggregation
``seq_mean_token_mean`` (GRPO's; since 2026-12 the default is the paper's Eq. 8,
``seq_sum_token_mean``, G = 8 times larger gradients; awaiting a rerun): greedy held-out accuracy 43.4% -> 60.5% after
400 RL steps, against 53.5% / 59.0% for the GRPO runs (within noise). No prompt index is revisited
in 400 steps of a 99,500-index pool (``dcpo/frac_revisited`` = 0), so SAS falls back to the group
statistics. ``clip_frac`` is 0 with one on-policy update per batch. The mechanism shows in the
short regime: see ``experiments/results/dcpo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import dcpo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config(
        "dcpo", "dcpo", dcpo.Config(num_prompts=family_a.LEARNING_POOL, beta=family_a.LEARNING_BETA)
    )
