"""Token-level covariance between advantage and log-probability, and top-n token selection.

Reference: Ganqu Cui, Yuchen Zhang, Jiacheng Chen, et al., "The Entropy Mechanism of Reinforcement
Learning for Reasoning Language Models", 2025, https://arxiv.org/abs/2505.22617 (Sec. 4, Eq. 9-11);
code https://github.com/PRIME-RL/Entropy-Mechanism-of-RL. The entropy change of a softmax policy
under policy gradient follows ``-Cov(log pi(y_t), A_t)``; Clip-Cov and KL-Cov act on the few tokens
with the largest per-token covariance

    Cov_{i,t} = (A_{i,t} - mean(A)) * (log pi(y_{i,t}) - mean(log pi))

with both means over every unmasked token of the WHOLE batch. Computed once per rollout (a method's
``batch_extras``), never per micro-batch, so the selection does not depend on how the batch is split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import chex
import jax.numpy as jnp

from jaxrl_llm.ops import inputs, masked
from jaxrl_llm.types import Array


def token_covariance(advantages: Array, logprobs: Array, mask: Array) -> Array:
    """``(A - mean_m A) * (log pi - mean_m log pi)`` per token, means over unmasked tokens; masked
    entries 0. ``[B, T]`` (advantages ``[B]`` broadcast over T) -> ``[B, T]``."""
    chex.assert_rank([logprobs, mask], 2)
    adv = jnp.broadcast_to(advantages[:, None] if advantages.ndim == 1 else advantages, mask.shape)
    adv = masked.where_mask(adv.astype(jnp.float32), mask)
    lp = masked.where_mask(logprobs.astype(jnp.float32), mask)
    cov = (adv - masked.masked_mean(adv, mask)) * (lp - masked.masked_mean(lp, mask))
    return masked.where_mask(cov, mask)


def top_n(scores: Array, eligible: Array, n: Array | int) -> Array:
    """Bool ``[B, T]``: the ``n`` eligible entries with the largest ``scores`` (ties: lower flat index
    first); fewer when fewer are eligible. ``n`` may be traced. Static shapes (a rank, not a gather)."""
    flat = jnp.where(eligible, scores, -jnp.inf).reshape(-1)
    order = jnp.argsort(-flat, stable=True)  # best first
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    return ((rank < n) & eligible.reshape(-1)).reshape(scores.shape)


def selection_count(mask: Array, fraction: float) -> Array:
    """``max(floor(fraction * N), 1)`` with ``N`` the unmasked tokens of the batch (verl's count)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"covariance selection fraction must be in (0, 1], got {fraction!r}")
    return jnp.maximum(jnp.floor(fraction * jnp.sum(mask != 0)), 1)


def rollout_selection(
    rollout: Mapping[str, Any],
    advantages: Array,
    fraction: float,
    where: str,
    bounds: tuple[float, float] | None = None,
) -> Array:
    """The covariance-selected tokens ``S`` of a whole rollout, f32 ``[B, T]`` (1 in ``S``):

        Cov = token_covariance(A, log pi_old, mask),   n = selection_count(mask, fraction)
        S   = top_n(Cov, eligible, n),   eligible = mask & (low < Cov < high)   (no bounds: mask)

    ``log pi_old`` is ``rollout["old_logprobs"]`` (``sampler_logprobs`` when absent; equal to the
    current log-probs at the first update); ``advantages`` ``[B]`` or ``[B, T]``. ``where`` names the
    caller in errors. Clip-Cov passes its ``(omega_low, omega_high)``; KL-Cov no bounds."""
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
    inputs.require(rollout, (key,), where)
    cov = token_covariance(advantages, inputs.token_array(rollout, key, mask, where), mask)  # Cov [B, T]
    eligible = mask != 0
    if bounds is not None:
        eligible = eligible & (cov > bounds[0]) & (cov < bounds[1])
    return top_n(cov, eligible, selection_count(mask, fraction)).astype(jnp.float32)
