"""Entropy of the policy's next-token distribution.

Losses receive log-probs of the sampled tokens only, not logits, so an entropy BONUS needs the
trainer to pass differentiable per-token entropies; these functions compute them from logits
(full entropy) or estimate them from sampled log-probs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_llm.types import Array


def from_logits(logits: Array, temperature: float = 1.0) -> Array:
    """``H_t = -sum_v p_v log p_v`` with ``p = softmax(logits / temperature)``. ``[..., V] -> [...]``.

    Computed in f32 as ``logsumexp(z) - sum_v p_v z_v`` (no ``0 * log 0``).
    """
    z = logits.astype(jnp.float32) / temperature
    p = jax.nn.softmax(z, axis=-1)
    return jax.nn.logsumexp(z, axis=-1) - jnp.sum(p * z, axis=-1)


def sampled_estimate(logprobs: Array) -> Array:
    """Single-sample entropy estimate ``-log pi(y_t)`` for ``y_t ~ pi`` (unbiased for ``H_t``). Same shape."""
    return -logprobs
