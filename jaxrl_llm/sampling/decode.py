"""The decoding step the sampler's loop runs: per-layer weights and caches, written in place.

``Decoder.__call__`` with a cache scans the stacked layers. Inside a decoding loop on XLA:CPU
that costs, at every step: a copy of each layer's weight slice out of the stacked array before
its matmul (the ``dynamic-slice`` is not fused into the GEMM), a read-modify-write copy of each
layer's cache slice, and a transpose of each layer's cache for the attention einsum. Decoding is
memory-bound, so these copies multiply the step time. Here, once per sampling call:

- the stacked parameters are split into per-layer arrays (``split_layers``), and
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

On CPU devices in f32 (one device, or a data-only mesh under ``shard_map``: see
``sampler.cpu_kernel_applies``) the step's matmuls, its attention and the sampler's unfiltered
draw run on hand-written kernels (``jaxrl_llm.kernels.cpu_matmul``, XLA FFI custom calls): the
weights are packed once per call into contiguous 64-column panels (q/k/v and gate/up fused into
one matrix each), and one-token attention reads only the cache slots up to the step's index.
XLA:CPU's GEMM streamed SmolLM2-135M's weights at ~20 GB/s at 16 rows, half its rate at one
row, and ran attention on one core. Elsewhere (GPU, TPU, a mesh that shards the weights, bf16)
the step is plain XLA, as below.

The block's arithmetic is ``Decoder.hidden_states`` (same parameters, ``rms_norm`` and RoPE
helpers, f32 softmax); ``tests/test_sampling.py`` checks the logits against the uncached
``Decoder.__call__`` for the llama, qwen2 (q/k/v biases) and qwen3 (q/k norm) blocks.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_llm.kernels import cpu_matmul
from jaxrl_llm.models import rope
from jaxrl_llm.models.cache import KVCache
from jaxrl_llm.models.decoder import rms_norm

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
    def from_cache(cls, cache: KVCache) -> "DecodeCache":
        """Splits a ``KVCache`` ([L, B, Smax, K, Dh]) into per-layer k [B*K, Dh, Smax], v [B*K, Smax, Dh]."""
        L, B, Smax, K, Dh = cache.k.shape
        k = tuple(cache.k[l].transpose(0, 2, 3, 1).reshape(B * K, Dh, Smax) for l in range(L))
        v = tuple(cache.v[l].swapaxes(1, 2).reshape(B * K, Smax, Dh) for l in range(L))
        return cls(k=k, v=v, valid=cache.valid, index=cache.index)

    def grow(self, width: int) -> "DecodeCache":
        """The same cache with ``width`` >= Smax slots (the new ones empty and invalid)."""
        extra = width - self.valid.shape[1]
        pad = lambda x, axis: jnp.pad(x, [(0, extra if a == axis else 0) for a in range(x.ndim)])
        return DecodeCache(k=tuple(pad(x, 2) for x in self.k), v=tuple(pad(x, 1) for x in self.v),
                           valid=pad(self.valid, 1), index=self.index)

    def take_rows(self, rows: jax.Array) -> "DecodeCache":
        """Gathers rows, e.g. repeats each prompt's prefill for its G samples."""
        B = self.valid.shape[0]
        take = lambda x: jnp.take(x, rows, axis=0)
        take_kv = lambda x: take(x.reshape(B, -1, *x.shape[1:])).reshape(-1, *x.shape[1:])
        return DecodeCache(k=tuple(map(take_kv, self.k)), v=tuple(map(take_kv, self.v)),
                           valid=take(self.valid), index=self.index)


