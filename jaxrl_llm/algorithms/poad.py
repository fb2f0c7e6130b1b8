"""POAD: Policy Optimization with Action Decomposition (token-level PPO with BAD backups).

Citation: Muning Wen, Ziyu Wan, Jun Wang, Weinan Zhang, Ying Wen, "Reinforcing Language Agents via
Policy Optimization with Action Decomposition", NeurIPS 2024, https://arxiv.org/abs/2405.15821;
official code https://github.com/morning9393/ADRL (``mappo/utils/language_buffer.py``,
``batch_process_tppo``).

Rows: one per episode (rollout kind ``episode``, ``env.rows = "episode"``): an action a_k is one
policy turn (its tokens w_k^1..w_k^{|a_k|}, tool results inside it are skipped), ``step_ids`` [B, T]
names the turn of each policy token and ``step_rewards`` [B, K] the environment reward r_k. The
critic is a token-level value head (``models/critic.py``): ``V_{k,j} = V(o_k, w_k^{<j})``, read
where the policy reads the logits of w_k^j.

Bellman backup with Action Decomposition (BAD), as token-level TD errors (Sec. 4, Eqs. 6-7):

    delta_{k,j}     = gamma_w V_{k,j+1} - V_{k,j}                        (j < |a_k|: no reward)
    delta_{k,|a_k|} = r_k + gamma * V_{k+1,1} - V_{k,|a_k|}               (action boundary)
    A_{k,j}     = delta_{k,j} + gamma_w lam A_{k,j+1}                     (intra-action)
    A_{k,|a_k|} = delta_{k,|a_k|} + gamma lam A_{k+1,1}                   (across the boundary)
    R_{k,j} = A_{k,j} + V_{k,j};  A <- whiten(A) over the batch's policy tokens

POAD is ``gamma_w = 1`` (intra-action discount 1: the token MDP agrees with the action MDP);
``gamma_w = gamma`` is naive token-level PPO with intra-action discounting (NTPO, the paper's
baseline, whose per-token discount makes early tokens of long actions under-credited by a factor
that grows with (1 - gamma^{|a|-j})). After the last action (episode end, or the token budget)
V = A = 0. The loss is PPO's (token-level clipped surrogate + c_v * clipped value loss, token mean):

    L = token_mean( -min(rho A, clip(rho, 1-eps, 1+eps) A) ) + c_v token_mean( 1/2 max((V-R)^2, (V_clip-R)^2) )

Differs from GRPO in:
  1. A token-level critic and BAD-GAE give per-token advantages ``[B, T]``; no groups are needed.
  2. Reward and gamma enter only at action (turn) boundaries; inside an action the discount is 1.
  3. Advantages are whitened over the whole batch's policy tokens; a clipped value loss is added.
  4. Rows are multi-turn episodes; observations and tool output are out of the loss (``loss_mask``).

Defaults (the ADRL launch scripts): ``gamma = 0.95``, ``lam = 0.95``, ``eps = 0.2``. Not here: the
code's entropy bonus (the loss sees the sampled tokens' log-probs only) and its per-minibatch
approx-KL early stop (a minibatch-local decision would break the partition contract); its
normalisation that treats exactly-zero advantages as padding is replaced by the policy mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.algorithms import ppo
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "poad"
PAPER = "Reinforcing Language Agents via Policy Optimization with Action Decomposition"
PAPER_URL = "https://arxiv.org/abs/2405.15821"
ROLLOUT = "episode"
DIFFERENTIABLE_BATCH_KEYS = ("values",)


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon
    eps_high: float = 0.2
    beta: float = 0.0  # no KL term (the ADRL code trains without a reference model)
    gamma: float = 0.95  # gamma, the discount between actions (environment steps)
    gamma_w: float = 1.0  # intra-action discount: 1 = POAD (BAD); gamma = NTPO, the baseline
    lam: float = 0.95  # lambda (GAE)
    eps_v: float = 0.2  # value clip range
    c_v: float = 0.1  # value-loss coefficient
    whiten_advantages: bool = True
    aggregation: str = "token_mean"


def check_config(run_cfg: Any) -> str | None:
    """POAD reads per-episode rows (``env.rows = "episode"``) and a critic."""
    if run_cfg.env.rows != "episode":
        return f"POAD needs env.rows='episode' (one row per episode), got {run_cfg.env.rows!r}"
    a = run_cfg.algo if run_cfg.algo is not None else Config()
    if not (0.0 < a.gamma_w <= 1.0 and 0.0 <= a.gamma <= 1.0 and 0.0 <= a.lam <= 1.0):
        return f"algo.gamma, algo.gamma_w and algo.lam must lie in [0, 1] (gamma_w > 0), got {a.gamma}, {a.gamma_w}, {a.lam}"
    return None


def bad_gae(
    values: Array,
    step_ids: Array,
    step_rewards: Array,
    policy_mask: Array,
    gamma: float,
    lam: float,
    gamma_w: float = 1.0,
) -> tuple[Array, Array]:
    """Token-level GAE with action-decomposed backups (module docstring): ``(A, R)``, each ``[B, T]``.

    ``values`` V ``[B, T]``; ``step_ids`` ``[B, T]`` the action (turn) of each token; ``step_rewards``
    r_k ``[B, K]``; ``policy_mask`` ``[B, T]`` 1 on the policy's tokens. Tokens off the mask (padding,
    observations, tool output) are skipped by the backward scan and get 0. A token is the last of
    its action when the next policy token belongs to another step (or there is none).
    """
    mask = policy_mask != 0
    K = step_rewards.shape[1]
    steps = jnp.where(mask, step_ids, -1).astype(jnp.int32)
    reward = jnp.take_along_axis(step_rewards, jnp.clip(steps, 0, K - 1), axis=1)  # r_{k(t)} [B, T]
    values = masked.where_mask(values, mask)

    def back(carry, xs):
        next_v, next_a, next_step = carry  # the next policy token's V, A and step (-1: none)
        v, r, s, m = xs
        has_next = next_step >= 0
        boundary = next_step != s  # last token of its action
        delta = jnp.where(boundary, r + gamma * has_next * next_v - v, gamma_w * next_v - v)
        a = delta + jnp.where(boundary, gamma * lam * has_next, gamma_w * lam) * next_a
        carry = (jnp.where(m, v, next_v), jnp.where(m, a, next_a), jnp.where(m, s, next_step))
        return carry, jnp.where(m, a, 0.0)

    B = values.shape[0]
    init = (jnp.zeros(B, jnp.float32), jnp.zeros(B, jnp.float32), jnp.full(B, -1, jnp.int32))
    _, adv = jax.lax.scan(back, init, (values.T, reward.T, steps.T, mask.T), reverse=True)
    adv = adv.T
    return adv, masked.where_mask(adv + values, mask)


def _policy_mask(rollout: Rollout) -> Array:
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    if "loss_mask" in rollout:
        mask = mask * jnp.asarray(rollout["loss_mask"], jnp.float32)
    return mask * (jnp.asarray(rollout["step_ids"]) >= 0)


def _gae(rollout: Rollout, cfg: Config) -> tuple[Array, Array, Array]:
    where = f"{NAME}.advantages"
    inputs.require(rollout, ("values", "step_ids", "step_rewards", "mask"), where)
    mask = _policy_mask(rollout)  # [B, T]
    values = inputs.token_array(rollout, "values", mask, where)  # V_old [B, T]
    step_rewards = jnp.asarray(rollout["step_rewards"], jnp.float32)  # r_k [B, K]
    adv, returns = bad_gae(values, rollout["step_ids"], step_rewards, mask, cfg.gamma, cfg.lam, cfg.gamma_w)
    return adv, returns, mask


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """BAD-GAE advantages ``[B, T]`` on the policy's tokens, whitened over the batch."""
    adv, _, mask = _gae(rollout, cfg)
    if cfg.whiten_advantages:
        adv = masked.whiten(adv, mask, eps=1e-8)
    return adv, adv_ops.stats(adv, mask)


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``returns`` R = A + V_old (unwhitened BAD-GAE) and ``old_values`` ``= rollout["values"]``, ``[B, T]``."""
    _, returns, _ = _gae(rollout, cfg)
    return {"returns": returns, "old_values": jnp.asarray(rollout["values"], jnp.float32)}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Token-level clipped surrogate + ``c_v`` * clipped value loss, both token-mean over the batch."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    inputs.require(batch, ("values", "old_values", "returns"), NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]  # adv: BAD-GAE [B, T]
    values = masked.where_mask(inputs.token_array(batch, "values", mask, NAME), mask)  # V [B, T]
    old_values = masked.where_mask(inputs.token_array(batch, "old_values", mask, NAME), mask)
    returns = masked.where_mask(inputs.token_array(batch, "returns", mask, NAME), mask)  # R [B, T]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token mean
    v_loss = cfg.c_v * aggregation.aggregate(
        ppo.value_loss(values, old_values, returns, cfg.eps_v), mask, cfg.aggregation, nt, ns
    )  # c_v L_v
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    total, metrics = diagnostics.finalize(metrics, policy, batch, mask, nt, extra=v_loss, where=NAME)
    metrics["loss/value"] = v_loss
    return total, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Critic values, and K = 3 actions per row with observation tokens (step -1) between them."""
    K = 3
    k1, k2 = jax.random.split(key)
    t = jnp.arange(seq_len)
    step_ids = jnp.where(t % 3 == 2, -1, t // 3 % K)  # two action tokens, then an observation token
    return {
        "values": 0.5 * jax.random.normal(k1, (batch_size, seq_len), jnp.float32),
        "step_ids": jnp.broadcast_to(step_ids, (batch_size, seq_len)).astype(jnp.int32),
        "step_rewards": jax.random.bernoulli(k2, 0.4, (batch_size, K)).astype(jnp.float32),
    }
