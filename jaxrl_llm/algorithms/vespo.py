"""VESPO: Variational Sequence-Level Soft Policy Optimization (TRL's ``loss_type="vespo"``).

Citation: "VESPO: Variational Sequence-Level Soft Policy Optimization", 2026,
https://arxiv.org/abs/2602.10693 (as cited by TRL's ``GRPOConfig``).
verl: none; TRL: ``trl/trainer/grpo_trainer.py: GRPOTrainer.get_gamma_weights`` and ``_compute_loss``
(``loss_type="vespo"``, ``vespo_k_pos``, ``vespo_lambda_pos``, ``vespo_k_neg``, ``vespo_lambda_neg``).

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1 / sum_i |o_i|) sum_i sum_t sg[phi(w_i)] A_i log pi_theta(o_{i,t}) ]
    w_i = pi_theta(o_i) / pi_old(o_i) = exp( sum_t (log pi_theta - log pi_old)_{i,t} )   (sequence IS weight)
    phi(w) = e^lambda * w^k * e^{-lambda w}    (a Gamma-shaped weight, phi(1) = 1, peak at w = k / lambda)
    (k, lambda) = (k_pos, lambda_pos) if A_i >= 0 else (k_neg, lambda_neg)

Instead of clipping the ratio, the whole sequence's policy-gradient term is reweighted by a smooth
function of its importance weight that vanishes both as ``w -> 0`` (power ``k``) and as ``w -> inf``
(exponential decay ``lambda``): stale or mismatched sequences are softly down-weighted.

Differs from GRPO in:
  1. No clipped surrogate: a detached, sequence-level soft weight ``phi(w_i)`` on ``A log pi``
     (REINFORCE-style, like CISPO, but with a sequence weight and a two-sided soft decay).
  2. The weight uses the UNNORMALIZED sequence log-ratio ``sum_t`` (not GSPO's mean).
  3. Token-level normalization (``token_mean``; TRL divides by the global token count) and ``beta = 0``.

Defaults (TRL's): ``k_pos = 2``, ``lambda_pos = 3``, ``k_neg = 3``, ``lambda_neg = 2``; GRPO's group
z-score (``std_ddof = 1``, ``std_eps = 1e-6``; TRL adds 1e-4). As TRL: per-token log-ratios clamped
to +-20, ``log w`` clamped to ``[log 1e-8, 20]``, ``lambda`` floored at 1e-4, non-finite ``phi`` set to 0.
Rollout-correction weights multiply the per-token term here (TRL folds its vLLM IS ratio into ``w``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "vespo"
PAPER = "VESPO: Variational Sequence-Level Soft Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2602.10693"
_LOG_W_MIN = math.log(1e-8)  # TRL's lower clamp of log w


@dataclasses.dataclass(frozen=True)
class Config:
    k_pos: float = 2.0  # k for A >= 0 (power: down-weights w < 1)
    lambda_pos: float = 3.0  # lambda for A >= 0 (decay: down-weights w > 1)
    k_neg: float = 3.0  # k for A < 0
    lambda_neg: float = 2.0  # lambda for A < 0
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"


def gamma_weight(log_w: Array, k: Array | float, lam: Array | float) -> Array:
    """``phi(w) = exp(lambda + k log w - lambda w)`` with ``log w`` clamped to ``[log 1e-8, 20]``,
    ``lambda >= 1e-4``; non-finite values become 0 (TRL). Elementwise."""
    log_w = jnp.clip(log_w, _LOG_W_MIN, 20.0)
    lam = jnp.maximum(lam, 1e-4)
    phi = jnp.exp(lam + k * log_w - lam * jnp.exp(log_w))
    return jnp.where(jnp.isfinite(phi), phi, 0.0)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-sg[phi(w_i)] A log pi_theta`` per token, ``token_mean`` over the whole batch.

    The sign of a row's advantage (its mean over the row's tokens) picks ``(k, lambda)``. ``clip_frac``
    is 0; ``vespo/phi_mean`` is the mean weight per sequence (over ``num_seqs``).
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    log_ratio = ratios.log_ratio(x["logprobs"], x["old_logprobs"], mask)  # clamped at +-20 [B, T]
    log_w = jnp.sum(log_ratio, axis=1)  # log w_i = sum_t log rho_{i,t} [B]
    nonneg = masked.masked_mean(adv, mask, axis=1) >= 0  # sign of A_i [B]
    k = jnp.where(nonneg, cfg.k_pos, cfg.k_neg)
    lam = jnp.where(nonneg, cfg.lambda_pos, cfg.lambda_neg)
    phi = jax.lax.stop_gradient(gamma_weight(log_w, k, lam))  # sg[phi(w_i)] [B]
    per_token = -phi[:, None] * adv * x["logprobs"]  # -sg[phi] A log pi [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    has_tokens = jnp.any(mask != 0, axis=1)
    metrics = {
        "clip_frac": jnp.float32(0.0),
        "vespo/phi_mean": jnp.sum(jnp.where(has_tokens, phi, 0.0)) / ns,
        **diagnostics.ratio_stats(jnp.exp(log_ratio), mask, nt),
    }
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
