"""COPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2508.04138 (method file: ``jaxrl_llm/algorithms/copo.py``). A group whose outcomes all agree has no GRPO advantage. COPO
gives it a global, cross-prompt advantage, blended with the local one by a sigmoid of the
group's answer entropy. The group rollout reads each completion's answer as the task's reward
does (``Task.answer_fn``; reasoning-gym ``answer_format = "auto"``: tag, else boxed, else the bare
completion) and groups equal answers (``rewards.extract.answer_classes``). Paper defaults, plus
the regime's KL weight 0.04.

Command (the whole comparison, or this run alone):
    python experiments/results/family_a_sweep.py --out runs/family_a
    jaxrl-llm train copo

Hardware: the project's 2-core CPU machine, f32. Time: ~390 s.

Expected result, measured once (seed 0, 2026-11-27): every row carries gradient
(``frac_signal_rows`` = 1.0, against GRPO's 0.76). Greedy held-out accuracy 43.4% -> 60.9% after
400 RL steps, against GRPO's 53.5% / 59.0% (within noise). With tag-only reading (the COPO code's;
now ``task.kwargs.answer_format=tags``, then ``copo.Config.answer_extraction="tagged"``, the reading before the fix) every bare answer reads as "no answer": accuracy fell to 37.1%.
Details: ``experiments/results/copo.md``.
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import copo
from jaxrl_llm.config import Config


def get_config() -> Config:
    return family_a.learning_config("copo", "copo", copo.Config(beta=family_a.LEARNING_BETA))
