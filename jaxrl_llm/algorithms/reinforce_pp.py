"""REINFORCE++: critic-free REINFORCE with PPO tricks and GLOBAL advantage normalization.

Citation: Jian Hu, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
Models", 2025, https://arxiv.org/abs/2501.03262 (Sec. 3); reference implementation OpenRLHF
(``advantage_estimator=reinforce`` / ``reinforce_baseline``).

Objective (maximized; ``loss`` returns its negative):

    r_t = -beta * k1_t + 1[t = last] * R,     k1_t = log pi_old(y_t) - log pi_ref(y_t)
    G_t = sum_{s >= t} gamma^{s-t} r_s
    A_t = (G_t - mean_batch G) / (std_batch G + std_eps)         over ALL tokens of the global batch
    J   = E[ (1/sum_i |o_i|) sum_{i,t} min(rho_{i,t} A_t, clip(rho_{i,t}, 1-eps, 1+eps) A_t) ]

Differs from GRPO in:
  1. No group statistics: per-token returns are whitened over the whole global batch (mean and std
     of every unmasked token), which bounds the advantage scale across prompts.
  2. KL enters the per-token REWARD as k1 against pi_ref (no gradient), not the loss.
  3. Per-token advantages ``[B, T]`` (the return-to-go of the shaped reward).
  4. Token-level normalization (``token_mean``).
  5. Option ``group_baseline`` (OpenRLHF ``reinforce_baseline``): subtract the group's mean reward
     from ``R`` before the returns, for multi-sample (group) prompts.

Defaults and why: ``eps = 0.2`` and ``gamma = 1`` (the paper); ``beta = 0.01`` is our choice (the
paper gives no number; small KL-in-reward coefficients are what OpenRLHF's examples use);
``std_ddof = 0``, ``std_eps = 1e-8`` as OpenRLHF's whitening.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "reinforce_pp"
PAPER = "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models"
PAPER_URL = "https://arxiv.org/abs/2501.03262"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.01  # KL-in-reward coefficient; 0 means no reference model
    gamma: float = 1.0
    std_ddof: int = 0
    std_eps: float = 1e-8
    group_baseline: bool = False  # subtract the group mean reward first (REINFORCE++-baseline)
    aggregation: str = "token_mean"


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Globally whitened per-token returns of ``-beta * k1 + final reward``: ``[B, T]``.

    Reads ``rollout["old_logprobs"]`` (else ``sampler_logprobs``) and ``rollout["ref_logprobs"]``
    when ``beta > 0``. Metrics add ``kl`` (token mean of k1).
    """
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    if cfg.group_baseline:
        rewards = adv_ops.group_centered(rewards, adv_ops.group_size_of(rollout))
    token_rewards = adv_ops.last_token_rewards(rewards, mask)  # [B, T]
    kl_tok = jnp.zeros_like(mask)
    if cfg.beta > 0:
        key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
        inputs.require(rollout, (key,), f"{NAME}.advantages")
        old = inputs.token_array(rollout, key, mask, f"{NAME}.advantages")
        kl_tok = kl.k1(old, inputs.ref_logprobs(rollout, mask, f"{NAME}.advantages"))
        token_rewards = token_rewards - cfg.beta * masked.where_mask(kl_tok, mask)
    returns = adv_ops.reverse_discounted_sum(token_rewards, mask, cfg.gamma)
    a = adv_ops.batch_normalized(returns, mask, cfg.std_ddof, cfg.std_eps)
    metrics = adv_ops.stats(a, mask)
    metrics["kl"] = masked.masked_mean(kl_tok, mask)
    if "group_size" in rollout or "group_ids" in rollout:
        g = adv_ops.group_size_of(rollout)
        metrics["frac_zero_std_groups"] = jnp.mean(
            adv_ops.zero_std_groups(jnp.asarray(rollout["rewards"], jnp.float32), g).astype(jnp.float32)
        )
    return a, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate with per-token advantages, token-mean over the whole batch (no KL term:
    the KL is in the reward)."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]  # adv: A_t [B, T]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A_t, clip(rho) A_t) [B, T]
    policy = aggregation.aggregate(
        per_token * x["is_weights"], mask, cfg.aggregation, nt, ns
    )  # (1 / sum_i |o_i|) sum_{i,t}
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, where=NAME)
