"""Advantage estimators: group statistics, leave-one-out, batch whitening, returns, GAE.

Rows are group-major (``jaxrl_llm.types``): row ``b`` is sample ``b % G`` of prompt ``b // G``, so
``rewards.reshape(P, G)`` recovers the groups. ``group_size`` is a static Python int.

Conventions (each function repeats the ones it uses):
  * std: ``sqrt(sum((r - mean)^2) / (n - ddof))``; ``ddof`` is an argument, never implicit.
  * epsilon: added to the std, ``(r - mean) / (std + eps)`` (TRL 1e-4, verl 1e-6).
  * A group whose rewards are all equal has std 0; its advantages are exactly 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.ops import masked
from jaxrl_llm.types import Array


def group_size_of(rollout: Mapping[str, Any]) -> int:
    """Static group size G: ``rollout["group_size"]`` (a Python int), else inferred from ``group_ids``.

    Inference needs concrete ``group_ids`` (group-major, equal-size groups); under ``jax.jit`` put
    ``group_size`` in the dict instead.
    """
    if "group_size" in rollout:
        g = rollout["group_size"]
        if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 1:
            raise ValueError(f"rollout['group_size'] must be a positive Python int, got {g!r}")
        return int(g)
    if "group_ids" not in rollout:
        raise KeyError("rollout needs 'group_size' (Python int) or 'group_ids' to know the group size")
    try:
        ids = np.asarray(rollout["group_ids"])
    except jax.errors.TracerArrayConversionError as e:
        raise ValueError("group_ids is traced: put a Python int 'group_size' in the rollout under jit") from e
    _, counts = np.unique(ids, return_counts=True)
    if len(set(counts.tolist())) != 1:
        raise ValueError(f"groups have unequal sizes {sorted(set(counts.tolist()))}; rows must be P x G")
    g = int(counts[0])
    if not np.array_equal(ids, np.repeat(ids[::g], g)):
        raise ValueError("group_ids are not group-major (row b must belong to group b // G)")
    return g


def _groups(rewards: Array, group_size: int) -> Array:
    chex.assert_rank(rewards, 1)
    b = rewards.shape[0]
    if group_size < 1 or b % group_size:
        raise ValueError(f"batch of {b} rows is not a whole number of groups of size {group_size}")
    return rewards.reshape(b // group_size, group_size)  # [P, G]


def group_mean(rewards: Array, group_size: int) -> Array:
    """Per-row mean of its group's rewards: ``mean_j r_{g,j}``. ``[B] -> [B]``."""
    r = _groups(rewards, group_size)
    return jnp.repeat(jnp.mean(r, axis=1), group_size)


def group_std(rewards: Array, group_size: int, ddof: int = 1) -> Array:
    """Per-row std of its group: ``sqrt(sum_j (r_j - mean)^2 / (G - ddof))``. ``[B] -> [B]``."""
    r = _groups(rewards, group_size)
    if group_size - ddof < 1:
        raise ValueError(f"std with ddof={ddof} needs groups larger than {ddof}, got G={group_size}")
    return jnp.repeat(jnp.std(r, axis=1, ddof=ddof), group_size)


def zero_std_groups(rewards: Array, group_size: int) -> Array:
    """Per-group bool ``[P]``: True when all rewards of the group are equal (``max == min``).

    Exact equality, not ``std < eps``: a float std of equal values can round to a tiny nonzero.
    """
    r = _groups(rewards, group_size)
    return jnp.max(r, axis=1) == jnp.min(r, axis=1)


def group_centered(rewards: Array, group_size: int) -> Array:
    """Dr.GRPO advantage ``A_i = r_i - mean_j r_j`` (no std division). ``[B] -> [B]``.

    Reference: Liu et al., "Understanding R1-Zero-Like Training" (arXiv 2503.20783), Sec. 3.
    """
    return rewards - group_mean(rewards, group_size)


def group_normalized(rewards: Array, group_size: int, ddof: int = 1, eps: float = 1e-6) -> Array:
    """GRPO outcome advantage ``A_i = (r_i - mean_j r_j) / (std_j(r_j; ddof) + eps)``. ``[B] -> [B]``.

    ``ddof = 1`` is what TRL and verl compute (``torch.std``); the paper writes ``std(r)``.
    A group of equal rewards gives exactly 0 (the numerator is 0; ``eps`` keeps the division finite).
    Reference: Shao et al., "DeepSeekMath" (arXiv 2402.03300), Sec. 4.1.2.
    """
    centered = group_centered(rewards, group_size)
    std = group_std(rewards, group_size, ddof)
    zero = jnp.repeat(zero_std_groups(rewards, group_size), group_size)
    return jnp.where(zero, 0.0, centered / (std + eps))


def group_normalized_outcome(
    rollout: Mapping[str, Any], ddof: int = 1, eps: float = 1e-6
) -> tuple[Array, dict[str, Array]]:
    """GRPO's advantage of a rollout: ``group_normalized(rollout["rewards"], G, ddof, eps)`` ``[B]``
    and its ``group_stats`` metrics, with ``G = group_size_of(rollout)``."""
    g = group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    a = group_normalized(rewards, g, ddof, eps)
    return a, group_stats(a, rewards, rollout["mask"], g)


