"""Rollout (train/inference) mismatch correction: truncated importance weights and masking.

The sampler's log-probs ``sampler_logprobs`` (what the tokens were drawn from, mu) differ from the
trainer's recomputation ``old_logprobs`` (pi_old) through kernels, precision or a stale engine.
The importance weight of a token is ``w_t = pi_old(y_t) / mu(y_t) = exp(old_logprobs - sampler_logprobs)``.

* Truncated IS (TIS): multiply each per-token loss by ``sg[min(w, cap)]`` (token level), or by
  ``sg[min(prod_t w_t, cap)]`` (sequence level). Yao et al., "Your Efficient RL Framework Secretly
  Brings You Off-Policy RL Training" (2025 blog; verl PR #2953).
* Masked IS (MIS / rejection): drop tokens, or whole sequences, whose ratio leaves ``[low, high]``
  (TRL ``vllm_importance_sampling_mode=*_mask``; verl ``rollout_rs``).

The trainer applies these to the WHOLE batch before computing ``num_tokens``: it puts the weights
in ``batch["is_weights"]`` (every loss multiplies its per-token terms by them) and the reduced mask
in ``batch["mask"]``. All inputs ``[B, T]``; weights come back ``[B, T]`` with 0 under the mask.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrl_llm.ops import masked
from jaxrl_llm.types import Array

_MAX_LOG = 20.0


def _log_w(old_logprobs: Array, sampler_logprobs: Array, mask: Array) -> Array:
    chex.assert_rank([old_logprobs, sampler_logprobs, mask], 2)
    chex.assert_equal_shape([old_logprobs, sampler_logprobs, mask])
    return masked.where_mask(old_logprobs - sampler_logprobs, mask)


def _check_cap(cap: float) -> None:
    if not cap > 0:
        raise ValueError(f"importance-weight cap must be > 0, got {cap}")


def token_is_weights(old_logprobs: Array, sampler_logprobs: Array, mask: Array, cap: float = 2.0) -> Array:
    """Token TIS ``sg[min(exp(old - sampler), cap)]``. ``[B, T] -> [B, T]``, 0 under the mask."""
    _check_cap(cap)
    w = jnp.exp(jnp.clip(_log_w(old_logprobs, sampler_logprobs, mask), -_MAX_LOG, _MAX_LOG))
    return jax.lax.stop_gradient(masked.where_mask(jnp.minimum(w, cap), mask))


def sequence_is_weights(old_logprobs: Array, sampler_logprobs: Array, mask: Array, cap: float = 2.0) -> Array:
    """Sequence TIS ``sg[min(exp(sum_t (old - sampler)_t), cap)]`` broadcast over the row. ``[B, T] -> [B, T]``."""
    _check_cap(cap)
    log_w = jnp.clip(jnp.sum(_log_w(old_logprobs, sampler_logprobs, mask), axis=1), -_MAX_LOG, _MAX_LOG)
    w = jnp.minimum(jnp.exp(log_w), cap)[:, None]
    return jax.lax.stop_gradient(masked.where_mask(jnp.broadcast_to(w, mask.shape), mask))


def token_mask(old_logprobs: Array, sampler_logprobs: Array, mask: Array, low: float, high: float) -> Array:
    """Token MIS: ``mask * [low <= exp(old - sampler) <= high]``. ``[B, T] -> [B, T]`` (mask's dtype)."""
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
    w = jnp.exp(_log_w(old_logprobs, sampler_logprobs, mask))
    keep = (mask != 0) & (w >= low) & (w <= high)
    return keep.astype(mask.dtype)


def sequence_mask(
    old_logprobs: Array, sampler_logprobs: Array, mask: Array, low: float, high: float, geometric: bool = True
) -> Array:
    """Sequence MIS: zero whole rows whose ratio leaves ``[low, high]``. ``[B, T] -> [B, T]``.

    The row ratio is the geometric mean ``exp(mean_t log w_t)`` when ``geometric`` (length-fair,
    verl ``seq_mean``/``geo``), else the product ``exp(sum_t log w_t)``.
    """
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
    lw = _log_w(old_logprobs, sampler_logprobs, mask)
    row = masked.masked_mean(lw, mask, axis=1) if geometric else jnp.sum(lw, axis=1)
    ratio = jnp.exp(jnp.clip(row, -_MAX_LOG, _MAX_LOG))
    keep = (ratio >= low) & (ratio <= high)
    return jnp.where(keep[:, None], mask, jnp.zeros_like(mask))


def metrics(
    old_logprobs: Array, sampler_logprobs: Array, mask: Array, new_mask: Array | None = None
) -> dict[str, Array]:
    """Mismatch diagnostics over the whole batch: token IS-ratio mean/max/min, k3 KL(mu||pi_old) mean,
    and the fraction of tokens dropped by ``new_mask``."""
    lw = _log_w(old_logprobs, sampler_logprobs, mask)
    w = jnp.exp(jnp.clip(lw, -_MAX_LOG, _MAX_LOG))
    out = {
        "rollout_is/mean": masked.masked_mean(w, mask),
        "rollout_is/max": masked.masked_max(w, mask),
        "rollout_is/min": masked.masked_min(w, mask),
        "rollout_is/kl_k3": masked.masked_mean(jnp.expm1(lw) - lw, mask),
    }
    if new_mask is not None:
        n = jnp.maximum(jnp.sum(mask != 0), 1)
        out["rollout_is/frac_masked"] = jnp.sum((mask != 0) & (new_mask == 0)) / n
    return out
