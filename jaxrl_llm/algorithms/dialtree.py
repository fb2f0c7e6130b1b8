"""DialTree-RPO: tree-based dialogue RL for multi-turn red-teaming, with an adaptive format mask.

Citation: Ruohao Guo, Afshin Oroojlooy, Roshan Sridhar, Miguel Ballesteros, Alan Ritter, Dan Roth,
"Tree-based Dialogue Reinforced Policy Optimization for Red-Teaming Attacks", 2025,
https://arxiv.org/abs/2510.02286 (Sec. 3, Eqs. 2-4). No official code was released.

Rows: one per root-to-leaf dialogue of a goal's tree (rollout kind ``dialogue_tree``,
``rollouts/dialogue_tree.py``): at each turn every live dialogue state samples n attacker turns,
the frozen target answers, jailbroken children become leaves (R = 1), malformed or off-topic ones
are pruned, at most w survive; at most G = ``train.group_size`` paths per goal (rows beyond the
paths found are inert: ``traj_valid = 0``). Target replies are observations (``loss_mask`` 0).

    R(tau)  = 1[exists t: guard(g; q_t, r_t) > eta]                                     (Eq. 2)
    A_i     = (R_i - mean_j R_j) / (std_j R_j + eps)   over the goal's valid paths       (GRPO)
    M_t^(i) = 1 - 1[token_t in V_fmt and A_i < 0]                                        (adaptive mask)
    J       = (1/G) sum_i (1/|tau_i|) sum_t M_t^(i) min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i)
              - beta KL(pi_theta || pi_ref)                                             (Eqs. 3-4)

The loss (minimized) is -J; ``format_mask`` [B, T] (1 on the tokens of the format tags
``<T>``/``</T>``/``<Q>``/``</Q>``) comes from the rollout. Format tokens leave the loss only in
negative-advantage dialogues, so a failed dialogue is not taught to drop its format (the paper's
"format unlearning": malformed outputs climb above 70% without the mask).

Differs from GRPO in:
  1. Rows are tree-structured multi-turn dialogues (shared prefixes, soft attribution: each path
     its own A_i), not G independent samples; target replies are masked out.
  2. The adaptive format mask M above.
  3. Aggregation ``seq_mean_token_mean`` (the paper's 1/|tau_i| per dialogue, 1/G over them).
  4. Group statistics over the valid paths only (a goal may yield fewer than G).

Defaults (paper): ``eps = 0.2``, ``beta = 0.001`` (k3 vs the SFT reference), branching ``n = 4``,
width ``w = 32``, ``T_max = 5``, ``eta = 0.5``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "dialtree"
PAPER = "Tree-based Dialogue Reinforced Policy Optimization for Red-Teaming Attacks"
PAPER_URL = "https://arxiv.org/abs/2510.02286"
ROLLOUT = "dialogue_tree"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon
    eps_high: float = 0.2
    beta: float = 0.001  # beta, KL weight vs the SFT reference
    kl_estimator: str = "k3"
    kl_clamp: float | None = None
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "seq_mean_token_mean"  # (1/G) sum_i (1/|tau_i|) sum_t
    adaptive_mask: bool = True  # drop format tokens of negative-advantage dialogues
    branching: int = 4  # n, attacker turns sampled per live state
    width: int = 32  # w, live states kept per turn
    max_turns: int = 5  # T_max
    eta: float = 0.5  # guard threshold (jailbroken iff score > eta)
    max_reply_tokens: int = 64  # a target reply (with its chat wrapper) is cut to this


def check_config(run_cfg: Any) -> str | None:
    a = run_cfg.algo if run_cfg.algo is not None else Config()
    if a.branching < 1 or a.width < 1 or a.max_turns < 1:
        return (
            f"algo.branching, algo.width and algo.max_turns must be >= 1, got {a.branching}, {a.width}, {a.max_turns}"
        )
    return None


def valid_group_advantages(rewards: Array, valid: Array, group_size: int, ddof: int, eps: float) -> Array:
    """GRPO's ``(R - mean) / (std + eps)`` ``[B]`` over the valid rows of each group (``valid`` [B]
    0/1); a group whose valid rewards are all equal, and every invalid row, get 0."""
    r, v = rewards.reshape(-1, group_size), valid.reshape(-1, group_size)  # [P, G]
    n = jnp.sum(v, axis=1, keepdims=True)
    mean = jnp.sum(r * v, axis=1, keepdims=True) / jnp.maximum(n, 1.0)
    var = jnp.sum(v * (r - mean) ** 2, axis=1, keepdims=True) / jnp.maximum(n - ddof, 1.0)
    spread = jnp.max(jnp.where(v > 0, r, -jnp.inf), axis=1, keepdims=True) - jnp.min(
        jnp.where(v > 0, r, jnp.inf), axis=1, keepdims=True
    )
    adv = jnp.where((spread > 0) & (v > 0), (r - mean) / (jnp.sqrt(var) + eps), 0.0)
    return adv.reshape(-1)


def adaptive_mask(mask: Array, format_mask: Array, advantages: Array) -> Array:
    """``M = mask * (1 - format_mask * 1[A < 0])`` ``[B, T]`` (``advantages`` [B] or [B, T])."""
    adv = advantages if advantages.ndim == 2 else advantages[:, None]
    return mask * (1.0 - format_mask * (adv < 0))


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i`` ``[B]``: GRPO over each goal's valid dialogues (``traj_valid``)."""
    G = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    valid = jnp.asarray(rollout["traj_valid"], jnp.float32) if "traj_valid" in rollout else jnp.ones_like(rewards)
    adv = valid_group_advantages(rewards, valid, G, cfg.std_ddof, cfg.std_eps)  # A_i [B]
    return adv, adv_ops.group_stats(adv, rewards, rollout["mask"], G)


def _mask(x: dict[str, Array], batch: Batch, cfg: Config) -> Array:
    if not cfg.adaptive_mask:
        return x["mask"]
    inputs.require(batch, ("format_mask",), NAME)
    return adaptive_mask(x["mask"], inputs.token_array(batch, "format_mask", x["mask"], NAME), x["advantages"])


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``-J`` (Eqs. 3-4): the clipped surrogate over the adaptive mask, per-dialogue mean, plus ``beta`` KL."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    adv, nt, ns = x["advantages"], x["num_tokens"], x["num_seqs"]
    mask = _mask(x, batch, cfg)  # M_t^(i) [B, T]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # (1/G) sum 1/|tau|
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], x["mask"], cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    total, metrics = diagnostics.finalize(metrics, policy, batch, x["mask"], nt, kl_term, cfg.beta, where=NAME)
    metrics["masked_format_frac"] = jnp.sum(x["mask"] - mask) / nt
    return total, metrics


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """On-policy the gradient is REINFORCE's over the adaptive mask: ``aggregate(-A log pi, M)``."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    return aggregation.aggregate(
        -x["advantages"] * x["logprobs"], _mask(x, batch, cfg), cfg.aggregation, x["num_tokens"], x["num_seqs"]
    )


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random format tokens (a third of them) and one invalid path in every group but the first."""
    fmt = jax.random.bernoulli(key, 1 / 3, (batch_size, seq_len)).astype(jnp.float32)
    valid = jnp.where(
        (jnp.arange(batch_size) % group_size == group_size - 1) & (jnp.arange(batch_size) >= group_size), 0.0, 1.0
    )
    return {"format_mask": fmt, "traj_valid": valid}
