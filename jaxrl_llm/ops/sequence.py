"""Sequence log-probabilities and pairwise log-ratio differences (the DPO family, P3O, INPO).

A preference pair is two rows of a batch that share a ``group_ids`` value; the row with
``chosen == 1`` is the preferred response ``y_w``, the other ``y_l`` (``types`` module docstring).
The pair functions compute, for EVERY row, a quantity of its whole pair (e.g. the margin
``x(y_w) - x(y_l)``) from the rows at hand, by comparing ``group_ids`` within the batch: no
reshape, no assumption on row order. A pair must therefore lie inside one micro-batch (the
``pairs`` rollout kind keeps pairs whole: they are groups of two rows sharing a prompt).

  ``sequence_logprobs``   ``log pi(y|x) = sum_t m_t log pi(y_t | x, y_<t)``             ``[B, T] -> [B]``
  ``sequence_log_ratio``  ``log pi(y|x) - log pi'(y|x) = sum_t m_t (log pi - log pi')_t``  ``[B, T] -> [B]``
  ``pair_margin``         ``x(y_w) - x(y_l)`` of each row's pair                             ``[B] -> [B]``
  ``pair_other``          ``x`` of each row's partner                                         ``[B] -> [B]``
  ``pair_valid``          1 where the row's pair has at least one loss token                  ``-> [B]``
  ``pair_mean``           ``sum_b valid_b f_b / num_seqs``: a per-pair loss, each pair counted
                          once per row (so ``2 / num_seqs = 1 / num_pairs``)
  ``pair_metrics``        ``rewards/margin``, ``rewards/accuracy``, the sequence ratio to pi_old
  ``example_pairs``       random pair structure (``group_ids``, ``chosen``) for tests and demos
  ``pair_advantages``     the per-row weight of a pair loss's gradient at pi_old (the "implicit
                          advantage" whose REINFORCE gradient equals the pair loss's on-policy)
  ``length_scale``        ``1 / |y|`` per row (length-averaged margins, IPO) or 1
  ``pair_objective``      the whole loss of a pair method ``l(h)``: validation, margin of the
                          summed log-ratios to pi_ref, mean over pairs, metrics (DPO, IPO, online DPO)
  ``pair_implicit_advantages``  ``pair_advantages`` of a rollout at pi_old for a pair loss ``l``

Summed (not length-averaged) sequence log-probs, as in DPO (Rafailov et al. 2023,
https://arxiv.org/abs/2305.18290, Eq. 7) and TRL's ``DPOTrainer`` (https://github.com/huggingface/trl).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import diagnostics, inputs, masked
from jaxrl_llm.types import Array, Metrics


def sequence_logprobs(logprobs: Array, mask: Array) -> Array:
    """``log pi(y_i|x) = sum_t m_{i,t} log pi(y_{i,t} | ...)``, masked entries ignored. ``[B, T] -> [B]`` f32."""
    chex.assert_rank([logprobs, mask], 2)
    chex.assert_equal_shape([logprobs, mask])
    return masked.masked_sum(jnp.asarray(logprobs, jnp.float32), mask, axis=1)


def sequence_log_ratio(logprobs: Array, other_logprobs: Array, mask: Array) -> Array:
    """``log pi(y_i|x) / pi'(y_i|x) = sum_t m_{i,t} (log pi - log pi')_{i,t}``. ``[B, T] -> [B]`` f32.

    The difference is taken per token before the masked sum, so junk under ``mask == 0`` in either
    input never reaches the result or its gradient."""
    chex.assert_rank([logprobs, other_logprobs, mask], 2)
    chex.assert_equal_shape([logprobs, other_logprobs, mask])
    diff = jnp.asarray(logprobs, jnp.float32) - jnp.asarray(other_logprobs, jnp.float32)
    return masked.masked_sum(diff, mask, axis=1)


def _same_pair(group_ids: Array) -> Array:
    """``[B, B]`` f32: 1 where rows ``b`` and ``b'`` belong to the same pair."""
    g = jnp.asarray(group_ids)
    chex.assert_rank(g, 1)
    return (g[:, None] == g[None, :]).astype(jnp.float32)


