"""PPO for language models, with a critic, GAE, a clipped value loss and optional dual-clip.

Citation: John Schulman, Filip Wolski, Prafulla Dhariwal, Alec Radford, Oleg Klimov, "Proximal
Policy Optimization Algorithms", 2017, https://arxiv.org/abs/1707.06347; the LLM setup follows
Shengyi Huang et al., "The N+ Implementation Details of RLHF with PPO: A Case Study on TL;DR
Summarization", 2024 (arXiv 2403.17031); dual-clip is Ye et al. 2020 (arXiv 1912.09729).

Objective (loss, minimized). Per-token reward, GAE over the critic values at sampling time V_old:

    r_t = -beta * (log pi_old(y_t) - log pi_ref(y_t)) + 1[t = last] * score
    delta_t = r_t + gamma V_old(s_{t+1}) - V_old(s_t),  A_t = delta_t + gamma lam A_{t+1},  R_t = A_t + V_old(s_t)
    A <- whiten(A) over all tokens of the batch
    L_pg = token_mean( max(-A_t rho_t, -A_t clip(rho_t, 1-eps_low, 1+eps_high)) )   (dual-clip: for
           A_t < 0 the per-token loss is also capped at -clip_c A_t)
    L_v  = token_mean( 1/2 max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2) )
    L    = L_pg + c_v L_v

The critic is a value head the trainer attaches; ``batch["values"]`` is its CURRENT output for
``batch["tokens"]`` and is differentiated (``DIFFERENTIABLE_BATCH_KEYS``). ``rollout["values"]``
holds V_old (the critic at sampling time); ``batch_extras`` turns it into ``old_values`` and
computes ``returns`` once on the whole rollout.

Differs from GRPO in:
  1. A learned critic and GAE give per-token advantages ``[B, T]``; no groups are needed.
  2. KL enters the per-token REWARD (k1 vs pi_ref, with pi_old, no gradient), not the loss.
  3. Advantages are whitened over the whole batch, not z-scored within groups.
  4. An added clipped value loss ``c_v * L_v`` (and optional dual-clip on the policy term).
  5. Token-level normalization (``token_mean``).

Adaptive KL (Ziegler et al., "Fine-Tuning Language Models from Human Preferences", 2019,
https://arxiv.org/abs/1909.08593, Sec. 2.2): with ``kl_target`` set, ``beta`` is the INITIAL
coefficient and the method's state carries ``beta_t``, updated after each step by
``ops.kl_controller.update`` from the rollout's KL (token mean of ``log pi_old - log pi_ref``) with
``n_t = B`` rows per step, as verl's ``AdaptiveKLController`` (``kl_ctrl.type=adaptive``,
``target_kl``, ``horizon``; verl's KL_t is the mean of per-sequence token means, ours the token
mean of the batch, the same normalization as the loss; Ziegler et al. use the per-sample sum).
The trainer checkpoints the state, so a resumed run continues the schedule. ``kl_target = None`` (default) keeps ``beta`` fixed: PPO as before.

Defaults (Huang et al. 2024): ``beta = 0.05``, ``gamma = 1``, ``lam = 0.95``, ``eps = 0.2``,
``eps_v = 0.2``, ``c_v = 0.1``; ``clip_c = None`` (dual-clip off, as there; verl uses 3.0).
Whitening uses the population variance and 1e-8 inside the sqrt, over unmasked tokens only (the
reference whitens padded tensors; we do not let padding move the statistics).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, kl_controller, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "ppo"
PAPER = "Proximal Policy Optimization Algorithms"
PAPER_URL = "https://arxiv.org/abs/1707.06347"
DIFFERENTIABLE_BATCH_KEYS = ("values",)
BATCH_EXTRAS_NEED_STATE = True  # the returns use the adaptive KL coefficient of the state


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon
    eps_high: float = 0.2
    clip_c: float | None = None  # dual-clip constant c > 1; None = off
    beta: float = 0.05  # beta_KL in the reward; 0 means no reference model
    gamma: float = 1.0
    lam: float = 0.95  # lambda (GAE)
    eps_v: float = 0.2  # value clip range
    c_v: float = 0.1  # value-loss coefficient
    whiten_advantages: bool = True
    aggregation: str = "token_mean"
    kl_target: float | None = None  # KL_target of the adaptive controller; None = fixed beta
    kl_horizon: float = 10000.0  # horizon (samples) of the adaptive controller (Ziegler et al.; verl)


def _beta(cfg: Config, state: Any) -> Array | float:
    """The KL coefficient of this step: the state's ``beta_t`` under the adaptive controller, else ``cfg.beta``."""
    return cfg.beta if state is None else state["beta"]


