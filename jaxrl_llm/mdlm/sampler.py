"""Iterative unmasking with low-confidence remasking (LLaDA), with fixed (inpainted) tokens.

The answer canvas of length ``L`` starts all ``[MASK]`` except the positions of ``inpaint_mask``,
which hold ``inpaint_tokens`` from the start and are never changed (IGPO's hint chunks). The
canvas is split into ``L / block_length`` blocks filled left to right (semi-autoregressive; one
block = plain LLaDA), each over ``steps / num_blocks`` steps. At step ``s`` of a block with
``m_s`` masked positions left and ``r_s`` steps left:

    x0_i ~ softmax(logits_i / temperature)            (argmax when temperature == 0)
    c_i  = softmax(logits_i)[x0_i]   if i is masked and in the current block, else -inf
    k_s  = ceil(m_s / r_s)
    unmask the k_s positions with the largest c_i (set them to x0_i); the rest stay masked.

So a block with ``m`` masked positions unmasks ``m // n + 1`` per step for its first ``m % n``
steps and ``m // n`` after that (LLaDA's ``get_num_transfer_tokens``), and exactly ``L / steps`` a
step when no position is fixed and ``steps`` divides ``L``. Everything runs in one ``jax.jit``
(a ``lax.fori_loop`` over steps); shapes are static.

Reference: Nie et al., "Large Language Diffusion Models" (LLaDA), https://arxiv.org/abs/2502.09992,
Algorithm 5 (low-confidence remasking) and the official ``generate.py`` at
https://github.com/ML-GSAI/LLaDA; inpainting as in Zhao et al., "Inpainting-Guided Policy
Optimization for Diffusion Large Language Models" (IGPO), https://arxiv.org/abs/2509.10396,
https://github.com/facebookresearch/igpo (``utils/generate.py``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxrl_llm.mdlm import model as mdlm_model
from jaxrl_llm.types import Array


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    canvas_len: int  # L, answer positions
    steps: int  # total unmasking steps (LLaDA: L / 2)
    block_length: int | None = None  # None = one block of L
    temperature: float = 1.0

    def __post_init__(self):
        block = self.block_length or self.canvas_len
        if self.canvas_len % block:
            raise ValueError(f"SamplerConfig: block_length={block} must divide canvas_len={self.canvas_len}")
        num_blocks = self.canvas_len // block
        if self.steps <= 0 or self.steps % num_blocks:
            raise ValueError(
                f"SamplerConfig: steps={self.steps} must be a positive multiple of the {num_blocks} blocks"
            )
        if self.temperature < 0:
            raise ValueError(f"SamplerConfig: temperature={self.temperature} must be >= 0")


def transfer_count(num_masked: Array, steps_left: Array) -> Array:
    """``k = ceil(m / r)``: how many positions to unmask now so that ``m`` masked positions are
    done in ``r`` steps, front-loading the remainder. ``[B] -> [B]`` int32."""
    return (num_masked + steps_left - 1) // jnp.maximum(steps_left, 1)


def select_top_k(confidence: Array, k: Array) -> Array:
    """Bool ``[B, L]``: the ``k_b`` largest entries of each row (``-inf`` entries never chosen;
    ties broken by position)."""
    order = jnp.argsort(-confidence, axis=-1, stable=True)  # [B, L]
    rank = jnp.argsort(order, axis=-1, stable=True)  # rank of each position
    return (rank < k[:, None]) & jnp.isfinite(confidence)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "mask_id"))
def sample(
    graphdef,
    params,
    prompt: Array,
    key: Array,
    cfg: SamplerConfig,
    mask_id: int,
    inpaint_tokens: Array | None = None,
    inpaint_mask: Array | None = None,
) -> tuple[Array, Array]:
    """Fills the answer canvas after ``prompt``.

    Args:
      graphdef, params: the model, ``mdlm.model.split(model)``.
      prompt: [B, P] int32 prompt tokens (never changed).
      key: PRNG key.
      cfg: the sampler configuration (static).
      mask_id: id of ``[MASK]``.
      inpaint_tokens: [B, L] tokens to fix where ``inpaint_mask`` is set (ignored elsewhere).
      inpaint_mask: [B, L] bool, fixed positions (never remasked, never resampled).

    Returns:
      (canvas [B, L] int32 with no ``[MASK]`` left, unmask_step [B, L] int32: the step at which each
      position was filled, -1 for inpainted positions).
    """
    B, P = prompt.shape
    L = cfg.canvas_len
    if inpaint_mask is None:
        inpaint_mask = jnp.zeros((B, L), jnp.bool_)
        inpaint_tokens = jnp.zeros((B, L), jnp.int32)
    if inpaint_mask.shape != (B, L) or inpaint_tokens.shape != (B, L):
        raise ValueError(
            f"sample: inpaint_mask {inpaint_mask.shape} and inpaint_tokens {inpaint_tokens.shape} must be {(B, L)}"
        )
    block = cfg.block_length or L
    steps_per_block = cfg.steps // (L // block)
    canvas = jnp.where(inpaint_mask, inpaint_tokens.astype(jnp.int32), mask_id)  # [B, L]
    filled_at = jnp.where(inpaint_mask, -1, cfg.steps).astype(jnp.int32)
    pos = jnp.arange(L)

    def body(s, carry):
        canvas, filled_at, key = carry
        key, k_draw = jax.random.split(key)
        logits = mdlm_model.apply(graphdef, params, jnp.concatenate([prompt, canvas], axis=1))[:, P:]  # [B, L, V]
        if cfg.temperature > 0:
            x0 = jax.random.categorical(k_draw, logits / cfg.temperature, axis=-1)
        else:
            x0 = jnp.argmax(logits, axis=-1)
        p0 = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), x0[..., None], axis=-1)[..., 0]  # [B, L]
        blk = s // steps_per_block
        in_block = (pos >= blk * block) & (pos < (blk + 1) * block)  # [L]
        candidate = (canvas == mask_id) & in_block[None]
        k = transfer_count(jnp.sum(candidate, axis=-1), steps_per_block - s % steps_per_block)
        chosen = select_top_k(jnp.where(candidate, p0, -jnp.inf), k)
        canvas = jnp.where(chosen, x0.astype(jnp.int32), canvas)
        filled_at = jnp.where(chosen, s, filled_at)
        return canvas, filled_at, key

    canvas, filled_at, _ = jax.lax.fori_loop(0, cfg.steps, body, (canvas, filled_at, key))
    return canvas, filled_at
