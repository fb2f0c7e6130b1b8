"""Rotary position embeddings with the rope settings used by Llama / Qwen configs.

Layout follows transformers' ``rotate_half`` convention (first half / second half of the head
dimension), not the interleaved one. Supported ``rope_scaling`` types: none/``default``,
``linear``, ``llama3`` (Llama 3.1+), ``dynamic`` is rejected (its frequencies depend on the
current sequence length, which changes under a KV cache).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np


def inverse_frequencies(head_dim: int, theta: float, scaling: Mapping[str, Any] | None = None) -> np.ndarray:
    """``inv_freq[i] = theta^(-2i/head_dim)``, adjusted by ``scaling`` (HF ``rope_parameters``)."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        pass
    elif kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        low_wavelen, high_wavelen = old_len / low, old_len / high
        scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled)
    else:
        raise NotImplementedError(f"rope_scaling type {kind!r} is not supported (supported: default, linear, llama3)")
    return inv_freq.astype(np.float32)


def cos_sin(positions: jax.Array, head_dim: int, theta: float, scaling=None):
    """cos, sin of shape [B, S, head_dim] in f32 for integer ``positions`` [B, S]."""
    inv_freq = jnp.asarray(inverse_frequencies(head_dim, theta, scaling))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates ``x`` [B, S, H, Dh] by the angles in cos/sin [B, S, Dh] (computed in f32)."""
    half = x.shape[-1] // 2
    x32 = x.astype(jnp.float32)
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(x.dtype)
