"""A 2-D single integrator whose task is an STL specification (``control/stl.py``), in pure JAX.

    x_{t+1} = x_t + dt u_t,   u_t = a_t / max(1, |a_t| / v_max)   (speed at most v_max)

``x_0 ~ U[start_low, start_high]^2``; an episode lasts exactly ``spec.horizon`` steps and then
TERMINATES (the observation carries the time, so the time limit is part of the state, not a
truncation). The observation is ``[x_t, t / H]``; the state keeps the whole trajectory
``x_0..x_H`` so that the robustness of the spec can be scored at the end. With
``reward="robustness"`` the only reward is ``rho(phi, x_{0:H})`` on the last step (the sparse terminal
reward that flat RL on STL uses); with ``reward="none"`` the env pays nothing and a method shapes its
own reward (TGPO). The tiny reproduction of TGPO (Meng, Chen, Fan, arXiv 2510.00225): dt 0.1,
|u| <= 1, horizon 100. ``envs.make("stl_integrator", spec="sequence")`` builds it behind ``AutoReset``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_llm.control import stl
from jaxrl_llm.types import Array

REWARDS = ("robustness", "none")
BACKENDS = ("jax", "stljax")


class IntegratorState(NamedTuple):
    pos: Array  # [2]
    time: Array  # [] i32
    traj: Array  # [H+1, 2], x_0..x_t filled, zeros after


@dataclasses.dataclass(frozen=True)
class SingleIntegrator:
    """The env of the module docstring (a ``BaseEnv`` of ``control/envs.py``)."""

    spec: str = "sequence"  # a name in stl.SPECS
    dt: float = 0.1
    max_speed: float = 1.0  # v_max
    start_low: float = -0.5
    start_high: float = 0.5
    reward: str = "robustness"  # one of REWARDS
    stl_backend: str = "jax"  # one of BACKENDS: who computes rho for the reward

    def __post_init__(self):
        stl.get(self.spec)
        if self.reward not in REWARDS:
            raise ValueError(f"SingleIntegrator: reward={self.reward!r}, expected one of {REWARDS}")
        if self.stl_backend not in BACKENDS:
            raise ValueError(f"SingleIntegrator: stl_backend={self.stl_backend!r}, expected one of {BACKENDS}")
        if self.dt <= 0 or self.max_speed <= 0 or self.start_low > self.start_high:
            raise ValueError(
                f"SingleIntegrator: need dt > 0, max_speed > 0, start_low <= start_high; got dt={self.dt}, "
                f"max_speed={self.max_speed}, start=[{self.start_low}, {self.start_high}]"
            )

    @property
    def stl_spec(self) -> stl.Spec:
        return stl.get(self.spec)

    @property
    def horizon(self) -> int:
        return self.stl_spec.horizon

    @property
    def max_step(self) -> float:
        """The largest distance covered in one step, ``dt v_max``."""
        return self.dt * self.max_speed

    obs_dim = 3
    action_dim = 2

    @property
    def action_low(self) -> tuple[float, ...]:
        return (-self.max_speed,) * 2

    @property
    def action_high(self) -> tuple[float, ...]:
        return (self.max_speed,) * 2

    def observe(self, pos: Array, time: Array) -> Array:
        """``[x, t / H]``."""
        return jnp.concatenate([pos, (time / self.horizon)[..., None].astype(jnp.float32)], axis=-1)

    def robustness(self, traj: Array) -> Array:
        """``rho(spec, traj [..., H+1, 2])`` with the configured backend."""
        if self.stl_backend == "stljax":
            return stl.robustness_stljax(self.stl_spec, traj)
        return stl.robustness(self.stl_spec, traj)

    def reset_env(self, key: Array) -> tuple[Array, IntegratorState]:
        pos = jax.random.uniform(key, (2,), minval=self.start_low, maxval=self.start_high)
        traj = jnp.zeros((self.horizon + 1, 2), jnp.float32).at[0].set(pos)
        state = IntegratorState(pos, jnp.zeros((), jnp.int32), traj)
        return self.observe(pos, state.time), state

    def step_env(self, key: Array, state: IntegratorState, action: Array):
        del key
        speed = jnp.linalg.norm(action)
        u = action / jnp.maximum(1.0, speed / self.max_speed)
        pos = state.pos + self.dt * u
        time = state.time + 1
        traj = state.traj.at[time].set(pos)
        terminated = time >= self.horizon
        if self.reward == "robustness":
            reward = jnp.where(terminated, self.robustness(traj), 0.0)
        else:
            reward = jnp.zeros((), jnp.float32)
        return self.observe(pos, time), IntegratorState(pos, time, traj), reward, terminated, jnp.zeros((), bool)
