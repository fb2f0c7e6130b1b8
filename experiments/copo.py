"""COPO vs GRPO (copo_grpo_baseline.py) on mixed-difficulty chain sums, tiny model, same budget
(``experiments/bases/family_a.py``, ``MIXED_DIFFICULTY``).

Command (run sequentially):
    jaxrl-llm train copo
    jaxrl-llm train copo_grpo_baseline
    jaxrl-llm plot runs/copo runs/copo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 350 s measured (GRPO baseline 428 s), on the 2 cores shared with other jobs (load average
13-15).

COPO needs ``rollout["answer_ids"]`` (which completions of a group gave the same final answer);
the trainer computes them on the host from the decoded completions with ``copo.host_extras``.
(The figures in ``experiments/results/copo.md`` were measured before the trainer called that hook,
through a wrapper around ``train.collect_rollout`` that did the same.)

What it measures (spec group_rlvr_and_credit.md §8): the fraction of rows that carry gradient
(COPO: ``frac_signal_rows``; GRPO: 1 - ``frac_zero_std_groups`` with binary rewards), the answer
entropy (``answer_entropy/mean``), held-out greedy accuracy and pass@k.
Settings: the paper's defaults (``soft_with_forced``, k=20, b=0.5, eps 0.2, seq-mean-token-mean,
no KL); everything else is the shared baseline run.

Expected result: measured once (seed 0), the mechanism works as claimed: every row carries gradient
(``frac_signal_rows`` 1.0 vs GRPO's ~0.44); held-out greedy accuracy 8.6% -> 6.25% (GRPO 3.1%),
pass@8 0.28 -> 0.24 (GRPO 0.20): COPO loses less, but neither improves on the SFT model and the
gap is within noise. Details: ``experiments/results/copo.md``.
"""

from jaxrl_llm.algorithms import copo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.MIXED_DIFFICULTY, "copo", "copo", copo.Config())
