"""Rotary position embeddings (RoPE) with the context-extension settings of Llama / Qwen configs.

RoPE (Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding",
https://arxiv.org/abs/2104.09864) rotates each (i, i + Dh/2) pair of a query / key head by the
angle ``p * inv_freq[i]`` at position ``p``, with ``inv_freq[i] = theta^(-2i / Dh)``. The layout
follows transformers' ``rotate_half`` convention (first half / second half of the head
dimension), not the interleaved one.

Context extension (``RopeScaling``, read from a Hugging Face config's ``rope_parameters``):

* ``linear`` (Chen et al., "Extending Context Window of Large Language Models via Positional
  Interpolation", https://arxiv.org/abs/2306.15595): ``inv_freq / factor``.
* ``llama3`` (Llama Team, "The Llama 3 Herd of Models", https://arxiv.org/abs/2407.21783; code:
  ``apply_scaling`` in https://github.com/meta-llama/llama-models): with wavelength
  ``w = 2 pi / inv_freq``, ``L0 = original_max_position_embeddings``, ``lo = low_freq_factor``,
  ``hi = high_freq_factor``: frequencies with ``w > L0 / lo`` are divided by ``factor``, those
  with ``w < L0 / hi`` are kept, and in between ``(1 - s) inv_freq / factor + s inv_freq`` with
  ``s = (L0 / w - lo) / (hi - lo)``.
* ``yarn`` (Peng et al., "YaRN: Efficient Context Window Extension of Large Language Models",
  https://arxiv.org/abs/2309.00071; code: https://github.com/jquesnelle/yarn): per frequency a
  ramp ``g_i = clip((i - low) / (high - low), 0, 1)`` between the dimensions ``low`` / ``high``
  that turn ``beta_fast`` / ``beta_slow`` times over ``L0`` positions gives
  ``inv_freq_i (1 - g_i) + inv_freq_i / factor * g_i``, and cos / sin are multiplied by
  ``attention_factor`` (default ``0.1 ln(factor) + 1``, Eq. 21), as transformers does.

``dynamic`` (NTK) scaling is rejected: its frequencies depend on the current sequence length,
which a KV-cached decode does not recompute, so cached and uncached logits would differ.
``longrope`` (Phi-3) is rejected too. Numerics match ``transformers.modeling_rope_utils``
(``tests/test_models.py`` compares the frequencies).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# rope_type -> (required keys, optional keys) of ``rope_parameters`` besides rope_type / rope_theta.
ROPE_TYPES = {
    "linear": (("factor",), ()),
    "llama3": (("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"), ()),
    "yarn": (
        ("factor", "original_max_position_embeddings"),
        ("attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"),
    ),
}
UNSUPPORTED = {
    "dynamic": "its frequencies change with the current sequence length, which a KV cache does not follow",
    "longrope": "its short/long frequency sets switch with the sequence length",
}
_INT_KEYS = ("original_max_position_embeddings",)
_BOOL_KEYS = ("truncate",)


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """A context-extension setting (``rope_type`` + its parameters); frozen and hashable, so a
    ``ModelConfig`` holding it can be a static argument under ``jax.jit``.

    Build it with ``RopeScaling.from_hf(config.rope_parameters)``; fields a type does not use
    stay ``None`` (``to_hf`` writes back exactly the keys that were read).
    """

    rope_type: str
    factor: float
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None
    attention_factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool | None = None

    def __post_init__(self):
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(
                f"rope_scaling.rope_type={self.rope_type!r} is not supported; "
                f"supported: default, {', '.join(ROPE_TYPES)}"
            )
        required, optional = ROPE_TYPES[self.rope_type]
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value is None:
                if f.name in required:
                    raise ValueError(f"rope_scaling: rope_type {self.rope_type!r} needs {f.name!r}")
                continue
            if f.name not in required + optional:
                raise ValueError(
                    f"rope_scaling: {f.name}={value!r} is not a parameter of rope_type "
                    f"{self.rope_type!r} (it takes {list(required + optional)})"
                )
            if not isinstance(value, (bool, int, float)) or (isinstance(value, bool) != (f.name in _BOOL_KEYS)):
                raise ValueError(
                    f"rope_scaling: {f.name}={value!r} must be a {'bool' if f.name in _BOOL_KEYS else 'number'}"
                )
            if f.name not in _BOOL_KEYS:  # JSON gives 8 or 8.0 alike
                object.__setattr__(self, f.name, int(value) if f.name in _INT_KEYS else float(value))
        if self.factor <= 0:
            raise ValueError(f"rope_scaling: factor={self.factor} must be > 0")

    @classmethod
    def from_hf(
        cls,
        params: Mapping[str, Any] | None,
        *,
        max_position_embeddings: int | None = None,
        where: str = "rope_parameters",
    ) -> RopeScaling | None:
        """The scaling in a HF ``rope_parameters`` (or legacy ``rope_scaling``) dict; None for plain RoPE.

        ``rope_theta`` is not part of it (``ModelConfig.rope_theta``). As transformers does,
        ``original_max_position_embeddings`` defaults to ``max_position_embeddings`` for llama3 /
        yarn, and a yarn ``factor`` of None to their ratio. Unknown types and keys are errors that
        name ``where`` and the value.
        """
        params = dict(params or {})
        params.pop("rope_theta", None)
        kind = params.pop("rope_type", None)
        legacy = params.pop("type", None)
        kind = kind or legacy or "default"
        partial = params.pop("partial_rotary_factor", 1.0)
        if partial != 1.0:
            raise NotImplementedError(
                f"{where}.partial_rotary_factor={partial!r}: only full rotary embeddings (1.0) are supported"
            )
        if kind in UNSUPPORTED:
            raise NotImplementedError(
                f"{where}.rope_type={kind!r} is not supported ({UNSUPPORTED[kind]}); "
                f"supported: default, {', '.join(ROPE_TYPES)}"
            )
        if kind == "default":
            if params:
                raise ValueError(f"{where}: unexpected keys {sorted(params)} for rope_type 'default'")
            return None
        if kind not in ROPE_TYPES:
            raise NotImplementedError(
                f"{where}.rope_type={kind!r} is not supported; supported: default, {', '.join(ROPE_TYPES)}"
            )
        required, optional = ROPE_TYPES[kind]
        unknown = sorted(set(params) - set(required + optional))
        if unknown:
            raise ValueError(
                f"{where}: unexpected keys {unknown} for rope_type {kind!r} (it takes {list(required + optional)})"
            )
        if "original_max_position_embeddings" in required and max_position_embeddings is not None:
            params.setdefault("original_max_position_embeddings", max_position_embeddings)
        if kind == "yarn" and params.get("factor") is None and max_position_embeddings is not None:
            params["factor"] = max_position_embeddings / params["original_max_position_embeddings"]
        try:
            return cls(rope_type=kind, **params)
        except ValueError as e:
            raise ValueError(f"{where}: {str(e).removeprefix('rope_scaling: ')}") from None

    def to_hf(self) -> dict[str, Any]:
        """The HF ``rope_parameters`` entries (without ``rope_theta``): exactly the keys set."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @property
    def attention_scale(self) -> float:
        """Factor on cos and sin: YaRN's ``attention_factor`` (or its Eq. 21 default); 1 otherwise."""
        if self.rope_type != "yarn":
            return 1.0
        if self.attention_factor is not None:
            return self.attention_factor
        if self.mscale and self.mscale_all_dim:
            return _yarn_mscale(self.factor, self.mscale) / _yarn_mscale(self.factor, self.mscale_all_dim)
        return _yarn_mscale(self.factor)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN Eq. 21: ``0.1 * mscale * ln(scale) + 1`` (1 when not extending)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_inverse_frequencies(inv_freq: np.ndarray, head_dim: int, theta: float, s: RopeScaling) -> np.ndarray:
    def correction_dim(rotations):  # the dimension whose wavelength fits `rotations` times in L0
        length = s.original_max_position_embeddings
        return head_dim * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(s.beta_fast or 32), correction_dim(s.beta_slow or 1)
    if s.truncate is None or s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # as the reference: avoids 0 / 0
    ramp = np.clip((np.arange(head_dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    return inv_freq / s.factor * ramp + inv_freq * (1 - ramp)


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> np.ndarray:
    """``inv_freq[i] = theta^(-2i/head_dim)`` [head_dim / 2] f32, adjusted by ``scaling``."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if scaling is None:
        pass
    elif scaling.rope_type == "linear":
        inv_freq = inv_freq / scaling.factor
    elif scaling.rope_type == "llama3":
        factor, low, high = scaling.factor, scaling.low_freq_factor, scaling.high_freq_factor
        old_len = float(scaling.original_max_position_embeddings)
        wavelen = 2 * math.pi / inv_freq
        low_wavelen, high_wavelen = old_len / low, old_len / high
        scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled)
    elif scaling.rope_type == "yarn":
        inv_freq = _yarn_inverse_frequencies(inv_freq, head_dim, theta, scaling)
    else:  # RopeScaling's own check makes this unreachable for instances it built
        raise ValueError(f"rope_scaling.rope_type={scaling.rope_type!r} is not supported")
    return inv_freq.astype(np.float32)


def cos_sin(positions: jax.Array, head_dim: int, theta: float, scaling: RopeScaling | None = None):
    """cos, sin of shape [B, S, head_dim] in f32 for integer ``positions`` [B, S]
    (times ``scaling.attention_scale`` for YaRN)."""
    inv_freq = jnp.asarray(inverse_frequencies(head_dim, theta, scaling))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq.reshape((1,) * positions.ndim + (-1,))
    angles = jnp.concatenate([angles, angles], axis=-1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    scale = 1.0 if scaling is None else scaling.attention_scale
    if scale != 1.0:
        cos, sin = cos * scale, sin * scale
    return cos, sin


def apply(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates ``x`` [B, S, H, Dh] by the angles in cos/sin [B, S, Dh] (computed in f32)."""
    half = x.shape[-1] // 2
    x32 = x.astype(jnp.float32)
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(x.dtype)
