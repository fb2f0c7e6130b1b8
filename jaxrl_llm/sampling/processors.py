"""The sampling distribution: temperature, top-k, top-p, min-p applied to one step's logits.

Given the policy's logits ``z`` [B, V] (f32) at one decoding step, the distribution actually
sampled from is

    q = normalize( min_p( top_p( top_k( softmax(z / tau) ) ) ) )

applied in that order (the order of transformers' ``generate``: ``TemperatureLogitsWarper``,
``TopKLogitsWarper``, ``TopPLogitsWarper``, ``MinPLogitsWarper``), each filter acting on the
renormalized output of the previous one:

- top-k keeps the tokens whose tempered logit is >= the k-th largest one (ties at the boundary kept);
- top-p keeps, in descending probability order, every token whose *preceding* cumulative
  probability is < p (so the smallest prefix reaching mass p, and always the most likely token);
- min-p keeps the tokens with probability >= min_p * max probability.

Removed tokens get log-probability -inf. ``tau`` may differ per row (a per-token temperature rule).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def filtered_logits(logits, temperature, *, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0):
    """Tempered logits with the tokens outside the sampling support set to -inf.

    Args:
      logits: [B, V] f32 policy logits.
      temperature: [B] f32, > 0.
      top_k: keep the k most likely tokens (0 = off).
      top_p: nucleus mass in (0, 1] (1 = off).
      min_p: relative probability floor in [0, 1) (0 = off).

    Returns:
      [B, V] f32 logits whose ``log_softmax`` is ``log q`` (see the module docstring).
    """
    z = logits / temperature[:, None]
    vocab = z.shape[-1]
    if 0 < top_k < vocab:
        kth = jax.lax.top_k(z, top_k)[0][:, -1:]
        z = jnp.where(z >= kth, z, NEG_INF)
    if top_p < 1.0:
        z_sorted = -jnp.sort(-z, axis=-1)  # [B, V] descending
        p_sorted = jax.nn.softmax(z_sorted, axis=-1)
        preceding = jnp.cumsum(p_sorted, axis=-1) - p_sorted
        num_kept = jnp.sum(preceding < top_p, axis=-1, keepdims=True)  # >= 1
        threshold = jnp.take_along_axis(z_sorted, num_kept - 1, axis=-1)
        z = jnp.where(z >= threshold, z, NEG_INF)
    if min_p > 0.0:
        # p_i >= min_p * p_max  <=>  z_i >= z_max + log(min_p)
        z_max = jnp.max(z, axis=-1, keepdims=True)
        z = jnp.where(z >= z_max + jnp.log(min_p), z, NEG_INF)
    return z


def log_softmax_and_entropy(z):
    """``log q`` [B, V] and the entropy ``H(q) = -sum_v q_v log q_v`` [B] of ``q = softmax(z)``.

    Entries of ``z`` equal to -inf have ``q = 0`` and contribute 0 to the entropy.
    """
    logq = jax.nn.log_softmax(z, axis=-1)
    q = jnp.exp(logq)
    entropy = -jnp.sum(jnp.where(q > 0, q * logq, 0.0), axis=-1)
    return logq, entropy


def _last_positive(x):
    """Index of the last entry > 0 along the last axis (0 if none)."""
    n = x.shape[-1]
    return (n - 1 - jnp.argmax((x > 0)[..., ::-1], axis=-1)).astype(jnp.int32)


def inverse_cdf_sample(logq, uniform, chunk: int = 256):
    """Draws ``v ~ q`` per row by inverting the CDF: the first ``v`` with ``cumsum(q)_v > u * sum(q)``.

    One uniform per row instead of a Gumbel variate per vocabulary entry keeps the random-number
    cost O(B) rather than O(B V); on CPU a Gumbel draw over a 49k vocabulary costs more than the
    rest of a decoding step. The CDF is inverted in two levels (chunk totals, then the one chunk
    the threshold falls in) because a full-length ``cumsum`` lowers to a slow scan on XLA:CPU.
    A token with ``q = 0`` is never drawn: its CDF entry equals its predecessor's, and both levels
    are clamped to the last entry with positive mass against rounding of ``u * sum(q)``.

    Args:
      logq: [B, V] f32 log-probabilities (may contain -inf).
      uniform: [B] f32 in [0, 1).
      chunk: vocabulary entries per first-level chunk.

    Returns:
      [B] int32 token ids.
    """
    q = jnp.exp(logq)
    batch, vocab = q.shape
    num_chunks = -(-vocab // chunk)
    q = jnp.pad(q, ((0, 0), (0, num_chunks * chunk - vocab))).reshape(batch, num_chunks, chunk)
    totals = jnp.sum(q, axis=-1)  # [B, C]
    cum_totals = jnp.cumsum(totals, axis=-1)
    threshold = uniform * cum_totals[:, -1]
    c = jnp.sum(cum_totals <= threshold[:, None], axis=-1).astype(jnp.int32)
    c = jnp.minimum(c, _last_positive(totals))
    in_chunk = jnp.take_along_axis(q, c[:, None, None], axis=1)[:, 0]  # [B, chunk]
    before = jnp.take_along_axis(cum_totals - totals, c[:, None], axis=-1)
    i = jnp.sum(before + jnp.cumsum(in_chunk, axis=-1) <= threshold[:, None], axis=-1).astype(jnp.int32)
    i = jnp.minimum(i, _last_positive(in_chunk))
    return c * chunk + i


def draw(z, uniform, with_entropy: bool = True):
    """One token per row from ``q = softmax(z)`` (z [B, V]: tempered, possibly filtered logits) by
    inverting its CDF at ``uniform`` [B]: (token [B] int32, log q(token) [B], H(q) [B] or None)."""
    if with_entropy:
        logq, entropy = log_softmax_and_entropy(z)
    else:
        logq, entropy = jax.nn.log_softmax(z, axis=-1), None
    token = inverse_cdf_sample(logq, uniform)
    return token, jnp.take_along_axis(logq, token[:, None], axis=-1)[:, 0], entropy
