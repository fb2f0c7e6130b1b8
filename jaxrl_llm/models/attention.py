"""Masked grouped-query attention with interchangeable implementations (``ModelConfig.attention_impl``).

    out[b, s, h] = sum_t p[b, s, h, t] v[b, t, h // G]
    p[b, s, h, :] = softmax_t(scale * q[b, s, h] . k[b, t, h // G]  where allowed[b, s, t], else -large)

q [B, S, H, Dh]; k, v [B, Skv, K, Dh], G = H / K query heads per key/value head; ``allowed``
[B, S, Skv] bool, built by ``decoder.Decoder.hidden_states`` (causal by cache slot, bidirectional
blocks, real keys only). ``causal=True`` tells a kernel that ``allowed`` is exactly
``tril(ones(S, S)) & key_valid[:, None, :]``: self-attention with no cache and no blocks (training
and log-prob passes), so ``key_valid = allowed[:, -1]``.

Implementations (``IMPLEMENTATIONS``):

- ``"xla"``: the reference, and what every recorded result used. Scores [B, K, G, S, Skv] in f32
  (``preferred_element_type``), masked with ``finfo(float32).min``, softmax in f32, probabilities
  cast to the compute dtype, then ``@ v``. Any backend, dtype and mask.
- ``"dot_product"``: ``jax.nn.dot_product_attention``'s XLA implementation, the portable twin of
  ``"cudnn"`` (same call, same mask handling): f32 logits, mask value ``-0.7 * finfo.max``, f32
  softmax. Any backend, dtype and mask.
- ``"cudnn"``: ``jax.nn.dot_product_attention(implementation="cudnn")``, cuDNN's fused flash
  attention: the f32 scores are never stored. The mask enters as an additive bf16/fp16 bias
  [B, 1, S, Skv]; causal calls also set ``is_causal`` (cuDNN then skips the tiles above the
  diagonal). Needs a CUDA GPU, bf16 or fp16 q/k/v, ``Dh`` a multiple of 8 and <= 128, and (when
  differentiated, as cuDNN requires with a bias) even ``S`` and ``Skv``.
- ``"splash"``: Pallas splash attention (``jax.experimental.pallas.ops.tpu.splash_attention``) for
  TPU, GQA native. Its mask is static, so it serves causal calls only: ``CausalMask`` with the
  padding as segment ids (real token 1, padding 0: a real query sees real keys at or before it);
  every other call (a cache, bidirectional blocks) runs ``"xla"``. The kernel tiles by 128
  (blocks of 512, 256 or 128 rows), so the sequence is padded at the end to a multiple of 128
  with padding segments, which no real query sees. Off TPU it runs in Pallas interpret mode
  (slow: a correctness check, as the tests use it). One kernel call per batch row (``vmap``); it
  is not partitioned over a mesh.
- ``"auto"``: ``"cudnn"`` on a CUDA GPU when the call meets its requirements, ``"splash"`` on TPU
  for causal calls, else ``"xla"``: on a CPU always ``"xla"``, so the default changes nothing
  there.

Rows whose query may attend to no key (a left-padded position: no real token at or before it) get
finite, implementation-specific values ("xla": the mean of v over all keys; "splash": attention
among the padding keys). No loss reads them and real queries never attend to them, so values and
gradients agree across implementations wherever a real query is.
"""

from __future__ import annotations

import functools

import jax
import jax.extend.backend
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "dot_product", "cudnn", "splash")

_CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def check(impl: str, where: str = "attention_impl") -> None:
    """A ``ValueError`` naming ``where`` unless ``impl`` is one of ``IMPLEMENTATIONS``."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"{where}={impl!r}; expected one of {', '.join(IMPLEMENTATIONS)}")


def _platform() -> str:
    """``"cuda"``, ``"rocm"``, ``"tpu"`` or ``"cpu"``: the default backend, GPUs told apart."""
    backend = jax.extend.backend.get_backend()
    if backend.platform == "gpu":
        return "cuda" if "cuda" in backend.platform_version.lower() else "rocm"
    return backend.platform


def cudnn_supports(dtype, head_dim: int, q_len: int, kv_len: int) -> bool:
    """Whether cuDNN's fused attention takes this call (with a mask bias, differentiated)."""
    return (
        jnp.dtype(dtype) in _CUDNN_DTYPES
        and head_dim % 8 == 0
        and head_dim <= 128
        and q_len % 2 == 0
        and kv_len % 2 == 0
    )


def implementation_for(impl: str, *, dtype, head_dim: int, q_len: int, kv_len: int, causal: bool) -> str:
    """The implementation a call runs: ``impl`` with ``"auto"`` resolved on the default backend,
    and ``"splash"`` replaced by ``"xla"`` on a non-causal call (module docstring)."""
    check(impl)
    if impl == "auto":
        platform = _platform()
        if platform == "cuda" and cudnn_supports(dtype, head_dim, q_len, kv_len):
            return "cudnn"
        if platform == "tpu" and causal:
            return "splash"
        return "xla"
    if impl == "splash" and not causal:
        return "xla"
    return impl


