"""GRPO baseline for dcpo.py: the same run (model, the same 64-prompt pool, SFT, steps, batch, seed:
``experiments/bases/family_a.py``, ``DCPO``), GRPO objective with beta = 0 (DCPO has no KL). See
dcpo.py for what is measured.

Command:
    jaxrl-llm train dcpo_grpo_baseline
    jaxrl-llm train dcpo_grpo_baseline --set train.num_minibatches=4   # off-policy updates

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 94 s measured (90 s with 4 minibatches), on the 2 cores shared with other jobs.

Expected result: measured once (seed 0), 63% of responses in groups that are not all-equal
(``1 - frac_zero_std_groups``), ``clip_frac`` 0 with one update per batch and 0.83% with 4
minibatches; held-out greedy accuracy 9.4% -> 2.3%. Details: ``experiments/results/dcpo.md``.
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.DCPO, "dcpo_grpo_baseline", "grpo", grpo.Config(beta=0.0))
