"""The decoding step the sampler's loop runs: per-layer weights and caches, written in place.

``Decoder.__call__`` with a cache scans the stacked layers. Inside a decoding loop on XLA:CPU
that costs, at every step: a copy of each layer's weight slice out of the stacked array before
its matmul (the ``dynamic-slice`` is not fused into the GEMM), a read-modify-write copy of each
layer's cache slice, and a transpose of each layer's cache for the attention einsum. Decoding is
memory-bound, so these copies multiply the step time. Here, once per sampling call:

- the stacked parameters are split into per-layer arrays (``Backend.prepare``), and
- the prefilled ``KVCache`` is split into per-layer caches, keys laid out [B*K, Dh, Smax] and
  values [B*K, Smax, Dh] (``DecodeCache.from_cache``): the batch dim (B*K) leads on both
  operands and both attention einsums are plain (non-transposed) batched GEMMs on the cache as
  stored, ``q @ k`` and ``probs @ v``. Keys slot-major ([.., Smax, Dh]) make the score GEMM read
  its right operand transposed: the attention alone took 17% (SmolLM2, batch 16) to 58% (tiny,
  batch 64) longer on XLA:CPU. Rows and kv heads share one axis because any reshape (bitcast)
  between a step's cache update and its attention GEMM, e.g. XLA dropping the unit batch dim at
  B = 1 (still so when B*K = 1), makes XLA:CPU duplicate the update into both consumers and copy
  the cache 4 times per layer and step (SmolLM2 at batch 1: 240 copies per step, 2-4% of a call);

and each step unrolls the L layers, writes the new keys/values into the carried caches
(``dynamic_update_slice`` on a loop-carried buffer is done in place) and attends over them.

The block is written once, here, in plain JAX; its products, its attention and the token draw go
through a decode backend (``backend.py``: XLA's einsums by default, optional hand-written kernels
registered from ``jaxrl_llm.kernels``), which lays its weights out once per call
(``Backend.prepare``). The block's arithmetic is ``Decoder.hidden_states`` (same parameters,
``rms_norm`` and RoPE helpers, f32 softmax); ``tests/test_sampling.py`` checks the logits against
the uncached ``Decoder.__call__`` for the llama, qwen2 (q/k/v biases) and qwen3 (q/k norm) blocks,
on every backend that runs here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_llm.models import rope
from jaxrl_llm.models.cache import KVCache
from jaxrl_llm.models.decoder import rms_norm
from jaxrl_llm.sampling.backend import DecodeWeights, Xla

# Logical axes of one layer's k and v in the decode layout, for jaxrl_llm.sharding.RULES. The
# leading axis is (row, kv head) row-major: sharded by rows, its blocks are whole rows; the kv
# heads of the decode cache are not split over a "tensor" mesh axis.
DECODE_K_AXES = ("batch", "head_dim", "cache_seq")
DECODE_V_AXES = ("batch", "cache_seq", "head_dim")


@struct.dataclass
class DecodeCache:
    """k: tuple of L arrays [B*K, Dh, Smax]; v: L arrays [B*K, Smax, Dh] (entry b*K + k: row b,
    kv head k); valid: [B, Smax] bool; index: [] int32."""

    k: tuple
    v: tuple
    valid: jax.Array
    index: jax.Array

    @classmethod
    def from_cache(cls, cache: KVCache) -> DecodeCache:
        """Splits a ``KVCache`` ([L, B, Smax, K, Dh]) into per-layer k [B*K, Dh, Smax], v [B*K, Smax, Dh]."""
        L, B, Smax, K, Dh = cache.k.shape
        k = tuple(cache.k[l].transpose(0, 2, 3, 1).reshape(B * K, Dh, Smax) for l in range(L))
        v = tuple(cache.v[l].swapaxes(1, 2).reshape(B * K, Smax, Dh) for l in range(L))
        return cls(k=k, v=v, valid=cache.valid, index=cache.index)

    def grow(self, width: int) -> DecodeCache:
        """The same cache with ``width`` >= Smax slots (the new ones empty and invalid)."""
        extra = width - self.valid.shape[1]
        pad = lambda x, axis: jnp.pad(x, [(0, extra if a == axis else 0) for a in range(x.ndim)])
        return DecodeCache(
            k=tuple(pad(x, 2) for x in self.k),
            v=tuple(pad(x, 1) for x in self.v),
            valid=pad(self.valid, 1),
            index=self.index,
        )

    def take_rows(self, rows: jax.Array) -> DecodeCache:
        """Gathers rows, e.g. repeats each prompt's prefill for its G samples."""
        B = self.valid.shape[0]
        take = lambda x: jnp.take(x, rows, axis=0)
        take_kv = lambda x: take(x.reshape(B, -1, *x.shape[1:])).reshape(-1, *x.shape[1:])
        return DecodeCache(
            k=tuple(map(take_kv, self.k)), v=tuple(map(take_kv, self.v)), valid=take(self.valid), index=self.index
        )


