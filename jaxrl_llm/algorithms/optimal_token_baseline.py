"""The optimal token baseline (OTB): a per-token group baseline weighted by accumulated score norms.

Citation: Richard Li, "Optimal Token Baseline" (blog, 2025), https://richardli.xyz/optimal-token-baseline,
as implemented in verl (no paper on arXiv; verl's ``docs/algo/otb.md``).
verl: ``verl/trainer/ppo/core_algos.py: compute_optimal_token_baseline_advantage``
(``adv_estimator=optimal_token_baseline``, ``actor.calculate_sum_pi_squared=True``) with verl's
vanilla PPO loss; TRL: none.

Objective (maximized; ``loss`` returns its negative), for completion i of a group, token t:

    w_{i,t}  = 1 - 2 pi_old(o_{i,t}) + sum_v pi_old(v)^2           (||grad_logits log pi(o_t)||^2)
    W_{i,t}  = sum_{j <= t} w_{i,j}                                 (the path's accumulated energy)
    b*_t     = sum_i G_{i,t} W_{i,t} / (sum_i W_{i,t} + 1e-8)       (over the group's rows alive at t)
    A_{i,t}  = G_{i,t} - b*_t,      G_{i,t} = r_i                   (outcome reward: return-to-go = r_i)
    J = E[ (1 / sum_i |o_i|) sum_i sum_t min(rho_{i,t} A_{i,t}, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_{i,t}) ]

The variance-minimizing baseline of a policy gradient weighs each sample by its squared gradient
norm; OTB estimates that norm per token from forward probabilities only (the logit-gradient proxy)
and accumulates it along the path, so a sample whose path was uncertain so far counts more in the
baseline at t (``ops/token_baseline.py``).

Differs from GRPO in:
  1. A PER-TOKEN baseline ``b*_t``, the W-weighted group mean of the rewards of the rows still
     generating at t, instead of one group mean per sequence; no std division.
  2. It needs ``sum_v pi_old(v)^2`` at every completion token (``ROLLOUT_EXTRAS``: the ``group``
     kind computes it with one forward pass of the live params, ``rollouts/token_stats.py``).
  3. Token-level normalization (``token_mean``, verl's default) and ``beta = 0``.

Conventions (verl's): ``eps = 1e-8`` in the denominator; a group of one row has ``b* = 0``;
``zero_tail = True`` (verl's current ``handle_zero_tail`` default): where one completion is strictly
the longest of its group, its baseline is 0 from the second-longest length on (there only it is
alive, and ``b* = r_i`` would zero its advantage). With rollout correction (``is_weights`` on the
rollout), ``w <- is_weights^2 w`` as verl's ``rollout_is_weights``. ``sum_pi_squared`` is of the
UNTEMPERED softmax of pi_old (the distribution of ``old_logprobs``); verl's actor divides its
logits by the sampling temperature before both, so the two agree at temperature 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipped_terms, clipping, inputs, ratios, token_baseline
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "optimal_token_baseline"
PAPER = "Optimal Token Baseline (verl)"
PAPER_URL = "https://richardli.xyz/optimal-token-baseline"
ROLLOUT_EXTRAS = ("sum_pi_squared",)  # sum_v pi_old(v)^2 [B, T] (rollouts/token_stats.py)


@dataclasses.dataclass(frozen=True)
class Config:
    zero_tail: bool = True  # verl's handle_zero_tail
    eps: float = 1e-8  # added to sum_i W_{i,t}
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "token_mean"


def token_advantages(rollout: Rollout, cfg: Any, multi_turn: bool, where: str) -> tuple[Array, Metrics]:
    """``A = (r_i - b*_t) m`` ``[B, T]`` with ``b*`` of ``ops.token_baseline.optimal_token_baseline``
    over the rollout's loss tokens; shared by this method and ``tir_optimal_token_baseline``."""
    inputs.require(rollout, ("sum_pi_squared",), f"{where}.advantages (ROLLOUT_EXTRAS: the group kind computes it)")
    g = adv_ops.group_size_of(rollout)
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)
    key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
    inputs.require(rollout, (key,), f"{where}.advantages")
    old = inputs.token_array(rollout, key, mask, where)
    w = token_baseline.score_norm(old, inputs.token_array(rollout, "sum_pi_squared", mask, where))  # w_t [B, T]
    if "is_weights" in rollout:  # truncated IS: rho_t^2 w_t (verl's rollout_is_weights)
        w = w * jnp.square(inputs.token_array(rollout, "is_weights", mask, where))
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    returns = jnp.broadcast_to(rewards[:, None], mask.shape)  # G_{i,t} = r_i [B, T]
    b = token_baseline.optimal_token_baseline(returns, w, mask, g, multi_turn, cfg.zero_tail, cfg.eps)  # b*_t
    a = (returns - b) * mask  # A_{i,t} [B, T]
    metrics = adv_ops.group_stats(a, rewards, mask, g)
    metrics["otb/baseline_mean"] = jnp.sum(b) / jnp.maximum(jnp.sum(mask), 1.0)
    return a, metrics


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_{i,t} = r_i - b*_t`` at token index t (module docstring): ``[B, T]``. Needs
    ``rollout["sum_pi_squared"]`` ``[B, T]`` and ``old_logprobs`` (``sampler_logprobs`` when absent)."""
    return token_advantages(rollout, cfg, multi_turn=False, where=NAME)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate with per-token advantages, ``token_mean`` (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # / sum_i |o_i|
    return clipped_terms.finalize(x, batch, ratio, policy, cfg, NAME)  # + beta * KL, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """``sum_pi_squared`` in ``[0.9, 1]`` (so ``w >= 0`` for ``pi_old <= 0.95``) for the invariant suite."""
    return {"sum_pi_squared": jax.random.uniform(key, (batch_size, seq_len), minval=0.9, maxval=1.0)}
