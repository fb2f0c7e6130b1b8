"""DCPO on chain sums over a small pool of 64 training prompts (each revisited every 8 steps), tiny
model, vs GRPO (dcpo_grpo_baseline.py).

Spec group_rlvr_and_credit.md §4, "minimal reproduction": DCPO's smooth advantage standardization
gives revisited prompts with all-equal groups a nonzero advantage (more responses carry gradient),
and its probability-dependent clip bounds clip far fewer tokens than GRPO's fixed 0.2.
Same model, task, SFT, steps, batch and seed as the baseline; no KL in either.

Command (2-core CPU, a few minutes each; run sequentially):
    jaxrl-llm train dcpo
    jaxrl-llm train dcpo_grpo_baseline
    jaxrl-llm plot runs/dcpo runs/dcpo_grpo_baseline

Uses the trainer's ``rollout["prompt_ids"]`` (each row's training-example index, in
``[0, num_prompts)``) of every rollout; the SAS state (per-prompt visits, mean, std) is the
algorithm state the trainer checkpoints. Measures: ``clip_frac`` (both), the fraction of tokens
with a nonzero gradient (``dcpo/frac_tokens_with_grad``) and of responses with a nonzero advantage
(``dcpo/frac_nonzero_adv`` vs GRPO's ``1 - frac_zero_std_groups``). Results:
``experiments/results/dcpo.md``.
"""

from jaxrl_llm.algorithms import dcpo
from jaxrl_llm.config import (CheckpointConfig, Config, EvalConfig, ModelConfig, OptimConfig, SamplingConfig,
                              SFTConfig, TaskConfig, TrainConfig)

NUM_EVAL, NUM_TRAIN = 128, 64
TASK = TaskConfig(name="rg:chain_sum",
                  kwargs={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1,
                          "size": NUM_EVAL + NUM_TRAIN, "num_eval": NUM_EVAL},
                  max_prompt_len=128)


def get_config() -> Config:
    return Config(
        name="dcpo",
        seed=0,
        algorithm="dcpo",
        algo=dcpo.Config(num_prompts=NUM_TRAIN),
        model=ModelConfig(name="tiny"),
        task=TASK,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32),
        optim=OptimConfig(learning_rate=3e-4),
        train=TrainConfig(steps=40, prompts_per_step=8, group_size=8),
        sft=SFTConfig(steps=150, batch_size=32, learning_rate=1e-3),
        eval=EvalConfig(num_examples=128, k=4),
        checkpoint=CheckpointConfig(every=20),
    )
