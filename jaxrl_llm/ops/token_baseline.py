"""The optimal token baseline: a per-token baseline weighted by the path's accumulated score norm.

Reference: the Optimal Token Baseline of verl (``docs/algo/otb.md``; Richard Li's blog
https://richardli.xyz/optimal-token-baseline), ``verl/trainer/ppo/core_algos.py:
compute_optimal_token_baseline_advantage`` and ``compute_multi_turn_optimal_token_baseline_advantage``.

For a sequence-level policy gradient ``g = sum_t grad log pi(o_t) (G_t - b_t)``, the baseline that
minimizes the variance at step t weighs each sample by the squared norm of its score up to t. The
score of a softmax policy w.r.t. its logits at one step is ``e_{o_t} - pi``, whose squared norm is

    w_t = ||e_{o_t} - pi_t||^2 = 1 - 2 pi_t(o_t) + sum_v pi_t(v)^2        (the logit-gradient proxy)

and the path's accumulated norm is ``W_t = sum_{j <= t} m_j w_j``. In each group of completions of
one prompt, at each position p:

    b*_p = sum_i G_{i,p} W_{i,p} m_{i,p} / (sum_i W_{i,p} m_{i,p} + eps),     A_{i,p} = (G_{i,p} - b*_p) m_{i,p}

With rollout-correction weights ``rho_t`` (truncated importance sampling) verl scales
``w_t <- rho_t^2 w_t``. "Position" is the token index ``t`` (single-turn) or the index of the
policy's k-th LOSS token (multi-turn: tool and observation tokens, ``loss_mask = 0``, are skipped,
so the k-th action token of every trajectory is compared with the k-th of the others).
A group with fewer than two counted rows gets ``b* = 0``. ``zero_tail``: when one trajectory is
strictly the longest of its group, its baseline is 0 from the second-longest length on (there the
baseline would be its own return and its advantage 0).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrl_llm.types import Array


def score_norm(old_logprobs: Array, sum_pi_squared: Array) -> Array:
    """``w_t = 1 - 2 pi(o_t) + sum_v pi(v)^2`` (``||e_{o_t} - pi_t||^2``) per token. ``[B, T] -> [B, T]``."""
    return 1.0 - 2.0 * jnp.exp(jnp.asarray(old_logprobs, jnp.float32)) + jnp.asarray(sum_pi_squared, jnp.float32)


def loss_token_index(mask: Array) -> Array:
    """``k`` of each loss token: 0 for the row's first ``mask != 0`` token, 1 for the next, ...
    (``T``, out of range, where the mask is 0). ``[B, T] int32``."""
    on = jnp.asarray(mask) != 0
    k = jnp.cumsum(on.astype(jnp.int32), axis=1) - 1
    return jnp.where(on, k, mask.shape[1])


def optimal_token_baseline(
    returns: Array,
    weights: Array,
    mask: Array,
    group_size: int,
    multi_turn: bool = False,
    zero_tail: bool = True,
    eps: float = 1e-8,
) -> Array:
    """``b*`` ``[B, T]`` (module docstring), 0 where ``mask`` is 0.

    Args:
      returns: ``G_t`` ``[B, T]`` (an outcome reward broadcast over the row's tokens).
      weights: ``w_t`` ``[B, T]`` (``score_norm``, times ``rho_t^2`` under rollout correction).
      mask: ``[B, T]`` the loss tokens.
      group_size: G, rows group-major (static).
      multi_turn: positions are loss-token indices (``loss_token_index``) and rows with no loss
        token do not count in their group (verl's ``tir_optimal_token_baseline``); else positions
        are token indices and every row counts (``optimal_token_baseline``).
      zero_tail: verl's ``handle_zero_tail`` (default True in verl).
      eps: added to the denominator (verl 1e-8).
    """
    chex.assert_rank([returns, weights, mask], 2)
    chex.assert_equal_shape([returns, weights, mask])
    B, T = mask.shape
    if B % group_size:
        raise ValueError(f"optimal_token_baseline: {B} rows are not whole groups of group_size={group_size}")
    P = B // group_size
    m = (jnp.asarray(mask) != 0).astype(jnp.float32)
    cum_w = jnp.cumsum(jnp.asarray(weights, jnp.float32) * m, axis=1)  # W_t [B, T]
    pos = loss_token_index(m) if multi_turn else jnp.where(m != 0, jnp.arange(T)[None, :], T)  # [B, T]
    group = jnp.repeat(jnp.arange(P), group_size)[:, None]  # [B, 1]
    seg = jnp.where(m != 0, group * T + pos, P * T)  # one segment per (group, position); P*T: nothing
    num = jax.ops.segment_sum((returns * cum_w * m).reshape(-1), seg.reshape(-1), P * T + 1)[: P * T]
    den = jax.ops.segment_sum((cum_w * m).reshape(-1), seg.reshape(-1), P * T + 1)[: P * T]
    b = jnp.concatenate([num / (den + eps), jnp.zeros((1,))])[seg]  # b*_p at each row's tokens [B, T]

    lengths = jnp.sum(m, axis=1).reshape(P, group_size)  # [P, G]
    counted = lengths > 0 if multi_turn else jnp.ones_like(lengths, bool)
    n = jnp.sum(counted, axis=1)  # [P]
    b = jnp.where(jnp.repeat(n >= 2, group_size)[:, None], b, 0.0)
    if zero_tail:
        lens = jnp.where(counted, lengths, -1.0)
        longest = jnp.max(lens, axis=1, keepdims=True)  # [P, 1]
        is_longest = lens == longest
        second = jnp.max(jnp.where(is_longest, -1.0, lens), axis=1, keepdims=True)  # [P, 1]
        unique = (jnp.sum(is_longest, axis=1, keepdims=True) == 1) & (longest > second)
        tail_row = (is_longest & unique).reshape(B, 1)
        tail_from = jnp.repeat(second.reshape(P), group_size)[:, None]  # [B, 1]
        b = jnp.where(tail_row & (pos >= tail_from), 0.0, b)
    return b * m
