"""A decoder-only transformer covering the Llama, Qwen2/Qwen2.5 and Qwen3 families.

Pieces: token embedding, L blocks of [RMSNorm -> GQA attention with RoPE (optional q/k/v bias,
optional per-head q/k RMSNorm) -> residual -> RMSNorm -> SwiGLU MLP -> residual], final RMSNorm,
tied or untied unembedding. Numerics follow ``transformers``' PyTorch implementations
(``modeling_llama.py``, ``modeling_qwen2.py``, ``modeling_qwen3.py``): the parity tests compare
logits against them.

Layers are stored stacked (leading axis ``L``, logical name ``"layers"``) and run with
``jax.lax.scan``: the cached path (prefill) keeps the loop, so its compile time does not grow with
depth; the uncached path (training) unrolls it for speed (see ``hidden_states``), or keeps the
loop too with ``cfg.scan_layers`` or a ``cfg.remat`` policy. ``cfg.remat`` wraps the block in
``jax.checkpoint`` by policy name (``jaxrl_llm.models.remat``) on both paths: what the backward
pass stores of each layer. Every parameter carries its logical axis names in the variable
metadata ``logical_axes``; ``jaxrl_llm.sharding.RULES`` maps them to the mesh.

Sequences may be left-padded: ``attention_mask`` marks real tokens, ``positions`` gives each real
token's RoPE position, and keys at padded slots are never attended to.

Attention itself is ``attention.attend`` over the boolean mask built here; ``cfg.attention_impl``
picks its implementation (``"auto"``: cuDNN on a GPU, splash on a TPU, the f32-scores reference
``"xla"`` elsewhere).

Two optional inputs serve non-text prefixes (``jaxrl_llm.models.vision``) and non-causal models
(``jaxrl_llm.mdlm``), on the uncached path and on a cached call (a prefill) alike:

- ``inputs_embeds`` [B, S, D] with ``embeds_mask`` [B, S] bool: where the mask is set, the input
  vector is ``inputs_embeds`` instead of the token's embedding (soft tokens, e.g. projected image
  patches written over placeholder ids; the token id there is ignored).
- ``block_ids`` [B, S] int32: attention is causal, except that tokens of one call sharing a
  nonzero block id attend to each other in both directions (an image's patches see the whole
  image; every token in block 1 gives a bidirectional encoder). 0 = plain causal. A block must
  lie within one call (a prefill), not span cache writes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_llm.models import attention, remat, rope
from jaxrl_llm.models.cache import KVCache
from jaxrl_llm.models.config import ModelConfig

# Logical axes of each stacked layer parameter (leading "layers" axis included).
LAYER_PARAM_AXES = {
    "attn_norm": ("layers", "norm"),
    "wq": ("layers", "embed", "heads", "head_dim"),
    "wk": ("layers", "embed", "kv_heads", "head_dim"),
    "wv": ("layers", "embed", "kv_heads", "head_dim"),
    "wo": ("layers", "heads", "head_dim", "embed"),
    "bq": ("layers", "heads", "head_dim"),
    "bk": ("layers", "kv_heads", "head_dim"),
    "bv": ("layers", "kv_heads", "head_dim"),
    "q_norm": ("layers", "head_dim"),
    "k_norm": ("layers", "head_dim"),
    "mlp_norm": ("layers", "norm"),
    "w_gate": ("layers", "embed", "mlp"),
    "w_up": ("layers", "embed", "mlp"),
    "w_down": ("layers", "mlp", "embed"),
}


def layer_param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the stacked per-layer parameters that ``cfg`` has."""
    L, D, F = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size
    H, K, Dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    shapes = {
        "attn_norm": (L, D),
        "wq": (L, D, H, Dh),
        "wk": (L, D, K, Dh),
        "wv": (L, D, K, Dh),
        "wo": (L, H, Dh, D),
        "mlp_norm": (L, D),
        "w_gate": (L, D, F),
        "w_up": (L, D, F),
        "w_down": (L, F, D),
    }
    if cfg.has_qkv_bias:
        shapes.update(bq=(L, H, Dh), bk=(L, K, Dh), bv=(L, K, Dh))
    if cfg.has_qk_norm:
        shapes.update(q_norm=(L, Dh), k_norm=(L, Dh))
    return shapes


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """``x / sqrt(mean(x^2) + eps) * weight``, statistics in f32 (as transformers' LlamaRMSNorm)."""
    dtype = x.dtype
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return jnp.expand_dims(weight.astype(dtype), tuple(range(x.ndim - weight.ndim))) * x32.astype(dtype)


