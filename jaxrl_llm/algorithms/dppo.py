"""DPPO: Divergence Proximal Policy Optimization (Binary-TV and Binary-KL trust regions).

Citation: Penghui Qi, Xiangxin Zhou, Zichen Liu, Tianyu Pang, Chao Du, Min Lin, Wee Sun Lee,
"Rethinking the Trust Region in LLM Reinforcement Learning", 2026, https://arxiv.org/abs/2602.04879;
code https://github.com/sail-sg/Stable-RL.
verl: ``compute_policy_loss_dppo_tv`` / ``compute_policy_loss_dppo_kl`` (``loss_mode=dppo_tv|dppo_kl``,
in the Stable-RL fork's ``verl/trainer/ppo/core_algos.py``; not in verl 0.9's main tree);
TRL: none in ``trl/trainer`` (an experimental ``DPPOTrainer`` was proposed in TRL PR #5117).

Objective (maximized; ``loss`` returns its negative), with ``p = pi_theta(o_t)``, ``q = pi_old(o_t)``:

    J = E[ sum_{i,t} M_{i,t} * sg[min(rho_{i,t}, C)] * A_i * log pi_theta(o_{i,t}) ] / (G * L)
    M_{i,t} = 1[ A_i > 0 ? D^+ <= delta_high : D^- <= delta_low ]                  (trust-region mask)
    Binary-TV:  D^+ = p - q,  D^- = q - p
    Binary-KL:  D = q log(q/p) + (1-q) log((1-q)/(1-p))  (the KL of the two Bernoulli "this token or not"),
                counted only in the unsafe direction (p > q for A > 0, p < q for A < 0)

PPO's ratio clip is a single-sample proxy of the policy divergence; it over-constrains rare tokens
(1e-5 -> 1e-3 is a ratio of 100) and under-constrains frequent ones (0.99 -> 0.8 is a ratio of 0.8).
DPPO masks a token's gradient when the DIVERGENCE of its Bernoulli projection leaves the trust
region in the direction the advantage pushes it. The gradient of the kept tokens is
``sg[rho] A grad log pi = A grad rho``: an importance-weighted policy gradient.

Differs from GRPO in:
  1. The trust region is on the probability difference (TV) or the binary KL, not on the ratio;
     a token outside it is dropped (mask), not clipped.
  2. The surrogate is ``sg[min(rho, C)] A log pi_theta`` (truncated-IS policy gradient).
  3. Dr.GRPO's advantage (no std division) and ``seq_mean_token_sum_norm`` aggregation, the
     settings of the authors' recipe (``norm_adv_by_std_in_grpo=False``,
     ``loss_agg_mode=seq-mean-token-sum-norm``); ``beta = 0``.

Defaults (the authors' verl recipe ``run_qwen30b_dppo.sh``): ``divergence = "tv"`` with
``delta_low = delta_high = 0.15``; for ``divergence = "binary_kl"`` the recipe uses 0.05 (set
``delta_low = delta_high = 0.05``). ``ratio_cap = None``: the recipe disables the truncation
(``clip_ratio_c = 10000``); verl's code default is 20. The recipe measures the divergence against
the ROLLOUT policy (``bypass_mode=True``); here ``old_logprobs`` are the trainer's recomputed
log-probs (equal to the sampler's up to numerics; ``train.rollout_correction`` handles the rest).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "dppo"
PAPER = "Rethinking the Trust Region in LLM Reinforcement Learning"
PAPER_URL = "https://arxiv.org/abs/2602.04879"
DIVERGENCES = ("tv", "binary_kl")
_EPS = 1e-8  # inside the binary-KL logs (verl's)


@dataclasses.dataclass(frozen=True)
class Config:
    divergence: str = "tv"  # "tv" (DPPO-Binary-TV) or "binary_kl" (DPPO-Binary-KL)
    delta_low: float = 0.15  # delta for A <= 0 (recipe: TV 0.15, binary KL 0.05)
    delta_high: float = 0.15  # delta for A > 0
    ratio_cap: float | None = None  # C, truncation of the IS weight; None = none (recipe), verl code: 20
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    norm_const: float | None = None  # L of seq_mean_token_sum_norm; None = T
    aggregation: str = "seq_mean_token_sum_norm"

    def __post_init__(self):
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"dppo.Config.divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        if not (self.delta_low > 0 and self.delta_high > 0):
            raise ValueError(
                f"dppo.Config: delta_low and delta_high must be > 0, got {self.delta_low}, {self.delta_high}"
            )


def binary_kl(logprobs: Array, old_logprobs: Array) -> Array:
    """``q log(q/p) + (1-q) log((1-q+eps)/(1-p+eps))``, ``p = pi_theta``, ``q = pi_old`` (probabilities
    capped at 1). The KL between the Bernoulli distributions "sample this token or not"."""
    lp, lq = jnp.minimum(logprobs, 0.0), jnp.minimum(old_logprobs, 0.0)
    p, q = jnp.exp(lp), jnp.exp(lq)
    return q * (lq - lp) + (1.0 - q) * jnp.log((1.0 - q + _EPS) / (1.0 - p + _EPS))


def trust_region_mask(logprobs: Array, old_logprobs: Array, advantages: Array, cfg: Config) -> Array:
    """``M_{i,t}`` (module docstring) as f32 with no gradient. ``[B, T]``."""
    lp, lq = jax.lax.stop_gradient(logprobs), jax.lax.stop_gradient(old_logprobs)
    p, q = jnp.exp(jnp.minimum(lp, 0.0)), jnp.exp(jnp.minimum(lq, 0.0))
    if cfg.divergence == "tv":
        keep_pos = (p - q) <= cfg.delta_high
        keep_neg = (p - q) >= -cfg.delta_low
    else:
        d = binary_kl(lp, lq)
        keep_pos = (d <= cfg.delta_high) | (p <= q)
        keep_neg = (d <= cfg.delta_low) | (p >= q)
    return jnp.where(advantages > 0, keep_pos, keep_neg).astype(jnp.float32)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Dr.GRPO's ``A_i = r_i - mean_group r``: ``[B]`` (the authors' recipe; no std division)."""
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    a = adv_ops.group_centered(rewards, g)
    return a, adv_ops.group_stats(a, rewards, rollout["mask"], g)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-M sg[min(rho, C)] A log pi_theta`` per token, aggregated by ``cfg.aggregation``.

    ``clip_frac/high`` / ``clip_frac/low``: tokens masked out of the trust region with ``A > 0`` /
    ``A <= 0``, over ``num_tokens``; ``clip_frac/cap``: kept tokens whose weight hit ``C``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    cap = jnp.inf if cfg.ratio_cap is None else cfg.ratio_cap
    weight = jax.lax.stop_gradient(jnp.minimum(ratio, cap))  # sg[min(rho, C)] [B, T]
    keep = trust_region_mask(masked.where_mask(x["logprobs"], mask), x["old_logprobs"], adv, cfg)  # M [B, T]
    per_token = -keep * weight * adv * x["logprobs"]  # -M sg[rho] A log pi [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns, cfg.norm_const)
    on, dropped = mask != 0, keep == 0
    metrics = {
        "clip_frac/high": jnp.sum(on & dropped & (adv > 0)) / nt,
        "clip_frac/low": jnp.sum(on & dropped & (adv <= 0)) / nt,
        "clip_frac/cap": jnp.sum(on & ~dropped & (ratio > cap)) / nt,
    }
    metrics["clip_frac"] = metrics["clip_frac/high"] + metrics["clip_frac/low"]
    metrics.update(diagnostics.ratio_stats(ratio, mask, nt))
    kl_term = (
        kl.penalty(
            x["logprobs"],
            x["ref_logprobs"],
            mask,
            cfg.kl_estimator,
            cfg.aggregation,
            nt,
            ns,
            cfg.norm_const,
            cfg.kl_clamp,
        )
        if cfg.beta > 0
        else None
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)
