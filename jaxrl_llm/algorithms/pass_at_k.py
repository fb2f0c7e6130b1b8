"""Pass@k advantage: only the best response of each group is credited, by its margin over the runner-up.

Citation: Yunhao Tang, Kunhao Zheng, Gabriel Synnaeve, Remi Munos, "Optimizing Language Models for
Inference Time Objectives using Reinforcement Learning", 2025, https://arxiv.org/abs/2503.19595
(the pass@k objective with a leave-one-out control variate; k = G).
verl: ``verl/trainer/ppo/core_algos.py: compute_grpo_passk_outcome_advantage``
(``adv_estimator=grpo_passk``) with verl's vanilla PPO loss; TRL: none.

Objective (maximized; ``loss`` returns its negative). The k-sample objective ``E[max_i r_i]`` over a
group of ``G = k`` samples has the policy gradient ``sum_i (max_j r_j - max_{j != i} r_j) grad log pi(o_i)``
(leave-one-out baseline: the best of the OTHER samples). Every sample but the best one has
``max_{j != i} r_j = max_j r_j`` and hence zero advantage:

    A_i = (r_max - r_second) / (std_group(r) + std_eps)   if i = argmax_j r_j,  else 0
    J = E[ (1 / sum_i |o_i|) sum_i sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i) ]

Differs from GRPO in:
  1. The advantage targets pass@G, not the mean reward: only the best response of a group gets a
     nonzero (non-negative) advantage, its margin over the runner-up; with binary rewards a group
     with two or more correct responses gives no signal at all.
  2. Token-level normalization (``token_mean``, verl's default aggregation) and ``beta = 0``.

Defaults: ``norm_by_std = True`` (verl's ``norm_adv_by_std_in_grpo``), ``std_ddof = 1`` and
``std_eps = 1e-6`` (``torch.std`` and verl's epsilon), ``eps = 0.2``. Ties for the maximum credit
the FIRST row of the group (verl's ``torch.topk`` leaves the order of ties unspecified); the margin
is then 0 anyway. Needs ``G >= 2``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "pass_at_k"
PAPER = "Optimizing Language Models for Inference Time Objectives using Reinforcement Learning"
PAPER_URL = "https://arxiv.org/abs/2503.19595"


@dataclasses.dataclass(frozen=True)
class Config:
    norm_by_std: bool = True  # divide the margin by the group std (verl's norm_adv_by_std_in_grpo)
    std_ddof: int = 1
    std_eps: float = 1e-6
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "token_mean"


def best_margin(rewards: Array, group_size: int) -> Array:
    """``r_max - r_second`` on the first arg-max row of each group, 0 elsewhere. ``[B] -> [B]``."""
    if group_size < 2:
        raise ValueError(f"pass_at_k needs group_size >= 2, got {group_size}")
    r = rewards.reshape(-1, group_size)  # [P, G]
    best = jnp.argmax(r, axis=1)  # first maximum [P]
    is_best = jnp.arange(group_size)[None, :] == best[:, None]  # [P, G]
    second = jnp.max(jnp.where(is_best, -jnp.inf, r), axis=1, keepdims=True)  # max_{j != best} r_j [P, 1]
    margin = jnp.max(r, axis=1, keepdims=True) - second
    return jnp.where(is_best, margin, 0.0).reshape(-1)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = (r_max - r_second) / (std + std_eps)`` on each group's best row, 0 elsewhere: ``[B]``."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    a = best_margin(rewards, g)
    if cfg.norm_by_std:
        a = a / (adv_ops.group_std(rewards, g, cfg.std_ddof) + cfg.std_eps)
    return a, adv_ops.group_stats(a, rewards, rollout["mask"], g)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate, ``token_mean`` over the whole batch (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