def pair_margin(x: Array, group_ids: Array, chosen: Array) -> Array:
    """``x(y_w) - x(y_l)`` of the pair each row belongs to: ``sum_{b' in pair(b)} (2 chosen_b' - 1) x_b'``.

    ``x``, ``group_ids``, ``chosen`` are ``[B]``; both rows of a pair get the same value. A pair
    with one row in the batch (split across micro-batches) would get a wrong margin: callers keep
    pairs whole."""
    chex.assert_rank([x, chosen], 1)
    sign = 2.0 * jnp.asarray(chosen, jnp.float32) - 1.0
    return _same_pair(group_ids) @ (sign * jnp.asarray(x, jnp.float32))


def pair_other(x: Array, group_ids: Array) -> Array:
    """``x`` of each row's partner: ``sum_{b' in pair(b)} x_b' - x_b``. ``[B] -> [B]``."""
    x = jnp.asarray(x, jnp.float32)
    return _same_pair(group_ids) @ x - x


def pair_valid(group_ids: Array, mask: Array) -> Array:
    """1 where the row's pair has at least one token in ``mask`` ``[B, T]`` (a pair whose loss
    mask was zeroed, e.g. a tie or a backfilled pair, counts in no loss). ``-> [B]`` f32."""
    has_tokens = jnp.any(jnp.asarray(mask) != 0, axis=1).astype(jnp.float32)
    return (_same_pair(group_ids) @ has_tokens > 0).astype(jnp.float32)


def pair_mean(per_pair: Array, valid: Array, num_seqs: Array | float) -> Array:
    """The mean over pairs of a per-pair value held by both rows of each pair:
    ``sum_b valid_b f_b / num_seqs = sum_pairs f / num_pairs`` with ``num_pairs = num_seqs / 2``
    of the WHOLE batch (a global normalizer: micro-batch parts add up to the full value)."""
    return jnp.sum(jnp.where(valid != 0, per_pair, 0.0)) / num_seqs


def pair_advantages(dloss_dmargin: Array, chosen: Array, scale: Array | float, valid: Array) -> Array:
    """``A_b = -2 (2 chosen_b - 1) scale_b l'(h) valid_b``: the weight with which row ``b``'s
    sequence log-prob enters the gradient of ``pair_mean(l(h))`` when ``h = sum_pair (2 chosen - 1)
    scale s`` is a pair margin of the summed log-probs ``s``. Hence
    ``grad pair_mean(l(h)) = grad [-sum_b A_b s_b / num_seqs]`` at the point where ``l'`` was
    taken (pi_old): the REINFORCE form of a pair loss, and a readable diagnostic (how hard each
    side of a pair is pushed). ``scale``: 1, or ``1 / |y_b|`` for length-averaged margins. ``[B]``."""
    sign = 2.0 * jnp.asarray(chosen, jnp.float32) - 1.0
    return -2.0 * sign * scale * jnp.asarray(dloss_dmargin, jnp.float32) * valid


def pair_metrics(
    logprobs: Array, old_logprobs: Array, mask: Array, h: Array, beta: float, valid: Array, num_seqs: Array | float
) -> dict[str, Array]:
    """Metrics of a pair loss, additive over parts: ``rewards/margin`` (mean ``beta h`` over pairs),
    ``rewards/accuracy`` (fraction of pairs with ``h > 0``), ``ratio/mean|max|min`` of the sequence
    ratio ``pi_theta(y)/pi_old(y)`` over rows, and ``clip_frac`` (0: nothing is clipped)."""
    has_tokens = jnp.any(mask != 0, axis=1).astype(jnp.float32)
    log_ratio_old = jnp.clip(sequence_log_ratio(logprobs, old_logprobs, mask), -20.0, 20.0)  # [B]
    return {
        "rewards/margin": pair_mean(beta * h, valid, num_seqs),
        "rewards/accuracy": pair_mean((h > 0).astype(jnp.float32), valid, num_seqs),
        "clip_frac": jnp.zeros((), jnp.float32),
        **diagnostics.ratio_stats(jnp.exp(log_ratio_old), has_tokens, num_seqs),
    }


