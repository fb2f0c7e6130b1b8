"""TSPO: Temporal Sampling Policy Optimization (arXiv 2508.04369, code
https://github.com/Hui-design/TSPO, ``src/open_tspo/trainer/tspo_trainer.py``).

A frame selector (``selector.TemporalAgent``) is the policy; the video answerer is frozen and
answers once per subset, so the only randomness in a group is the frame selection. Per question:

1. G independent Gumbel-top-K subsets S_i of the scores s / tau_k (no shared noise).
2. R_i = R_A + R_T: R_A = 1 iff the answer is right, R_T = |S_i ∩ segment| / K (needle data).
3. A_i = (R_i - mean(R)) / (std_unbiased(R) + 1e-4)                         (GRPO, per group)
4. L = -(1/G) sum_i A_i mean_{j in S_i} exp(log pi(j) - sg[log pi(j)]),
   log pi(j) = log softmax(s)_j                                   (product-of-marginals surrogate)

How this differs from GRPO on an LLM:

1. The action is a K-subset of frames, not tokens; its log-probability is the sum of per-frame
   softmax marginals, not the (exact) Plackett-Luce probability; ``logprob="plackett_luce"``
   swaps in the exact chain rule over the draw order.
2. One update per batch, so the ratio is 1 in the forward pass (the loss value is -mean(A)) and
   the gradient is on-policy REINFORCE with the GRPO advantage; no clipping, no KL.
3. The temperature in s = (...) / tau is annealed linearly: tau_k = tau0 - (tau0 - 0.01) k / K_max.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_llm.video import needle, selector


@dataclasses.dataclass(frozen=True)
class Config:
    """TSPO hyper-parameters, named after the paper's symbols (defaults: the reference's)."""

    k: int = 8  # K frames per subset (16 for needle data in the reference; the spec's toy uses 8)
    group_size: int = 8  # G subsets per question
    tau0: float = 0.025
    tau_min: float = 0.01
    anneal: bool = True  # False: tau stays tau0
    total_steps: int = 300  # K_max of the schedule
    learning_rate: float = 5e-4
    eps: float = 1e-4  # advantage denominator
    logprob: str = "marginal"  # "marginal" (TSPO) or "plackett_luce"

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k={self.k} must be >= 1")
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size} must be >= 2 (unbiased std)")
        if not 0 < self.tau_min <= self.tau0:
            raise ValueError(f"need 0 < tau_min={self.tau_min} <= tau0={self.tau0}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps={self.total_steps} must be >= 1")
        if self.logprob not in ("marginal", "plackett_luce"):
            raise ValueError(f"logprob={self.logprob!r} must be 'marginal' or 'plackett_luce'")


def tau_schedule(step: jax.Array | int, cfg: Config) -> jax.Array:
    """tau_k = tau0 - (tau0 - tau_min) * k / K_max (k clipped to [0, K_max]); tau0 if not annealed."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / cfg.total_steps, 0.0, 1.0)
    tau = cfg.tau0 - (cfg.tau0 - cfg.tau_min) * frac
    return tau if cfg.anneal else jnp.full_like(tau, cfg.tau0)


def advantages(rewards: jax.Array, eps: float = 1e-4) -> jax.Array:
    """GRPO advantages over the last axis: (R - mean) / (std_unbiased + eps); [P, G] -> [P, G]."""
    if rewards.shape[-1] < 2:
        raise ValueError(f"group size {rewards.shape[-1]} must be >= 2 for the unbiased std")
    mean = rewards.mean(axis=-1, keepdims=True)  # [P, 1]
    std = rewards.std(axis=-1, ddof=1, keepdims=True)  # [P, 1]
    return (rewards - mean) / (std + eps)


