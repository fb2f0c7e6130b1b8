"""HAPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget
(``experiments/bases/family_a.py``, ``MIXED_DIFFICULTY``).

Command (run sequentially):
    jaxrl-llm train hapo
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/hapo runs/copo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 555 s measured (GRPO baseline 428 s), on the 2 cores shared with other jobs (load average
13-15), through the former wrapper that recompiled the sampler every step (~9 s of the 11.3 s per
step); the trainer's own wiring (below) avoids those compiles and has not been timed here.

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
extra generation rounds, breaking the same-budget comparison.

Expected result: measured once (seed 0), the claimed effect does not appear at this scale: mean token
entropy over RL 0.278 (HAPO) vs 0.279 (GRPO); no token is clipped in either run (one update per
rollout), so HAPO acts as an entropy-dependent advantage reweighting (``adv_scale/mean`` ~0.75-0.83);
held-out greedy accuracy 8.6% -> 4.7% (GRPO 3.1%), pass@8 0.23 (GRPO 0.20), within noise.
Details: ``experiments/results/hapo.md``.
"""

from jaxrl_llm.algorithms import hapo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.MIXED_DIFFICULTY, "hapo", "hapo", hapo.Config(dynamic_sampling=False))
