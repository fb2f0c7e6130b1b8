"""DR-PO: PPO on rollouts reset to prefixes of offline reference responses.

Citation: Jonathan D. Chang, Wenhao Zhan, Owen Oertell, Kianté Brantley, Dipendra Misra, Jason D.
Lee, Wen Sun, "Dataset Reset Policy Optimization for RLHF", 2024, https://arxiv.org/abs/2404.08495
(code: https://github.com/Cornell-RL/drpo, ``src/tldr/drpo.py``; the forced decoding is
``RollinProcessor`` in https://github.com/Cornell-RL/tril).

The practical algorithm (the code's) is PPO whose rollouts start from a state of a reference
response: row ``b`` is the reference's first ``h_b`` tokens (forced, ``rollin_mask`` 1) followed
by the policy's continuation (``rollouts/reset.py`` draws ``h ~ Uniform{1..L-1}`` with probability
``beta_reset``). Objective (loss, minimized), with m_t the whole response and f_t = m_t (1 - rollin_t)
the tokens the policy chose:

    r_t = -beta (log pi_old(y_t) - log pi_ref(y_t)) + 1[t = last] * score        (all m_t tokens)
    delta_t = r_t + gamma V_old(s_{t+1}) - V_old(s_t),  A_t = delta_t + gamma lam A_{t+1},  R_t = A_t + V_old(s_t)
    A <- whiten(A) over the response tokens of the batch
    L_pg = sum_t f_t max(-A_t rho_t, -A_t clip(rho_t, 1-eps_low, 1+eps_high)) / sum_t f_t
    L_v  = sum_t m_t 1/2 max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2) / sum_t m_t
    L    = L_pg + c_v L_v

The score is the task's verifiable reward in place of the paper's reward model. The batch's
``mask`` is the rollout's ``loss_mask`` (f_t); the value's tokens m_t are the first ``lengths``
positions of each row (the whole response), and ``value_scale`` [B] (from ``batch_extras``, over
the whole rollout) turns the policy normalizer ``num_tokens`` into the value normalizer, so both
terms stay exact under micro-batching.

Differs from GRPO in:
  1. Rollouts are reset to prefixes of reference solutions (the ``reset`` rollout kind); the
     forced tokens are in no policy loss (L_pg is averaged over the sampled tokens only).
  2. A learned critic and GAE (PPO): per-token advantages ``[B, T]``, whitened over the batch,
     no groups; the KL to pi_ref is in the per-token reward, on forced tokens too.
  3. An added clipped value loss ``c_v * L_v`` over every response token, forced ones included.
  4. Token-level normalization.

Differs from PPO (``ppo.py``) only in 1 and in the value loss counting the forced tokens.

Defaults (the code's ``drpo.sh``): ``beta_reset = 1``, ``beta = 0.05``, ``gamma = 1``,
``lam = 0.95``, ``eps = 0.2``, ``eps_v = 0.2``, ``c_v = 0.1``. The code's EOS filter (score -1
for a response without EOS) is not applied: the verifiable reward already scores a truncated
response, and a DR-PO vs PPO comparison then differs only in the resets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.algorithms import ppo
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "drpo"
PAPER = "Dataset Reset Policy Optimization for RLHF"
PAPER_URL = "https://arxiv.org/abs/2404.08495"
ROLLOUT = "reset"
DIFFERENTIABLE_BATCH_KEYS = ("values",)


@dataclasses.dataclass(frozen=True)
class Config:
    beta_reset: float = 1.0  # probability that a row is reset to a reference prefix (0 = PPO)
    eps_low: float = 0.2  # epsilon (cliprange)
    eps_high: float = 0.2
    beta: float = 0.05  # beta_KL in the reward (kl_coef); 0 means no reference model
    gamma: float = 1.0
    lam: float = 0.95  # lambda (GAE)
    eps_v: float = 0.2  # value cliprange
    c_v: float = 0.1  # vf_coef
    whiten_advantages: bool = True
    aggregation: str = "token_mean"


def response_mask(rollout: Rollout, where: str) -> Array:
    """m_t [B, T]: 1 on each row's first ``lengths`` positions (the whole response, forced prefix
    included); the batch's ``mask`` is the loss mask, which leaves the forced tokens out."""
    inputs.require(rollout, ("lengths", "tokens"), where)
    T = jnp.shape(rollout["tokens"])[1]
    return (jnp.arange(T)[None, :] < jnp.asarray(rollout["lengths"])[:, None]).astype(jnp.float32)


