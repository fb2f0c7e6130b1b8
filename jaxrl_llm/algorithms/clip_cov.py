"""Clip-Cov: detach the gradient of the few tokens with the largest advantage/log-prob covariance.

Citation: Ganqu Cui, Yuchen Zhang, Jiacheng Chen, Lifan Yuan, Zhi Wang, Yuxin Zuo, Haozhan Li, Yuchen
Fan, Huayu Chen, Weize Chen, Zhiyuan Liu, Hao Peng, Lei Bai, Wanli Ouyang, Yu Cheng, Bowen Zhou,
Ning Ding, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", 2025,
https://arxiv.org/abs/2505.22617 (Sec. 5, Eq. 11); code https://github.com/PRIME-RL/Entropy-Mechanism-of-RL.
verl: ``verl/trainer/ppo/core_algos.py: compute_policy_loss_clip_cov`` (``loss_mode=clip_cov``,
``clip_cov_ratio``, ``clip_cov_lb``, ``clip_cov_ub``); TRL: none.

Objective (maximized; ``loss`` returns its negative):

    Cov_{i,t} = (A_{i,t} - mean A) (log pi(o_{i,t}) - mean log pi)          (means over the batch's tokens)
    S = n tokens with omega_low < Cov_{i,t} < omega_high,  n = max(floor(r * N), 1)
    J = E[ (1 / sum_i |o_i|) sum_{i,t} 1[(i,t) not in S] min(rho A, clip(rho, 1-eps_low, 1+eps_high) A) ]

Policy-entropy collapse is driven by tokens whose log-probability and advantage co-vary strongly
(the entropy change is ``-Cov``); excluding a tiny fraction ``r`` of them from the gradient keeps
entropy from collapsing.

Differs from GRPO in:
  1. A covariance-selected set ``S`` of tokens (``r = 2e-4`` of them) gets no gradient.
  2. Token-level normalization (``token_mean``, verl's default) and ``beta = 0``.

Where this differs from verl, and why:
  * ``S`` is chosen ONCE per rollout from the whole batch (``batch_extras``, with ``old_logprobs``,
    which equal the current log-probs at the first update), not per micro-batch from the current
    log-probs as verl does: verl's selection, its means and its count ``n`` depend on how the batch
    is split, which breaks the partition contract here.
  * verl draws ``S`` uniformly at random among the eligible tokens (``torch.randperm``); here the
    ``n`` eligible tokens with the LARGEST covariance are taken (deterministic; ``batch_extras``
    has no random key). Tokens that PPO's clip already switched off keep their clipped value (verl
    excludes them from ``S``; here they stay in ``S`` but the detach changes nothing for them).

Defaults (verl's, the paper's Clip-Cov setting): ``clip_cov_ratio = 2e-4``, ``omega_low = 1``,
``omega_high = 5``, ``eps_low = eps_high = 0.2``, GRPO's group z-score.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, covariance, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "clip_cov"
PAPER = "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models"
PAPER_URL = "https://arxiv.org/abs/2505.22617"


@dataclasses.dataclass(frozen=True)
class Config:
    clip_cov_ratio: float = 2e-4  # r, fraction of the batch's tokens detached
    omega_low: float = 1.0  # lower bound of the eligible covariance
    omega_high: float = 5.0  # upper bound of the eligible covariance
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"

    def __post_init__(self):
        if not 0 < self.clip_cov_ratio <= 1:
            raise ValueError(f"clip_cov.Config.clip_cov_ratio must be in (0, 1], got {self.clip_cov_ratio!r}")
        if not self.omega_low < self.omega_high:
            raise ValueError(f"clip_cov.Config needs omega_low < omega_high, got {self.omega_low}, {self.omega_high}")


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``cov_select`` ``[B, T]`` (1 for tokens in ``S``: the top-n by ``Cov`` among those with
    ``omega_low < Cov < omega_high``), from the whole rollout's advantages and ``old_logprobs``
    (``sampler_logprobs`` when absent; ``ops.covariance.rollout_selection``)."""
    adv, _ = advantages(rollout, cfg)
    select = covariance.rollout_selection(
        rollout, adv, cfg.clip_cov_ratio, f"{NAME}.batch_extras", bounds=(cfg.omega_low, cfg.omega_high)
    )  # 1[S] [B, T]
    return {"cov_select": select}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate with the selected tokens' gradient detached, ``token_mean``.

    Needs ``batch["cov_select"]`` (``batch_extras``). ``cov_frac``: selected tokens over ``num_tokens``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    inputs.require(batch, ("cov_select",), f"{NAME} (from clip_cov.batch_extras)")
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    select = masked.where_mask(inputs.token_array(batch, "cov_select", mask, NAME), mask) != 0  # S [B, T]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    surrogate = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    per_token = jnp.where(select, 0.0, surrogate)  # 1[not in S] * surrogate [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    metrics["cov_frac"] = jnp.sum(select) / nt
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """On-policy gradient: REINFORCE under ``token_mean`` on the tokens NOT in ``S``."""
    mask = batch["mask"]
    adv = batch["advantages"] if batch["advantages"].ndim == 2 else batch["advantages"][:, None]
    keep = 1.0 - batch["cov_select"]
    return aggregation.aggregate(-adv * logprobs * keep, mask, cfg.aggregation, batch["num_tokens"], batch["num_seqs"])
