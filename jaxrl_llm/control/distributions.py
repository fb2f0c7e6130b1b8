"""Diagonal Gaussian, tanh-squashed Gaussian and categorical policies as pure functions of their parameters.

Shapes: ``mean``, ``log_std``, ``x`` are ``[..., A]`` (A action dimensions); every log-density,
entropy and KL sums over the last axis and returns ``[...]``. Categorical: ``logits`` ``[..., K]``
(K actions), actions are integer indices ``[...]``.

``GAUSSIAN`` and ``CATEGORICAL`` (``family(num_actions)`` picks one) bundle these as functions of a
policy network's output ``d`` (``(mean, log_std)`` of ``networks.GaussianPolicy``, ``logits`` of
``networks.CategoricalPolicy``) with the env's action layout ``[..., A]`` (a discrete env's index is
``[..., 1]`` int32): what PPO and MDPO share to act and to score actions in either kind of env.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_llm.types import Array

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_logprob(x: Array, mean: Array, log_std: Array) -> Array:
    """``log N(x; mean, diag(exp(log_std)^2)) = -sum_i [ (x_i - mu_i)^2 / (2 sigma_i^2) + log sigma_i + log(2 pi)/2 ]``."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(log_std: Array) -> Array:
    """``H = sum_i [ log sigma_i + (1 + log(2 pi)) / 2 ]``."""
    return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


def gaussian_kl(mean_p: Array, log_std_p: Array, mean_q: Array, log_std_q: Array) -> Array:
    """``KL(p || q)`` of two diagonal Gaussians, analytic:
    ``sum_i [ log(sigma_q/sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2 ]``."""
    var_p = jnp.exp(2.0 * log_std_p)
    var_q = jnp.exp(2.0 * log_std_q)
    return jnp.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2.0 * var_q) - 0.5, axis=-1)


def gaussian_sample(key: Array, mean: Array, log_std: Array) -> Array:
    """``x = mean + exp(log_std) * eps``, ``eps ~ N(0, I)`` (reparameterized)."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def tanh_log_det(u: Array) -> Array:
    """``sum_i log(1 - tanh(u_i)^2) = sum_i 2 (log 2 - u_i - softplus(-2 u_i))`` (stable for large |u|)."""
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def tanh_gaussian_logprob(u: Array, mean: Array, log_std: Array) -> Array:
    """Log-density of ``a = tanh(u)``, ``u ~ N(mean, sigma^2)``, given the pre-squash ``u``:
    ``log N(u; mean, sigma) - sum_i log(1 - tanh(u_i)^2)`` (Haarnoja et al., SAC, arXiv 1801.01290, App. C)."""
    return gaussian_logprob(u, mean, log_std) - tanh_log_det(u)


def tanh_gaussian_sample(key: Array, mean: Array, log_std: Array) -> tuple[Array, Array, Array]:
    """A reparameterized squashed sample: ``(a = tanh(u), u, log pi(a))``."""
    u = gaussian_sample(key, mean, log_std)
    return jnp.tanh(u), u, tanh_gaussian_logprob(u, mean, log_std)


def categorical_logprob(action: Array, logits: Array) -> Array:
    """``log softmax(logits)[action]``: ``action`` ``[...]`` integer indices, ``logits`` ``[..., K]``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, action.astype(jnp.int32)[..., None], axis=-1)[..., 0]


def categorical_entropy(logits: Array) -> Array:
    """``H = -sum_k p_k log p_k``, ``p = softmax(logits)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def categorical_sample(key: Array, logits: Array) -> Array:
    """An index ``[...]`` (int32) drawn from ``softmax(logits)``."""
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def categorical_kl(logits_p: Array, logits_q: Array) -> Array:
    """``KL(p || q) = sum_k p_k (log p_k - log q_k)``, ``p = softmax(logits_p)``, ``q = softmax(logits_q)``:
    exact, the sum over the K actions (``[..., K]`` -> ``[...]``)."""
    logp = jax.nn.log_softmax(logits_p, axis=-1)
    logq = jax.nn.log_softmax(logits_q, axis=-1)
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def sde_log_std(latent: Array, log_std: Array, eps: float = 1e-6) -> Array:
    """The per-action log-std of gSDE given the features ``latent [..., H]`` and the exploration
    matrix's ``log_std [H, A]``: ``(1/2) log(latent^2 . exp(2 log_std) + eps)`` (SB3's
    ``StateDependentNoiseDistribution``, ``full_std=True``; ``eps`` 1e-6 as there). ``[..., A]``."""
    return 0.5 * jnp.log(jnp.matmul(latent**2, jnp.exp(2.0 * log_std)) + eps)


def sde_noise(latent: Array, matrix: Array) -> Array:
    """``latent [..., H] . matrix [..., H, A]`` -> ``[..., A]``: the exploration noise of gSDE."""
    return jnp.einsum("...h,...ha->...a", latent, matrix)


class Family(NamedTuple):
    """A policy distribution as pure functions of the policy network's output ``d``; actions in the
    env's layout ``[..., A]``."""

    sample: Any  # (key, d) -> action [..., A]
    logprob: Any  # (d, action [..., A]) -> [...]
    entropy: Any  # (d) -> [...]
    kl: Any  # (d_p, d_q) -> KL(p || q) [...], analytic
    mode: Any  # (d) -> action [..., A]: the Gaussian's mean, the categorical's argmax


GAUSSIAN = Family(
    sample=lambda key, d: gaussian_sample(key, d[0], d[1]),
    logprob=lambda d, action: gaussian_logprob(action, d[0], d[1]),
    entropy=lambda d: gaussian_entropy(d[1]),
    kl=lambda p, q: gaussian_kl(p[0], p[1], q[0], q[1]),
    mode=lambda d: d[0],
)

CATEGORICAL = Family(
    sample=lambda key, logits: categorical_sample(key, logits)[..., None],
    logprob=lambda logits, action: categorical_logprob(action[..., 0], logits),
    entropy=categorical_entropy,
    kl=categorical_kl,
    mode=lambda logits: jnp.argmax(logits, axis=-1).astype(jnp.int32)[..., None],
)


def family(num_actions: int) -> Family:
    """``CATEGORICAL`` for a discrete-action env (``num_actions`` K > 0), else ``GAUSSIAN``."""
    return CATEGORICAL if num_actions else GAUSSIAN
