"""GEPO: Group Equivalent Preference Optimization, inside OORL's on-policy + off-policy objective.

Citation: Jianyu Wu, Hao Ming, Xinyang Gao, et al., "On-Policy Optimization with Group Equivalent
Preference for Multi-Programming Language Understanding" (OORL), NeurIPS 2025,
https://arxiv.org/abs/2505.12723 (Sec. 3). No official code. Not "Group Expectation Policy
Optimization" (arXiv 2508.17850), an unrelated paper.

A static preference GROUP per prompt x: n equivalent winners Y_w = {y_w^1..y_w^n} and m losers
Y_l = {y_l^1..y_l^m}, scored by the implicit DPO reward r_hat(x, y) = beta log pi_theta(y|x)/pi_ref(y|x)
(summed sequence log-probs):

    L_GEPO  = E_(x, Y_w, Y_l)[ -log sigma( (1/n) sum_i r_hat(x, y_w^i) - (1/m) sum_j r_hat(x, y_l^j) )
                               + lambda Var_{y in Y_w} r_hat(x, y) ]        (population variance)
    L_OORL  = w_rl L_OnP + w_gepo L_GEPO

L_OnP is REINFORCE++ (the paper's on-policy algorithm) on the on-policy rows of the same batch:
token rewards ``-kl_coef k1_t + 1[t = last] R`` against pi_ref, their returns whitened over the
on-policy tokens of the whole batch, the PPO-clipped surrogate, token mean over on-policy tokens.

Rows (the ``pref_groups`` rollout kind, ``rollouts/pairs.py``): ``train.prompts_per_step x
train.group_size`` on-policy rows, then ``groups_per_step`` static groups of ``n_winners +
n_losers`` rows; ``extras["gepo_role"]`` [B] is 0 on on-policy rows, +1 on a winner, -1 on a
loser, and ``group_ids`` keep each static group together (it must lie in one micro-batch).

Differs from GRPO in:
  1. The batch mixes on-policy rows with static preference groups that no policy sampled.
  2. On-policy advantages are REINFORCE++'s (KL in the reward, global whitening), not group-normalized.
  3. An added group preference term: DPO on the GROUP MEANS of the implicit reward, plus a penalty
     (weight lambda) on the spread of the winners' implicit rewards, so every equivalent winner is
     raised together instead of one of them.
  4. ``beta`` is the implicit reward's scale (inside the loss, as in DPO); the on-policy KL weight is
     ``kl_coef``. The reference model is always needed.
  5. ``advantages`` of a static row report its weight in the gradient at pi_old,
     ``A_b = -w_gepo dL_g/ds_b`` (``s_b`` the row's summed log-prob), so the on-policy gradient is
     REINFORCE with those weights.

Defaults: ``w_rl = 1``, ``w_gepo = 0.01``, ``lambda = 1`` (the paper); ``beta = 0.1`` (not stated
in the paper: the DPO default); REINFORCE++ ``eps = 0.2``, ``kl_coef = 0.01``, ``gamma = 1``.
Population variance over ``beta log-ratio`` (the paper's r_hat); ambiguities (sample variance,
length normalization) are left at these readings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios, sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "gepo"
PAPER = "On-Policy Optimization with Group Equivalent Preference for Multi-Programming Language Understanding"
PAPER_URL = "https://arxiv.org/abs/2505.12723"
ROLLOUT = "pref_groups"
# beta scales the implicit reward inside the group preference term, not a separable KL penalty.
KL_IN_OBJECTIVE = True


@dataclasses.dataclass(frozen=True)
class Config:
    beta: float = 0.1  # beta: implicit reward r_hat = beta log pi/pi_ref
    lam: float = 1.0  # lambda: weight of Var_{Y_w} r_hat
    w_rl: float = 1.0  # weight of the on-policy REINFORCE++ loss
    w_gepo: float = 0.01  # weight of L_GEPO; 0 = REINFORCE++ alone (the ablation)
    eps_low: float = 0.2
    eps_high: float = 0.2
    kl_coef: float = 0.01  # REINFORCE++'s KL-in-reward coefficient (k1 against pi_ref)
    gamma: float = 1.0
    std_ddof: int = 0
    std_eps: float = 1e-8
    n_winners: int = 2  # n: equivalent winners per static group
    n_losers: int = 2  # m: losers per static group
    groups_per_step: int = 2  # static groups per RL step


def check_config(run_cfg: Any) -> str | None:
    """Positive ``beta``, ``n, m >= 1``, and static groups that stay whole in every micro-batch."""
    cfg, t = run_cfg.algo, run_cfg.train
    if not cfg.beta > 0:
        return f"gepo needs algo.beta > 0 (the implicit reward's scale), got {cfg.beta}"
    if cfg.n_winners < 1 or cfg.n_losers < 1 or cfg.groups_per_step < 1:
        return (
            f"gepo needs algo.n_winners, algo.n_losers, algo.groups_per_step >= 1, got "
            f"{cfg.n_winners}, {cfg.n_losers}, {cfg.groups_per_step}"
        )
    if t.num_minibatches != 1:
        return f"gepo keeps its static groups whole: train.num_minibatches must be 1, got {t.num_minibatches}"
    k, on = cfg.n_winners + cfg.n_losers, t.prompts_per_step * t.group_size
    if t.micro_batch_size and (t.micro_batch_size % k or on % t.micro_batch_size):
        return (
            f"gepo: train.micro_batch_size={t.micro_batch_size} must divide the {on} on-policy rows and be a "
            f"multiple of n_winners + n_losers = {k} (a static group lies in one micro-batch)"
        )
    return None


def _static_groups(group_ids: Array, role: Array) -> tuple[Array, Array, Array]:
    """``same [B, B]`` (1 where both rows are static and share a group), winner / loser indicators [B]."""
    static = (role != 0).astype(jnp.float32)
    g = jnp.asarray(group_ids)
    same = (g[:, None] == g[None, :]).astype(jnp.float32) * static[:, None] * static[None, :]
    return same, (role > 0).astype(jnp.float32), (role < 0).astype(jnp.float32)


def group_terms(log_ratio: Array, group_ids: Array, role: Array, cfg: Config) -> dict[str, Array]:
    """Per-row quantities of each row's static group, from the rows' ``log pi/pi_ref`` ``[B]``:
    ``margin`` (mean winner r_hat - mean loser r_hat), ``var`` (population variance of the winners'
    r_hat), ``loss`` (``-log sigma(margin) + lambda var``), ``size`` (rows in the group); 0 on
    on-policy rows."""
    same, win, lose = _static_groups(group_ids, role)
    r = cfg.beta * jnp.asarray(log_ratio, jnp.float32)  # r_hat  [B]
    n_w, n_l = same @ win, same @ lose  # [B]
    mean_w = (same @ (win * r)) / jnp.maximum(n_w, 1.0)
    mean_l = (same @ (lose * r)) / jnp.maximum(n_l, 1.0)
    var_w = jnp.maximum((same @ (win * r * r)) / jnp.maximum(n_w, 1.0) - mean_w**2, 0.0)
    margin = mean_w - mean_l
    static = (role != 0).astype(jnp.float32)
    loss = static * (-jax.nn.log_sigmoid(margin) + cfg.lam * var_w)
    return {"margin": static * margin, "var": static * var_w, "loss": loss, "size": same @ static}


def gepo_loss(log_ratio: Array, group_ids: Array, role: Array, num_groups: Array | float, cfg: Config) -> Array:
    """``L_GEPO``: the mean over static groups of ``-log sigma(margin) + lambda var`` (global
    ``num_groups``; each group counted once, its value spread over its rows)."""
    t = group_terms(log_ratio, group_ids, role, cfg)
    return jnp.sum(t["loss"] / jnp.maximum(t["size"], 1.0)) / num_groups


def _role(source: Any) -> Array:
    return jnp.asarray(source["gepo_role"], jnp.float32)


def _loss_mask(rollout: Any) -> Array:
    return jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """Global normalizers as ``[B]`` arrays (every row holds the batch's value, so any part of the
    batch reads it): ``num_policy_tokens`` (loss tokens of on-policy rows) and ``num_pref_groups``."""
    mask, role = _loss_mask(rollout), _role(rollout)
    onp = (role == 0).astype(jnp.float32)
    size = group_terms(jnp.zeros_like(role), rollout["group_ids"], role, cfg)["size"]
    n_groups = jnp.sum((role != 0) / jnp.maximum(size, 1.0))
    B = role.shape[0]
    return {
        "num_policy_tokens": jnp.full((B,), jnp.maximum(jnp.sum(mask * onp[:, None]), 1.0)),
        "num_pref_groups": jnp.full((B,), jnp.maximum(n_groups, 1.0)),
    }


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``[B, T]``: REINFORCE++ advantages on on-policy rows (whitened over their tokens), and on
    static rows their weight in the GEPO gradient at pi_old, ``-w_gepo dL_g/ds_b`` (module docstring)."""
    mask, role = _loss_mask(rollout), _role(rollout)
    onp = (role == 0).astype(jnp.float32)
    on_mask = mask * onp[:, None]  # [B, T]
    old = inputs.token_array(rollout, "old_logprobs", mask, f"{NAME}.advantages")
    ref = inputs.ref_logprobs(rollout, mask, f"{NAME}.advantages")
    token_rewards = adv_ops.last_token_rewards(jnp.asarray(rollout["rewards"], jnp.float32), on_mask)  # [B, T]
    kl_tok = masked.where_mask(kl.k1(old, ref), on_mask)  # k1 = log pi_old - log pi_ref  [B, T]
    returns = adv_ops.reverse_discounted_sum(token_rewards - cfg.kl_coef * kl_tok, on_mask, cfg.gamma)
    a_on = adv_ops.batch_normalized(returns, on_mask, cfg.std_ddof, cfg.std_eps) * on_mask  # [B, T]
    ref_seq = sequence.sequence_logprobs(ref, mask)  # [B]
    group_sum = lambda s: jnp.sum(group_terms(s - ref_seq, rollout["group_ids"], role, cfg)["loss"])  # sum_b l_g(b)
    size = group_terms(jnp.zeros_like(role), rollout["group_ids"], role, cfg)["size"]
    # sum over rows counts each group |group| times; divide by the size to get d(sum_g l_g)/ds_b.
    dl = jax.grad(group_sum)(sequence.sequence_logprobs(old, mask)) / jnp.maximum(size, 1.0)  # [B]
    a_static = -cfg.w_gepo * dl * (role != 0)  # [B]
    adv = a_on + a_static[:, None] * mask
    metrics = adv_ops.stats(adv, mask)
    metrics["kl"] = masked.masked_mean(kl_tok, on_mask)
    return adv, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``w_rl L_OnP + w_gepo L_GEPO`` with global normalizers (module docstring)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=True)
    mask, adv = x["mask"], x["advantages"]
    inputs.require(batch, ("group_ids", "gepo_role", "num_policy_tokens", "num_pref_groups"), NAME)
    role = _role(batch)
    onp = (role == 0).astype(jnp.float32)[:, None]  # [B, 1]
    n_pol = jnp.max(jnp.asarray(batch["num_policy_tokens"], jnp.float32))  # global, held by every row
    n_groups = jnp.max(jnp.asarray(batch["num_pref_groups"], jnp.float32))
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t}  [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # [B, T]
    on_policy = aggregation.aggregate(per_token * x["is_weights"] * onp, mask, "token_mean", n_pol, x["num_seqs"])
    log_ratio = sequence.sequence_log_ratio(x["logprobs"], x["ref_logprobs"], mask)  # log pi/pi_ref  [B]
    terms = group_terms(log_ratio, batch["group_ids"], role, cfg)
    per_group = lambda v: jnp.sum(v / jnp.maximum(terms["size"], 1.0)) / n_groups  # mean over static groups
    gepo = per_group(terms["loss"])  # L_GEPO
    total = cfg.w_rl * on_policy + cfg.w_gepo * gepo
    metrics = diagnostics.ratio_metrics(ratio, adv * onp, mask * onp, n_pol, cfg.eps_low, cfg.eps_high)
    metrics.update(
        {
            "loss/on_policy": on_policy,
            "loss/gepo": gepo,
            "gepo/margin": per_group(terms["margin"]),
            "gepo/winner_var": per_group(terms["var"]),
            "gepo/accuracy": per_group((terms["margin"] > 0).astype(jnp.float32) * (role != 0)),
        }
    )
    return diagnostics.finalize(metrics, total, batch, mask, x["num_tokens"], where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """The surrogate whose gradient GEPO's loss has at pi_old: REINFORCE with the on-policy
    advantages (token mean over on-policy tokens, weight ``w_rl``) plus
    ``-sum_b A_b log pi(y_b) / num_pref_groups`` over static rows."""
    mask, role = jnp.asarray(batch["mask"], jnp.float32), _role(batch)
    adv = inputs.per_token(batch["advantages"], mask, "advantages", NAME)
    onp = (role == 0).astype(jnp.float32)[:, None]
    n_pol = jnp.max(jnp.asarray(batch["num_policy_tokens"], jnp.float32))
    n_groups = jnp.max(jnp.asarray(batch["num_pref_groups"], jnp.float32))
    lp = jnp.asarray(logprobs, jnp.float32)
    on = -jnp.sum(adv * lp * mask * onp) / n_pol
    off = -jnp.sum(adv * lp * mask * (1.0 - onp)) / n_groups
    return cfg.w_rl * on + off


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """The first half of the rows on-policy (groups of ``group_size``), the second half static
    groups of two rows (a winner and a loser), so a group never spans two of the suite's parts."""
    half = batch_size // 2
    on_groups = jnp.repeat(jnp.arange(half // group_size, dtype=jnp.int32), group_size)
    static_groups = half // group_size + jnp.repeat(jnp.arange(half // 2, dtype=jnp.int32), 2)
    first = jax.random.bernoulli(key, 0.5, (half // 2,)).astype(jnp.float32) * 2.0 - 1.0
    role = jnp.concatenate([jnp.zeros(half), jnp.stack([first, -first], axis=1).reshape(-1)])
    return {"group_ids": jnp.concatenate([on_groups, static_groups]), "gepo_role": role}
