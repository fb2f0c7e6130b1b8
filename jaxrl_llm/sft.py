"""Supervised warm start: token-mean cross-entropy on demonstrations, prompt tokens masked.

    loss = -sum_{b,t} mask[b,t] log pi(y[b,t] | x_b, y[b,<t]) / sum_{b,t} mask[b,t]

with the denominator over the whole batch (``num_tokens``), so micro-batches accumulate exactly.
Examples with pictures (image tasks, a vision-language model) condition on them: x_b holds them.
The demonstration of an example is ``sft.template`` with ``{answer}`` its reference answer,
followed by the stop token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_llm.config import Config
from jaxrl_llm.policy import Policy, right_pad
from jaxrl_llm.types import Example
from jaxrl_llm.update import Updater


def demonstration(example: Example, template: str) -> str:
    """The demonstration completion of ``example``: ``template`` with ``{answer}`` filled in."""
    if example.answer is None:
        raise ValueError(f"example {example.id!r} has no reference answer to build an SFT demonstration from")
    return template.format(answer=example.answer)


def make_batch(policy: Policy, examples: list[Example], cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens [N, Sp + T], attention [N, Sp + T], completion mask [N, T])``, T = ``sampling.max_new_tokens``.
    The examples' pictures, if any, are ``policy.prompt_images(examples)``."""
    prompt_tokens, prompt_mask = policy.encode_prompts(examples)
    eos = policy.eos_ids[0] if policy.eos_ids else policy.pad_id
    demos = [policy.encode_text(demonstration(e, cfg.sft.template)) + [eos] for e in examples]
    longest = max(range(len(demos)), key=lambda i: len(demos[i]))
    T = cfg.sampling.max_new_tokens
    if len(demos[longest]) > T:
        raise ValueError(
            f"SFT demonstration of example {examples[longest].id!r} has {len(demos[longest])} tokens "
            f"(stop token included) > sampling.max_new_tokens={T}; raise it"
        )
    completion, cmask = right_pad(demos, T, policy.pad_id)
    tokens = np.concatenate([prompt_tokens, completion], axis=1)
    attention = np.concatenate([prompt_mask.astype(np.float32), cmask], axis=1)
    return tokens, attention, cmask


def loss_fn(policy: Policy, num_completion: int) -> Callable:
    """``(params, inputs, batch) -> (loss, metrics)`` of the module docstring."""

    def fn(params, inputs, batch):
        logprobs = policy.completion_logprobs(
            policy.model(params),
            inputs["tokens"],
            inputs["attention_mask"],
            num_completion,
            images=inputs.get("images"),
        )
        total = -jnp.sum(logprobs * batch["mask"])
        return total / batch["num_tokens"], {"sft/tokens": jnp.sum(batch["mask"])}

    return fn


def step(
    policy: Policy, updater: Updater, tx: optax.GradientTransformation, opt_state: Any, data: Any, cfg: Config
) -> tuple[Any, dict[str, float]]:
    """One SFT update on the next ``sft.batch_size`` examples of ``data``; updates ``policy.params``.
    Returns ``(opt_state, metrics)``."""
    examples = [next(data) for _ in range(cfg.sft.batch_size)]
    tokens, attention, cmask = make_batch(policy, examples, cfg)
    images = policy.prompt_images(examples)
    T = cmask.shape[1]
    policy.params, opt_state, m = updater.step(
        f"sft/T={T}",
        tx,
        loss_fn(policy, T),
        policy.params,
        opt_state,
        {"tokens": tokens, "attention_mask": attention} | ({} if images is None else {"images": images}),
        {"mask": cmask},
        {"num_tokens": float(cmask.sum())},
        cfg.sft.micro_batch_size,
    )
    return opt_state, {"sft/loss": m["loss"], "grad_norm": m["grad_norm"], "finite": m["finite"]}
