"""GRPO: Group Relative Policy Optimization.

Citation: Zhihong Shao, Peiyi Wang, Qihao Zhu, Runxin Xu, Junxiao Song, Xiao Bi, Haowei Zhang,
Mingchuan Zhang, Y.K. Li, Y. Wu, Daya Guo, "DeepSeekMath: Pushing the Limits of Mathematical
Reasoning in Open Language Models", 2024, https://arxiv.org/abs/2402.03300 (Sec. 4.1, Eq. 3).

Objective (maximized; ``loss`` returns its negative). For each prompt, G outputs o_i ~ pi_old:

    J = E[ (1/G) sum_i (1/|o_i|) sum_t { min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i)
                                          - beta * k3_{i,t} } ]
    rho_{i,t} = pi_theta(o_{i,t}) / pi_old(o_{i,t}),   A_i = (r_i - mean_j r_j) / (std_j r_j + std_eps)
    k3_{i,t}  = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1   (added to the loss, not the reward)

Over a batch of prompts, ``(1/G) sum_i`` becomes ``(1/num_seqs) sum_i`` (``seq_mean_token_mean``).

Defaults and why:
  * ``eps_low = eps_high = 0.2``: the paper leaves epsilon unstated; 0.2 is the PPO / TRL / verl default.
  * ``beta = 0.04``: the paper's KL weight. ``kl_estimator = "k3"``: the paper's estimator (its
    gradient is biased, see ``ops.kl``; ``"k3+"`` keeps the value and fixes the gradient).
    ``kl_clamp = None``: the paper's k3 is not clamped (verl clamps it at 10: ``kl_clamp = 10``).
  * ``std_ddof = 1``, ``std_eps = 1e-6``: the paper writes std(r); TRL and verl use the Bessel-
    corrected std, verl adds 1e-6 (TRL 1e-4).
  * ``aggregation = "seq_mean_token_mean"``: the paper's 1/|o_i| then 1/G.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "grpo"
PAPER = "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models"
PAPER_URL = "https://arxiv.org/abs/2402.03300"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon (lower clip)
    eps_high: float = 0.2  # epsilon (upper clip)
    beta: float = 0.04  # beta, KL weight; 0 means no reference model
    kl_estimator: str = "k3"  # one of ops.kl.ESTIMATORS
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none (paper)
    std_ddof: int = 1  # std of the group rewards: sqrt(sum (r - mean)^2 / (G - ddof))
    std_eps: float = 1e-6  # added to the std
    aggregation: str = "seq_mean_token_mean"  # one of ops.aggregation.MODES


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Outcome advantage ``A_i = (r_i - mean_group r) / (std_group(r; std_ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clipped surrogate + ``beta`` * KL, both aggregated by ``cfg.aggregation`` with global normalizers.

    ``logprobs`` ``[B, T]``; ``batch`` per ``jaxrl_llm.types`` (``ref_logprobs`` needed iff ``beta > 0``;
    optional ``is_weights`` multiply the policy term). Returns ``(loss, metrics)``; a micro-batch gives
    its share of the full-batch loss.
    """
    return clipped_loss(
        logprobs, batch, cfg.eps_low, cfg.eps_high, cfg.beta, cfg.kl_estimator, cfg.aggregation, cfg.kl_clamp, NAME
    )


def clipped_loss(
    logprobs: Array,
    batch: Batch,
    eps_low: float,
    eps_high: float,
    beta: float,
    kl_estimator: str,
    aggregation_mode: str,
    kl_clamp: float | None = None,
    where: str = NAME,
) -> tuple[Array, Metrics]:
    """GRPO's objective from its settings, for methods whose loss is GRPO's and whose delta is
    elsewhere (the reward: MPO, URPO). ``where`` names the method in input errors."""
    x = inputs.policy_inputs(logprobs, batch, where, ref=beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, eps_low, eps_high)  # -min(rho A, clip(rho) A) [B, T]
    policy = aggregation.aggregate(
        per_token * x["is_weights"], mask, aggregation_mode, nt, ns
    )  # (1/G) sum_i (1/|o_i|) sum_t
    kl_term = (
        kl.penalty(x["logprobs"], x["ref_logprobs"], mask, kl_estimator, aggregation_mode, nt, ns, clamp=kl_clamp)
        if beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, eps_low, eps_high)  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, beta, where=where)  # policy + beta * KL
