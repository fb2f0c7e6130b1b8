"""Dr.GRPO: GRPO Done Right.

Citation: Zichen Liu, Changyu Chen, Wenjun Li, Penghui Qi, Tianyu Pang, Chao Du, Wee Sun Lee,
Min Lin, "Understanding R1-Zero-Like Training: A Critical Perspective", 2025,
https://arxiv.org/abs/2503.20783 (Sec. 3.2, Eq. 3); code sail-sg/understand-r1-zero.

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1/G) sum_i (1/L) sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i) ]
    A_i = r_i - mean_j r_j

Differs from GRPO in:
  1. No std division in the advantage (removes the bias toward low-variance questions).
  2. No 1/|o_i| per sequence: the token SUM of each sequence is divided by a constant L (the code's
     max generation length), which only sets the gradient scale (removes the length bias that
     favours long wrong answers). Over a batch: ``sum_{i,t} / (num_seqs * L)``
     (``seq_mean_token_sum_norm``); ``norm_const = None`` uses ``T``, the padded completion length.
  3. ``beta = 0``: no KL term.

Defaults: ``eps = 0.2`` (the code's PPO clip); ``beta = 0``; ``norm_const = None`` (= max length).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "dr_grpo"
PAPER = "Understanding R1-Zero-Like Training: A Critical Perspective"
PAPER_URL = "https://arxiv.org/abs/2503.20783"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon (lower clip)
    eps_high: float = 0.2  # epsilon (upper clip)
    beta: float = 0.0  # KL weight; the paper drops the KL term
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    norm_const: float | None = None  # L, the constant token-sum divisor; None = T (padded length)
    aggregation: str = "seq_mean_token_sum_norm"  # one of ops.aggregation.MODES


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = r_i - mean_group r``: ``[B]`` (no std division)."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    a = adv_ops.group_centered(rewards, g)
    return a, adv_ops.group_stats(a, rewards, rollout["mask"], g)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clipped surrogate summed over tokens, divided by ``num_seqs * L`` (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    policy = aggregation.aggregate(
        per_token * x["is_weights"], mask, cfg.aggregation, nt, ns, cfg.norm_const
    )  # sum_{i,t} / (G L)
    kl_term = (
        kl.penalty(
            x["logprobs"],
            x["ref_logprobs"],
            mask,
            cfg.kl_estimator,
            cfg.aggregation,
            nt,
            ns,
            cfg.norm_const,
            cfg.kl_clamp,
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)  # policy + beta * KL