class Decoder(nnx.Module):
    """The policy (and reference) model. See the module docstring."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        pdt = cfg.storage_dtype
        key = rngs.params()
        init = jax.nn.initializers.normal(0.02)
        k_embed, k_head, k_layers = jax.random.split(key, 3)
        self.embed = nnx.Param(init(k_embed, (cfg.vocab_size, cfg.hidden_size), pdt), logical_axes=("vocab", "embed"))
        layer_keys = jax.random.split(k_layers, len(LAYER_PARAM_AXES))
        layers = {}
        for (name, shape), k in zip(layer_param_shapes(cfg).items(), layer_keys):
            if name.endswith("norm"):
                value = jnp.ones(shape, pdt)
            elif name.startswith("b"):
                value = jnp.zeros(shape, pdt)
            else:
                value = init(k, shape, pdt)
            layers[name] = nnx.Param(value, logical_axes=LAYER_PARAM_AXES[name])
        self.layers = nnx.Dict(layers)
        self.final_norm = nnx.Param(jnp.ones((cfg.hidden_size,), pdt), logical_axes=("norm",))
        if not cfg.tie_word_embeddings:
            self.lm_head = nnx.Param(
                init(k_head, (cfg.hidden_size, cfg.vocab_size), pdt), logical_axes=("embed", "vocab")
            )

    # ------------------------------------------------------------------ forward
    def __call__(self, tokens, positions, attention_mask=None, cache: KVCache | None = None, **soft):
        """Logits for every position.

        Args:
          tokens: [B, S] int32.
          positions: [B, S] int32 RoPE positions of the tokens.
          attention_mask: [B, S] (1 = real token, 0 = padding). Default: all real.
          cache: optional ``KVCache``; the S new tokens are written at its slots
            ``[cache.index, cache.index + S)`` and attend to every valid earlier slot.
          **soft: ``inputs_embeds``, ``embeds_mask``, ``block_ids`` (``hidden_states``).

        Returns:
          (logits [B, S, V] f32, updated cache or None).
        """
        hidden, cache = self.hidden_states(tokens, positions, attention_mask, cache, **soft)
        return self.unembed(hidden), cache

    def hidden_states(
        self,
        tokens,
        positions,
        attention_mask=None,
        cache: KVCache | None = None,
        *,
        inputs_embeds=None,
        embeds_mask=None,
        block_ids=None,
    ):
        """Final-normed hidden states [B, S, D] (compute dtype) and the updated cache.

        ``inputs_embeds`` [B, S, D] replace the token embeddings where ``embeds_mask`` [B, S] is
        set; ``block_ids`` [B, S] int32 make same-block tokens attend bidirectionally (module
        docstring). Without them the computation is the plain causal one.
        """
        cfg = self.cfg
        cdt = cfg.compute_dtype
        B, S = tokens.shape
        if attention_mask is None:
            attention_mask = jnp.ones((B, S), jnp.bool_)
        attention_mask = attention_mask.astype(jnp.bool_)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(cdt)
        if inputs_embeds is not None:
            if embeds_mask is None:
                raise ValueError("Decoder.hidden_states: inputs_embeds needs embeds_mask [B, S]")
            if inputs_embeds.shape != x.shape:
                raise ValueError(f"Decoder.hidden_states: inputs_embeds {inputs_embeds.shape} != [B, S, D] {x.shape}")
            x = jnp.where(embeds_mask[..., None], inputs_embeds.astype(cdt), x)
        cos, sin = rope.cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)

        if cache is None:
            key_valid = attention_mask
            q_slot = jnp.arange(S)
            k_slot = jnp.arange(S)
        else:
            key_valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask, (0, cache.index))
            q_slot = cache.index + jnp.arange(S)
            k_slot = jnp.arange(cache.valid.shape[1])
        # [B, S, Skv]: causal by slot order (or within one nonzero block), and only real keys.
        allowed = (k_slot[None, :] <= q_slot[:, None])[None]
        if block_ids is not None:
            block_ids = block_ids.astype(jnp.int32)
            key_blocks = block_ids
            if cache is not None:  # earlier calls' slots count as block 0: blocks do not span calls
                key_blocks = jax.lax.dynamic_update_slice(
                    jnp.zeros_like(cache.valid, jnp.int32), block_ids, (0, cache.index)
                )
            same_block = (block_ids[:, :, None] == key_blocks[:, None, :]) & (block_ids[:, :, None] > 0)
            allowed = allowed | same_block
        allowed = allowed & key_valid[:, None, :]
        causal = cache is None and block_ids is None  # allowed = causal & key padding (attention.attend)

        layer_params = {k: v[...] for k, v in self.layers.items()}

        def block(x, inputs):
            p, kv = inputs
            h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
            attn_out, new_kv = self._attention(h, p, cos, sin, allowed, causal, kv, cache)
            x = x + attn_out
            h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
            gate = jnp.einsum("bsd,df->bsf", h, p["w_gate"].astype(cdt))
            up = jnp.einsum("bsd,df->bsf", h, p["w_up"].astype(cdt))
            x = x + jnp.einsum("bsf,fd->bsd", jax.nn.silu(gate) * up, p["w_down"].astype(cdt))
            return x, new_kv

        kv_in = None if cache is None else (cache.k, cache.v)
        # Without a cache (training, log-probs) the scan is fully unrolled unless cfg.scan_layers:
        # XLA:CPU then slices each layer's weights statically and lays out the backward's
        # weight-gradient dots without the transposes/copies of stacked residuals it emits inside a
        # while loop. Measured on SmolLM2-135M fwd+bwd [8, 256]: 11% less CPU time per step,
        # compile 31 s -> 41 s. Partial unrolling (unroll=2) gained nothing. The compile time of
        # the unrolled program grows with depth; cfg.scan_layers keeps one layer body instead. A
        # remat policy needs the loop too (jaxrl_llm/models/remat.py: unrolled, it saved nothing).
        rolled = cache is not None or cfg.layers_rolled
        body = remat.wrap(block, cfg.remat)
        x, kv_out = jax.lax.scan(body, x, (layer_params, kv_in), unroll=1 if rolled else cfg.num_layers)
        x = rms_norm(x, self.final_norm[...], cfg.rms_norm_eps)
        if cache is not None:
            cache = KVCache(k=kv_out[0], v=kv_out[1], valid=key_valid, index=cache.index + S)
        return x, cache

    def _attention(self, h, p, cos, sin, allowed, causal, kv, cache):
        cfg = self.cfg
        cdt = cfg.compute_dtype
        q = jnp.einsum("bsd,dhk->bshk", h, p["wq"].astype(cdt))
        k = jnp.einsum("bsd,dhk->bshk", h, p["wk"].astype(cdt))
        v = jnp.einsum("bsd,dhk->bshk", h, p["wv"].astype(cdt))
        if "bq" in p:
            q = q + p["bq"].astype(cdt)[None, None]  # [H, Dh] over [B, S, H, Dh]
            k = k + p["bk"].astype(cdt)[None, None]
            v = v + p["bv"].astype(cdt)[None, None]
        if "q_norm" in p:
            q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
            k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
        q = rope.apply(q, cos, sin)
        k = rope.apply(k, cos, sin)
        if kv is not None:
            k_all = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), (0, cache.index, 0, 0))
            v_all = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), (0, cache.index, 0, 0))
            new_kv = (k_all, v_all)
            k, v = k_all.astype(cdt), v_all.astype(cdt)
        else:
            new_kv = None
        out = attention.attend(
            q, k, v, allowed, impl=cfg.attention_impl, scale=1.0 / math.sqrt(cfg.head_dim), causal=causal
        )  # [B, S, H, Dh]
        return jnp.einsum("bshk,hkd->bsd", out, p["wo"].astype(cdt)), new_kv

    def unembed(self, hidden):
        """Logits in f32: ``hidden @ W_out`` (W_out = embedding^T when tied)."""
        if self.cfg.tie_word_embeddings:
            w = self.embed[...].astype(hidden.dtype)
            return jnp.einsum("bsd,vd->bsv", hidden, w, preferred_element_type=jnp.float32)
        w = self.lm_head[...].astype(hidden.dtype)
        return jnp.einsum("bsd,dv->bsv", hidden, w, preferred_element_type=jnp.float32)

    def init_cache(self, batch_size: int, max_len: int, dtype=None) -> KVCache:
        """An empty cache for ``batch_size`` rows and ``max_len`` slots."""
        cfg = self.cfg
        return KVCache.empty(
            cfg.num_layers, batch_size, max_len, cfg.num_kv_heads, cfg.head_dim, dtype or cfg.compute_dtype
        )
