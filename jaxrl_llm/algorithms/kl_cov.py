"""KL-Cov: a |log-ratio| penalty on the few tokens with the largest advantage/log-prob covariance.

Citation: Ganqu Cui, Yuchen Zhang, Jiacheng Chen, Lifan Yuan, Zhi Wang, Yuxin Zuo, Haozhan Li, Yuchen
Fan, Huayu Chen, Weize Chen, Zhiyuan Liu, Hao Peng, Lei Bai, Wanli Ouyang, Yu Cheng, Bowen Zhou,
Ning Ding, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", 2025,
https://arxiv.org/abs/2505.22617 (Sec. 5, Eq. 12); code https://github.com/PRIME-RL/Entropy-Mechanism-of-RL.
verl: ``verl/trainer/ppo/core_algos.py: compute_policy_loss_kl_cov`` (``loss_mode=kl_cov``,
``kl_cov_ratio``, ``ppo_kl_coef``); TRL: none.

Objective (maximized; ``loss`` returns its negative):

    Cov_{i,t} = (A_{i,t} - mean A) (log pi(o_{i,t}) - mean log pi)          (means over the batch's tokens)
    S = the top-n tokens by Cov_{i,t},  n = max(floor(k * N), 1)
    J = E[ (1 / sum_i |o_i|) sum_{i,t} ( rho_{i,t} A_{i,t} - 1[(i,t) in S] * beta_cov * |log rho_{i,t}| ) ]

Differs from GRPO in:
  1. NO ratio clipping: the surrogate is the plain ``rho A``; the trust region is a KL-like
     penalty ``beta_cov |log pi_theta - log pi_old|`` applied only to the covariance-selected ``S``
     (verl's ``abs`` estimator, ``ops.kl.abs_kl``), which keeps entropy from collapsing.
  2. Token-level normalization (``token_mean``, verl's default) and ``beta = 0`` (no reference KL).

Where this differs from verl, and why: ``S`` is chosen ONCE per rollout from the whole batch
(``batch_extras``, with ``old_logprobs``, equal to the current log-probs at the first update), not
per micro-batch from the current log-probs as verl does, whose selection, means and count depend on
the micro-batch split (the partition contract forbids that). Ties in the top-n go to the lower
flat index.

Defaults (verl's): ``kl_cov_ratio = 2e-4``, ``beta_cov = 1`` (verl's ``ppo_kl_coef``), GRPO's
group z-score. The paper reports ``k`` per model size (e.g. 2e-3 for its 7B runs); set it per run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, covariance, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "kl_cov"
PAPER = "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models"
PAPER_URL = "https://arxiv.org/abs/2505.22617"


@dataclasses.dataclass(frozen=True)
class Config:
    kl_cov_ratio: float = 2e-4  # k, fraction of the batch's tokens penalized
    beta_cov: float = 1.0  # weight of |log rho| on the selected tokens (verl's ppo_kl_coef)
    beta: float = 0.0  # reference-KL weight; 0 means no reference model
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"

    def __post_init__(self):
        if not 0 < self.kl_cov_ratio <= 1:
            raise ValueError(f"kl_cov.Config.kl_cov_ratio must be in (0, 1], got {self.kl_cov_ratio!r}")


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO group z-score ``(r_i - mean) / (std(ddof) + std_eps)``: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``cov_select`` ``[B, T]`` (1 for the top-n covariance tokens ``S``), from the whole rollout's
    advantages and ``old_logprobs`` (``sampler_logprobs`` when absent; ``ops.covariance.rollout_selection``)."""
    adv, _ = advantages(rollout, cfg)
    return {"cov_select": covariance.rollout_selection(rollout, adv, cfg.kl_cov_ratio, f"{NAME}.batch_extras")}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-rho A + 1[S] beta_cov |log rho|`` per token, ``token_mean`` (no clip).

    Needs ``batch["cov_select"]`` (``batch_extras``). ``clip_frac`` is 0; ``cov_frac``: selected tokens
    over ``num_tokens``; ``kl_cov/abs_log_ratio``: token mean of ``|log rho|``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    inputs.require(batch, ("cov_select",), f"{NAME} (from kl_cov.batch_extras)")
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    select = masked.where_mask(inputs.token_array(batch, "cov_select", mask, NAME), mask)  # 1[S] [B, T]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    abs_lr = kl.abs_kl(masked.where_mask(x["logprobs"], mask), x["old_logprobs"])  # |log rho| [B, T]
    per_token = -ratio * adv + cfg.beta_cov * select * abs_lr  # -rho A + 1[S] beta_cov |log rho| [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    metrics = {
        "clip_frac": jnp.float32(0.0),
        "cov_frac": masked.masked_sum(select, mask) / nt,
        "kl_cov/abs_log_ratio": masked.masked_sum(abs_lr, mask) / nt,
        **diagnostics.ratio_stats(ratio, mask, nt),
    }
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