def windows(cfg, rows: int, context: int, new_tokens: int, steps_per_window: int = 32,
            max_windows: int = 4):
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
    that the rows of the [B*K, Dh, slots] key cache start on 64-byte lines for the CPU kernels (191
    slots per row against 192: attention 5-10% slower).
    """
    slots = context + new_tokens - 1
    cache_values = 2 * cfg.num_layers * rows * slots * cfg.num_kv_heads * cfg.head_dim
    count = max(1, min(max_windows, new_tokens // steps_per_window))
    if 8 * cache_values < cfg.num_params:
        count = 1
    ends = [1 + -(-(new_tokens - 1) * (j + 1) // count) for j in range(count)]
    return [(end, -(-(context + end - 1) // 16) * 16) for end in ends]


# The matmul weights of a block, and the ones that read the same input: with the CPU kernel each
# group is one [K, N1 + N2 (+ N3)] matmul (one call and one pass over x instead of two or three).
_PROJECTIONS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
_FUSED = {"wqkv": ("wq", "wk", "wv"), "w_gate_up": ("w_gate", "w_up")}
_STEP_ORDER = ("wqkv", "wq", "wk", "wv", "wo", "w_gate_up", "w_gate", "w_up", "w_down")  # a layer's products


@struct.dataclass
class DecodeWeights:
    """What a decoding step multiplies by, laid out once per sampling call (``prepare_weights``).

    layers: L dicts of per-layer arrays (compute dtype); the names in ``packed`` hold
      ``cpu_matmul.pack`` of the [K, N] matrix instead of the block's own shape.
    unembed: ``cpu_matmul.pack`` of the [D, V] output matrix, or None (``model.unembed``).
    packed: the projection names that run on ``jaxrl_llm.kernels.cpu_matmul``, a fused group
      (``_FUSED``) by its group name.
    cpu_kernels: the kernels are on: one-token steps attend with ``cpu_matmul.decode_attention``
      (where head_dim % 16 == 0) and unfiltered draws use ``cpu_matmul.sample_rows``.
    mesh: a data-parallel mesh the kernels run under (``shard_map``: each device its own rows),
      or None (one device).
    """

    layers: tuple
    unembed: Optional[jax.Array]
    packed: frozenset = struct.field(pytree_node=False, default=frozenset())
    cpu_kernels: bool = struct.field(pytree_node=False, default=False)
    mesh: Any = struct.field(pytree_node=False, default=None)

    @property
    def kernel_threads(self) -> int:
        """The kernels' ``max_threads``: all of the pool on one device; one each on a mesh, where
        every device already runs on its own core."""
        return 0 if self.mesh is None else 1

    def following(self, layer: int, name: str) -> Optional[jax.Array]:
        """The packed weight of the kernel product that a step runs after ``name`` of ``layer``
        (the unembedding, ``layer`` None, is followed by the next step's first): ``cpu_matmul.matmul``'s
        ``ahead``, which it prefetches."""
        chain = [(l, n) for l in range(len(self.layers)) for n in _STEP_ORDER if n in self.packed]
        chain += [(None, "unembed")] if self.unembed is not None else []
        l, n = chain[(chain.index((layer, name)) + 1) % len(chain)]
        return self.unembed if n == "unembed" else self.layers[l][n]


def prepare_weights(model, use_cpu_kernel: bool = False, mesh=None) -> DecodeWeights:
    """The stacked layer parameters as L dicts of per-layer arrays (compute dtype).

    With ``use_cpu_kernel`` (f32 on CPU devices: see ``sampler.cpu_kernel_applies``) the
    projections and the unembedding are packed for ``cpu_matmul.matmul``; that copy of the
    weights is made once per call and read at every step. A projection whose output width the
    64-column panels do not divide stays an einsum. Without it, the tied unembedding stays [V, D]:
    a [D, V] copy for XLA's logits GEMM took 3.5% longer at batch 1 and no less at batch 16.
    """
    cfg = model.cfg
    cdt = cfg.compute_dtype
    stacked = {name: var[...].astype(cdt) for name, var in model.layers.items()}
    kernel = use_cpu_kernel and cdt == jnp.float32 and cpu_matmul.available()
    matrices = {name: _as_matrices(name, stacked[name]) for name in _PROJECTIONS}
    single = {name for name, w in matrices.items() if kernel and cpu_matmul.packable(w.shape[2], cdt)}
    fused = {group: names for group, names in _FUSED.items() if single.issuperset(names)}
    for names in fused.values():
        single -= set(names)
    sources = {name: [matrices[name]] for name in single}
    # a fused group packs its members side by side, with no concatenated copy
    sources.update({group: [matrices[name] for name in names] for group, names in fused.items()})
    packed = frozenset(single | set(fused))
    members = {name for names in fused.values() for name in names}
    layers = []
    for l in range(cfg.num_layers):
        layer = {name: w[l] for name, w in stacked.items() if name not in single and name not in members}
        layer.update({name: cpu_matmul.pack(sources[name], layer=l) for name in packed})
        layers.append(layer)
    unembed = None
    if kernel and cpu_matmul.packable(cfg.vocab_size, cdt):
        unembed = (cpu_matmul.pack(model.embed[...].astype(cdt), transposed=True) if cfg.tie_word_embeddings
                   else cpu_matmul.pack(model.lm_head[...].astype(cdt)))
    return DecodeWeights(layers=tuple(layers), unembed=unembed, packed=packed,
                         cpu_kernels=kernel, mesh=mesh if kernel else None)


def _per_shard(weights: DecodeWeights, fn, *row_args, replicated=()):
    """``fn(*row_args, *replicated)``; on a data-parallel mesh each device runs it on its own rows
    (``row_args`` and the result split along their leading axis, ``replicated`` whole)."""
    if weights.mesh is None:
        return fn(*row_args, *replicated)
    rows, whole = jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec()
    return jax.shard_map(fn, mesh=weights.mesh, in_specs=(rows,) * len(row_args) + (whole,) * len(replicated),
                         out_specs=rows, check_vma=False)(*row_args, *replicated)


def sample_rows(weights: DecodeWeights, logits, temperature, uniform):
    """``cpu_matmul.sample_rows`` (token, log q(token), H(q)) on the kernels' devices."""
    draw = functools.partial(cpu_matmul.sample_rows, max_threads=weights.kernel_threads)
    return _per_shard(weights, lambda *a: tuple(draw(*a)), logits, temperature, uniform)


def _kernel_matmul(weights: DecodeWeights, x2d, packed, ahead):
    matmul = functools.partial(cpu_matmul.matmul, max_threads=weights.kernel_threads)
    return _per_shard(weights, lambda x, w, a: matmul(x, w, ahead=a), x2d, replicated=(packed, ahead))


def _as_matrices(name, w):
    """A stacked projection as [L, K, N]: wq/wk/wv [L, D, H, Dh] -> [L, D, H*Dh], wo [L, H, Dh, D] -> [L, H*Dh, D]."""
    if name == "wo":
        return w.reshape(w.shape[0], -1, w.shape[-1])
    return w.reshape(*w.shape[:2], -1)


def _project(x, weights: DecodeWeights, layer, name, einsum, head_dim=None):
    """``einsum(x, p[name])`` (``p`` = ``weights.layers[layer]``), or the CPU kernel on the packed
    matrix: [B, S, N], or [B, S, N/Dh, Dh] with ``head_dim`` (x: [B, S, ...], its trailing dims flattened into K)."""
    p = weights.layers[layer]
    if name not in weights.packed:
        return jnp.einsum(einsum, x, p[name])
    B, S = x.shape[:2]
    y = _kernel_matmul(weights, x.reshape(B * S, -1), p[name], weights.following(layer, name))
    return y.reshape(B, S, -1, head_dim) if head_dim else y.reshape(B, S, -1)


def _residual_norm(weights: DecodeWeights, a, layer, name, residual, norm, eps, swiglu=False):
    """``cpu_matmul.matmul_residual_norm`` of the packed ``name`` of ``layer``: (x', h), each [B, S, N]."""
    B, S = residual.shape[:2]
    call = functools.partial(cpu_matmul.matmul_residual_norm, eps=eps, swiglu=swiglu, max_threads=weights.kernel_threads)
    x, h = _per_shard(weights, lambda a, r, w, n, ahead: call(a, w, r, n, ahead=ahead), a.reshape(B * S, -1),
                      residual.reshape(B * S, -1),
                      replicated=(weights.layers[layer][name], norm, weights.following(layer, name)))
    return x.reshape(residual.shape), h.reshape(residual.shape)


def _project_fused(x, weights: DecodeWeights, layer, group, splits, head_dim=None):
    """A fused group's kernel matmul, split at the column offsets ``cumsum(splits)``: [B, S, N_i]
    each, or [B, S, N_i/Dh, Dh] with ``head_dim``."""
    B, S = x.shape[:2]
    y = _kernel_matmul(weights, x.reshape(B * S, -1), weights.layers[layer][group], weights.following(layer, group))
    parts = jnp.split(y, list(itertools.accumulate(splits)), axis=-1)
    return [t.reshape(B, S, -1, head_dim) if head_dim else t.reshape(B, S, -1) for t in parts]


def _attend(q, k_cache, v_cache, allowed, cfg):
    """XLA's attention of q [B, S, H, Dh] over the decode cache (``allowed`` [B, 1, G*S, Smax]): [B, S, H, Dh]."""
    B, S = q.shape[:2]
    K, Dh = cfg.num_kv_heads, cfg.head_dim
    G = cfg.num_heads // K
    cdt = cfg.compute_dtype
    q = q.reshape(B, S, K, G, Dh).transpose(0, 2, 3, 1, 4).reshape(B * K, G * S, Dh)
    scores = jnp.einsum("nqd,ndt->nqt", q, k_cache.astype(cdt), preferred_element_type=jnp.float32)
    scores = scores.reshape(B, K, G * S, -1)
    scores = jnp.where(allowed, scores * (1.0 / math.sqrt(Dh)), jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(cdt).reshape(B * K, G * S, -1)
    out = jnp.einsum("nqt,ntd->nqd", probs, v_cache.astype(cdt))                   # [B*K, G*S, Dh]
    out = out.reshape(B, K, G, S, Dh).transpose(0, 3, 1, 2, 4).reshape(B, S, cfg.num_heads, Dh)
    return out


def decode_step(model, weights: DecodeWeights, tokens, positions, attention_mask, cache: DecodeCache, cos_sin=None):
    """Logits [B, S, V] f32 of S new tokens written at cache slots ``[index, index + S)``.

    Same contract as ``Decoder.__call__(tokens, positions, attention_mask, cache)`` with the
    parameters of ``prepare_weights(model)`` and a ``DecodeCache``; returns ``(logits, cache)``.
    ``cos_sin``: ``rope.cos_sin(positions, ...)`` computed by the caller (a loop computes them for
    all its steps once; see the sampler), else here.
    """
    cfg = model.cfg
    cdt = cfg.compute_dtype
    B, S = tokens.shape
    K, Dh = cfg.num_kv_heads, cfg.head_dim
    G = cfg.num_heads // K
    x = jnp.take(model.embed[...], tokens, axis=0).astype(cdt)
    cos, sin = cos_sin if cos_sin is not None else rope.cos_sin(positions, cfg.head_dim, cfg.rope_theta,
                                                                 cfg.rope_scaling)
    valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask.astype(jnp.bool_), (0, cache.index))
    q_slot = cache.index + jnp.arange(S)
    k_slot = jnp.arange(valid.shape[1])
    allowed = (k_slot[None, :] <= q_slot[:, None])[None] & valid[:, None, :]            # [B, S, Smax]
    allowed = jnp.tile(allowed, (1, G, 1))[:, None]                                   # [B, 1, G*S, Smax]
    at_k = (0, 0, cache.index)
    at_v = (0, cache.index, 0)
    new_k, new_v = [], []
    eps = cfg.rms_norm_eps
    # the norm after each block: the next block's attention norm, then the final norm
    next_norms = [p["attn_norm"] for p in weights.layers[1:]] + [model.final_norm[...].astype(cdt)]
    # one kernel call for the output projection, the residual add and the next norm
    fuse_norms = weights.cpu_kernels and {"wo", "w_gate_up", "w_down"} <= weights.packed
    h = rms_norm(x, weights.layers[0]["attn_norm"], eps)
    for l, (p, k_cache, v_cache) in enumerate(zip(weights.layers, cache.k, cache.v)):
        if "wqkv" in weights.packed:
            q, k, v = _project_fused(h, weights, l, "wqkv", [cfg.num_heads * Dh, K * Dh], Dh)
        else:
            q = _project(h, weights, l, "wq", "bsd,dhk->bshk", Dh)
            k = _project(h, weights, l, "wk", "bsd,dhk->bshk", Dh)
            v = _project(h, weights, l, "wv", "bsd,dhk->bshk", Dh)
        if "bq" in p:
            q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
        if "q_norm" in p:
            q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
            k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
        q = rope.apply(q, cos, sin)
        k = rope.apply(k, cos, sin)
        k = k.transpose(0, 2, 3, 1).reshape(B * K, Dh, S)
        v = v.swapaxes(1, 2).reshape(B * K, S, Dh)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), at_k)
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), at_v)
        new_k.append(k_cache)
        new_v.append(v_cache)
        if weights.cpu_kernels and S == 1 and Dh % 16 == 0 and k_cache.dtype == jnp.float32:
            attend = functools.partial(cpu_matmul.decode_attention, scale=1.0 / math.sqrt(Dh),
                                       max_threads=weights.kernel_threads)
            out = _per_shard(weights, attend, q.reshape(B * K, G, Dh), k_cache, v_cache, valid,
                             replicated=(cache.index,)).reshape(B, S, cfg.num_heads, Dh)
        else:
            out = _attend(q, k_cache, v_cache, allowed, cfg)
        if fuse_norms:
            x, h = _residual_norm(weights, out, l, "wo", x, p["mlp_norm"], eps)
            gate_up = _kernel_matmul(weights, h.reshape(B * S, -1), p["w_gate_up"], weights.following(l, "w_gate_up"))
            x, h = _residual_norm(weights, gate_up, l, "w_down", x, next_norms[l], eps, swiglu=True)
            continue
        x = x + _project(out, weights, l, "wo", "bshk,hkd->bsd")
        h = rms_norm(x, p["mlp_norm"], eps)
        if "w_gate_up" in weights.packed:
            gate, up = _project_fused(h, weights, l, "w_gate_up", [cfg.intermediate_size])
        else:
            gate = _project(h, weights, l, "w_gate", "bsd,df->bsf")
            up = _project(h, weights, l, "w_up", "bsd,df->bsf")
        x = x + _project(jax.nn.silu(gate) * up, weights, l, "w_down", "bsf,fd->bsd")
        h = rms_norm(x, next_norms[l], eps)
    cache = DecodeCache(k=tuple(new_k), v=tuple(new_v), valid=valid, index=cache.index + S)
    if weights.unembed is None:
        return model.unembed(h), cache
    ahead = weights.following(None, "unembed")
    return _kernel_matmul(weights, h.reshape(B * S, -1), weights.unembed, ahead).reshape(B, S, -1), cache
