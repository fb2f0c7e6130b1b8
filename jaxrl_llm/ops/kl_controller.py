"""Adaptive KL coefficient: the target-KL schedule of PPO for language models, as pure functions.

Citation: Daniel M. Ziegler, Nisan Stiennon, Jeffrey Wu, Tom B. Brown, Alec Radford, Dario Amodei,
Paul Christiano, Geoffrey Irving, "Fine-Tuning Language Models from Human Preferences", 2019,
https://arxiv.org/abs/1909.08593 (Sec. 2.2); code https://github.com/openai/lm-human-preferences.

The coefficient ``beta`` of the KL-in-reward is driven toward a target KL ``KL_target``:

    e_t      = clip(KL_t / KL_target - 1, -0.2, 0.2)        (proportional error, clipped)
    beta_t+1 = beta_t * (1 + K_beta * e_t),   K_beta = n_t / horizon

with ``KL_t`` the measured KL of the step's rollout and ``n_t`` the number of samples it used
(Ziegler et al. use ``K_beta = 0.1`` per 10k-sample horizon). verl's ``AdaptiveKLController``
(``verl/trainer/ppo/core_algos.py``) applies the same rule with ``n_t`` the batch size; TRL's
PPO trainer has no adaptive controller (a fixed ``kl_coef``).

The coefficient is a scalar f32 array: a method keeps it in its algorithm state (``init_state`` /
``update_state``), so the trainer checkpoints it and a resumed run continues the schedule.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_llm.types import Array

MAX_ERROR = 0.2  # the +-20% clip on the proportional error (Ziegler et al. 2019; verl)


def init(beta: float) -> Array:
    """The initial coefficient ``beta_0`` as an f32 scalar; must be positive (a zero coefficient
    would stay zero under a multiplicative rule)."""
    if not beta > 0:
        raise ValueError(f"adaptive KL controller needs an initial beta > 0, got {beta!r}")
    return jnp.float32(beta)


def update(beta: Array, kl: Array, kl_target: float, horizon: float, n_steps: Array | float) -> Array:
    """``beta * (1 + clip(kl / kl_target - 1, -0.2, 0.2) * n_steps / horizon)``: one step of the schedule.

    ``beta``, ``kl``: scalars (``kl`` the measured KL of the step's rollout, e.g. the token mean of
    ``log pi_old - log pi_ref``); ``kl_target > 0``; ``horizon > 0`` (samples); ``n_steps``: samples
    in the step. Pure and jittable; returns an f32 scalar.
    """
    if not kl_target > 0:
        raise ValueError(f"kl_target must be > 0, got {kl_target!r}")
    if not horizon > 0:
        raise ValueError(f"kl_horizon must be > 0, got {horizon!r}")
    error = jnp.clip(jnp.asarray(kl, jnp.float32) / kl_target - 1.0, -MAX_ERROR, MAX_ERROR)  # e_t
    return jnp.asarray(beta, jnp.float32) * (1.0 + error * (jnp.asarray(n_steps, jnp.float32) / horizon))
