"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization.

Citation: Qiying Yu, Zheng Zhang, Ruofei Zhu, Yufeng Yuan, Xiaochen Zuo, Yu Yue, et al.,
"DAPO: An Open-Source LLM Reinforcement Learning System at Scale", 2025,
https://arxiv.org/abs/2503.14476 (Eq. 8-13); code BytedTsinghua-SIA/DAPO (verl recipe).

Objective (maximized; ``loss`` returns its negative), no KL term:

    J = E[ (1 / sum_i |o_i|) sum_i sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i) ]
    s.t. 0 < #{i : o_i correct} < G                       (dynamic sampling)
    A_i = (r_i - mean_j r_j) / (std_j r_j + std_eps),      r_i = rule reward + R_len(|o_i|)

Differs from GRPO in:
  1. Clip-higher: ``eps_high = 0.28 > eps_low = 0.2``, so low-probability tokens can grow.
  2. Token-level loss: one ``1 / sum_i |o_i|`` over the whole batch (``token_mean``), not
     ``1/|o_i|`` per sequence then ``1/G``.
  3. Overlong reward shaping (hook ``shape_rewards``): with ``L_max`` and ``L_cache``,
     ``R_len(y) = 0`` if ``|y| <= L_max - L_cache``; ``((L_max - L_cache) - |y|) / L_cache`` if
     ``L_max - L_cache < |y| <= L_max``; ``-1`` beyond.
  4. Dynamic sampling (hook ``filter_groups``; the ``group`` rollout kind's ``backfill``): groups
     whose rewards are all equal (all advantages 0) are dropped and the batch is refilled from
     further sampled groups, with static shapes (groups that could not be filled are dropped
     groups with a zero ``loss_mask``, each at most once).
  5. ``beta = 0``: no KL term, no reference model.

Defaults: the paper's ``eps_low = 0.2``, ``eps_high = 0.28``, ``L_max = 20480``, ``L_cache = 4096``;
``std_ddof = 1``, ``std_eps = 1e-6`` as verl (the DAPO code base).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.rewards.length import overlong_penalty  # DAPO Eq. 13, R_len: written once, there
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "dapo"
PAPER = "DAPO: An Open-Source LLM Reinforcement Learning System at Scale"
PAPER_URL = "https://arxiv.org/abs/2503.14476"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon_low
    eps_high: float = 0.28  # epsilon_high (clip-higher)
    beta: float = 0.0  # KL weight; DAPO removes the KL term
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"
    max_len: int = 20480  # L_max
    cache_len: int = 4096  # L_cache, the soft-punishment interval
    filter_tol: float = 0.0  # a group is kept when max(r) - min(r) > filter_tol


def shape_rewards(rewards: Array, rollout: Rollout, cfg: Config) -> Array:
    """``rewards + R_len(rollout["lengths"])`` (overlong reward shaping). ``[B] -> [B]``."""
    inputs.require(rollout, ("lengths",), f"{NAME}.shape_rewards")
    return jnp.asarray(rewards, jnp.float32) + overlong_penalty(rollout["lengths"], cfg.max_len, cfg.cache_len)


def filter_groups(rollout: Rollout, cfg: Config) -> Array:
    """Dynamic-sampling keep mask ``[B]`` bool: True for rows of groups whose rewards are not all equal."""
    g = adv_ops.group_size_of(rollout)
    r = jnp.asarray(rollout["rewards"], jnp.float32).reshape(-1, g)
    keep = (jnp.max(r, axis=1) - jnp.min(r, axis=1)) > cfg.filter_tol  # [P]
    return jnp.repeat(keep, g)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)`` of the (already shaped) rewards: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clip-higher surrogate, token-mean over the whole batch (``sum / num_tokens``)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(
        ratio, adv, cfg.eps_low, cfg.eps_high
    )  # clip-higher: eps_high > eps_low [B, T]
    policy = aggregation.aggregate(
        per_token * x["is_weights"], mask, cfg.aggregation, nt, ns
    )  # (1 / sum_i |o_i|) sum_{i,t}
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)  # policy (+ beta * KL)
