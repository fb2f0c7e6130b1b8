"""PPO clipping: asymmetric clipped surrogate, dual-clip, and which tokens each branch clipped.

All per-token terms are LOSSES (to be minimized), i.e. the negated PPO objective.
``ratio``: ``[B, T]`` (or ``[B]``); ``advantages`` broadcastable to it.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_llm.types import Array


def clipped_surrogate(ratio: Array, advantages: Array, eps_low: float, eps_high: float) -> Array:
    """``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)`` per token (loss; minimized).

    ``eps_low == eps_high`` is PPO; ``eps_high > eps_low`` is DAPO's clip-higher. Where the clipped
    branch is the minimum the gradient through ``rho`` is 0. References: Schulman et al. 2017
    (arXiv 1707.06347) Eq. 7; Yu et al., "DAPO" (arXiv 2503.14476) Eq. 10.
    """
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return -jnp.minimum(ratio * advantages, clipped * advantages)


def dual_clip(per_token_loss: Array, advantages: Array, clip_c: float) -> Array:
    """Dual-clip: for ``A < 0`` the loss is capped at ``-clip_c * A``; unchanged for ``A >= 0``.

    Objective ``max(min(rho A, clip(rho) A), c A)`` for ``A < 0`` (``c > 1``), which bounds the update
    from tokens with a huge ratio and negative advantage. ``per_token_loss`` is the output of
    ``clipped_surrogate``. Reference: Ye et al., "Mastering Complex Control in MOBA Games with Deep
    Reinforcement Learning" (arXiv 1912.09729), Eq. 5.
    """
    if clip_c <= 1.0:
        raise ValueError(f"dual-clip constant clip_c must be > 1, got {clip_c}")
    capped = jnp.minimum(per_token_loss, -clip_c * advantages)
    return jnp.where(advantages < 0, capped, per_token_loss)


def clip_masks(
    ratio: Array, advantages: Array, eps_low: float, eps_high: float, clip_c: float | None = None
) -> dict[str, Array]:
    """Bool masks of tokens whose gradient a clip switched off.

    ``low``: ``A < 0`` and ``rho < 1 - eps_low``; ``high``: ``A > 0`` and ``rho > 1 + eps_high``;
    ``dual`` (when ``clip_c``): ``A < 0`` and ``rho > clip_c``.
    """
    out = {
        "low": (advantages < 0) & (ratio < 1.0 - eps_low),
        "high": (advantages > 0) & (ratio > 1.0 + eps_high),
    }
    if clip_c is not None:
        out["dual"] = (advantages < 0) & (ratio > clip_c)
    return out