def _gae(rollout: Rollout, cfg: Config) -> tuple[Array, Array, Array, Array]:
    """(A, R, mean KL, m): GAE of the KL-shaped reward over the whole response m [B, T]."""
    where = f"{NAME}.advantages"
    inputs.require(rollout, ("values", "rewards", "mask"), where)
    mask = jnp.asarray(rollout["mask"], jnp.float32)  # the whole response (the rollout's mask)
    values = inputs.token_array(rollout, "values", mask, where)
    token_rewards = adv_ops.last_token_rewards(jnp.asarray(rollout["rewards"], jnp.float32), mask)  # [B, T]
    kl_tok = jnp.zeros_like(mask)
    if cfg.beta > 0:
        key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
        inputs.require(rollout, (key,), where)
        old = inputs.token_array(rollout, key, mask, where)
        kl_tok = masked.where_mask(kl.k1(old, inputs.ref_logprobs(rollout, mask, where)), mask)  # forced too
        token_rewards = token_rewards - cfg.beta * kl_tok
    adv, returns = adv_ops.gae(token_rewards, values, mask, cfg.gamma, cfg.lam)  # [B, T]
    return adv, returns, masked.masked_mean(kl_tok, mask), mask


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GAE advantages ``[B, T]`` of the KL-shaped per-token reward over the whole response,
    whitened over the batch's response tokens. Needs ``values`` (V_old ``[B, T]``), and
    ``old_logprobs`` (else ``sampler_logprobs``) and ``ref_logprobs`` when ``beta > 0``."""
    adv, _, kl_mean, mask = _gae(rollout, cfg)
    if cfg.whiten_advantages:
        adv = masked.whiten(adv, mask, eps=1e-8)
    metrics = adv_ops.stats(adv, mask)
    metrics["kl"] = kl_mean
    return adv, metrics


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``returns`` (unwhitened GAE + V_old) and ``old_values`` ``[B, T]``; ``value_scale`` [B]:
    (policy tokens) / (response tokens) over the WHOLE rollout, the same in every row."""
    _, returns, _, mask = _gae(rollout, cfg)
    loss_mask = rollout["loss_mask"] if "loss_mask" in rollout else mask
    n_policy = jnp.maximum(jnp.sum(jnp.asarray(loss_mask, jnp.float32)), 1.0)
    n_value = jnp.maximum(jnp.sum(response_mask(rollout, NAME)), 1.0)
    scale = jnp.full((mask.shape[0],), n_policy / n_value, jnp.float32)
    return {"returns": returns, "old_values": jnp.asarray(rollout["values"], jnp.float32), "value_scale": scale}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``L_pg + c_v * L_v``: the policy term over the sampled tokens (``mask``, normalizer
    ``num_tokens``), the value term over every response token (``lengths``; normalizer
    ``num_tokens / value_scale`` = the batch's response tokens).

    ``batch`` also needs ``values`` (current critic output, differentiated), ``old_values``,
    ``returns`` and ``value_scale`` (``batch_extras``) and ``lengths``. Metrics add ``loss/value``
    (``c_v * L_v``) and ``vf_clip_frac``.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME)
    inputs.require(batch, ("values", "old_values", "returns", "value_scale", "lengths"), NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]  # mask: f_t [B, T]
    resp = response_mask(batch, NAME)  # m_t [B, T]
    values = masked.where_mask(inputs.token_array(batch, "values", resp, NAME), resp)
    old_values = masked.where_mask(inputs.token_array(batch, "old_values", resp, NAME), resp)
    returns = masked.where_mask(inputs.token_array(batch, "returns", resp, NAME), resp)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_t [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # L_pg over f_t
    value_w = resp * jnp.asarray(batch["value_scale"], jnp.float32)[:, None]  # m_t * n_policy / n_value
    v_tok = ppo.value_loss(values, old_values, returns, cfg.eps_v)  # [B, T]
    v_loss = cfg.c_v * jnp.sum(masked.where_mask(v_tok, resp) * value_w) / nt  # c_v L_v over m_t
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    total, metrics = diagnostics.finalize(metrics, policy, batch, mask, nt, extra=v_loss, where=NAME)
    metrics["loss/value"] = v_loss
    clipped = (jnp.abs(values - old_values) > cfg.eps_v).astype(jnp.float32)
    metrics["vf_clip_frac"] = jnp.sum(clipped * value_w) / nt
    return total, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random critic values V_old ``[B, T]`` for the invariant suite."""
    return {"values": 0.5 * jax.random.normal(key, (batch_size, seq_len), jnp.float32)}
