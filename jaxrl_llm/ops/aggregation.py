"""Loss aggregation: per-token terms ``[B, T]`` -> the scalar loss, with GLOBAL normalizers.

Every mode divides by a count of the WHOLE optimization batch (``num_tokens``, ``num_seqs``, a
constant) that the trainer computes once and passes in, never by a count of the rows at hand. So
evaluating on a micro-batch (or one device's shard) gives that part's share of the full-batch
loss, and the sum over parts equals the full-batch loss and gradient exactly. Per-sequence
quantities (a row's own length) are local to the row and therefore partition-safe.

  ============================  ==================================================  ===========
  mode                          formula                                             used by
  ============================  ==================================================  ===========
  ``token_mean``                ``sum_{i,t} m x / num_tokens``                      DAPO, PPO
  ``seq_mean_token_mean``       ``sum_i (sum_t m x / max(|y_i|, 1)) / num_seqs``    GRPO, GSPO
  ``seq_mean_token_sum``        ``sum_{i,t} m x / num_seqs``                        RLOO
  ``seq_mean_token_sum_norm``   ``sum_{i,t} m x / (num_seqs * norm_const)``         Dr.GRPO
  ``seq_sum_token_mean``        ``sum_i (sum_t m x / max(|y_i|, 1)) / norm_const``  DCPO, GTPO
  ``token_sum``                 ``sum_{i,t} m x / norm_const``                      plain sum
  ============================  ==================================================  ===========

``|y_i| = sum_t m_{i,t}``. ``norm_const`` is a constant or a count of the whole batch (Dr.GRPO:
the generation budget ``L``, default ``T``; ``seq_sum_token_mean``: e.g. DCPO's number of prompts
``num_seqs / G``, default 1, a plain sum over responses as GTPO's code; ``token_sum``: default 1,
the plain token sum of a REINFORCE objective ``sum_t log pi(y_t) A`` with no length or count
normalizer, whose scale the learning rate absorbs; neither verl 0.9 nor TRL 1.16 ships it, and a
global constant keeps it partition-safe). The bug this prevents is
the loss normalized by a per-micro-batch or per-device count and re-scaled wrongly (verl issues
#3741 and #5625, PR #5798; TRL issue #3021, PR #6024).
"""

from __future__ import annotations

import chex
import jax.numpy as jnp

from jaxrl_llm.ops import masked
from jaxrl_llm.types import Array

MODES = (
    "token_mean",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
    "seq_sum_token_mean",
    "token_sum",
)


def _norm_const(norm_const: Array | float | None, default: float, mode: str) -> Array | float:
    """``norm_const`` (``default`` when None); a Python number must be positive, an array (a global
    count computed by the caller, possibly traced) is taken as is."""
    if norm_const is None:
        return default
    if isinstance(norm_const, (int, float)):
        if not norm_const > 0:
            raise ValueError(f"mode {mode!r} needs a positive norm_const, got {norm_const!r}")
        return float(norm_const)
    return norm_const


def aggregate(
    per_token: Array,
    mask: Array,
    mode: str,
    num_tokens: Array | float,
    num_seqs: Array | float,
    norm_const: Array | float | None = None,
) -> Array:
    """Reduces ``per_token`` ``[B, T]`` to a scalar with ``mode`` (see module table).

    ``num_tokens``: sum of ``mask`` over the whole optimization batch; ``num_seqs``: number of
    sequences in it; ``norm_const``: the divisor of ``seq_mean_token_sum_norm`` (Dr.GRPO's constant;
    None means ``T``, the padded completion length, the same in every micro-batch), of
    ``seq_sum_token_mean`` and of ``token_sum`` (None means 1); ignored by the other modes.
    """
    chex.assert_rank([per_token, mask], 2)
    chex.assert_equal_shape([per_token, mask])
    if mode == "token_mean":
        return masked.masked_sum(per_token, mask) / num_tokens
    if mode == "seq_mean_token_mean":
        return jnp.sum(masked.masked_mean(per_token, mask, axis=1)) / num_seqs
    if mode == "seq_mean_token_sum":
        return masked.masked_sum(per_token, mask) / num_seqs
    if mode == "seq_mean_token_sum_norm":
        return masked.masked_sum(per_token, mask) / (num_seqs * _norm_const(norm_const, float(mask.shape[1]), mode))
    if mode == "seq_sum_token_mean":
        return jnp.sum(masked.masked_mean(per_token, mask, axis=1)) / _norm_const(norm_const, 1.0, mode)
    if mode == "token_sum":
        return masked.masked_sum(per_token, mask) / _norm_const(norm_const, 1.0, mode)
    raise ValueError(f"unknown aggregation mode {mode!r}; known: {MODES}")


def token_weights(mask: Array, mode: str, num_tokens, num_seqs, norm_const: Array | float | None = None) -> Array:
    """The weight ``w_{i,t}`` with ``aggregate(x, mask, mode, ...) == sum_{i,t} w_{i,t} x_{i,t}``. ``[B, T]``."""
    m = (mask != 0).astype(jnp.float32)
    if mode == "token_mean":
        return m / num_tokens
    if mode == "seq_mean_token_mean":
        return m / jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1.0) / num_seqs
    if mode == "seq_mean_token_sum":
        return m / num_seqs
    if mode == "seq_mean_token_sum_norm":
        return m / (num_seqs * _norm_const(norm_const, float(mask.shape[1]), mode))
    if mode == "seq_sum_token_mean":
        return m / jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1.0) / _norm_const(norm_const, 1.0, mode)
    if mode == "token_sum":
        return m / _norm_const(norm_const, 1.0, mode)
    raise ValueError(f"unknown aggregation mode {mode!r}; known: {MODES}")
