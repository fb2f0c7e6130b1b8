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
  4. Dynamic sampling (hook ``filter_groups`` + ``backfill``): groups whose rewards are all equal
     (all advantages 0) are dropped and the batch is refilled from further sampled groups, with
     static shapes (rows that could not be filled are masked out).
  5. ``beta = 0``: no KL term, no reference model.

Defaults: the paper's ``eps_low = 0.2``, ``eps_high = 0.28``, ``L_max = 20480``, ``L_cache = 4096``;
``std_ddof = 1``, ``std_eps = 1e-6`` as verl (the DAPO code base).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import inputs, policy_loss
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
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"
    max_len: int = 20480  # L_max
    cache_len: int = 4096  # L_cache, the soft-punishment interval
    filter_tol: float = 0.0  # a group is kept when max(r) - min(r) > filter_tol


def overlong_penalty(lengths: Array, max_len: int, cache_len: int) -> Array:
    """DAPO Eq. 13, ``R_len(|y|)``: 0, then linear down to -1 over the last ``cache_len`` tokens, then -1. ``[B]``."""
    if not 0 < cache_len <= max_len:
        raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    n = jnp.asarray(lengths, jnp.float32)
    soft = (max_len - cache_len) - n
    return jnp.where(n <= max_len - cache_len, 0.0, jnp.where(n <= max_len, soft / cache_len, -1.0))


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


def backfill(rollout: Rollout, keep: Array, surplus: Rollout, surplus_keep: Array, group_size: int) -> tuple[dict, Array]:
    """Static-shape dynamic sampling: refill a ``P``-group batch with kept groups, in order.

    Candidates are the ``P`` groups of ``rollout`` followed by the ``Q`` groups of ``surplus`` (more
    groups sampled for the same step); ``keep`` / ``surplus_keep`` are the ``[B]`` / ``[Q*G]`` row masks
    of ``filter_groups``. The output has ``rollout``'s shapes: the first kept candidates (original
    order), and when fewer than ``P`` were kept, the remaining groups are filled with dropped
    candidates whose ``mask`` is zeroed (so they contribute nothing). Returns ``(new_rollout,
    num_kept_groups)``. Every ``[rows, ...]`` array present in both rollouts is gathered; ``group_ids``
    are renumbered ``b // G``; non-array entries (``group_size``) are copied. Pure and jittable.
    """
    b = keep.shape[0]
    if b % group_size or surplus_keep.shape[0] % group_size:
        raise ValueError(f"row counts {b} and {surplus_keep.shape[0]} must be multiples of group_size={group_size}")
    p = b // group_size
    group_keep = jnp.concatenate([keep, surplus_keep]).reshape(-1, group_size)[:, 0]  # [P+Q]
    order = jnp.argsort(~group_keep, stable=True)[:p]  # kept groups first, original order
    rows = (order[:, None] * group_size + jnp.arange(group_size)[None]).reshape(-1)  # [B]
    valid = jnp.repeat(group_keep[order], group_size)  # [B]
    out = {}
    for k, v in rollout.items():
        if getattr(v, "ndim", 0) >= 1 and v.shape[0] == b and k in surplus:
            out[k] = jnp.concatenate([v, jnp.asarray(surplus[k], v.dtype)])[rows]
        else:
            out[k] = v
    out["mask"] = jnp.where(valid[:, None], out["mask"], jnp.zeros_like(out["mask"]))
    if "group_ids" in out:
        out["group_ids"] = (jnp.arange(b) // group_size).astype(jnp.asarray(rollout["group_ids"]).dtype)
    return out, jnp.sum(group_keep[order])


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)`` of the (already shaped) rewards: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clip-higher surrogate, token-mean over the whole batch (``sum / num_tokens``)."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    return policy_loss.clipped_policy_loss(
        x, batch, NAME, cfg.eps_low, cfg.eps_high, cfg.aggregation, beta=cfg.beta, kl_estimator=cfg.kl_estimator
    )
