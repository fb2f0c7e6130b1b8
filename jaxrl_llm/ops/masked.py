"""Masked reductions over ``[B, T]`` arrays.

Convention everywhere in ``ops``: ``mask`` is 1 for entries that count and 0 otherwise, and entries
under ``mask == 0`` never influence a value or a gradient. They are selected away with
``jnp.where`` (not multiplied by 0), so a NaN or inf sitting in padding cannot leak through
``0 * inf = nan``.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_llm.types import Array


def where_mask(x: Array, mask: Array, fill: float = 0.0) -> Array:
    """``x`` where ``mask != 0``, else ``fill``; the gradient to masked entries is exactly 0."""
    return jnp.where(mask != 0, x, jnp.asarray(fill, dtype=x.dtype))


def masked_sum(x: Array, mask: Array, axis: int | tuple[int, ...] | None = None) -> Array:
    """``sum(x * mask, axis)`` with masked entries selected away (see module docstring)."""
    return jnp.sum(where_mask(x, mask), axis=axis)


def masked_mean(x: Array, mask: Array, axis: int | tuple[int, ...] | None = None) -> Array:
    """``sum(x * mask) / max(sum(mask), 1)`` along ``axis``.

    The denominator is the LOCAL mask count: use it for per-sequence or per-group statistics only.
    A loss that must stay correct under micro-batching divides by a global count instead
    (``ops.aggregation``). An all-masked slice gives 0, not NaN.
    """
    count = jnp.sum((mask != 0).astype(x.dtype), axis=axis)
    return masked_sum(x, mask, axis) / jnp.maximum(count, 1)


def masked_var(x: Array, mask: Array, axis: int | tuple[int, ...] | None = None, ddof: int = 0) -> Array:
    """``sum(mask * (x - masked_mean)^2) / max(sum(mask) - ddof, 1)``.

    ``ddof = 0`` is the population variance, ``ddof = 1`` Bessel's unbiased estimate (what
    ``torch.std`` / TRL / verl use). Fewer than ``ddof + 1`` entries give 0.
    """
    mean = masked_mean(x, mask, axis)
    if axis is not None:
        mean = jnp.expand_dims(mean, axis)
    count = jnp.sum((mask != 0).astype(x.dtype), axis=axis)
    return masked_sum(jnp.square(x - mean), mask, axis) / jnp.maximum(count - ddof, 1)


def masked_std(x: Array, mask: Array, axis: int | tuple[int, ...] | None = None, ddof: int = 0) -> Array:
    """``sqrt(masked_var(x, mask, axis, ddof))``."""
    return jnp.sqrt(masked_var(x, mask, axis, ddof))


def masked_max(x: Array, mask: Array, axis: int | tuple[int, ...] | None = None) -> Array:
    """Max over unmasked entries; ``-inf`` (the identity of ``max``) for an all-masked slice."""
    return jnp.max(where_mask(x, mask, -jnp.inf), axis=axis)


def masked_min(x: Array, mask: Array, axis: int | tuple[int, ...] | None = None) -> Array:
    """Min over unmasked entries; ``+inf`` (the identity of ``min``) for an all-masked slice."""
    return jnp.min(where_mask(x, mask, jnp.inf), axis=axis)


def whiten(x: Array, mask: Array, eps: float = 1e-8, ddof: int = 0, shift_mean: bool = True) -> Array:
    """``(x - mu) / sqrt(var + eps)`` (+ ``mu`` back when ``shift_mean=False``) over all unmasked entries.

    ``mu`` and ``var`` are the masked mean and variance (``ddof`` as in ``masked_var``) over the whole
    array. Masked entries come back as 0. Reference: the PPO-for-LLMs "whiten" of Huang et al. 2024
    (arXiv 2403.17031), here computed over the mask only.
    """
    mu = masked_mean(x, mask)
    var = masked_var(x, mask, ddof=ddof)
    out = (x - mu) * jnp.reciprocal(jnp.sqrt(var + eps))
    if not shift_mean:
        out = out + mu
    return where_mask(out, mask)
