"""Validation and f32 upcast of a loss's inputs (the ``Batch`` of ``jaxrl_llm.types``).

Losses compute in f32 whatever the input dtype (bf16 log-probs from the model are upcast), and a
missing or misshaped key fails with an error naming the key and the method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.types import Array


def require(batch: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    """Raises ``KeyError`` naming every key of ``keys`` missing from ``batch``."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{where}: batch is missing {missing}; it has {sorted(batch)}")


def per_token(x: Array, mask: Array, name: str, where: str) -> Array:
    """``[B]`` (broadcast over T) or ``[B, T]`` -> ``[B, T]`` f32; anything else is an error."""
    x = jnp.asarray(x, jnp.float32)
    if x.shape == mask.shape:
        return x
    if x.shape == mask.shape[:1]:
        return jnp.broadcast_to(x[:, None], mask.shape)
    raise ValueError(f"{where}: {name} has shape {x.shape}; expected {mask.shape[:1]} or {mask.shape}")


def token_array(batch: Mapping[str, Any], key: str, mask: Array, where: str) -> Array:
    """``batch[key]`` as f32, checked to be ``[B, T]`` like the mask."""
    x = jnp.asarray(batch[key], jnp.float32)
    if x.shape != mask.shape:
        raise ValueError(f"{where}: batch[{key!r}] has shape {x.shape}; expected {mask.shape} like 'mask'")
    return x


def policy_inputs(logprobs: Array, batch: Mapping[str, Any], where: str, ref: bool = False) -> dict[str, Array]:
    """The common loss inputs, f32: ``logprobs``, ``old_logprobs``, ``mask`` ``[B, T]``,
    ``advantages`` ``[B, T]`` (broadcast from ``[B]``), ``is_weights`` ``[B, T]`` (rollout-correction
    weights from ``batch["is_weights"]``, ones if absent), ``num_tokens``, ``num_seqs`` (scalars),
    and with ``ref=True`` (a loss whose KL weight is > 0) ``ref_logprobs`` ``[B, T]``."""
    require(batch, ("old_logprobs", "advantages", "mask", "num_tokens", "num_seqs"), where)
    mask = jnp.asarray(batch["mask"], jnp.float32)
    if mask.ndim != 2:
        raise ValueError(f"{where}: mask must be [B, T], got shape {mask.shape}")
    lp = jnp.asarray(logprobs, jnp.float32)
    if lp.shape != mask.shape:
        raise ValueError(f"{where}: logprobs has shape {lp.shape}; expected {mask.shape} like 'mask'")
    is_w = token_array(batch, "is_weights", mask, where) if "is_weights" in batch else jnp.ones_like(mask)
    x = {
        "logprobs": lp,
        "old_logprobs": token_array(batch, "old_logprobs", mask, where),
        "mask": mask,
        "advantages": per_token(batch["advantages"], mask, "advantages", where),
        "is_weights": is_w,
        "num_tokens": jnp.asarray(batch["num_tokens"], jnp.float32),
        "num_seqs": jnp.asarray(batch["num_seqs"], jnp.float32),
    }
    if ref:
        x["ref_logprobs"] = ref_logprobs(batch, mask, where)
    return x


def ref_logprobs(batch: Mapping[str, Any], mask: Array, where: str) -> Array:
    """``batch["ref_logprobs"]`` as f32 ``[B, T]``; the error says the KL weight is why it is needed."""
    require(batch, ("ref_logprobs",), f"{where} (beta > 0 needs the reference model's log-probs)")
    return token_array(batch, "ref_logprobs", mask, where)
