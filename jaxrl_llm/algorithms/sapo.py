"""SAPO: Soft Adaptive Policy Optimization.

Citation: Chang Gao, Chujie Zheng, et al. (Qwen Team), "Soft Adaptive Policy Optimization", 2025,
https://arxiv.org/abs/2511.20347.
verl: ``verl/trainer/ppo/core_algos.py: compute_policy_loss_sapo`` (``policy_loss.loss_mode=sapo``,
``tau_pos`` / ``tau_neg``); TRL: ``trl/trainer/grpo_trainer.py: _compute_loss`` (``loss_type="sapo"``,
``sapo_temperature_pos`` / ``sapo_temperature_neg``).

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1/G) sum_i (1/|o_i|) sum_t f_{i,t}(rho_{i,t}) A_i ]
    f(rho) = sigmoid(tau (rho - 1)) * 4 / tau,   tau = tau_pos if A_i > 0 else tau_neg
    rho_{i,t} = pi_theta(o_{i,t}) / pi_old(o_{i,t}),   A_i = group z-score

``f(1) = 2 / tau`` and ``f'(1) = 1``: on-policy the gradient is GRPO's; away from ``rho = 1`` the
gradient weight ``rho f'(rho) = rho * 4 sigma (1 - sigma)`` decays smoothly instead of dropping to
zero at a hard clip edge. A larger ``tau_neg`` makes negative-advantage tokens decay faster (their
ratio excursions destabilize more, the paper argues).

Differs from GRPO in:
  1. The clipped surrogate ``min(rho A, clip(rho) A)`` is replaced by the soft gate ``f(rho) A``:
     no token's gradient is switched off; it is attenuated smoothly as ``rho`` leaves 1.
  2. Separate temperatures for positive and non-positive advantages (``A > 0`` takes ``tau_pos``,
     ``A <= 0`` takes ``tau_neg``, as verl and TRL).
  3. ``beta = 0`` by default (TRL's default; the paper trains without a KL term).

Defaults: ``tau_pos = 1.0``, ``tau_neg = 1.05`` (the paper's; verl's and TRL's defaults), GRPO's
group z-score (``std_ddof = 1``, ``std_eps = 1e-6``: verl's epsilon; TRL adds 1e-4),
``seq_mean_token_mean`` (verl forces it for SAPO; TRL's ``loss_type="sapo"`` uses it too). The
log-ratio is clamped at +-20 before ``exp`` (verl). ``kl_ratio_weighted = True`` multiplies the KL
term by the ratio (TRL's ``use_bias_correction_kl``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "sapo"
PAPER = "Soft Adaptive Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2511.20347"


@dataclasses.dataclass(frozen=True)
class Config:
    tau_pos: float = 1.0  # tau_pos, gate temperature for A > 0
    tau_neg: float = 1.05  # tau_neg, gate temperature for A <= 0
    beta: float = 0.0  # KL weight; 0 means no reference model
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    kl_ratio_weighted: bool = False  # rho_t * KL_t (TRL's use_bias_correction_kl)
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "seq_mean_token_mean"

    def __post_init__(self):
        if not (self.tau_pos > 0 and self.tau_neg > 0):
            raise ValueError(f"sapo.Config: tau_pos and tau_neg must be > 0, got {self.tau_pos}, {self.tau_neg}")


def gate(ratio: Array, tau: Array | float) -> Array:
    """SAPO's soft gate ``f(rho) = sigmoid(tau (rho - 1)) * 4 / tau`` (``f(1) = 2 / tau``, ``f'(1) = 1``)."""
    return jax.nn.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-f(rho) A`` per token (soft gate, temperature by the sign of A), ``seq_mean_token_mean``.

    ``clip_frac`` is 0 (no hard clip); ``gate/weight`` is the token mean of the gradient weight
    ``rho f'(rho)`` (1 on-policy), the fraction of each token's policy-gradient signal kept.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    tau = jnp.where(adv > 0, cfg.tau_pos, cfg.tau_neg)  # tau_{i,t} [B, T]
    per_token = -gate(ratio, tau) * adv  # -f(rho) A [B, T]
    policy = aggregation.aggregate(
        per_token * x["is_weights"], mask, cfg.aggregation, nt, ns
    )  # (1/G) sum_i (1/|o_i|) sum_t
    sig = jax.nn.sigmoid(tau * (ratio - 1.0))
    metrics = {
        "clip_frac": jnp.float32(0.0),
        "gate/weight": masked.masked_sum(ratio * 4.0 * sig * (1.0 - sig), mask) / nt,
    }
    metrics.update(diagnostics.ratio_stats(ratio, mask, nt))
    kl_term = (
        kl.penalty(
            x["logprobs"],
            x["ref_logprobs"],
            mask,
            cfg.kl_estimator,
            cfg.aggregation,
            nt,
            ns,
            clamp=cfg.kl_clamp,
            ratio=ratio if cfg.kl_ratio_weighted else None,
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
