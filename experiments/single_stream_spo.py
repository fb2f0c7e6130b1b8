"""Single-stream SPO on a finite pool of 256 two-term one-digit chain sums, tiny model, vs GRPO
(single_stream_spo_grpo_baseline.py) at the same generation budget: 64 samples per step
(SPO: 64 prompts x 1; GRPO: 8 prompts x 8), same model, SFT warm start, steps and seed
(``experiments/bases/family_a.py``, ``SINGLE_STREAM_SPO``).

Command (run sequentially):
    jaxrl-llm train single_stream_spo
    jaxrl-llm train single_stream_spo_grpo_baseline
    jaxrl-llm plot runs/single_stream_spo runs/single_stream_spo_grpo_baseline

Hardware: the project's 2-core CPU machine (no accelerator), f32.
Time: 148 s measured (the baseline 141 s), on the 2 cores shared with other jobs (load average 5-7).

Uses the trainer's wiring of SPO's hooks (``select_prompts`` over ``task.train_example(i)``,
``i < algo.num_prompts``, one sample per prompt with ``rollout["prompt_ids"]``; and, for
``rho_mode="kl"``, ``replay_tokens`` -> ``rollout["replay_logprobs"]`` before ``update_state``).
What it measures (spec group_rlvr_and_credit.md §3): the fraction of samples that carry no
learning signal (SPO: ``frac_zero_adv``; GRPO: rows in zero-std groups, ``frac_zero_std_groups``),
samples per second, and held-out accuracy.

Expected result: measured once (seed 0), 0.05% of SPO's samples carry no learning signal vs 44% of
GRPO's; raw throughput is lower (51 vs 60 samples/s: 64 prefills per step instead of 8), but
counting only samples with a signal SPO delivers 51/s vs 34/s; held-out greedy accuracy 10.2% ->
0.8% (GRPO 4.7%), pass@1 3.3% in both. Details: ``experiments/results/single_stream_spo.md``.
"""

from jaxrl_llm.algorithms import single_stream_spo
from jaxrl_llm.config import Config

from bases import family_a  # experiments/bases/: load_experiment puts experiments/ on sys.path


def get_config() -> Config:
    run = family_a.SINGLE_STREAM_SPO
    # The tracker covers exactly the training pool (task.train_example(0 .. train_pool - 1)).
    algo = single_stream_spo.Config(num_prompts=run.train_pool, max_response_len=run.max_new_tokens, n_offline=0)
    return family_a.config(run, "single_stream_spo", "single_stream_spo", algo, prompts_per_step=64, group_size=1)
