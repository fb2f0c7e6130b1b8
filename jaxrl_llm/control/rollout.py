"""The rollout: a ``lax.scan`` over a batch of vectorized environments (PureJaxRL style).

``collect`` steps N envs for T steps with a policy given as a pure function
``act(key, obs [N, O]) -> (action [N, A], extras)`` and returns a time-major ``Transition`` (every
field ``[T, N, ...]``), the env states and observations to continue from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array


class Transition(NamedTuple):
    obs: Array  # [T, N, O]
    action: Array  # [T, N, A] normalized action in [-1, 1] (what the env clipped, or the raw sample)
    reward: Array  # [T, N]
    done: Array  # [T, N] bool, terminated | truncated
    terminated: Array  # [T, N] bool
    next_obs: Array  # [T, N, O] the observation after the step, before auto-reset
    episode_return: Array  # [T, N] return of the episode that ended here, 0 elsewhere
    episode_length: Array  # [T, N]
    extras: Any  # the policy's per-step outputs (log-probs, distribution parameters, values...)


def reset(env: AutoReset, key: Array, num_envs: int) -> tuple[Array, Any]:
    """``(obs [N, O], states)`` of ``num_envs`` fresh envs."""
    return jax.vmap(env.reset)(jax.random.split(key, num_envs))


def collect(
    env: AutoReset,
    act: Callable[[Array, Array], tuple[Array, Any]],
    env_state: Any,
    obs: Array,
    key: Array,
    num_steps: int,
) -> tuple[Transition, Any, Array]:
    """``num_steps`` steps of every env in ``env_state``; returns ``(transitions, env_state, obs)``."""
    num_envs = obs.shape[0]
    step_envs = jax.vmap(env.step)

    def one(carry, key_t):
        env_state, obs = carry
        key_act, key_env = jax.random.split(key_t)
        action, extras = act(key_act, obs)
        next_obs, env_state, reward, done, info = step_envs(jax.random.split(key_env, num_envs), env_state, action)
        tr = Transition(
            obs,
            action,
            reward,
            done,
            info["terminated"],
            info["final_obs"],
            info["episode_return"],
            info["episode_length"],
            extras,
        )
        return (env_state, next_obs), tr

    (env_state, obs), traj = jax.lax.scan(one, (env_state, obs), jax.random.split(key, num_steps))
    return traj, env_state, obs


def episode_metrics(traj: Transition) -> dict[str, Array]:
    """Mean return and length of the episodes that ended in ``traj`` (NaN when none did), and their count."""
    n = jnp.sum(traj.done)
    safe = jnp.maximum(n, 1)
    nan = jnp.float32(jnp.nan)
    return {
        "episode/return": jnp.where(n > 0, jnp.sum(traj.episode_return) / safe, nan),
        "episode/length": jnp.where(n > 0, jnp.sum(traj.episode_length) / safe, nan),
        "episode/count": n.astype(jnp.float32),
        "reward/mean": jnp.mean(traj.reward),
    }
