"""EPO: Entropy-regularized Policy Optimization for multi-turn LLM agents.

Citation: Wujiang Xu, Wentian Zhao, Zhenting Wang et al., "EPO: Entropy-regularized Policy
Optimization for LLM Agents Reinforcement Learning", 2025, https://arxiv.org/abs/2509.22576
(Eqs. 2-6); official code https://github.com/WujiangXu/EPO (``verl/workers/actor/dp_actor.py``).

Rows: one per episode (rollout kind ``episode``, ``env.rows = "episode"``); ``step_ids`` [B, T]
gives the turn of every policy token. With ``H_{j,t,i}`` the full-vocabulary entropy of the
policy at token i of turn t of trajectory j (``batch["entropies"]``, a model output the loss is
differentiated through, ``DIFFERENTIABLE_BATCH_KEYS``) and ``|tau_{j,t}|`` the turn's tokens:

    L_EPO    = L_MT - lambda * (L_H - beta_k * L_smooth)                         (Eq. 6)
    L_H      = (1/B) sum_j (1/T_j) sum_t (1/|tau_{j,t}|) sum_i H_{j,t,i}         (Eq. 3)
    H_W      = (1/k) sum_{m<k} H_m   (H_m: batch-mean token entropy of RL step m; window below)
    P_{j,t,i} = [kappa_l H_W - H_{j,t,i}]_+ + [H_{j,t,i} - kappa_r H_W]_+        (the corridor)
    L_smooth = (1/B) sum_j (1/T_j) sum_t (1/|tau_{j,t}|) sum_i alpha * P_{j,t,i}  (Eq. 4; 0 at k = 0)
    beta_k   = 1 + exp(-gamma * k / k_mid),  k_mid = floor(K / 2)                 (Eq. 5)

``L_MT`` is GRPO's clipped surrogate on the trajectory advantage (every turn's tokens carry
``(R_j - mean_G R) / (std_G R + eps)``), token-mean, plus ``beta`` * KL. ``T_j`` counts the turns
of trajectory j that have policy tokens. The history (``H_W``'s inputs) and ``k`` are the
method's state, checkpointed by the trainer: ``update_state`` appends the step's batch-mean token
entropy (the rollout's, i.e. the policy before the update, detached) after the update.

Differs from GRPO in:
  1. Rows are whole multi-turn episodes; the loss covers the policy's tokens only.
  2. An entropy bonus ``lambda * L_H`` averaged per turn, then per trajectory (Eq. 3), on the
     full-vocabulary entropy (not a sampled-token estimate), differentiated.
  3. An entropy corridor ``[kappa_l H_W, kappa_r H_W]`` around the historical mean entropy
     ``H_W`` (state across steps): tokens outside it are pushed back (``L_smooth``, weighted by
     the decaying phase weight ``beta_k``).

Defaults and why: ``lambda = 0.001`` (``entropy_coeff``), ``alpha = 0.05`` (ScienceWorld's
``entropy_smooth_out_range_penalty``), ``kappa_l = 0``, ``kappa_r = 2`` (the README's commands),
``K = 120`` RL steps (ScienceWorld); ``gamma_decay = 1`` (the paper gives no value),
``window = 0`` (all previous steps, as the paper's definition of ``H_W``; ``window = W`` keeps
the last W). ``smooth = "paper"`` is the differentiable ReLU corridor above; ``smooth = "code"``
reproduces the official code's penalty, a constant ``alpha`` per token outside the corridor with
zero gradient (so only ``lambda * L_H`` trains there). The code's per-turn-index history and its
epoch schedule are not reproduced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "epo"
PAPER = "EPO: Entropy-regularized Policy Optimization for LLM Agents Reinforcement Learning"
PAPER_URL = "https://arxiv.org/abs/2509.22576"
ROLLOUT = "episode"
DIFFERENTIABLE_BATCH_KEYS = ("entropies",)
BATCH_EXTRAS_NEED_STATE = True
SMOOTH_MODES = ("paper", "code")


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon (lower clip)
    eps_high: float = 0.2  # epsilon (upper clip)
    beta: float = 0.0  # KL weight (the EPO scripts train without a KL loss)
    kl_estimator: str = "k3"
    kl_clamp: float | None = None
    lam: float = 0.001  # lambda, weight of the entropy term (entropy_coeff)
    alpha: float = 0.05  # alpha, corridor penalty scale (entropy_smooth_out_range_penalty)
    kappa_l: float = 0.0  # kappa_l, lower corridor factor
    kappa_r: float = 2.0  # kappa_r, upper corridor factor
    total_steps: int = 120  # K, planned RL steps (k_mid = floor(K / 2))
    gamma_decay: float = 1.0  # gamma in beta_k = 1 + exp(-gamma k / k_mid)
    window: int = 0  # W: H_W over the last W steps; 0 = every previous step
    smooth: str = "paper"  # "paper" (ReLU corridor, differentiable) or "code" (constant, no gradient)
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "token_mean"  # of L_MT and KL


def check_config(run_cfg: Any) -> str | None:
    """EPO reads per-episode rows with their turns (``step_ids``), in groups of at least two."""
    a = run_cfg.algo
    if a.smooth not in SMOOTH_MODES:
        return f"algo.smooth must be one of {SMOOTH_MODES}, got {a.smooth!r}"
    if a.total_steps < 2 or a.window < 0:
        return f"algo.total_steps must be >= 2 and algo.window >= 0, got {a.total_steps}, {a.window}"
    if run_cfg.env.rows != "episode":
        return f"EPO needs env.rows='episode' (one row per episode), got {run_cfg.env.rows!r}"
    if run_cfg.train.group_size < 2:
        return "EPO's trajectory advantage compares the episodes of a group: train.group_size must be >= 2"
    return None


def init_state(cfg: Config) -> dict[str, Array]:
    """The entropy history: ``sum`` and ``k`` (steps so far) for ``window = 0``; ``recent`` [W] the
    last W step means (a ring, slot ``k % W``)."""
    return {
        "k": jnp.zeros((), jnp.int32),
        "sum": jnp.zeros((), jnp.float32),
        "recent": jnp.zeros((max(cfg.window, 1),), jnp.float32),
    }


def historical_entropy(state: dict[str, Array], cfg: Config) -> Array:
    """``H_W``: the mean of the previous steps' batch-mean entropies (the last ``window`` of them
    when ``window > 0``); 0 before the first step."""
    k = state["k"].astype(jnp.float32)
    if cfg.window == 0:
        return state["sum"] / jnp.maximum(k, 1.0)
    n = jnp.minimum(k, cfg.window)
    return jnp.sum(state["recent"]) / jnp.maximum(n, 1.0)  # slots not yet written hold 0


def phase_weight(k: Array, cfg: Config) -> Array:
    """``beta_k = 1 + exp(-gamma * k / k_mid)`` (Eq. 5), ``k_mid = floor(K / 2)``."""
    k_mid = max(cfg.total_steps // 2, 1)
    return 1.0 + jnp.exp(-cfg.gamma_decay * jnp.asarray(k, jnp.float32) / k_mid)


def update_state(state: dict[str, Array], rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """Appends this step's batch-mean token entropy ``H_k`` (over the policy's tokens) to the history."""
    mask = jnp.asarray(rollout["mask"], jnp.float32)  # the loss mask in a Batch
    ent = jnp.asarray(rollout["entropies"], jnp.float32)  # [B, T]
    h = jnp.sum(ent * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    slot = state["k"] % max(cfg.window, 1)
    return {"k": state["k"] + 1, "sum": state["sum"] + h, "recent": state["recent"].at[slot].set(h)}


def batch_extras(rollout: Rollout, cfg: Config, state: Any = None) -> dict[str, Array]:
    """Per row: ``entropy_anchor`` ``H_W`` and ``smooth_weight`` ``beta_k`` (0 at ``k = 0``: no
    history yet, ``L_smooth = 0``), broadcast to ``[B]`` so micro-batches carry their share."""
    st = init_state(cfg) if state is None else state
    B = jnp.shape(rollout["rewards"])[0]
    weight = jnp.where(st["k"] > 0, phase_weight(st["k"], cfg), 0.0)
    return {
        "entropy_anchor": jnp.full((B,), historical_entropy(st, cfg), jnp.float32),
        "smooth_weight": jnp.full((B,), weight, jnp.float32),
    }


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO's trajectory advantage ``(R_j - mean_G R) / (std_G R + eps)`` ``[B]`` (every turn shares it)."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def turn_averaged(x: Array, mask: Array, step_ids: Array, num_turns: int) -> Array:
    """Per row, ``(1/T_j) sum_t (1/|tau_{j,t}|) sum_i x_{j,t,i}`` over the tokens of ``mask`` ``[B, T]``
    grouped by ``step_ids`` ``[B, T]`` (turn index, ``0 .. num_turns-1``); ``T_j`` = turns with
    tokens. ``[B]``; 0 for a row without tokens."""
    onehot = jax.nn.one_hot(step_ids, num_turns, dtype=jnp.float32) * mask[..., None]  # [B, T, K]
    count = jnp.sum(onehot, axis=1)  # |tau_{j,t}| [B, K]
    total = jnp.einsum("btk,bt->bk", onehot, x)  # [B, K]
    per_turn = total / jnp.maximum(count, 1.0)  # [B, K]
    turns = jnp.sum((count > 0).astype(jnp.float32), axis=1)  # T_j [B]
    return jnp.sum(per_turn, axis=1) / jnp.maximum(turns, 1.0)


def corridor_penalty(ent: Array, anchor: Array, cfg: Config) -> Array:
    """``P = [kappa_l H_W - H]_+ + [H - kappa_r H_W]_+`` (``smooth = "paper"``), or the official code's
    ``alpha``-free indicator of leaving the corridor, detached (``"code"``). ``anchor`` ``[B, 1]``."""
    low, high = cfg.kappa_l * anchor, cfg.kappa_r * anchor
    if cfg.smooth == "code":
        return jax.lax.stop_gradient(((ent < low) | (ent > high)).astype(jnp.float32))
    return jax.nn.relu(low - ent) + jax.nn.relu(ent - high)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``L_MT + beta * KL - lambda * (L_H - beta_k * L_smooth)``; per-row sums over the global ``num_seqs``."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ent = inputs.token_array(batch, "entropies", mask, NAME)  # H_{j,t,i} [B, T], differentiable
    step_ids = jnp.asarray(batch["step_ids"], jnp.int32)  # [B, T]
    num_turns = int(jnp.shape(batch["step_rewards"])[1])  # K, static
    anchor = jnp.asarray(batch["entropy_anchor"], jnp.float32)[:, None]  # H_W [B, 1]
    smooth_w = jnp.asarray(batch["smooth_weight"], jnp.float32)  # beta_k (0 at k = 0) [B]

    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # L_MT
    l_h = jnp.sum(turn_averaged(ent, mask, step_ids, num_turns)) / ns  # L_H (Eq. 3)
    penalty = corridor_penalty(ent, anchor, cfg)  # P [B, T]
    per_row_smooth = turn_averaged(cfg.alpha * penalty, mask, step_ids, num_turns)  # [B]
    l_smooth = jnp.sum(smooth_w * per_row_smooth) / ns  # beta_k * L_smooth
    entropy_term = -cfg.lam * (l_h - l_smooth)
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    inside = ((ent >= cfg.kappa_l * anchor) & (ent <= cfg.kappa_r * anchor)).astype(jnp.float32)
    metrics["entropy/in_corridor"] = jnp.sum(inside * mask) / nt
    metrics["entropy/anchor"] = jnp.sum(anchor[:, 0]) / ns
    metrics["loss/entropy"] = -cfg.lam * l_h
    metrics["loss/smooth"] = cfg.lam * l_smooth
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, extra=entropy_term, where=NAME)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random turn structure for the invariant suite: K = 3 turns, tokens assigned to turns."""
    K = 3
    k1, k2 = jax.random.split(key)
    return {
        "step_ids": jax.random.randint(k1, (batch_size, seq_len), 0, K).astype(jnp.int32),
        "step_rewards": jax.random.bernoulli(k2, 0.3, (batch_size, K)).astype(jnp.float32),
    }
