"""Importance ratios between the current policy and the behaviour policy.

``logprobs`` / ``old_logprobs`` / ``mask``: ``[B, T]``. Log-ratios under ``mask == 0`` are set to 0
before exponentiating (ratio 1, zero gradient). Log-ratios are clamped to ``[-max_log_ratio,
max_log_ratio]`` (verl clamps at 20 per token, 10 for GSPO) so one stale token cannot overflow
``exp``; beyond the clamp the gradient is 0.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrl_llm.ops import masked
from jaxrl_llm.types import Array


def log_ratio(logprobs: Array, old_logprobs: Array, mask: Array, max_log_ratio: float = 20.0) -> Array:
    """``clip(log pi_theta - log pi_old, -c, c)`` with masked entries 0. ``[B, T] -> [B, T]``."""
    chex.assert_rank([logprobs, old_logprobs, mask], 2)
    chex.assert_equal_shape([logprobs, old_logprobs, mask])
    diff = masked.where_mask(logprobs - old_logprobs, mask)
    return jnp.clip(diff, -max_log_ratio, max_log_ratio)


def token_ratio(logprobs: Array, old_logprobs: Array, mask: Array, max_log_ratio: float = 20.0) -> Array:
    """PPO per-token ratio ``rho_t = exp(log pi_theta(y_t) - log pi_old(y_t))``. ``[B, T] -> [B, T]``.

    Reference: Schulman et al., "Proximal Policy Optimization Algorithms" (arXiv 1707.06347), Eq. 6.
    """
    return jnp.exp(log_ratio(logprobs, old_logprobs, mask, max_log_ratio))


def sequence_ratio(logprobs: Array, old_logprobs: Array, mask: Array, max_log_ratio: float = 10.0) -> Array:
    """GSPO length-normalized sequence ratio ``s_i = exp((1/|y_i|) sum_t (log pi_theta - log pi_old)_{i,t})``.

    ``|y_i|`` is the number of unmasked tokens of row ``i`` (a row with none gets ``s = 1``).
    ``[B, T] -> [B]``. Reference: Zheng et al., "Group Sequence Policy Optimization"
    (arXiv 2507.18071), Eq. 7.
    """
    lr = log_ratio(logprobs, old_logprobs, mask, max_log_ratio=jnp.inf)
    mean_lr = masked.masked_mean(lr, mask, axis=1)
    return jnp.exp(jnp.clip(mean_lr, -max_log_ratio, max_log_ratio))


def sequence_token_ratio(logprobs: Array, old_logprobs: Array, mask: Array, max_log_ratio: float = 10.0) -> Array:
    """GSPO-token ratio ``s_{i,t} = sg[s_i] * pi_theta(y_{i,t}) / sg[pi_theta(y_{i,t})]``. ``[B, T] -> [B, T]``.

    Its value is ``s_i`` at every token; its gradient is ``s_i * grad log pi_theta(y_{i,t})``, so a
    token-mean over the sequence reproduces ``grad s_i`` exactly (GSPO paper Eq. 13-14), while
    allowing per-token advantages.
    """
    s = jax.lax.stop_gradient(sequence_ratio(logprobs, old_logprobs, mask, max_log_ratio))  # [B]
    lp = masked.where_mask(logprobs, mask)
    return s[:, None] * jnp.exp(lp - jax.lax.stop_gradient(lp))
