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
``eps_low = None`` (no lower clip). The cap is written as the paper writes it, ``1 + eps_high``; the
MiniMax report gives no number, so the default reproduces the source that does: TRL's
``loss_type="cispo"`` with its recommended ``epsilon_high = 5.0`` (taken from ScaleRL, Khatri et
al., arXiv 2510.13786), which TRL applies as an ABSOLUTE cap, ``min(rho, 5)``
(``trl/trainer/grpo_trainer.py``, https://github.com/huggingface/trl). Hence ``eps_high = 4.0``:
the weight is capped at ``1 + 4 = 5``, exactly TRL's. (Until 2026-12 this file had
``eps_high = 5.0``, a cap of 6.) ``std_ddof = 1``, ``std_eps = 1e-6`` as GRPO here.
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
    eps_high: float = 4.0  # epsilon^IS_high: weight capped at 1 + eps_high = 5 (TRL's epsilon_high = 5.0)
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
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
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    low = 0.0 if cfg.eps_low is None else 1.0 - cfg.eps_low
    weight = jax.lax.stop_gradient(jnp.clip(ratio, low, 1.0 + cfg.eps_high))  # sg[r_hat_{i,t}] [B, T]
    per_token = -weight * x["advantages"] * x["logprobs"] * x["is_weights"]  # -sg[r_hat] A log pi [B, T]
    policy = aggregation.aggregate(per_token, mask, cfg.aggregation, nt, ns)  # (1 / sum_i |o_i|) sum_{i,t}
    on = mask != 0
    metrics = {
        "clip_frac/low": jnp.sum(on & (ratio < low)) / nt,
        "clip_frac/high": jnp.sum(on & (ratio > 1.0 + cfg.eps_high)) / nt,
    }
    metrics["clip_frac"] = metrics["clip_frac/low"] + metrics["clip_frac/high"]
    metrics.update(diagnostics.ratio_stats(ratio, mask, nt))
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
