"""Single-stream SPO on a finite pool of 256 one-digit chain sums, tiny model, vs GRPO
(single_stream_spo_grpo_baseline.py) at the same generation budget: 64 samples per step
(SPO: 64 prompts x 1; GRPO: 8 prompts x 8), same model, SFT warm start, steps and seed.

Command (2-core CPU, each run a few minutes; run sequentially):
    jaxrl-llm train single_stream_spo
    jaxrl-llm train single_stream_spo_grpo_baseline
    jaxrl-llm plot runs/single_stream_spo runs/single_stream_spo_grpo_baseline

Uses the trainer's wiring of SPO's hooks (``select_prompts`` over ``task.train_example(i)``,
``i < algo.num_prompts``, one sample per prompt with ``rollout["prompt_ids"]``; and, for
``rho_mode="kl"``, ``replay_tokens`` -> ``rollout["replay_logprobs"]`` before ``update_state``).
What it measures (spec group_rlvr_and_credit.md §3): the fraction of samples that carry no
learning signal (SPO: ``frac_zero_adv``; GRPO: rows in zero-std groups, ``frac_zero_std_groups``),
samples per second, and held-out accuracy. Results: ``experiments/results/single_stream_spo.md``.
"""

from jaxrl_llm.algorithms import single_stream_spo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

POOL = 256  # training prompts; the tracker covers exactly these (task.train_example(0..255))
EVAL = 128


def get_config() -> Config:
    return Config(
        name="single_stream_spo",
        seed=0,
        algorithm="single_stream_spo",
        algo=single_stream_spo.Config(num_prompts=POOL, max_response_len=32, n_offline=0),
        model=ModelConfig(name="tiny"),
        task=TaskConfig(name="rg:chain_sum", kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
                                                     "size": POOL + EVAL, "num_eval": EVAL},
                        max_prompt_len=128),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=30, prompts_per_step=64, group_size=1),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=EVAL, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
