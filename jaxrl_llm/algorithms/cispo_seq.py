"""Sequence-level CISPO: CISPO's clipped, detached importance weight taken per SEQUENCE.

Citation: MiniMax, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention",
2025, https://arxiv.org/abs/2506.13585 (CISPO, Sec. 3.1); the sequence-level ratio of Chujie Zheng et
al., "Group Sequence Policy Optimization", 2025, https://arxiv.org/abs/2507.18071 (Eq. 7).
verl: none (``compute_policy_loss_cispo`` is token-level); TRL: ``trl/trainer/grpo_trainer.py:
_compute_loss`` with ``loss_type="cispo"`` and ``importance_sampling_level="sequence"``.

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1 / sum_i |o_i|) sum_i sum_t sg[ min(s_i, 1 + eps_high) ] A_i log pi_theta(o_{i,t}) ]
    s_i = exp( (1/|o_i|) sum_t (log pi_theta - log pi_old)_{i,t} )       (GSPO's length-normalized ratio)

Differs from GRPO in:
  1. The importance weight is CLIPPED AND DETACHED and multiplies ``A log pi_theta`` (CISPO: no
     token's gradient is dropped), and it is ONE weight per sequence, the geometric mean of the
     token ratios, so every token of a response is weighted alike.
  2. Token-level normalization ``1 / sum_i |o_i|`` (``token_mean``), as TRL's ``"cispo"``.
  3. ``beta = 0``: no KL term.

Defaults: ``eps_high = 4.0`` (weight capped at 5 = TRL's recommended ``epsilon_high = 5.0``, applied
by TRL as an absolute cap; the same convention as ``cispo.py``), no lower bound, GRPO's group
z-score. The mean log-ratio is clamped at +-10 before ``exp`` (``ratios.sequence_ratio``, verl's
GSPO clamp); TRL does not clamp it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "cispo_seq"
PAPER = "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention"
PAPER_URL = "https://arxiv.org/abs/2506.13585"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float | None = None  # lower bound 1 - eps_low on s_i; None = none
    eps_high: float = 4.0  # s_i capped at 1 + eps_high = 5 (TRL's epsilon_high = 5.0)
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-sg[clip(s_i)] A log pi_theta`` per token, ``token_mean`` over the whole batch.

    Clip metrics count SEQUENCES (over ``num_seqs``): ``clip_frac/high`` those capped at
    ``1 + eps_high``, ``clip_frac/low`` those raised to ``1 - eps_low``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    s = ratios.sequence_ratio(x["logprobs"], x["old_logprobs"], mask)  # s_i [B]
    low = 0.0 if cfg.eps_low is None else 1.0 - cfg.eps_low
    weight = jax.lax.stop_gradient(jnp.clip(s, low, 1.0 + cfg.eps_high))  # sg[clip(s_i)] [B]
    per_token = -weight[:, None] * x["advantages"] * x["logprobs"] * x["is_weights"]  # [B, T]
    policy = aggregation.aggregate(per_token, mask, cfg.aggregation, nt, ns)  # (1 / sum_i |o_i|) sum_{i,t}
    has = jnp.any(mask != 0, axis=1)
    metrics = {
        "clip_frac/low": jnp.sum(has & (s < low)) / ns,
        "clip_frac/high": jnp.sum(has & (s > 1.0 + cfg.eps_high)) / ns,
    }
    metrics["clip_frac"] = metrics["clip_frac/low"] + metrics["clip_frac/high"]
    metrics.update(diagnostics.ratio_stats(s, has.astype(jnp.float32), ns))
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