def example_pairs(key: jax.Array, batch_size: int) -> dict[str, Array]:
    """Pairs over ``batch_size`` rows: rows ``2p, 2p + 1`` are pair ``p`` (``group_ids``, group
    size 2) and a random side of each is ``chosen``."""
    first = jax.random.bernoulli(key, 0.5, (batch_size // 2,)).astype(jnp.float32)
    chosen = jnp.stack([first, 1.0 - first], axis=1).reshape(-1)
    return {"group_ids": jnp.repeat(jnp.arange(batch_size // 2, dtype=jnp.int32), 2), "group_size": 2, "chosen": chosen}


def length_scale(mask: Array, length_normalized: bool) -> Array | float:
    """``1 / max(|y|, 1)`` per row ``[B]`` when ``length_normalized`` (IPO's averaged log-ratios), else 1."""
    return 1.0 / jnp.maximum(jnp.sum(jnp.asarray(mask, jnp.float32), axis=1), 1.0) if length_normalized else 1.0


def _scaled_margin(
    logprobs: Array, ref_logprobs: Array, mask: Array, group_ids: Array, chosen: Array, length_normalized: bool
) -> Array:
    """``h = sum_pair (2 chosen - 1) scale log pi/pi_ref (y)`` of each row's pair ``[B]``."""
    log_ratio = sequence_log_ratio(logprobs, ref_logprobs, mask) * length_scale(mask, length_normalized)  # [B]
    return pair_margin(log_ratio, group_ids, chosen)  # h  [B]


def pair_objective(
    logprobs: Array,
    batch: Mapping[str, Any],
    pair_loss: Callable[[Array, Any], Array],
    cfg: Any,
    name: str,
    length_normalized: bool = False,
) -> tuple[Array, Metrics]:
    """The loss of a pair method: ``L = (1 / num_pairs) sum_pairs l(h; cfg)`` with the margin

        h = s(y_w) log pi_theta/pi_ref (y_w) - s(y_l) log pi_theta/pi_ref (y_l)   (summed log-probs)

    ``s = 1`` (DPO) or ``1 / |y|`` (``length_normalized``, IPO). ``pair_loss(h [B], cfg) -> [B]`` is
    the method's equation (its own file). Needs ``batch`` keys ``old_logprobs``, ``ref_logprobs``,
    ``mask``, ``group_ids``, ``chosen``, ``num_tokens``, ``num_seqs`` (errors name ``name``);
    ``num_pairs = num_seqs / 2`` of the whole batch (``pair_mean``), so parts add up. Metrics:
    ``pair_metrics`` with ``cfg.beta`` and the shared ``diagnostics.finalize`` keys.
    """
    x = inputs.policy_inputs(logprobs, batch, name, ref=True)
    mask, ns = x["mask"], x["num_seqs"]
    inputs.require(batch, ("group_ids", "chosen"), name)
    h = _scaled_margin(x["logprobs"], x["ref_logprobs"], mask, batch["group_ids"], batch["chosen"], length_normalized)
    valid = pair_valid(batch["group_ids"], mask)  # [B]
    policy = pair_mean(pair_loss(h, cfg), valid, ns)
    metrics = pair_metrics(x["logprobs"], x["old_logprobs"], mask, h, cfg.beta, valid, ns)
    return diagnostics.finalize(metrics, policy, batch, mask, x["num_tokens"], where=name)


def pair_implicit_advantages(
    rollout: Mapping[str, Any], pair_loss: Callable[[Array, Any], Array], cfg: Any, length_normalized: bool = False
) -> tuple[Array, Metrics]:
    """``pair_advantages`` of a rollout at pi_old: ``A_b = -2 (2 chosen_b - 1) s_b l'(h_old) valid_b``
    with ``l' = vmap(grad(pair_loss))`` at the margin of ``old_logprobs`` to ``ref_logprobs``; the
    mask is the rollout's ``loss_mask`` (its ``mask`` when absent). Returns ``(A [B], adv stats)``."""
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)
    g, chosen = rollout["group_ids"], rollout["chosen"]
    h_old = _scaled_margin(rollout["old_logprobs"], rollout["ref_logprobs"], mask, g, chosen, length_normalized)
    dl = jax.vmap(jax.grad(lambda h: pair_loss(h, cfg)))(h_old)  # l'(h_old)  [B]
    adv = pair_advantages(dl, chosen, length_scale(mask, length_normalized), pair_valid(g, mask))
    return adv, adv_ops.stats(adv, mask)