def _gae(rollout: Rollout, cfg: Config, beta: Array | float) -> tuple[Array, Array, Array]:
    where = f"{NAME}.advantages"
    inputs.require(rollout, ("values", "rewards", "mask"), where)
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    values = inputs.token_array(rollout, "values", mask, where)
    token_rewards = adv_ops.last_token_rewards(jnp.asarray(rollout["rewards"], jnp.float32), mask)  # [B, T]
    kl_tok = jnp.zeros_like(mask)
    if cfg.beta > 0:
        key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
        inputs.require(rollout, (key,), where)
        old = inputs.token_array(rollout, key, mask, where)
        kl_tok = masked.where_mask(kl.k1(old, inputs.ref_logprobs(rollout, mask, where)), mask)
        token_rewards = token_rewards - beta * kl_tok
    adv, returns = adv_ops.gae(token_rewards, values, mask, cfg.gamma, cfg.lam)
    return adv, returns, masked.masked_mean(kl_tok, mask)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GAE advantages of the KL-shaped per-token reward, whitened over the batch: ``[B, T]``.

    Needs ``rollout["values"]`` (V_old ``[B, T]``), and ``old_logprobs`` (else ``sampler_logprobs``)
    and ``ref_logprobs`` when ``beta > 0``.
    """
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    adv, _, kl_mean = _gae(rollout, cfg, _beta(cfg, state))
    if cfg.whiten_advantages:
        adv = masked.whiten(adv, mask, eps=1e-8)
    metrics = adv_ops.stats(adv, mask)
    metrics["kl"] = kl_mean
    if state is not None:
        metrics["kl_coef"] = state["beta"]
    return adv, metrics


def batch_extras(rollout: Rollout, cfg: Config, state: Any = None) -> dict[str, Array]:
    """``returns`` ``R_t = A_t + V_old`` (unwhitened GAE) and ``old_values`` ``= rollout["values"]``, ``[B, T]``."""
    _, returns, _ = _gae(rollout, cfg, _beta(cfg, state))
    return {"returns": returns, "old_values": jnp.asarray(rollout["values"], jnp.float32)}


def init_state(cfg: Config) -> dict[str, Array] | None:
    """``{"beta": beta_0}`` when the adaptive KL controller is on (``kl_target`` set), else ``None``."""
    if cfg.kl_target is None:
        return None
    if not cfg.beta > 0:
        raise ValueError(f"ppo.Config.kl_target={cfg.kl_target} needs an initial beta > 0, got beta={cfg.beta}")
    return {"beta": kl_controller.init(cfg.beta)}


def update_state(state: dict[str, Array] | None, rollout: Rollout, cfg: Config) -> dict[str, Array] | None:
    """``beta_{t+1} = kl_controller.update(beta_t, KL_t, kl_target, kl_horizon, n_t = B)`` with ``KL_t`` the
    token mean of ``log pi_old - log pi_ref`` over the step's rollout; ``None`` (fixed beta) passes through."""
    if state is None or cfg.kl_target is None:
        return state
    where = f"{NAME}.update_state"
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    old = inputs.token_array(rollout, "old_logprobs", mask, where)
    kl_now = masked.masked_mean(kl.k1(old, inputs.ref_logprobs(rollout, mask, where)), mask)  # KL_t
    beta = kl_controller.update(state["beta"], kl_now, cfg.kl_target, cfg.kl_horizon, mask.shape[0])
    return {"beta": beta}


def value_loss(values: Array, old_values: Array, returns: Array, eps_v: float) -> Array:
    """Per-token clipped value loss ``1/2 max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)``. ``[B, T]``."""
    clipped = old_values + jnp.clip(values - old_values, -eps_v, eps_v)
    return 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns))


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``L_pg + c_v * L_v``, both token-mean over the whole batch (``num_tokens``).

    ``batch`` also needs ``values`` (current critic output, differentiated), ``old_values`` and
    ``returns`` (from ``batch_extras``). Metrics add ``loss/value`` (``c_v * L_v``), ``vf_clip_frac``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME)
    inputs.require(batch, ("values", "old_values", "returns"), NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]  # adv: whitened GAE [B, T]
    values = masked.where_mask(inputs.token_array(batch, "values", mask, NAME), mask)
    old_values = masked.where_mask(inputs.token_array(batch, "old_values", mask, NAME), mask)
    returns = masked.where_mask(inputs.token_array(batch, "returns", mask, NAME), mask)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_t [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    if cfg.clip_c is not None:
        per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A where A < 0
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # L_pg
    v_loss = cfg.c_v * aggregation.aggregate(
        value_loss(values, old_values, returns, cfg.eps_v), mask, cfg.aggregation, nt, ns
    )  # c_v L_v
    metrics = diagnostics.ratio_metrics(
        ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high, cfg.clip_c
    )  # clip_frac, ratio/*
    total, metrics = diagnostics.finalize(metrics, policy, batch, mask, nt, extra=v_loss, where=NAME)  # L_pg + c_v L_v
    metrics["loss/value"] = v_loss
    metrics["vf_clip_frac"] = jnp.sum((mask != 0) & (jnp.abs(values - old_values) > cfg.eps_v)) / nt
    return total, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random critic values V_old ``[B, T]`` for the invariant suite."""
    return {"values": 0.5 * jax.random.normal(key, (batch_size, seq_len), jnp.float32)}
