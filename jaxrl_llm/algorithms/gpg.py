"""GPG: Group Policy Gradient.

Citation: Xiangxiang Chu, Hailang Huang, Xiao Zhang, Fei Wei, Yong Wang, "GPG: A Simple and Strong
Reinforcement Learning Baseline for Model Reasoning", 2025, https://arxiv.org/abs/2504.02546;
code https://github.com/AMAP-ML/GPG.
verl: ``verl/trainer/ppo/core_algos.py: compute_gpg_outcome_advantage`` (``adv_estimator=gpg``) and
``compute_policy_loss_gpg`` (``loss_mode=gpg``); TRL: none.

Objective (maximized; ``loss`` returns its negative):

    J = E[ (1 / sum_i |o_i|) sum_i sum_t A_i log pi_theta(o_{i,t}) ]
    A_i = alpha * (r_i - mean_group r) / F_norm

Plain REINFORCE with a group-mean baseline: no importance ratio, no clip, no critic, no reference
model. ``alpha`` rescales the batch gradient for the rows that carry none:

  * ``alpha_mode = "nonzero"`` (verl): ``alpha = B / max(#{i : r_i != 0}, 1)``;
  * ``alpha_mode = "valid"``: ``alpha = B / max(#{i : group of i has reward spread}, 1)``, i.e.
    ``B / (B - M)`` with ``M`` the rows of zero-std groups (their advantage is 0, so they dilute the
    mean gradient; the paper's motivation for ``alpha``);
  * ``alpha_mode = "none"``: ``alpha = 1``.

Differs from GRPO in:
  1. No importance ratio and no clipping: the surrogate is ``A log pi_theta`` (off-policy data is
     not corrected; GPG is meant for one update per rollout).
  2. No std division (``F_norm = 1``), and the batch-level gradient rescale ``alpha``.
  3. Token-level normalization (``token_mean``, verl's default for GPG) and ``beta = 0``.

Defaults: ``alpha_mode = "nonzero"`` and ``f_norm = 1`` (verl's estimator, the peer a user moves
from), ``token_mean``, no KL. With binary 0/1 rewards verl's count is the number of correct
responses, which differs from the zero-std-group count of ``"valid"``; both are offered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "gpg"
PAPER = "GPG: A Simple and Strong Reinforcement Learning Baseline for Model Reasoning"
PAPER_URL = "https://arxiv.org/abs/2504.02546"
ALPHA_MODES = ("nonzero", "valid", "none")


@dataclasses.dataclass(frozen=True)
class Config:
    alpha_mode: str = "nonzero"  # how alpha is counted (module docstring); one of ALPHA_MODES
    f_norm: float = 1.0  # F_norm, constant divisor of the advantage
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "token_mean"

    def __post_init__(self):
        if self.alpha_mode not in ALPHA_MODES:
            raise ValueError(f"gpg.Config.alpha_mode must be one of {ALPHA_MODES}, got {self.alpha_mode!r}")
        if not self.f_norm > 0:
            raise ValueError(f"gpg.Config.f_norm must be > 0, got {self.f_norm!r}")


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = alpha (r_i - mean_group r) / F_norm``: ``[B]``; metrics add ``gpg/alpha``."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    b = rewards.shape[0]
    if cfg.alpha_mode == "nonzero":
        alpha = b / jnp.maximum(jnp.sum(rewards != 0), 1)  # verl: bsz / count_nonzero(scores)
    elif cfg.alpha_mode == "valid":
        valid = ~jnp.repeat(adv_ops.zero_std_groups(rewards, g), g)
        alpha = b / jnp.maximum(jnp.sum(valid), 1)  # B / (B - M)
    else:
        alpha = jnp.float32(1.0)
    a = alpha * adv_ops.group_centered(rewards, g) / cfg.f_norm  # A_i [B]
    metrics = adv_ops.group_stats(a, rewards, rollout["mask"], g)
    metrics["gpg/alpha"] = jnp.asarray(alpha, jnp.float32)
    return a, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-A log pi_theta`` per token, ``token_mean`` over the whole batch (no ratio, no clip).

    ``clip_frac`` is 0; ``ratio/*`` report ``pi_theta / pi_old`` for monitoring only.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    per_token = -adv * x["logprobs"]  # -A log pi_theta [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # monitoring only
    metrics = {"clip_frac": jnp.float32(0.0), **diagnostics.ratio_stats(ratio, mask, nt)}
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
