"""DRO: Direct Reward Optimization, the per-token form verl and Tinker ship (``loss_mode=dro``).

Citation: Pierre Harvey Richemond, Yunhao Tang, Daniel Guo, et al., "Offline Regularised
Reinforcement Learning for Large Language Models Alignment", 2024, https://arxiv.org/abs/2405.19107
(Direct Reward Optimisation); no official code.
verl: ``verl/trainer/ppo/core_algos.py: compute_policy_loss_dro`` (``policy_loss.loss_mode=dro``,
``policy_loss.dro_beta``; ``docs/algo/dro.md``), the same token loss as Tinker's ``dro`` loss; TRL: none.

Objective (minimized), per loss token, with A the advantage and pi_old the sampling policy:

    l_{i,t} = -( log pi_theta(o_{i,t}) A_{i,t} - (beta_dro / 2) (log pi_theta(o_{i,t}) - log pi_old(o_{i,t}))^2 )
    L       = (1 / sum_i |o_i|) sum_{i,t} l_{i,t}                                   (token_mean)

The paper's DRO fits a policy and a value together with the squared loss
``(1/2)(r - V(x) - tau log pi_theta(y|x)/pi_ref(y|x))^2``; its gradient in pi_theta is
``-(r - V(x) - tau log pi_theta/pi_ref) grad log pi_theta``. The per-token form above has the gradient
``-(A - beta_dro log pi_theta/pi_old) grad log pi_theta``: DRO's policy gradient with the advantage
``A = r - V`` and the regularizing policy pi_ref replaced by pi_old, so the quadratic term is a soft
trust region around the sampling policy (no ratio, no clip). On-policy (pi_theta = pi_old) it is
REINFORCE.

Differs from GRPO in:
  1. No importance ratio and no clip: the policy term is ``log pi_theta * A``; a quadratic
     penalty ``(beta_dro / 2) (log pi_theta - log pi_old)^2`` on every loss token (even where
     ``A = 0``) keeps the update near pi_old.
  2. Token-level normalization (``token_mean``, verl's default) and ``beta = 0`` (no reference KL).

Defaults: ``dro_beta = 0.05`` (verl requires it to be set and has no default; 0.05 is the value of
its example and unit test), GRPO's group z-score for ``A`` (verl leaves the estimator to the
caller), ``token_mean``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipped_terms, diagnostics, inputs, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "dro"
PAPER = "Offline Regularised Reinforcement Learning for Large Language Models Alignment"
PAPER_URL = "https://arxiv.org/abs/2405.19107"


@dataclasses.dataclass(frozen=True)
class Config:
    dro_beta: float = 0.05  # beta_dro: weight of the quadratic log-ratio penalty (verl's dro_beta)
    beta: float = 0.0  # reference-KL weight; 0 means no reference model
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"

    def __post_init__(self):
        if not self.dro_beta > 0:
            raise ValueError(f"dro.Config.dro_beta must be > 0 (the quadratic penalty's weight), got {self.dro_beta!r}")


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-(log pi A - beta_dro/2 (log pi - log pi_old)^2)`` per token, ``token_mean`` (+ ``beta`` * KL).

    ``clip_frac`` is 0; ``dro/log_ratio_sq``: token mean of ``(log pi - log pi_old)^2``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    lp = masked.where_mask(x["logprobs"], mask)  # log pi_theta [B, T], junk under the mask made inert
    log_ratio = lp - x["old_logprobs"]  # log pi_theta - log pi_old [B, T]
    per_token = -(lp * adv - 0.5 * cfg.dro_beta * jnp.square(log_ratio))  # l_{i,t} [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T], logged only
    metrics = {
        "clip_frac": jnp.float32(0.0),
        "dro/log_ratio_sq": masked.masked_sum(jnp.square(log_ratio), mask) / nt,
        **diagnostics.ratio_stats(ratio, mask, nt),
    }
    kl_term = clipped_terms.reference_kl(x, cfg)  # None when beta = 0
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
