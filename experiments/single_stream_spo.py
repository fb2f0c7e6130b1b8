"""Single-stream SPO vs GRPO in the family-A learning regime (``experiments/bases/family_a.py``).

Paper: https://arxiv.org/abs/2509.13232 (method file: ``jaxrl_llm/algorithms/single_stream_spo.py``). No groups: one sample per prompt (128 prompts x 1 = GRPO's
16 x 8 samples per step). A persistent KL-adaptive value tracker per prompt supplies the baseline
(algorithm state, checkpointed), advantages are normalized over the whole batch, and prompts are
drawn by priority. The tracker covers the regime's 99,500 training indices. ``n_offline = 0``
(no offline prior pass). KL weight 0.04, the regime's.

Command (the recorded run gave it 100 RL steps):
    python experiments/results/family_a_sweep.py --out runs/family_a --only single_stream_spo:0 --set train.steps=100
    jaxrl-llm train single_stream_spo

Hardware: the project's 2-core CPU machine, f32. Time: ~5 min for 100 RL steps (2.0 s per step).

Expected result, measured once (seed 0, 2026-11-27): 0.9% of samples have a zero advantage, where
GRPO wastes 24% in zero-spread groups. A step takes 2.0 s against GRPO's 0.9 s: GRPO computes each
group's shared prompt once, and SPO also scores its replayed responses: 63 samples/s against
GRPO's ~136 (its nonzero-advantage share is ~100% by construction, so it says nothing about how
much signal a sample carries). Greedy held-out accuracy after 100 RL steps was 47.3%, against
GRPO's 44.1% / 43.4% (from 43.4%), within noise. Details: ``experiments/results/single_stream_spo.md``.
Over 400 steps and 3 seeds in the learning suite (``experiments/results/family_a_seeds.md``) SPO
ended at 77.0 +- 1.7% against GRPO's 66.5 +- 4.5% (p = 0.04), with more settings differing than
the baseline (listed there).
"""

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import single_stream_spo
from jaxrl_llm.config import Config


def get_config() -> Config:
    # One sample per prompt: 128 prompts x 1 = GRPO's 16 x 8 samples per step. The tracker covers
    # exactly the training pool (task.train_example(0 .. LEARNING_POOL - 1)).
    algo = single_stream_spo.Config(
        num_prompts=family_a.LEARNING_POOL, max_response_len=4, n_offline=0, beta=family_a.LEARNING_BETA
    )
    return family_a.learning_config("single_stream_spo", "single_stream_spo", algo, prompts_per_step=128, group_size=1)