def leave_one_out(rewards: Array, group_size: int) -> Array:
    """RLOO advantage ``A_i = r_i - (1/(G-1)) sum_{j != i} r_j = G/(G-1) * (r_i - mean_j r_j)``. ``[B] -> [B]``.

    Reference: Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!";
    Ahmadian et al., "Back to Basics" (arXiv 2402.14740), Eq. 6.
    """
    if group_size < 2:
        raise ValueError(f"leave-one-out needs group_size >= 2, got {group_size}")
    r = _groups(rewards, group_size)
    baseline = (jnp.sum(r, axis=1, keepdims=True) - r) / (group_size - 1)
    return (r - baseline).reshape(-1)


def batch_normalized(values: Array, mask: Array | None = None, ddof: int = 0, eps: float = 1e-8) -> Array:
    """Global whitening ``(x - mean) / (std(x; ddof) + eps)`` over every unmasked entry of the batch.

    REINFORCE++ normalizes its per-token returns this way, over the WHOLE global batch (not per
    group). ``values``: ``[B]`` or ``[B, T]``; ``mask`` of the same shape (all ones if None).
    Masked entries come back as 0. Reference: Hu, "REINFORCE++" (arXiv 2501.03262), Sec. 3.
    """
    if mask is None:
        mask = jnp.ones_like(values)
    chex.assert_equal_shape([values, mask])
    mean = masked.masked_mean(values, mask)
    std = masked.masked_std(values, mask, ddof=ddof)
    return masked.where_mask((values - mean) / (std + eps), mask)


def reverse_discounted_sum(rewards: Array, mask: Array, gamma: float = 1.0) -> Array:
    """Per-token return ``G_t = sum_{s >= t, mask_s = 1} gamma^{k(s) - k(t)} r_s`` by reverse scan.

    ``k`` counts unmasked positions, so masked tokens (padding, tool output) are skipped: they
    receive 0 and do not break the discount chain. ``[B, T] -> [B, T]``.
    """
    chex.assert_rank([rewards, mask], 2)
    chex.assert_equal_shape([rewards, mask])
    valid = mask != 0

    def step(carry, xs):
        r_t, m_t = xs
        g = jnp.where(m_t, r_t + gamma * carry, carry)
        return g, jnp.where(m_t, g, 0.0)

    _, out = jax.lax.scan(step, jnp.zeros(rewards.shape[0], rewards.dtype), (rewards.T, valid.T), reverse=True)
    return out.T


def gae(rewards: Array, values: Array, mask: Array, gamma: float = 1.0, lam: float = 0.95) -> tuple[Array, Array]:
    """Generalized advantage estimation by reverse scan. Returns ``(advantages, returns)``, each ``[B, T]``.

    ``delta_t = r_t + gamma V(s_{t'}) - V(s_t)`` and ``A_t = delta_t + gamma lam A_{t'}``, where ``t'`` is
    the next unmasked position (so padding and interior masked tokens are skipped) and
    ``V = A = 0`` after the last unmasked token (terminal). ``R_t = A_t + V(s_t)``. Masked entries are 0.
    ``rewards``, ``values``, ``mask``: ``[B, T]``. Reference: Schulman et al. 2016 (arXiv 1506.02438),
    Eq. 16; the PPO-for-LLMs setup of Huang et al. 2024 (arXiv 2403.17031).
    """
    chex.assert_rank([rewards, values, mask], 2)
    chex.assert_equal_shape([rewards, values, mask])
    valid = mask != 0

    def step(carry, xs):
        next_value, next_adv = carry
        r_t, v_t, m_t = xs
        delta = r_t + gamma * next_value - v_t
        adv = delta + gamma * lam * next_adv
        carry = (jnp.where(m_t, v_t, next_value), jnp.where(m_t, adv, next_adv))
        return carry, jnp.where(m_t, adv, 0.0)

    zeros = jnp.zeros(rewards.shape[0], rewards.dtype)
    values = masked.where_mask(values, mask)
    rewards = masked.where_mask(rewards, mask)
    _, adv = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, valid.T), reverse=True)
    adv = adv.T
    return adv, masked.where_mask(adv + values, mask)


def last_token_rewards(rewards: Array, mask: Array) -> Array:
    """Places each sequence's scalar reward on its last unmasked token: ``[B], [B, T] -> [B, T]``.

    A row with no unmasked token gets nothing.
    """
    chex.assert_rank(mask, 2)
    t = mask.shape[1]
    pos = jnp.arange(t)
    last = jnp.max(jnp.where(mask != 0, pos, -1), axis=1)  # [B]
    return jnp.where(pos[None, :] == last[:, None], rewards[:, None], 0.0).astype(rewards.dtype)


def stats(advantages: Array, mask: Array) -> dict[str, Array]:
    """Shared advantage metrics over unmasked entries: ``adv/mean``, ``adv/std`` (ddof 0), ``adv/max``, ``adv/min``.

    ``advantages``: ``[B]`` (each row counts once if it has any unmasked token) or ``[B, T]``.
    """
    if advantages.ndim == 1:
        mask = jnp.any(mask != 0, axis=1).astype(advantages.dtype)
    return {
        "adv/mean": masked.masked_mean(advantages, mask),
        "adv/std": masked.masked_std(advantages, mask),
        "adv/max": masked.masked_max(advantages, mask),
        "adv/min": masked.masked_min(advantages, mask),
    }


def group_stats(advantages: Array, rewards: Array, mask: Array, group_size: int) -> dict[str, Array]:
    """``stats(advantages, mask)`` plus ``frac_zero_std_groups`` (groups whose rewards are all equal)."""
    out = stats(advantages, mask)
    out["frac_zero_std_groups"] = jnp.mean(zero_std_groups(rewards, group_size).astype(jnp.float32))
    return out
