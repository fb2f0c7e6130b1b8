"""The "ragged" decode backend: one new token's attention reads only its row's own cache slots.

The reference (``backend.Xla.attend``) scores every slot of the decode cache, [B*K, Dh, Smax]
keys and [B*K, Smax, Dh] values, and masks the ones a row may not see (left padding, holes,
the slots after the step's index). Here a row ``b`` reads only the KV blocks that hold its
allowed slots: slots ``s <= index`` with ``valid[b, s]``, which lie in ``[lo_b, hi_b)``
(``row_bounds``); inside those blocks the slots it may not see are masked as the reference
masks them, and a flash-style running softmax (f32) combines the blocks. Two formulations:

- ``pallas_attention``: a Pallas kernel, one program per (row, kv head) that loops over its own
  blocks ``[lo_b // block, ceil(hi_b / block))``; each program reads the row's q [G, Dh] (G query
  heads per kv head, padded to >= 16 rows for the GPU's dot), the key blocks [Dh, block] in the
  cache's own layout (no transposed copy) and the value blocks [block, Dh]. On GPUs it is
  lowered by Pallas' Triton backend (``CompilerParams`` of ``jax.experimental.pallas.triton``);
  on a CPU it runs in Pallas interpret mode (how the tests check it).
- ``blocked_attention``: the same blocks in plain XLA, a ``fori_loop`` over the blocks that any
  row needs (``[min_b lo_b, max_b hi_b)``), every row masked to its own slots: what runs on TPUs.

Which kernels this JAX ships and why they are not called here: ``pallas.ops.gpu.decode_attention``
(``mqa`` / ``gqa``) masks one contiguous slot range ``[start, end)`` per row and reads keys
slot-major ([.., S, Dh]); ``pallas.ops.gpu.paged_attention``, ``pallas.ops.tpu.paged_attention``
and ``pallas.ops.tpu.ragged_paged_attention`` read pages of a paged cache
([kv heads, pages, page, Dh] or [pages, page, 2K, Dh]) over ``[0, length)``. The decode cache
holds keys dim-major ([B*K, Dh, Smax], see ``sampling/decode.py``) and its valid slots need not be
contiguous (a left-padded prompt, the gap after a short prefix of ``continue_from``, the slots of
a session's inactive rows): each of them would need a relaid copy of the cache every step (more
bytes than the attention reads) and could not mask the holes.

The backend overrides ``attend`` only, for one new token per row (S = 1: the sampler's decoding
steps, a session's ``decode``); a multi-token step and the rest of the step (products, norms, the
draw) are the reference's. ``"auto"`` picks it on GPU and TPU devices only: on a CPU the
interpreted kernel is a check, not a speed-up, and the CPU's own choice ("cpu" or "xla") stays.
A row with no slot it may see gets the reference's output for it (the uniform average of all its
slots' values). Sums run in another order than the reference's single softmax: outputs equal its
to f32 rounding (to bf16 rounding in bf16).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from jaxrl_llm.sampling import backend

# the KV block widths tried, widest first: the first that divides the cache's slots is used (the
# sampler's caches are multiples of 16 slots, ``decode.windows``)
BLOCKS = (64, 32, 16)
_MASKED = float(jnp.finfo(jnp.float32).min)


def block_for(slots: int) -> int | None:
    """The KV block width for a cache of ``slots`` slots, or None (no width of ``BLOCKS`` divides it)."""
    return next((b for b in BLOCKS if slots % b == 0), None)


def row_bounds(valid: jax.Array, index: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each row's slot range for a new token at slot ``index``: ``(lo, hi, empty)``, [B] each.

    A row may see the slots ``s <= index`` with ``valid[b, s]``: all of them lie in ``[lo, hi)``.
    ``empty``: the row may see none; then ``[lo, hi)`` is every slot and the row's scores are all
    equal (the reference's softmax over scores that are all masked: the uniform average)."""
    slots = jnp.arange(valid.shape[1], dtype=jnp.int32)
    allowed = valid & (slots[None, :] <= index)
    empty = ~jnp.any(allowed, axis=1)
    lo = jnp.where(empty, 0, jnp.min(jnp.where(allowed, slots, valid.shape[1]), axis=1))
    hi = jnp.where(empty, valid.shape[1], jnp.max(jnp.where(allowed, slots + 1, 0), axis=1))
    return lo.astype(jnp.int32), hi.astype(jnp.int32), empty


def _precision(dtype) -> lax.Precision:
    # f32 products in full f32 (a GPU's dot would otherwise run f32 inputs as TF32)
    return lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else lax.Precision.DEFAULT


