"""DCPO on chain sums over a small pool of 64 training prompts (each revisited every 8 steps), tiny
model, vs GRPO (dcpo_grpo_baseline.py).

Spec group_rlvr_and_credit.md §4, "minimal reproduction": DCPO's smooth advantage standardization
gives revisited prompts with all-equal groups a nonzero advantage (more responses carry gradient),
and its probability-dependent clip bounds clip far fewer tokens than GRPO's fixed 0.2.
Same model, task, SFT, steps, batch and seed as the baseline (``experiments/bases/family_a.py``,
``DCPO``); no KL in either.

Command (run sequentially):
    jaxrl-llm train dcpo
    jaxrl-llm train dcpo_grpo_baseline
    jaxrl-llm plot runs/dcpo runs/dcpo_grpo_baseline
Off-policy updates, so that clipping can act: add ``--set train.num_minibatches=4`` to both runs.

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 138 s measured (103 s with 4 minibatches; the baseline 94 s and 90 s), on the 2 cores
shared with other jobs.

Uses the trainer's ``rollout["prompt_ids"]`` (each row's training-example index, in
``[0, num_prompts)``) of every rollout; the SAS state (per-prompt visits, mean, std) is the
algorithm state the trainer checkpoints. Measures: ``clip_frac`` (both), the fraction of tokens
with a nonzero gradient (``dcpo/frac_tokens_with_grad``) and of responses with a nonzero advantage
(``dcpo/frac_nonzero_adv`` vs GRPO's ``1 - frac_zero_std_groups``).

Expected result: measured once (seed 0), 88% of DCPO's responses carry a nonzero advantage over the
run (95% over the last 10 steps) against 63% in the GRPO run; with one update per batch neither
method clips (``clip_frac`` 0); with 4 minibatches DCPO clips 0.38% of tokens vs GRPO's 0.83%.
Held-out greedy accuracy 9.4% -> 7.0% (GRPO 2.3%), one seed. Details: ``experiments/results/dcpo.md``.
"""

from jaxrl_llm.algorithms import dcpo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    return family_a.config(family_a.DCPO, "dcpo", "dcpo", dcpo.Config(num_prompts=family_a.DCPO.train_pool))
