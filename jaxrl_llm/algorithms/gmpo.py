"""GMPO: Geometric-Mean Policy Optimization.

Citation: Yuzhong Zhao, Yue Liu, Junpeng Liu, Jingye Chen, Xun Wu, Yaru Hao, Tengchao Lv, Shaohan
Huang, Lei Cui, Qixiang Ye, Fang Wan, Furu Wei, "Geometric-Mean Policy Optimization", 2025,
https://arxiv.org/abs/2507.20673 (Eq. 4-5); code https://github.com/callsys/GMPO.
verl: ``verl/trainer/ppo/core_algos.py: compute_policy_loss_geo_mean`` (``loss_mode=geo_mean``);
TRL: none.

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1/G) sum_i A_i * ( prod_t rho^c_{i,t} )^{1/|o_i|} ]
    rho^c_{i,t} = the PPO-style one-sided clip of rho_{i,t} to (e^{-eps_low}, e^{eps_high}) by sgn(A_i)

in log space, with ``l_{i,t} = log rho_{i,t}`` and ``s = sgn(A_i)``:

    R_i = exp( (1/|o_i|) sum_t  s * min(s l_{i,t}, s clip(l_{i,t}, -eps_low, eps_high)) ),   J = E[(1/G) sum_i R_i A_i]

The geometric mean of the token ratios replaces GRPO's arithmetic mean; it is less sensitive to a
single outlier ratio, so the clip range can be wider. The token-level clip is one-sided by the sign
of the advantage, as PPO's: for ``A > 0`` only ``l > eps_high`` is clipped, for ``A < 0`` only
``l < -eps_low``.

Differs from GRPO in:
  1. The per-sequence objective is ``A_i`` times the GEOMETRIC mean of the (clipped) token ratios,
     not the arithmetic mean of per-token clipped surrogates; its gradient spreads ``R_i A_i / |o_i|``
     over the unclipped tokens.
  2. Clipping in log space, at the token level, with a wider range ``(e^{-0.4}, e^{0.4})``.
  3. ``beta = 0``: no KL term.

Defaults: ``eps_low = eps_high = 0.4`` (the paper's range ``(e^-0.4, e^0.4)``; verl's GMPO recipe sets
``clip_ratio_low = clip_ratio_high = 0.4``), GRPO's group z-score (``std_ddof = 1``,
``std_eps = 1e-6``). The mean over sequences divides by ``num_seqs`` (verl's ``torch.mean`` over the
micro-batch, made global). Token advantages ``[B, T]`` are reduced to their per-sequence mean, as
verl does (the paper's advantage is per sequence). Rollout-correction weights enter as their
per-sequence geometric mean (verl's convention).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "gmpo"
PAPER = "Geometric-Mean Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2507.20673"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.4  # epsilon_low, in log space: clip at e^{-eps_low}
    eps_high: float = 0.4  # epsilon_high, in log space: clip at e^{eps_high}
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    std_ddof: int = 1
    std_eps: float = 1e-6


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-(1/num_seqs) sum_i R_i A_i`` with ``R_i`` the geometric mean of the sign-clipped token ratios.

    ``clip_frac/high`` counts tokens clipped at ``e^{eps_high}`` (A > 0), ``clip_frac/low`` those at
    ``e^{-eps_low}`` (A < 0), over ``num_tokens``; a KL term (``beta > 0``) is ``seq_mean_token_mean``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    seq_adv = masked.masked_mean(x["advantages"], mask, axis=1)  # A_i [B]
    sign = jnp.sign(seq_adv)[:, None]  # s_i [B, 1]
    log_ratio = ratios.log_ratio(x["logprobs"], x["old_logprobs"], mask)  # l_{i,t} [B, T]
    clipped = jnp.clip(log_ratio, -cfg.eps_low, cfg.eps_high)
    l_min = sign * jnp.minimum(sign * log_ratio, sign * clipped)  # s min(s l, s clip(l)) [B, T]
    seq_ratio = jnp.exp(masked.masked_mean(l_min, mask, axis=1))  # R_i, geometric mean [B]
    seq_is = jnp.exp(masked.masked_mean(jnp.log(x["is_weights"] + 1e-10), mask, axis=1))  # verl: geo-mean IS [B]
    has_tokens = jnp.any(mask != 0, axis=1)
    per_seq = jnp.where(has_tokens, -seq_ratio * seq_adv * seq_is, 0.0)  # -R_i A_i [B]
    policy = jnp.sum(per_seq) / ns  # (1/G) sum_i
    on = mask != 0
    metrics = {
        "clip_frac/high": jnp.sum(on & (sign > 0) & (log_ratio > cfg.eps_high)) / nt,
        "clip_frac/low": jnp.sum(on & (sign < 0) & (log_ratio < -cfg.eps_low)) / nt,
        "seq_ratio/mean": jnp.sum(jnp.where(has_tokens, seq_ratio, 0.0)) / ns,
    }
    metrics["clip_frac"] = metrics["clip_frac/high"] + metrics["clip_frac/low"]
    metrics.update(diagnostics.ratio_stats(jnp.exp(log_ratio), mask, nt))
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, "seq_mean_token_mean", nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """On-policy (``R_i = 1``) the gradient of ``-R_i A_i`` is ``-(A_i / |o_i|) sum_t grad log pi``:
    REINFORCE under ``seq_mean_token_mean``."""
    adv = batch["advantages"] if batch["advantages"].ndim == 2 else batch["advantages"][:, None]
    return aggregation.aggregate(
        -adv * logprobs, batch["mask"], "seq_mean_token_mean", batch["num_tokens"], batch["num_seqs"]
    )