def _online_step(carry, scores, ok, values, dtype, precision, contract):
    """One KV block of the running softmax: ``carry = (acc [.., G, Dh], m [.., G], l [.., G])`` f32,
    ``scores`` [.., G, block] f32 (already scaled), ``ok`` broadcastable to it, ``values`` the
    block's values; ``contract(p, values)`` the probabilities' product with them (f32)."""
    acc, m, l = carry
    scores = jnp.where(ok, scores, _MASKED)
    m_new = jnp.maximum(m, jnp.max(scores, axis=-1))
    p = jnp.where(ok, jnp.exp(scores - m_new[..., None]), 0.0)
    alpha = jnp.exp(m - m_new)
    l = alpha * l + jnp.sum(p, axis=-1)
    acc = alpha[..., None] * acc + contract(p.astype(dtype), values.astype(dtype))
    return acc, m_new, l


# ----------------------------------------------------------------------------- the Pallas kernel
def _kernel(bounds_ref, q_ref, k_ref, v_ref, valid_ref, o_ref, *, block: int, scale: float):
    """One (row, kv head): bounds (lo, hi, empty, -) of its row, q [Gp, Dh], k [Dh, Smax],
    v [Smax, Dh], valid [Smax] (int32) of its row; o [Gp, Dh]."""
    from jax.experimental import pallas as pl

    lo, hi, empty = bounds_ref[0], bounds_ref[1], bounds_ref[2] != 0
    q = q_ref[...]
    Gp, Dh = q.shape
    dtype = q.dtype
    precision = _precision(dtype)
    dot = functools.partial(jnp.dot, preferred_element_type=jnp.float32, precision=precision)

    def body(j, carry):
        start = pl.multiple_of(j * block, block)
        keys = k_ref[:, pl.ds(start, block)].astype(dtype)  # [Dh, block]
        scores = dot(q, keys) * scale  # [Gp, block]
        slot = start + jnp.arange(block, dtype=jnp.int32)
        ok = ((valid_ref[pl.ds(start, block)] != 0) | empty) & (slot >= lo) & (slot < hi)
        scores = jnp.where(empty, 0.0, scores)
        values = v_ref[pl.ds(start, block), :]  # [block, Dh]
        return _online_step(carry, scores, ok[None, :], values, dtype, precision, dot)

    init = (
        jnp.zeros((Gp, Dh), jnp.float32),
        jnp.full((Gp,), _MASKED, jnp.float32),
        jnp.zeros((Gp,), jnp.float32),
    )
    acc, _, l = lax.fori_loop(lo // block, (hi + block - 1) // block, body, init)
    o_ref[...] = (acc / l[:, None]).astype(o_ref.dtype)


def pallas_attention(q, k, v, valid, index, *, interpret: bool, num_warps: int = 4, num_stages: int = 2):
    """Attention of one new token per row, q [B*K, G, Dh], over keys [B*K, Dh, Smax] and values
    [B*K, Smax, Dh] (entry b*K + k: row b, kv head k) where ``valid`` [B, Smax] and slot <= ``index``:
    [B*K, G, Dh] in q's dtype. Needs Dh a power of 2 >= 16 and Smax a multiple of 16 (``supports``)."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    N, G, Dh = q.shape
    B, Smax = valid.shape
    K = N // B
    block = block_for(Smax)
    Gp = max(16, 1 << (G - 1).bit_length())  # the GPU's dot needs >= 16 rows, a power of 2
    lo, hi, empty = row_bounds(valid, index)
    bounds = jnp.stack([lo, hi, empty.astype(jnp.int32), jnp.zeros_like(lo)], axis=1)  # [B, 4]
    q = jnp.pad(q, ((0, 0), (0, Gp - G), (0, 0)))
    kernel = functools.partial(_kernel, block=block, scale=1.0 / math.sqrt(Dh))
    out = pl.pallas_call(
        kernel,
        grid=(N,),
        in_specs=[
            pl.BlockSpec((None, 4), lambda n: (n // K, 0)),
            pl.BlockSpec((None, Gp, Dh), lambda n: (n, 0, 0)),
            pl.BlockSpec((None, Dh, Smax), lambda n: (n, 0, 0)),
            pl.BlockSpec((None, Smax, Dh), lambda n: (n, 0, 0)),
            pl.BlockSpec((None, Smax), lambda n: (n // K, 0)),
        ],
        out_specs=pl.BlockSpec((None, Gp, Dh), lambda n: (n, 0, 0)),
        out_shape=jax.ShapeDtypeStruct((N, Gp, Dh), q.dtype),
        compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages),
        interpret=interpret,
        name="ragged_decode_attention",
    )(bounds, q, k, v, valid.astype(jnp.int32))
    return out[:, :G]


# ----------------------------------------------------------------------------- the XLA formulation
def blocked_attention(q, k, v, valid, index):
    """``pallas_attention``'s contract in plain XLA: a loop over the KV blocks that hold any row's
    allowed slots, each row masked to its own. Needs Smax a multiple of 16."""
    N, G, Dh = q.shape
    B, Smax = valid.shape
    K = N // B
    block = block_for(Smax)
    dtype = q.dtype
    lo, hi, empty = row_bounds(valid, index)
    per_entry = lambda x: jnp.repeat(x, K, axis=0)  # [B, ..] -> [B*K, ..]
    lo_n, hi_n, empty_n = per_entry(lo)[:, None], per_entry(hi)[:, None], per_entry(empty)[:, None]
    scale = 1.0 / math.sqrt(Dh)

    def body(j, carry):
        start = j * block
        keys = lax.dynamic_slice_in_dim(k, start, block, axis=2).astype(dtype)  # [N, Dh, block]
        scores = jnp.einsum("ngd,ndt->ngt", q, keys, preferred_element_type=jnp.float32) * scale
        slot = start + jnp.arange(block, dtype=jnp.int32)[None, :]
        ok = per_entry(lax.dynamic_slice_in_dim(valid, start, block, axis=1)) | empty_n
        ok = ok & (slot >= lo_n) & (slot < hi_n)  # [N, block]
        scores = jnp.where(empty_n[:, :, None], 0.0, scores)
        values = lax.dynamic_slice_in_dim(v, start, block, axis=1)  # [N, block, Dh]
        contract = lambda p, vals: jnp.einsum("ngt,ntd->ngd", p, vals, preferred_element_type=jnp.float32)
        return _online_step(carry, scores, ok[:, None, :], values, dtype, None, contract)

    init = (
        jnp.zeros((N, G, Dh), jnp.float32),
        jnp.full((N, G), _MASKED, jnp.float32),
        jnp.zeros((N, G), jnp.float32),
    )
    first, last = jnp.min(lo) // block, (jnp.max(hi) + block - 1) // block
    acc, _, l = lax.fori_loop(first, last, body, init)
    return (acc / l[..., None]).astype(dtype)


KERNELS = {"pallas": pallas_attention, "xla": blocked_attention}


def supports(kernel: str, q_shape, slots: int) -> str | None:
    """Why ``kernel`` cannot attend q [B, S, H, Dh] over ``slots`` cache slots, or None."""
    S, Dh = q_shape[1], q_shape[3]
    if S != 1:
        return f"{S} new tokens per row (the kernels attend one)"
    if block_for(slots) is None:
        return f"{slots} cache slots (a multiple of {BLOCKS[-1]} is needed)"
    if kernel == "pallas" and (Dh < 16 or Dh & (Dh - 1)):
        return f"head_dim {Dh} (the Pallas kernel needs a power of 2 >= 16)"
    return None


def _platform(mesh) -> str:
    devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
    return devices[0].platform


@backend.register
@dataclasses.dataclass(frozen=True)
class RaggedAttention(backend.Xla):
    """The reference with a decode attention that reads only each row's own KV blocks.

    kernel: "pallas" (``pallas_attention``) or "xla" (``blocked_attention``); interpret: run the
    Pallas kernel in interpret mode (off accelerators); mesh: the data-parallel mesh the Pallas
    kernel runs under (``shard_map``: each device its own rows), or None (one device).
    ``for_call`` picks per device: Pallas (Triton) on GPUs, XLA on TPUs, interpreted Pallas on CPUs.
    """

    name: ClassVar[str] = "ragged"
    kernel: str = "pallas"
    interpret: bool = True
    mesh: Any = None

    @classmethod
    def unsupported(cls, model_cfg, mesh, rows: int) -> str | None:
        if mesh is None or mesh.size == 1:
            return None
        return backend.rows_only_mesh_problem(mesh, rows)

    @classmethod
    def picked_by_auto(cls, model_cfg, mesh, rows: int) -> bool:
        return _platform(mesh) in ("gpu", "tpu")

    @classmethod
    def available(cls) -> bool:
        try:
            from jax.experimental import pallas  # noqa: F401
            from jax.experimental.pallas import triton  # noqa: F401
        except ImportError:  # pragma: no cover - Pallas ships with jax
            return False
        return True

    @classmethod
    def for_call(cls, mesh) -> RaggedAttention:
        platform = _platform(mesh)
        return cls(
            kernel="xla" if platform == "tpu" else "pallas",
            interpret=platform not in ("gpu", "tpu"),
            mesh=mesh if mesh is not None and mesh.size > 1 else None,
        )

    def attend(self, q, k_cache, v_cache, valid, index, allowed) -> jax.Array:
        if supports(self.kernel, q.shape, valid.shape[1]) is not None:
            return super().attend(q, k_cache, v_cache, valid, index, allowed)
        B, S, H, Dh = q.shape
        K = k_cache.shape[0] // B
        q = q.reshape(B * K, H // K, Dh)
        if self.kernel == "xla":
            out = blocked_attention(q, k_cache, v_cache, valid, index)
        elif self.mesh is None:
            out = pallas_attention(q, k_cache, v_cache, valid, index, interpret=self.interpret)
        else:
            rows, whole = jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec()
            out = jax.shard_map(
                functools.partial(pallas_attention, interpret=self.interpret),
                mesh=self.mesh,
                in_specs=(rows, rows, rows, rows, whole),
                out_specs=rows,
                check_vma=False,
            )(q, k_cache, v_cache, valid, index)
        return out.reshape(B, S, H, Dh)
