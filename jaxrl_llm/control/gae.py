"""Generalized advantage estimation over time-major env rollouts with auto-reset.

``jaxrl_llm.ops.advantages.gae`` is the LLM form (one sequence per row, terminal after the last
unmasked token); env rollouts need two more things, so this is its own pure function: episodes end
and restart INSIDE a rollout (``dones`` cut the recursion), and a truncated episode (time limit)
bootstraps from the value of its real last observation, unlike a terminated one.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrl_llm.types import Array


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    dones: Array,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[Array, Array]:
    """GAE by reverse scan. All inputs ``[T, N]`` (time-major, N envs); returns ``(advantages, returns)``.

    ``delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)`` and
    ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``, ``A_T = 0``; ``R_t = A_t + V(s_t)``.
    ``next_values[t] = V(s'_t)``, the value of the observation that FOLLOWED step t (before any
    auto-reset: the final observation of an episode that ended); ``dones = terminated | truncated``.
    Reference: Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", arXiv 1506.02438, Eq. 16.
    """
    chex.assert_rank([rewards, values, next_values, terminated, dones], 2)
    chex.assert_equal_shape([rewards, values, next_values, terminated, dones])
    not_term = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - dones.astype(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values  # [T, N]

    def step(next_adv, xs):
        delta, nd = xs
        adv = delta + gamma * lam * nd * next_adv
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros_like(rewards[0]), (deltas, not_done), reverse=True)
    return adv, adv + values


def normalize(x: Array, eps: float = 1e-8) -> Array:
    """``(x - mean(x)) / (std(x) + eps)`` over every entry (the whole batch: a global normalizer)."""
    return (x - jnp.mean(x)) / (jnp.std(x) + eps)
