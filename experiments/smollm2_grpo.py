"""GRPO on SmolLM2-135M-Instruct (a real pretrained chat model, offline): held-out accuracy rises.

This is the path a GPU/TPU user takes with a larger model: a pretrained Hugging Face checkpoint,
its chat template, a verifiable reward, GRPO with a KL to the frozen start, evaluations,
checkpoints and curves.

Task: ``suite:number_arithmetic`` with one-digit operands ("Calculate 7 - 9."), reasoning-gym's
``basic_arithmetic``; reward 1 when the LAST number of the completion equals the answer
(``number_equals``), so a chat model that answers in a sentence is scored on its arithmetic. The
model as shipped can partly do it: greedy it gets 44% of 100 held-out questions, because it often
explains at length and runs into the 48-token limit or ends on another number ("To calculate
5 - 3, we need to subtract 3 from 5, which is ..."). Sampling and pass@k use temperature 0.7.

Command:
    jaxrl-llm train smollm2_grpo                      # seed 0
    jaxrl-llm train smollm2_grpo --set seed=1 --run-dir runs/smollm2_grpo_s1

Hardware and time: 2-core CPU (this project's CI machine kind), f32, no SFT. 40 RL steps of
8 prompts x 4 samples x <= 48 new tokens, Adam lr 1e-5 (constant), KL 0.04, evaluations before,
at step 20 and after (100 held-out prompts, greedy + 4 samples). Measured on 2026-12-06 with
other jobs sharing the 2 cores (load ~5): 20-27 min a seed (25-34 s a step: sampling 5-6 s,
update 16-23 s, reference log-probs 3.5-5 s; each evaluation ~2 min). Alone it runs faster.

Expected result, 3 seeds (``experiments/results/smollm2_grpo.md``): held-out greedy accuracy
44% -> 87 / 81 / 86% (+40.7 +- 3.2 points), pass@1 0.33 -> 0.79, pass@4 0.68 -> 0.88. What it
learns: its answers end on the result ("... 7 - 9 = -2."; seed 0 answers in one line, "7 - 9 =
-1"), so the last number is its answer; part of the gain is that, part arithmetic (pass@1 rises
as much in the seeds that keep their sentences); some arithmetic stays wrong.

On a TPU pod slice or a multi-GPU host (see "Running big" in README.md), change:
  * ``model.name``: a local HF checkpoint directory (e.g. a Qwen2.5/Qwen3/Llama 1-8B model);
  * ``model.compute_dtype="bfloat16"`` (master weights and loss math stay f32);
  * ``mesh``: ``MeshConfig(data=-1, fsdp=8)`` shards parameters and optimizer state over 8 chips
    per replica (``tensor=4`` adds tensor parallelism for models that do not fit);
  * batch: ``prompts_per_step=64, group_size=8, num_minibatches=4, micro_batch_size=16``,
    ``sampling.max_new_tokens=1024``, ``task.max_prompt_len=512``;
  * run the same command on every host with ``--distributed`` (jax.distributed initializes
    from the TPU / SLURM environment).
"""

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.config import (
    CheckpointConfig,
    Config,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RewardConfig,
    SamplingConfig,
    TaskConfig,
    TrainConfig,
)

TEMPERATURE = 0.7  # sampling in training and in the pass@k evaluation


def get_config() -> Config:
    return Config(
        name="smollm2_grpo",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(beta=0.04),
        model=ModelConfig(name="smollm2-135m-instruct"),
        task=TaskConfig(
            name="suite:number_arithmetic",
            kwargs={"min_digits": 1, "max_digits": 1, "num_eval": 200},
            max_prompt_len=64,
        ),
        sampling=SamplingConfig(temperature=TEMPERATURE, max_new_tokens=48),
        optim=OptimConfig(learning_rate=1e-5, warmup_steps=0, max_grad_norm=1.0),
        train=TrainConfig(steps=40, prompts_per_step=8, group_size=4),
        eval=EvalConfig(every=20, num_examples=100, k=4, temperature=TEMPERATURE, batch_size=100),
        checkpoint=CheckpointConfig(every=10),
        # The reward is a regex match: it runs in the trainer's process. Rewards that execute code
        # or may hang want worker processes (num_workers >= 1, timeout_s).
        reward=RewardConfig(num_workers=0),
    )
