"""Functional JAX environments for control: one protocol, auto-reset, episode statistics.

The protocol (gymnax style, every function pure and jittable, ``vmap`` over a batch of envs):

    reset(key) -> (obs [O], state)
    step(key, state, action [A]) -> (obs [O], state, reward [], done [], info)

``step`` resets an episode that ends inside the same call (auto-reset): the returned ``obs`` is then
the first observation of the next episode, and ``info["final_obs"]`` the last observation of the
one that ended (the value of a truncated episode's last state bootstraps from it). ``info`` holds
``terminated`` (the episode ended in a terminal state: no bootstrap), ``truncated`` (it hit the time
limit), ``final_obs``, and the episode statistics ``episode_return`` / ``episode_length`` (the
totals of the episode that ended at this step, 0 elsewhere). ``done = terminated | truncated``.

Actions are normalized: every env takes ``action`` in ``[-1, 1]^A`` (clipped) and maps it to its own
bounds, so policies need not know them. A discrete-action env (``num_actions = K > 0``, only gymnax
envs built with ``discrete_actions=True``; PPO, MDPO and off-policy MDPO / SAC act in them) takes an integer
index in ``[0, K)`` instead (``action_dim`` is then 1).

A base environment implements ``reset_env(key) -> (obs, state)`` and
``step_env(key, state, action) -> (obs, state, reward, terminated, truncated)`` on native actions;
``AutoReset`` turns it into the protocol. Built in: ``PointMass`` (pure JAX, no extra needed);
behind the ``control`` extra: ``gymnax`` (``gymnax:Pendulum-v1``) and ``brax``
(``brax:inverted_pendulum``, ``brax:hopper``, ...). ``make(name)`` builds any of them.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxrl_llm import errors
from jaxrl_llm.control import integrator_env
from jaxrl_llm.types import Array


class BaseEnv(Protocol):
    """What ``AutoReset`` wraps: an episode without reset logic, on native actions."""

    obs_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]

    def reset_env(self, key: Array) -> tuple[Array, Any]: ...

    def step_env(self, key: Array, state: Any, action: Array) -> tuple[Array, Any, Array, Array, Array]: ...


class EnvState(NamedTuple):
    """The auto-reset wrapper's state: the base env's state plus running episode totals."""

    inner: Any
    episode_return: Array  # [] f32, return of the running episode so far
    episode_length: Array  # [] i32


@dataclasses.dataclass(frozen=True, eq=False)
class AutoReset:
    """The functional env protocol (module docstring) over a ``BaseEnv``.

    Hashable by identity so that it can be a static argument of ``jax.jit``.
    """

    base: Any
    name: str

    @property
    def obs_dim(self) -> int:
        return self.base.obs_dim

    @property
    def action_dim(self) -> int:
        return self.base.action_dim

    @property
    def num_actions(self) -> int:
        """K > 0 for a discrete-action env (actions are indices in ``[0, K)``), 0 for a Box one."""
        return int(getattr(self.base, "num_actions", 0))

    def _native(self, action: Array) -> Array:
        """``[-1, 1]`` -> ``[low, high]`` per dimension (after clipping to ``[-1, 1]``); a discrete
        env's index ``[]`` or ``[1]`` passes through as an int32 scalar."""
        if self.num_actions:
            return jnp.reshape(action, ()).astype(jnp.int32)
        low = jnp.asarray(self.base.action_low, jnp.float32)
        high = jnp.asarray(self.base.action_high, jnp.float32)
        a = jnp.clip(action, -1.0, 1.0)
        return low + 0.5 * (a + 1.0) * (high - low)

    def reset(self, key: Array) -> tuple[Array, EnvState]:
        obs, inner = self.base.reset_env(key)
        return obs, EnvState(inner, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))

    def step(self, key: Array, state: EnvState, action: Array) -> tuple[Array, EnvState, Array, Array, dict]:
        key_step, key_reset = jax.random.split(key)
        obs, inner, reward, terminated, truncated = self.base.step_env(key_step, state.inner, self._native(action))
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool) & ~terminated
        done = terminated | truncated
        ep_return = state.episode_return + reward
        ep_length = state.episode_length + 1
        reset_obs, reset_inner = self.base.reset_env(key_reset)
        next_inner = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_inner, inner)
        next_obs = jnp.where(done, reset_obs, obs)
        info = {
            "terminated": terminated,
            "truncated": truncated,
            "final_obs": obs,
            "episode_return": jnp.where(done, ep_return, 0.0),
            "episode_length": jnp.where(done, ep_length, 0),
        }
        next_state = EnvState(
            next_inner, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length).astype(jnp.int32)
        )
        return next_obs, next_state, reward, done, info