def loss(logprobs: jax.Array, advantages: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L = -(1/B) sum_i A_i mean_{j in S_i} exp(logpi_ij - sg[logpi_ij]).

    ``logprobs`` [B, K]: log pi of each selected frame of subset i (B = P * G subsets);
    ``advantages`` [B]. The forward value is -mean(A); the gradient is REINFORCE's.
    """
    if logprobs.ndim != 2 or advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"logprobs {logprobs.shape} must be [B, K] and advantages {advantages.shape} [B]")
    ratio = jnp.exp(logprobs - jax.lax.stop_gradient(logprobs))  # [B, K], 1 in the forward pass
    per_subset = ratio.mean(axis=-1)  # [B]
    total = -(advantages * per_subset).mean()
    return total, {"loss/policy": total, "logprob/mean": logprobs.mean()}


def subset_logprobs(scores: jax.Array, indices: jax.Array, draw_order: jax.Array, cfg: Config) -> jax.Array:
    """Per-frame log pi [..., K] of the subsets under ``cfg.logprob``; ``scores`` [..., T]."""
    if cfg.logprob == "marginal":
        return selector.marginal_logprobs(scores, indices)
    return selector.plackett_luce_logprobs(scores, draw_order)


def rewards(
    key: jax.Array, indices: jax.Array, videos: needle.Videos, needle_cfg: needle.Config
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(R, R_A, R_T), each [P, G], for subsets ``indices`` [P, G, K] of the P ``videos``."""
    p, g, _ = indices.shape
    mask = jnp.broadcast_to(jnp.asarray(videos.mask)[:, None, :], (p, g, needle_cfg.num_frames))  # [P, G, T]
    answer = jnp.broadcast_to(jnp.asarray(videos.answer)[:, None], (p, g))  # [P, G]
    pred = needle.answerer(key, indices, mask, answer, needle_cfg.num_options, needle_cfg.min_hits)
    r_a = (pred == answer).astype(jnp.float32)
    r_t = needle.temporal_reward(indices, mask)
    return r_a + r_t, r_a, r_t


def make_train_step(
    graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, cfg: Config, needle_cfg: needle.Config
) -> Callable:
    """``step(params, opt_state, videos, key, step) -> (params, opt_state, metrics)``, pure (jit it).

    ``videos`` is a ``needle.Videos`` of P questions (arrays); ``step`` the global step (for tau).
    """

    def scores_fn(params, videos, tau):
        return nnx.merge(graphdef, params)(jnp.asarray(videos.frames), jnp.asarray(videos.question), tau)

    def step(params, opt_state, videos: needle.Videos, key: jax.Array, step: jax.Array):
        p, t = videos.mask.shape
        g = cfg.group_size
        tau = tau_schedule(step, cfg)
        key_sample, key_answer = jax.random.split(key)
        scores = jax.lax.stop_gradient(scores_fn(params, videos, tau))  # [P, T]
        group_scores = jnp.broadcast_to(scores[:, None, :], (p, g, t))  # [P, G, T]
        indices, draw_order = selector.gumbel_topk(key_sample, group_scores, cfg.k)  # [P, G, K]
        r, r_a, r_t = rewards(key_answer, indices, videos, needle_cfg)  # [P, G]
        adv = advantages(r, cfg.eps)  # [P, G]

        def objective(params):
            s = scores_fn(params, videos, tau)  # [P, T]
            s = jnp.broadcast_to(s[:, None, :], (p, g, t))  # [P, G, T]
            logprobs = subset_logprobs(s, indices, draw_order, cfg)  # [P, G, K]
            return loss(logprobs.reshape(p * g, cfg.k), adv.reshape(p * g))

        (total, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {
            **metrics,
            "loss": total,
            "reward/mean": r.mean(),
            "reward/answer": r_a.mean(),
            "reward/temporal": r_t.mean(),
            "frac_zero_std_groups": (r.std(axis=-1) < 1e-6).mean(),
            "grad_norm": optax.tree.norm(grads),
            "tau": tau,
        }
        return params, opt_state, metrics

    return step