def attend(q, k, v, allowed, *, impl: str, scale: float, causal: bool = False):
    """Attention output [B, S, H, Dh] in ``v.dtype`` (module docstring for the formula and ``impl``).

    Args:
      q: [B, S, H, Dh]; k, v: [B, Skv, K, Dh] with H a multiple of K; all one dtype.
      allowed: [B, S, Skv] bool, True where query s may attend to key t.
      impl: one of ``IMPLEMENTATIONS``.
      scale: multiplies q . k (``1 / sqrt(Dh)`` for these models).
      causal: ``allowed`` is causal self-attention with key padding only (module docstring).
    """
    B, S, H, Dh = q.shape
    if causal and k.shape[1] != S:
        raise ValueError(f"attend: causal=True needs as many keys as queries, got {k.shape[1]} and {S}")
    chosen = implementation_for(impl, dtype=q.dtype, head_dim=Dh, q_len=S, kv_len=k.shape[1], causal=causal)
    if chosen == "xla":
        return _xla(q, k, v, allowed, scale)
    if chosen == "splash":
        return _splash(q, k, v, allowed, scale)
    if chosen == "cudnn":
        if _platform() != "cuda":
            raise ValueError(f"attention_impl='cudnn' runs on a CUDA GPU; the default backend is {_platform()!r}")
        if not cudnn_supports(q.dtype, Dh, S, k.shape[1]):
            raise ValueError(
                f"attention_impl='cudnn' needs bfloat16/float16 q/k/v, head_dim a multiple of 8 and <= 128 and "
                f"even lengths; got {q.dtype.name}, head_dim {Dh}, lengths {S} and {k.shape[1]}"
            )
    return jax.nn.dot_product_attention(
        q,
        k,
        v,
        mask=allowed[:, None],  # [B, 1, S, Skv]: every head alike
        scale=scale,
        is_causal=causal and chosen == "cudnn",  # the mask holds it already; cuDNN skips masked tiles
        implementation="cudnn" if chosen == "cudnn" else "xla",
    )


def _xla(q, k, v, allowed, scale: float):
    """The reference: recorded results depend on it staying the same bit for bit on a CPU."""
    B, S, H, Dh = q.shape
    K = k.shape[2]
    q = q.reshape(B, S, K, H // K, Dh)
    scores = jnp.einsum("bskgd,btkd->bkgst", q, k, preferred_element_type=jnp.float32)
    scores = scores * scale
    scores = jnp.where(allowed[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgst,btkd->bskgd", probs, v).reshape(B, S, H, Dh)


_SPLASH_TILE = 128  # splash's block_kv_compute must be a multiple of the TPU's 128 lanes


@functools.cache
def _splash_row(seq_len: int, num_heads: int, interpret: bool):
    """The causal splash kernel for one row: (q [H, S, Dh], k/v [K, S, Dh], segment ids [S]) ->
    [H, S, Dh]; S a multiple of 128."""
    # Imported here, not at the top: a TPU kernel package must not be able to break GPU/CPU imports.
    from jax.experimental.pallas.ops.tpu import splash_attention

    b = next(b for b in (512, 256, _SPLASH_TILE) if seq_len % b == 0)
    blocks = splash_attention.BlockSizes(
        block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b, block_kv_dkv_compute=b,
        block_q_dq=b, block_kv_dq=b,
    )  # fmt: skip
    mask = splash_attention.MultiHeadMask([splash_attention.CausalMask((seq_len, seq_len))] * num_heads)
    with jax.ensure_compile_time_eval():  # concrete mask tables, reusable by every trace (the cache)
        kernel = splash_attention.make_splash_mha(
            mask, head_shards=1, q_seq_shards=1, block_sizes=blocks, interpret=interpret
        )
    return lambda q, k, v, seg: kernel(q, k, v, segment_ids=splash_attention.SegmentIds(q=seg, kv=seg))


def _splash(q, k, v, allowed, scale: float):
    S = q.shape[1]
    padded = -(-S // _SPLASH_TILE) * _SPLASH_TILE
    row = _splash_row(padded, q.shape[2], _platform() != "tpu")
    segments = allowed[:, -1].astype(jnp.int32)  # [B, S]: key_valid (module docstring), 1 real / 0 padding

    def heads_first(x):  # [B, S, n, Dh] -> [B, n, padded, Dh]
        return jnp.pad(x, ((0, 0), (0, padded - S), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    q = q * jnp.asarray(scale, q.dtype)
    out = jax.vmap(row)(heads_first(q), heads_first(k), heads_first(v), jnp.pad(segments, ((0, 0), (0, padded - S))))
    return out.transpose(0, 2, 1, 3)[:, :S].astype(v.dtype)
