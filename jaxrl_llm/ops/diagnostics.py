"""Shared metrics of a policy loss, with the keys every method logs (so plots line up across methods:
``loss``, ``loss/policy``, ``kl``, ``loss/kl``, ``clip_frac``, ``ratio/*``, ``entropy``).

Metrics returned by a ``loss`` obey the loss contract: each is a sum divided by a GLOBAL count
(``num_tokens`` or ``num_seqs``), so values add up across micro-batches and devices; keys ending in
``/max`` or ``/min`` combine by max / min instead (identity ``-inf`` / ``+inf`` on an empty part).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_llm.ops import clipping, inputs, masked
from jaxrl_llm.types import Array


def ratio_metrics(
    ratio: Array,
    advantages: Array,
    mask: Array,
    count: Array | float,
    eps_low: float,
    eps_high: float,
    clip_c: float | None = None,
) -> dict[str, Array]:
    """``clip_frac``, ``clip_frac/low``, ``clip_frac/high`` (``clip_frac/dual``), ``ratio/mean|max|min``.

    ``ratio``, ``mask``: same shape (``[B, T]`` with ``count = num_tokens`` for token ratios, ``[B]``
    with ``count = num_seqs`` for sequence ratios); ``advantages`` broadcastable to ``ratio``.
    A clip fraction counts entries whose gradient the clip switched off (see ``clipping.clip_masks``).
    """
    adv = jnp.broadcast_to(advantages, ratio.shape)
    on = mask != 0
    out = {}
    total = 0.0
    for name, hit in clipping.clip_masks(ratio, adv, eps_low, eps_high, clip_c).items():
        frac = jnp.sum(hit & on) / count
        out[f"clip_frac/{name}"] = frac
        total = total + frac
    out["clip_frac"] = total
    out.update(ratio_stats(ratio, mask, count))
    return out


def ratio_stats(ratio: Array, mask: Array, count: Array | float) -> dict[str, Array]:
    """``ratio/mean`` (``sum m rho / count``, additive), ``ratio/max``, ``ratio/min`` over unmasked entries."""
    return {
        "ratio/mean": masked.masked_sum(ratio, mask) / count,
        "ratio/max": masked.masked_max(ratio, mask),
        "ratio/min": masked.masked_min(ratio, mask),
    }


def token_mean_metric(x: Array, mask: Array, num_tokens: Array | float) -> Array:
    """``sum_{i,t} m x / num_tokens``: the additive token mean used for ``entropy`` and ``kl`` logging."""
    return masked.masked_sum(x, mask) / num_tokens


def finalize(
    metrics: dict[str, Array],
    policy: Array,
    batch,
    mask: Array,
    num_tokens: Array | float,
    kl_term: Array | None = None,
    beta: float = 0.0,
    extra: Array | None = None,
    where: str = "loss",
) -> tuple[Array, dict[str, Array]]:
    """``loss = policy + beta * kl_term (+ extra)`` and the shared keys ``loss``, ``loss/policy``,
    ``kl``, ``loss/kl`` and ``entropy`` (token mean of ``batch["entropies"]`` ``[B, T]`` when
    present; ``where`` names the method if its shape is wrong)."""
    total = policy
    if kl_term is not None:
        total = total + beta * kl_term
        metrics["kl"] = kl_term
        metrics["loss/kl"] = beta * kl_term
    if extra is not None:
        total = total + extra
    if "entropies" in batch:
        ent = inputs.token_array(batch, "entropies", mask, where)
        metrics["entropy"] = token_mean_metric(ent, mask, num_tokens)
    metrics["loss/policy"] = policy
    metrics["loss"] = total
    return total, metrics
