"""Diagonal Gaussian and tanh-squashed Gaussian policies as pure functions of their parameters.

Shapes: ``mean``, ``log_std``, ``x`` are ``[..., A]`` (A action dimensions); every log-density,
entropy and KL sums over the last axis and returns ``[...]``.
"""

from __future__ import annotations

import math

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
