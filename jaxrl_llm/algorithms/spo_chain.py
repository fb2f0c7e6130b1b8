"""SPO-chain: segment advantages from Monte Carlo continuations at low-probability cutpoints.

Yiyang Guo, Lu Wang, et al., "Segment Policy Optimization: Effective Segment-Level Credit
Assignment in RL for Large Language Models", arXiv 2505.23564 (2025),
https://arxiv.org/abs/2505.23564. Official code: https://github.com/AIFrameResearch/SPO
(``episode_generators/math_episode_generator_with_mc_advantages.py``, ``trainers/ppo_trainer.py``).

Objective. For each sampled trajectory o (length T, sampler probabilities q_t), the cutpoints are

    L = {t : q_t < rho},   C = L[::K] - 1      (the state just before every K-th low-prob token)

and N continuations from each cut prefix o_{<=c} estimate ``V(c) = (1/N) sum_n R(o_{<=c} + cont_n)``
(``rollouts/chain.py``). With ``V(T - 1) := R(o)``, the tokens of segment ``(c_{k-1}, c_k]`` get

    A_t = V(c_k) - V(c_{k-1}),   the last segment (c_last, T - 1] gets R - V(c_last),

and the tokens up to the first cut get 0 (no prompt value), unless the first cut is c = -1 (the
first token is low-probability), whose value is then the prompt's. Tokens with ``q_t >= rho``
get 0 and leave the loss (probability mask); the kept tokens are whitened over the batch,
``(A_t - mu) / sqrt(sigma^2 + 1e-8)``. Loss: PPO-clip (log-ratio clamped to [-10, 10]),
token-mean over the kept tokens, plus ``beta`` * k3 KL as a loss term.

Differs from GRPO in:
  1. Rollout: after the G trajectories per prompt, N Monte Carlo continuations from every
     cutpoint prefix (``ROLLOUT = "chain"``; identical prefixes deduplicated; continuations start
     from the trajectory's KV cache and count in the sampled tokens).
  2. Advantage: per segment between cutpoints, a difference of MC values, per token; not one
     group-normalized reward per completion.
  3. Probability mask: tokens with ``q_t >= rho`` get no advantage and no loss.
  4. Normalization: whitening over the batch's kept tokens, not per group.
  5. KL: k3 as a loss term, beta = 0.05 (``init_kl_coef`` of the code's MATH config).

Code vs paper, and the choices here:
  * The segment boundary is placed before the low-probability token (the code): that token starts
    a segment. The first segment gets 0 when no prompt value was estimated (the code), not
    ``V(s_1) - V(s_0)``.
  * Unfinished continuations get ``unfinished_penalty`` as reward (0 in the code's configs).
  * A continuation's length is capped so that prefix + continuation fits ``max_new_tokens``.
  * q_t is the sampler's probability under the unmodified policy (``policy_logprobs``), which the
    trainer also uses as pi_old.

Defaults: rho = 0.9, K = 5 ("int5"), N = 9 (Rho-1.1B/GSM8K, ``9rolls.jsonnet``), eps = 0.2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "spo_chain"
PAPER = "Segment Policy Optimization (SPO-chain)"
PAPER_URL = "https://arxiv.org/abs/2505.23564"
ROLLOUT = "chain"


@dataclasses.dataclass(frozen=True)
class Config:
    """SPO-chain hyperparameters (paper symbols in comments; defaults from the official configs)."""

    prob_threshold: float = 0.9  # rho: cutpoints at tokens with q < rho; tokens with q >= rho masked
    cutpoint_interval: int = 5  # K: every K-th low-probability token
    num_continuations: int = 9  # N: Monte Carlo continuations per cut prefix
    unfinished_penalty: float = 0.0  # reward of a continuation that hits the length cap
    whiten: bool = True
    whiten_eps: float = 1e-8
    eps_low: float = 0.2
    eps_high: float = 0.2
    max_log_ratio: float = 10.0
    beta: float = 0.05
    kl_estimator: str = "k3"
    kl_clamp: float | None = None
    aggregation: str = "token_mean"

    def __post_init__(self):
        if not 0.0 < self.prob_threshold <= 1.0:
            raise ValueError(f"spo_chain.Config.prob_threshold must be in (0, 1], got {self.prob_threshold}")
        if self.cutpoint_interval < 1 or self.num_continuations < 1:
            raise ValueError(
                f"spo_chain.Config: cutpoint_interval and num_continuations must be >= 1, got "
                f"{self.cutpoint_interval}, {self.num_continuations}"
            )
        if self.aggregation not in aggregation.MODES:
            raise ValueError(
                f"spo_chain.Config.aggregation must be one of {aggregation.MODES}, got {self.aggregation!r}"
            )


def segment_advantages(
    cut_mask: Array, cut_values: Array, prompt_value: Array, has_prompt_value: Array, rewards: Array, mask: Array
) -> Array:
    """Token advantages [B, T] before the probability mask (module docstring).

    cut_mask / cut_values [B, T]: 1 and V(c) at each cut index c >= 0; prompt_value /
    has_prompt_value [B]: V(-1) when the first cut is -1; rewards [B]; mask [B, T] the completion
    (right-padded). Token t's segment ends at the first cut c_k >= t (or at the last token, valued
    R) and starts after the last cut before t (or at -1 with the prompt value); without a start
    value its advantage is 0.
    """
    B, T = mask.shape
    pos = jnp.arange(T)[None, :]  # [1, T]
    real = mask > 0
    last = jnp.max(jnp.where(real, pos, -1), axis=1)  # [B] last real index
    is_end = (cut_mask > 0) & real | (pos == last[:, None])  # cuts, plus V(T-1) := R
    value = jnp.where(pos == last[:, None], rewards[:, None], cut_values)  # [B, T]
    nxt = jax.lax.cummin(jnp.where(is_end, pos, T), axis=1, reverse=True)  # first end >= t
    prev_cut = jax.lax.cummax(jnp.where((cut_mask > 0) & real, pos, -1), axis=1)  # last cut <= t
    prev = jnp.concatenate([jnp.full((B, 1), -1), prev_cut[:, :-1]], axis=1)  # last cut < t
    v_next = jnp.take_along_axis(value, jnp.clip(nxt, 0, T - 1), axis=1)
    v_prev = jnp.take_along_axis(value, jnp.clip(prev, 0, T - 1), axis=1)
    v_prev = jnp.where(prev >= 0, v_prev, prompt_value[:, None])
    has_base = (prev >= 0) | (has_prompt_value[:, None] > 0)
    return jnp.where(real & has_base & (nxt < T), v_next - v_prev, 0.0)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Token advantages [B, T]: ``segment_advantages``, then the probability mask (``q_t < rho``
    with ``q = exp(old_logprobs)``, else ``sampler_logprobs``), then whitening over the kept
    tokens of the whole batch. Reads ``cut_mask``, ``cut_values``, ``prompt_value``,
    ``has_prompt_value`` (``rollouts/chain.py``), ``rewards`` and the loss mask."""
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)  # [B, T]
    completion = jnp.asarray(rollout["mask"], jnp.float32)  # the segments span every completion token
    old = rollout["old_logprobs"] if "old_logprobs" in rollout else rollout["sampler_logprobs"]
    adv = segment_advantages(
        rollout["cut_mask"],
        rollout["cut_values"],
        rollout["prompt_value"],
        rollout["has_prompt_value"],
        rollout["rewards"],
        completion,
    )  # A_t [B, T]
    keep = mask * (jnp.exp(masked.where_mask(old, mask)) < cfg.prob_threshold)  # prob mask [B, T]
    adv = adv * keep
    if cfg.whiten:
        stat_mask = jnp.where(jnp.sum(keep) > 0, keep, mask)  # all tokens when none is kept
        adv = masked.whiten(adv, stat_mask, eps=cfg.whiten_eps) * keep
    metrics = adv_ops.stats(adv, keep)
    # Over the completion: the ``chain`` kind's ``loss_mask`` already excludes the masked tokens.
    metrics["frac_prob_masked"] = 1.0 - jnp.sum(keep) / jnp.maximum(jnp.sum(completion), 1.0)
    return adv, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO-clip (log-ratio clamped to ``max_log_ratio``) + ``beta`` * KL, token-mean over ``mask``
    (the prob-masked completion tokens) with the global normalizers."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask, cfg.max_log_ratio)  # r_t [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(r A, clip(r) A) [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token-mean
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random cutpoints and MC values for the invariant suite."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "cut_mask": (jax.random.uniform(k1, (batch_size, seq_len)) < 0.4).astype(jnp.float32),
        "cut_values": jax.random.uniform(k2, (batch_size, seq_len)),
        "prompt_value": jax.random.uniform(k3, (batch_size,)),
        "has_prompt_value": (jnp.arange(batch_size) % 2).astype(jnp.float32),
    }
