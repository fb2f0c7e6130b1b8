"""CISPO: Clipped IS-weight Policy Optimization (MiniMax-M1).

Citation: MiniMax (Aili Chen, Aonian Li, Bangwei Gong, et al.), "MiniMax-M1: Scaling Test-Time
Compute Efficiently with Lightning Attention", 2025, https://arxiv.org/abs/2506.13585 (Sec. 3.1, Eq. 4-5).

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1 / sum_i |o_i|) sum_i sum_t sg[ r_hat_{i,t} ] A_i log pi_theta(o_{i,t}) ]
    r_hat_{i,t} = clip(rho_{i,t}, 1 - eps_low, 1 + eps_high),   A_i = group z-score

Differs from GRPO in:
  1. The importance weight is CLIPPED AND DETACHED and multiplies ``A * log pi_theta``: no token's
     gradient is ever dropped (PPO's clip zeroes it), only its weight is bounded.
  2. Token-level normalization ``1 / sum_i |o_i|`` (``token_mean``), as DAPO.
  3. ``beta = 0``: no KL term.

Defaults and why: the paper tunes only the upper bound and imposes no lower bound in practice, so
``eps_low = None`` (no lower clip); ``eps_high = 5.0`` follows TRL's ``cispo`` recommendation (from
ScaleRL, arXiv 2510.13786) since the MiniMax report gives no number; ``std_ddof = 1``,
``std_eps = 1e-6`` as GRPO here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "cispo"
PAPER = "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention"
PAPER_URL = "https://arxiv.org/abs/2506.13585"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float | None = None  # epsilon^IS_low; None = no lower bound
    eps_high: float = 5.0  # epsilon^IS_high
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-sg[clip(rho)] * A * log pi_theta`` per token, token-mean over the whole batch.

    ``clip_frac/high`` counts tokens whose weight was capped at ``1 + eps_high`` (any sign of A),
    ``clip_frac/low`` those raised to ``1 - eps_low``; their gradient is bounded, not zeroed.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME)
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)
    low = 0.0 if cfg.eps_low is None else 1.0 - cfg.eps_low
    weight = jax.lax.stop_gradient(jnp.clip(ratio, low, 1.0 + cfg.eps_high))
    per_token = -weight * x["advantages"] * x["logprobs"] * x["is_weights"]
    policy = aggregation.aggregate(per_token, mask, cfg.aggregation, nt, ns)
    on = mask != 0
    metrics = {
        "clip_frac/low": jnp.sum(on & (ratio < low)) / nt,
        "clip_frac/high": jnp.sum(on & (ratio > 1.0 + cfg.eps_high)) / nt,
    }
    metrics["clip_frac"] = metrics["clip_frac/low"] + metrics["clip_frac/high"]
    metrics.update(diagnostics.ratio_stats(ratio, mask, nt))
    kl_term = None
    if cfg.beta > 0:
        ref = inputs.ref_logprobs(batch, mask, NAME)
        kl_term = kl.penalty(x["logprobs"], ref, mask, cfg.kl_estimator, cfg.aggregation, nt, ns)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta)