class PointMassState(NamedTuple):
    pos: Array  # [D]
    vel: Array  # [D]
    time: Array  # [] i32


@dataclasses.dataclass(frozen=True)
class PointMass:
    """A D-dimensional point mass to be brought to the origin (pure JAX; no extra needed).

    ``x_{t+1} = x_t + dt v_{t+1}``, ``v_{t+1} = (1 - damping dt) v_t + dt a_t`` (semi-implicit Euler),
    ``a_t in [-max_force, max_force]^D``, reward ``-|x_t|^2 - action_cost |a_t|^2``, start ``x_0 ~ U[-1, 1]^D``,
    ``v_0 = 0``, truncated after ``horizon`` steps, never terminated. The observation is ``[x, v]``.
    The setting of the MDPO tiny reproduction (a 1-D/2-D point mass, dt 0.05, horizon 200).
    """

    dim: int = 2
    dt: float = 0.05
    horizon: int = 200
    max_force: float = 1.0
    damping: float = 0.1
    action_cost: float = 0.01

    @property
    def obs_dim(self) -> int:
        return 2 * self.dim

    @property
    def action_dim(self) -> int:
        return self.dim

    @property
    def action_low(self) -> tuple[float, ...]:
        return (-self.max_force,) * self.dim

    @property
    def action_high(self) -> tuple[float, ...]:
        return (self.max_force,) * self.dim

    def reset_env(self, key: Array) -> tuple[Array, PointMassState]:
        pos = jax.random.uniform(key, (self.dim,), minval=-1.0, maxval=1.0)
        state = PointMassState(pos, jnp.zeros(self.dim), jnp.zeros((), jnp.int32))
        return jnp.concatenate([state.pos, state.vel]), state

    def step_env(self, key: Array, state: PointMassState, action: Array):
        del key
        reward = -jnp.sum(state.pos**2) - self.action_cost * jnp.sum(action**2)
        vel = (1.0 - self.damping * self.dt) * state.vel + self.dt * action
        pos = state.pos + self.dt * vel
        new = PointMassState(pos, vel, state.time + 1)
        truncated = new.time >= self.horizon
        return jnp.concatenate([pos, vel]), new, reward, jnp.zeros((), bool), truncated


@dataclasses.dataclass(frozen=True, eq=False)
class GymnaxEnv:
    """A gymnax environment (``pip install 'jaxrl_llm[control]'``) as a ``BaseEnv``.

    gymnax's ``done`` mixes the time limit with real terminations; the time limit is split out
    (``state.time >= max_steps_in_episode`` is a truncation) so that a timed-out episode bootstraps.
    Box action spaces, or a Discrete one (``num_actions`` > 0) when built with ``discrete_actions=True``.
    """

    env: Any
    params: Any
    obs_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    num_actions: int = 0  # K > 0: a Discrete(K) action space (integer actions)

    def reset_env(self, key: Array):
        return self.env.reset_env(key, self.params)

    def step_env(self, key: Array, state: Any, action: Array):
        obs, new, reward, done, _ = self.env.step_env(key, state, action, self.params)
        truncated = new.time >= self.params.max_steps_in_episode
        return obs.astype(jnp.float32), new, reward, done & ~truncated, truncated