def windows(cfg, rows: int, context: int, new_tokens: int, steps_per_window: int = 32, max_windows: int = 4):
    """The decoding loop cut into windows: ``[(t_end, slots)]``, ascending.

    Step t (1 <= t < T = ``new_tokens``) writes slot ``context + t - 1`` and attends to the slots
    before it, so the steps ``t < t_end`` of a window need only the cache's first
    ``context + t_end - 1`` slots. Each window is its own loop over a cache of that many slots
    (grown between windows): a step reads the slots it can use, not all ``context + T - 1``. At
    context 64 and T = 128 the four windows read 25% fewer cache bytes than one loop: a call took
    32% less time for the tiny model at batch 64 and 4% less for SmolLM2-135M at batch 16, and
    compiled in 1.2 s / 5.5 s more. Each window compiles its own copy of the step, so one loop is
    kept for short generations (T < 2 * ``steps_per_window``) and where the full cache
    (``rows`` x ``context + T - 1`` slots of ``cfg``) holds under 1/8 as many values as the
    weights: there the step reads mostly weights (SmolLM2 at batch 1: 1.6%; the windows saved
    under 1% of a call and added 11 s of compilation). Slots are rounded up to a multiple of 16, so
    that the rows of the [B*K, Dh, slots] key cache start on 64-byte lines (vector loads
    of a backend's attention: 191 slots per row against 192 made it 5-10% slower).
    """
    slots = context + new_tokens - 1
    cache_values = 2 * cfg.num_layers * rows * slots * cfg.num_kv_heads * cfg.head_dim
    count = max(1, min(max_windows, new_tokens // steps_per_window))
    if 8 * cache_values < cfg.num_params:
        count = 1
    ends = [1 + -(-(new_tokens - 1) * (j + 1) // count) for j in range(count)]
    return [(end, -(-(context + end - 1) // 16) * 16) for end in ends]


def decode_step(
    model,
    backend: Xla,
    weights: DecodeWeights,
    tokens,
    positions,
    attention_mask,
    cache: DecodeCache,
    cos_sin=None,
    last=None,
):
    """Logits [B, S, V] f32 of S new tokens written at cache slots ``[index, index + S)``.

    Same contract as ``Decoder.__call__(tokens, positions, attention_mask, cache)`` with the
    weights of ``backend.prepare(model)`` and a ``DecodeCache``; returns ``(logits, cache)``.
    ``cos_sin``: ``rope.cos_sin(positions, ...)`` computed by the caller (a loop computes them for
    all its steps once; see the sampler), else here. ``last``: optional [B] int32 column per row;
    then only that column is unembedded and the logits are [B, 1, V] (a multi-token extension of
    a cache needs the next-token logits only, not [B, S, V]).
    """
    cfg = model.cfg
    cdt = cfg.compute_dtype
    B, S = tokens.shape
    H, K, Dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    G = H // K
    eps = cfg.rms_norm_eps
    x = jnp.take(model.embed[...], tokens, axis=0).astype(cdt)  # [B, S, D]
    cos, sin = cos_sin if cos_sin is not None else rope.cos_sin(positions, Dh, cfg.rope_theta, cfg.rope_scaling)
    valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask.astype(jnp.bool_), (0, cache.index))
    q_slot = cache.index + jnp.arange(S)
    k_slot = jnp.arange(valid.shape[1])
    allowed = (k_slot[None, :] <= q_slot[:, None])[None] & valid[:, None, :]  # [B, S, Smax]
    allowed = jnp.tile(allowed, (1, G, 1))[:, None]  # [B, 1, G*S, Smax]
    at_k = (0, 0, cache.index)
    at_v = (0, cache.index, 0)
    new_k, new_v = [], []
    # the norm after each block: the next block's attention norm, then the final norm
    next_norms = [p["attn_norm"] for p in weights.layers[1:]] + [model.final_norm[...].astype(cdt)]
    h = rms_norm(x, weights.layers[0]["attn_norm"], eps)
    for l, (p, k_cache, v_cache) in enumerate(zip(weights.layers, cache.k, cache.v)):
        q, k, v = backend.project(weights, l, "qkv", h)
        q, k, v = q.reshape(B, S, H, Dh), k.reshape(B, S, K, Dh), v.reshape(B, S, K, Dh)
        if "bq" in p:
            q, k, v = q + p["bq"][None, None], k + p["bk"][None, None], v + p["bv"][None, None]  # [H, Dh]
        if "q_norm" in p:
            q = rms_norm(q, p["q_norm"], eps)
            k = rms_norm(k, p["k_norm"], eps)
        q = rope.apply(q, cos, sin)
        k = rope.apply(k, cos, sin)
        k = k.transpose(0, 2, 3, 1).reshape(B * K, Dh, S)
        v = v.swapaxes(1, 2).reshape(B * K, S, Dh)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), at_k)
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), at_v)
        new_k.append(k_cache)
        new_v.append(v_cache)
        out = backend.attend(q, k_cache, v_cache, valid, cache.index, allowed)  # [B, S, H, Dh]
        x, h = backend.project_residual_norm(weights, l, "o", (out.reshape(B, S, H * Dh),), x, p["mlp_norm"], eps)
        gate, up = backend.project(weights, l, "gate_up", h)
        x, h = backend.project_residual_norm(weights, l, "down", (gate, up), x, next_norms[l], eps)
    cache = DecodeCache(k=tuple(new_k), v=tuple(new_v), valid=valid, index=cache.index + S)
    if last is not None:
        h = jnp.take_along_axis(h, last[:, None, None], axis=1)  # [B, 1, D]
    return backend.unembed(weights, model, h), cache
