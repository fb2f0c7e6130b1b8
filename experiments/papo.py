"""PAPO vs GRPO on ``images:digits`` with a text prior, through the trainer (SFT, then RL).

Paper: https://arxiv.org/abs/2507.06448 (method file: ``jaxrl_llm/algorithms/papo.py``). The claim
measured: PAPO's perception term (KL between the policy with the image and with 60% of its patches
blacked out, ``papo/kl_prc``) makes the policy rely on the picture, so held-out accuracy on the
questions that NEED the image (``eval/accuracy/needs_image``) rises above GRPO's at the same budget,
while the questions the text answers ("Hint: the answer is 7.", ``eval/accuracy/text_answerable``)
stay solved.

The run: ``tiny-vlm`` (the ``tiny`` decoder + a from-scratch SigLIP-architecture tower, 8x8 grey
pictures in 2x2 patches = 16 soft tokens, LLaVA-style projector), trained from scratch by the SFT
stage (60 steps of 32 demonstrations: the digit and the stop token), then RL: 300 steps of 8
prompts x 8 samples, Adam lr 1e-4, 3 new tokens. Half of the questions carry the hint
(``text_prior=0.5``). The group kind carries each row's picture (``Rollout.images``) to pi_old and
the update, and computes PAPO's ``masked_logprobs`` with ``papo.corrupt_images`` (one mask per
group). No reference model for either method (``beta = 0``); GRPO uses PAPO's token-mean
aggregation, so the two runs differ only in PAPO's perception (gamma) and double-entropy (eta)
terms. PAPO's blackout patch is the encoder's 2 px (the paper's 14 px is larger than these images).

Why 60 SFT steps: the start must leave the picture room to matter. Seed 0's SFT start (held-out
greedy accuracy, questions that need the picture / that the hint answers): 20 steps 0% / 0%,
40 steps 27.6% / 18.6%, 80 steps 79.6% / 99.0%, 300 steps 96.9% / 100% (at 300 both methods sat
at the ceiling: 95.9% / 93.9% after RL, nothing to measure).

Commands (one seed each; the results note runs seeds 0, 1, 2 of both):
    jaxrl-llm train papo --set seed=0 --set name=papo_s0
    jaxrl-llm train papo_grpo_baseline --set seed=0 --set name=papo_grpo_s0

Hardware: the project's 2-core CPU machine, f32. Time and result: ``experiments/results/papo.md``.
"""

import dataclasses

from jaxrl_llm.algorithms import grpo, papo
from jaxrl_llm.config import Config, default_config
from jaxrl_llm.models import zoo

ALGOS = {
    "papo": papo.Config(beta=0.0, mask_patch=zoo.TINY_VISION.patch_size),
    "grpo": grpo.Config(beta=0.0, aggregation="token_mean"),
}


def config(method: str) -> Config:
    """The run above with ``method``'s objective (``ALGOS``)."""
    base = default_config()
    return dataclasses.replace(
        base,
        name=f"papo_{method}" if method != "papo" else "papo",
        algorithm=method,
        algo=ALGOS[method],
        model=dataclasses.replace(base.model, name="tiny-vlm"),
        task=dataclasses.replace(
            base.task, name="images:digits", kwargs={"text_prior": 0.5, "num_eval": 200}, max_prompt_len=128
        ),
        sampling=dataclasses.replace(base.sampling, max_new_tokens=3),
        optim=dataclasses.replace(base.optim, learning_rate=1e-4),
        train=dataclasses.replace(base.train, steps=300, prompts_per_step=8, group_size=8),
        sft=dataclasses.replace(base.sft, steps=60, batch_size=32),
        eval=dataclasses.replace(base.eval, every=100, num_examples=200, batch_size=200),
        checkpoint=dataclasses.replace(base.checkpoint, every=100),
    )


def get_config() -> Config:
    return config("papo")
