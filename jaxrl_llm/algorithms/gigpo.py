"""GiGPO: Group-in-Group Policy Optimization for LLM agent training.

Citation: Lang Feng, Zhenghai Xue, Tingcong Liu, Bo An, "Group-in-Group Policy Optimization for
LLM Agent Training", 2025, https://arxiv.org/abs/2505.10978 (Sec. 4, Eqs. 3, 5-8); official code
https://github.com/langfengQ/verl-agent (``gigpo/core_gigpo.py``).

Rows: one per episode (rollout kind ``episode``, ``env.rows = "episode"``); the G episodes of a
group start from one environment seed. Per row the rollout gives the episode return
``R(tau_i) = sum_t r_t^(i)`` (``rewards``), the step rewards ``r_t`` and anchor-state ids ``s_t``
(``step_rewards``, ``anchor_ids`` [B, K], -1 after the last step) and the step of each policy
token (``step_ids`` [B, T]).

    A^E(tau_i)  = (R(tau_i) - mean_j R(tau_j)) / F_norm                        (Eq. 3, episode)
    R_t^(i)     = sum_{k >= t} gamma^(k - t) r_k^(i)                           (Eq. 5)
    G^S(s)      = {(j, t): s_t^(j) = s} within the group                       (Eq. 6, anchor groups)
    A^S(a_t^(i)) = (R_t^(i) - mean_{G^S(s_t^(i))} R) / F_norm                  (Eq. 7, step)
    A_t^(i)     = A^E(tau_i) + omega * A^S(a_t^(i))                            (Eq. 8)

``F_norm`` is 1 (``mode = "mean_norm"``) or the group's std (``"mean_std_norm"``; a singleton
anchor group has std := 1, so its A^S is 0). Every token of step t's turn gets A_t^(i). The loss is
GRPO's clipped surrogate with a k3 KL term, over the policy's tokens only.

Differs from GRPO in:
  1. Rows are whole multi-turn episodes; the loss covers only the policy's tokens (``loss_mask``).
  2. The advantage is per token ([B, T]): the episode advantage plus ``omega`` times a step
     advantage from anchor-state groups (actions taken from the same state in the group's
     episodes) over discounted step returns (Eqs. 5-8).
  3. ``mode = "mean_norm"`` (no std division) by default, as the official code; ``"mean_std_norm"``
     is the paper's other variant.
  4. ``episode_stats = "step"``: the mean/std of Eq. 3 over step rows (each episode weighted by its
     number of steps), as the code's ``compute_mean_std_cross_steps=True``; ``"trajectory"`` (default)
     is Eq. 3 as written.

Defaults and why: ``gamma = 0.95``, ``omega = 1`` (``step_advantage_w``), ``beta = 0.01`` with k3
(``low_var_kl``), ``eps = 0.2`` and ``token_mean`` aggregation: verl-agent's GiGPO launch scripts.
The invalid-action penalty (0.1 there) is the rollout's ``env.invalid_penalty``.
Rows of the one-row-per-step layout of the official code see the full history here (the policy
acted on it), not a window of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "gigpo"
PAPER = "Group-in-Group Policy Optimization for LLM Agent Training"
PAPER_URL = "https://arxiv.org/abs/2505.10978"
ROLLOUT = "episode"
MODES = ("mean_norm", "mean_std_norm")


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon (lower clip)
    eps_high: float = 0.2  # epsilon (upper clip)
    beta: float = 0.01  # KL weight (verl-agent: kl_loss_coef 0.01, low_var_kl = k3)
    kl_estimator: str = "k3"
    kl_clamp: float | None = None
    gamma: float = 0.95  # gamma, discount of the step returns (Eq. 5)
    omega: float = 1.0  # omega, weight of the step advantage (Eq. 8; step_advantage_w)
    mode: str = "mean_norm"  # F_norm: 1 ("mean_norm") or the group std ("mean_std_norm")
    episode_stats: str = "trajectory"  # Eq. 3 over episodes ("trajectory") or step rows ("step")
    std_ddof: int = 1  # std of a group (torch.std in the code)
    std_eps: float = 1e-6
    aggregation: str = "token_mean"  # one of ops.aggregation.MODES


def check_config(run_cfg: Any) -> str | None:
    """GiGPO reads per-episode rows (``env.rows = "episode"``) in groups of at least two."""
    a = run_cfg.algo
    if a.mode not in MODES:
        return f"algo.mode must be one of {MODES}, got {a.mode!r}"
    if a.episode_stats not in ("trajectory", "step"):
        return f"algo.episode_stats must be 'trajectory' or 'step', got {a.episode_stats!r}"
    if run_cfg.env.rows != "episode":
        return f"GiGPO needs env.rows='episode' (one row per episode), got {run_cfg.env.rows!r}"
    if run_cfg.train.group_size < 2:
        return "GiGPO compares the episodes of a group: train.group_size must be >= 2"
    return None


def episode_advantages(rewards: Array, num_steps: Array, group_size: int, cfg: Config) -> Array:
    """``A^E`` (Eq. 3) ``[B]``: the return minus its group mean, over ``F_norm``. With
    ``episode_stats = "step"`` each episode weighs as its number of steps (``num_steps`` [B])."""
    r = rewards.reshape(-1, group_size)  # [P, G]
    w = jnp.ones_like(r) if cfg.episode_stats == "trajectory" else num_steps.reshape(-1, group_size).astype(r.dtype)
    n = jnp.sum(w, axis=1, keepdims=True)
    mean = jnp.sum(w * r, axis=1, keepdims=True) / jnp.maximum(n, 1.0)
    centered = r - mean
    if cfg.mode == "mean_std_norm":
        var = jnp.sum(w * centered**2, axis=1, keepdims=True) / jnp.maximum(n - cfg.std_ddof, 1.0)
        equal = jnp.max(r, axis=1, keepdims=True) == jnp.min(r, axis=1, keepdims=True)
        centered = jnp.where(equal, 0.0, centered / (jnp.sqrt(var) + cfg.std_eps))
    return centered.reshape(-1)


def step_returns(step_rewards: Array, valid: Array, gamma: float) -> Array:
    """``R_t = sum_{k >= t} gamma^(k - t) r_k`` (Eq. 5) ``[B, K]`` over the valid steps."""
    K = step_rewards.shape[1]
    k = jnp.arange(K)
    discount = jnp.where(k[None, :] >= k[:, None], gamma ** (k[None, :] - k[:, None]).astype(jnp.float32), 0.0)
    return (step_rewards * valid) @ discount.T  # [B, K]


def step_advantages(returns: Array, anchor_ids: Array, valid: Array, cfg: Config) -> Array:
    """``A^S`` (Eqs. 6-7) ``[B, K]``: each valid step's return minus the mean return of its anchor
    group (equal ``anchor_ids``; ids in ``[0, B*K)``), over ``F_norm``; 0 on invalid steps."""
    B, K = returns.shape
    n = B * K
    seg = jnp.where(valid > 0, jnp.clip(anchor_ids, 0, n - 1), n).reshape(-1)  # invalid -> bin n
    v, r = valid.reshape(-1), (returns * valid).reshape(-1)
    count = jax.ops.segment_sum(v, seg, num_segments=n + 1)
    mean = jax.ops.segment_sum(r, seg, num_segments=n + 1) / jnp.maximum(count, 1.0)
    centered = (r - mean[seg]) * v
    if cfg.mode == "mean_std_norm":
        var = jax.ops.segment_sum(centered**2, seg, num_segments=n + 1) / jnp.maximum(count - cfg.std_ddof, 1.0)
        std = jnp.where(count > 1, jnp.sqrt(var), 1.0)  # a singleton group: std := 1
        centered = centered / (std[seg] + cfg.std_eps)
    return centered.reshape(B, K)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_t = A^E + omega * A^S`` (Eq. 8) on every token of step t: ``[B, T]``."""
    G = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)  # R(tau) [B]
    anchor_ids = jnp.asarray(rollout["anchor_ids"], jnp.int32)  # [B, K]
    valid = (anchor_ids >= 0).astype(jnp.float32)  # [B, K]
    num_steps = jnp.sum(valid, axis=1)  # [B]
    a_e = episode_advantages(rewards, num_steps, G, cfg)  # [B]
    returns = step_returns(jnp.asarray(rollout["step_rewards"], jnp.float32), valid, cfg.gamma)  # [B, K]
    a_s = step_advantages(returns, anchor_ids, valid, cfg)  # [B, K]
    per_step = a_e[:, None] + cfg.omega * a_s  # [B, K]
    step_ids = jnp.asarray(rollout["step_ids"], jnp.int32)  # [B, T]
    K = per_step.shape[1]
    on_step = (step_ids >= 0) & (step_ids < K)
    adv = jnp.where(
        on_step, jnp.take_along_axis(per_step, jnp.clip(step_ids, 0, K - 1), axis=1), a_e[:, None]
    )  # [B, T]
    metrics = adv_ops.group_stats(adv, rewards, rollout["mask"], G)
    metrics["adv/frac_nonzero_step"] = jnp.sum((jnp.abs(a_s) > 1e-6) * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    metrics["adv/step_abs_mean"] = jnp.sum(jnp.abs(a_s) * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    return adv, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """GRPO's clipped surrogate with the per-token advantages, plus ``beta`` * KL; global normalizers."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token mean
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random episode structure for the invariant suite: K = 3 steps per row (the last one missing
    on every other row), tokens assigned to steps, sparse step rewards, anchors shared in a group."""
    K = 3
    k1, k2, k3 = jax.random.split(key, 3)
    step_ids = jax.random.randint(k1, (batch_size, seq_len), 0, K)
    step_rewards = jax.random.bernoulli(k2, 0.4, (batch_size, K)).astype(jnp.float32)
    groups = jnp.arange(batch_size)[:, None] // group_size
    anchors = groups * 2 + jax.random.randint(k3, (batch_size, K), 0, 2)  # two states per group
    missing = (jnp.arange(batch_size)[:, None] % 2 == 1) & (jnp.arange(K)[None, :] == K - 1)
    anchors = jnp.where(missing, -1, anchors).astype(jnp.int32)
    step_ids = jnp.where(missing.any(axis=1, keepdims=True), jnp.minimum(step_ids, K - 2), step_ids)
    return {
        "step_ids": step_ids.astype(jnp.int32),
        "step_rewards": jnp.where(missing, 0.0, step_rewards),
        "anchor_ids": anchors,
    }