@dataclasses.dataclass(frozen=True, eq=False)
class GymMountainCarContinuous(GymnaxEnv):
    """gymnax's ``MountainCarContinuous-v0`` with gym's velocity rule at the walls.

    gymnax 1.0.1's ``ContinuousMountainCar.step_env`` zeroes a negative velocity at the GOAL
    (``position >= goal_position``) where gym (and gymnax's own discrete ``MountainCar``) zeroes it
    at the LEFT wall (``position == min_position``): in gymnax a car that hits the left wall keeps
    its leftward speed and sticks there for several steps. This step is gym's
    (``gymnasium/envs/classic_control/continuous_mountain_car.py``): force clipped to
    ``[min_action, max_action]``, velocity += force power - 0.0025 cos(3 position) clipped to
    +-max_speed, position += velocity clipped, a negative velocity zeroed at the left wall, reward
    ``-0.1 a^2 + 100`` on reaching ``position >= goal_position`` with ``velocity >= goal_velocity``."""

    def step_env(self, key: Array, state: Any, action: Array):
        del key
        p = self.params
        a = jnp.reshape(action, ())
        force = jnp.clip(a, p.min_action, p.max_action)
        velocity = jnp.clip(
            state.velocity + force * p.power - 0.0025 * jnp.cos(3 * state.position), -p.max_speed, p.max_speed
        )
        position = jnp.clip(state.position + velocity, p.min_position, p.max_position)
        velocity = jnp.where((position <= p.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= p.goal_position) & (velocity >= p.goal_velocity)
        reward = -0.1 * a**2 + 100.0 * terminated
        new = state.replace(position=position, velocity=velocity, time=state.time + 1)
        truncated = new.time >= p.max_steps_in_episode
        obs = jnp.stack([position, velocity]).astype(jnp.float32)
        return obs, new, reward, terminated & ~truncated, truncated


def gymnax_env(env_id: str, discrete_actions: bool = False, **params: Any) -> GymnaxEnv:
    """``gymnax.make(env_id)`` with ``params`` overriding its default ``EnvParams`` fields. A Discrete
    action space is refused unless ``discrete_actions`` (PPO, MDPO and off-policy MDPO / SAC act in one).
    ``MountainCarContinuous-v0`` steps with gym's wall rule (``GymMountainCarContinuous``)."""
    gymnax = _import_extra("gymnax")
    env, env_params = gymnax.make(env_id)
    if params:
        env_params = env_params.replace(**params)
    space = env.action_space(env_params)
    obs_dim = int(jnp.prod(jnp.asarray(env.observation_space(env_params).shape)))
    if hasattr(space, "n") and not hasattr(space, "low"):
        if not discrete_actions:
            raise errors.UserError(
                f"gymnax env {env_id!r} has a discrete action space; control/ methods take Box actions "
                "(PPO, MDPO and MDPO-off/SAC also take discrete ones: env_kwargs={'discrete_actions': True})"
            )
        n = int(space.n)
        return GymnaxEnv(env, env_params, obs_dim, 1, (0.0,), (float(n - 1),), num_actions=n)
    if not hasattr(space, "low") or not jnp.issubdtype(jnp.asarray(space.low).dtype, jnp.floating):
        raise errors.UserError(f"gymnax env {env_id!r} has a discrete action space; control/ supports Box actions")
    shape = space.shape if space.shape else (1,)
    dim = int(jnp.prod(jnp.asarray(shape)))
    low = tuple(float(x) for x in jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), (dim,)))
    high = tuple(float(x) for x in jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), (dim,)))
    cls = GymMountainCarContinuous if env_id == "MountainCarContinuous-v0" else GymnaxEnv
    return cls(env, env_params, obs_dim, dim, low, high)


class BraxState(NamedTuple):
    inner: Any
    time: Array  # [] i32


@dataclasses.dataclass(frozen=True, eq=False)
class BraxEnv:
    """A brax environment (``pip install 'jaxrl_llm[control]'``) as a ``BaseEnv``, with a time limit of
    ``episode_length`` steps (a truncation) and brax's own ``done`` as the termination."""

    env: Any
    episode_length: int
    obs_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]

    def reset_env(self, key: Array):
        st = self.env.reset(key)
        return st.obs, BraxState(st, jnp.zeros((), jnp.int32))

    def step_env(self, key: Array, state: BraxState, action: Array):
        del key
        st = self.env.step(state.inner, action)
        time = state.time + 1
        return st.obs, BraxState(st, time), st.reward, st.done > 0.5, time >= self.episode_length


def brax_env(env_name: str, backend: str = "generalized", episode_length: int = 1000, **kwargs: Any) -> BraxEnv:
    """``brax.envs.get_environment(env_name, backend=backend, **kwargs)`` with a time limit."""
    brax_envs = _import_extra("brax.envs")
    env = brax_envs.get_environment(env_name, backend=backend, **kwargs)
    dim = int(env.action_size)
    return BraxEnv(env, episode_length, int(env.observation_size), dim, (-1.0,) * dim, (1.0,) * dim)


def make(name: str, **kwargs: Any) -> AutoReset:
    """An env by name: ``point_mass``, ``stl_integrator`` (``integrator_env``), ``gymnax:<id>`` (e.g.
    ``gymnax:Pendulum-v1``) or ``brax:<name>`` (e.g. ``brax:inverted_pendulum``); ``kwargs`` go to the
    env's constructor."""
    if name == "point_mass":
        base = PointMass(**kwargs)
    elif name == "stl_integrator":
        base = integrator_env.SingleIntegrator(**kwargs)
    elif name.startswith("gymnax:"):
        base = gymnax_env(name.split(":", 1)[1], **kwargs)
    elif name.startswith("brax:"):
        base = brax_env(name.split(":", 1)[1], **kwargs)
    else:
        raise errors.UserError(
            f"unknown control env {name!r}: expected point_mass, stl_integrator, gymnax:<id> or brax:<name>"
        )
    return AutoReset(base, name)


def _import_extra(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise errors.UserError(
            f"{module.split('.')[0]} is not installed; install the control extra: pip install 'jaxrl_llm[control]'"
        ) from None
