"""OPO: On-Policy RL with the Optimal reward baseline (length-weighted group baseline).

Citation: Yaru Hao, Li Dong, Xun Wu, Shaohan Huang, Zewen Chi, Furu Wei, "On-Policy RL with Optimal
Reward Baseline", 2025, https://arxiv.org/abs/2505.23585; code
https://github.com/microsoft/LMOps/tree/main/opo.
verl: ``verl/trainer/ppo/core_algos.py: compute_opo_outcome_advantage`` (``adv_estimator=opo``) with
verl's vanilla PPO loss; TRL: none.

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1 / sum_i |o_i|) sum_i sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i) ]
    A_i = r_i - b,   b = sum_j |o_j| r_j / sum_j |o_j|      (j over the group of i)

The variance-minimizing baseline of a sequence-level policy gradient weights each sample by its
squared gradient norm; the paper approximates ``||grad log pi(o_j)||^2`` by the length ``|o_j|``,
giving the length-weighted mean reward ``b``. The paper trains strictly on-policy (one gradient
step per rollout), where ``rho = 1`` and the clip never binds.

Differs from GRPO in:
  1. The baseline is the LENGTH-WEIGHTED group mean of the rewards, and there is no std division.
  2. Token-level normalization (``token_mean``), verl's default loss aggregation.
  3. ``beta = 0``: no KL term.

Defaults: ``eps_low = eps_high = 0.2`` (verl's PPO clip; inactive on-policy), ``token_mean``, no KL.
A group of size 1 gets ``b = 0`` (verl). ``|o_j|`` counts the rollout's ``mask`` (the completion
tokens). A group whose lengths are all 0 gets ``b = 0``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipped_terms, clipping, inputs, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "opo"
PAPER = "On-Policy RL with Optimal Reward Baseline"
PAPER_URL = "https://arxiv.org/abs/2505.23585"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "token_mean"


def length_weighted_baseline(rewards: Array, lengths: Array, group_size: int) -> Array:
    """``b_i = sum_j |o_j| r_j / sum_j |o_j|`` over the group of row ``i``; 0 for ``G = 1`` or an
    all-empty group. ``[B], [B] -> [B]``."""
    if group_size == 1:
        return jnp.zeros_like(rewards)
    r = rewards.reshape(-1, group_size)
    n = lengths.reshape(-1, group_size).astype(rewards.dtype)
    total = jnp.sum(n, axis=1, keepdims=True)
    b = jnp.sum(n * r, axis=1, keepdims=True) / jnp.maximum(total, 1.0)  # [P, 1]
    return jnp.broadcast_to(b, r.shape).reshape(-1)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = r_i - sum_j |o_j| r_j / sum_j |o_j|`` (length-weighted group baseline): ``[B]``."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    lengths = jnp.sum(jnp.asarray(rollout["mask"]) != 0, axis=1)  # |o_i| [B]
    a = rewards - length_weighted_baseline(rewards, lengths, g)
    return a, adv_ops.group_stats(a, rewards, rollout["mask"], g)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate, ``token_mean`` over the whole batch (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # / sum_i |o_i|
    return clipped_terms.finalize(x, batch, ratio, policy, cfg, NAME)  # + beta * KL, metrics
