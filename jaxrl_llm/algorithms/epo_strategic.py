"""EPO (strategic): Explicit Policy Optimization, reward-weighted training of a strategist.

Citation: Xiaoqian Liu, Ke Wang, Yongbin Li et al., "EPO: Explicit Policy Optimization for
Strategic Reasoning in LLMs via Reinforcement Learning", ACL 2025, https://arxiv.org/abs/2502.12486;
official code https://github.com/lxqpku/EPO (``src/llamafactory/train/sft/trainer.py``
``reward_weighted_loss``; ``data_new/utils/preprocessing.py`` for the returns).

Setting: the trained policy is a strategy model LLM^s; each turn it writes a strategy that a
frozen acting model LLM^d turns into environment actions (``envs.strategic.StrategyEnv``: a
frozen model or a scripted actor). Rows: one per episode (rollout kind ``episode``), the policy's
tokens are the strategy turns (``step_ids`` [B, T]: the turn of each token); ``step_rewards``
[B, K] are the turns' process rewards ``r_k`` (1 for a turn the PRM marks critical, the final
score on the last turn otherwise, 0 else; the environment computes them), ``anchor_ids`` >= 0 on
the turns taken.

    G_k      = sum_{j >= k} gamma^(j - k) r_j                      (discounted return, gamma = 0.99)
    G^_k     = G_k / max_k |G_k|      (per episode; 0 when the max is 0)
    L        = -(1/B) sum_i (1/K_i) sum_k (G^_{i,k} / |seg_{i,k}|) sum_{t in seg_{i,k}} log pi(w_t | .)

with ``seg_{i,k}`` the policy tokens of strategy turn k of episode i and ``K_i`` its turns with
tokens. No baseline, ratio, clipping or KL (``beta`` adds a k3 KL when > 0): REINFORCE /
reward-weighted regression on the collected episodes.

Differs from GRPO in:
  1. Rows are multi-turn episodes of a strategist whose actions a frozen actor executes; only the
     strategy tokens are trained.
  2. Per-turn process rewards (a PRM's critical turns plus the final score), discounted returns
     and per-episode max-abs normalisation instead of a group-normalised outcome: no group, no
     baseline (``group_size`` may be 1).
  3. The loss is a reward-weighted NLL, each turn's token mean weighted by its return and averaged
     over the episode's turns; no importance ratio or clipping.

Defaults and why: ``gamma = 0.99`` (``preprocessing.py``). The code sums the per-sequence losses
of a micro-batch of one (8 accumulation steps, averaged by the trainer): ``1/B`` here, over the
global batch. The code trains offline on episodes collected with the previous strategist
(iterative self-play); here every RL step collects with the current one (``train.num_iterations``
epochs over them). The PRM (GPT-4o in the paper) is the environment's oracle (said so in
``envs/strategic.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "epo_strategic"
PAPER = "EPO: Explicit Policy Optimization for Strategic Reasoning in LLMs via Reinforcement Learning"
PAPER_URL = "https://arxiv.org/abs/2502.12486"
ROLLOUT = "episode"


@dataclasses.dataclass(frozen=True)
class Config:
    gamma: float = 0.99  # gamma, discount of the process-reward returns
    beta: float = 0.0  # KL weight (none in the paper's loss)
    kl_estimator: str = "k3"
    kl_clamp: float | None = None
    aggregation: str = "token_mean"  # of the optional KL term only


def check_config(run_cfg: Any) -> str | None:
    """Per-episode rows with their turns (``step_ids``, ``step_rewards``)."""
    if run_cfg.env.rows != "episode":
        return f"EPO-strategic needs env.rows='episode' (one row per episode), got {run_cfg.env.rows!r}"
    if not 0.0 <= run_cfg.algo.gamma <= 1.0:
        return f"algo.gamma must be in [0, 1], got {run_cfg.algo.gamma}"
    return None


def normalized_returns(step_rewards: Array, valid: Array, gamma: float) -> Array:
    """``G^_k = G_k / max_k |G_k|`` ``[B, K]``, ``G_k = sum_{j >= k} gamma^(j-k) r_j`` over the valid
    turns; 0 for a row whose returns are all 0 and on invalid turns."""
    K = step_rewards.shape[1]
    k = jnp.arange(K)
    discount = jnp.where(k[None, :] >= k[:, None], gamma ** (k[None, :] - k[:, None]).astype(jnp.float32), 0.0)
    returns = ((step_rewards * valid) @ discount.T) * valid  # G [B, K]
    scale = jnp.max(jnp.abs(returns), axis=1, keepdims=True)  # [B, 1]
    return jnp.where(scale > 0, returns / jnp.maximum(scale, 1e-30), 0.0)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``G^_{k(t)}`` on every token of strategy turn k ``[B, T]`` (0 off the turns)."""
    anchor_ids = jnp.asarray(rollout["anchor_ids"], jnp.int32)  # [B, K], -1 after the last turn
    valid = (anchor_ids >= 0).astype(jnp.float32)
    g_hat = normalized_returns(jnp.asarray(rollout["step_rewards"], jnp.float32), valid, cfg.gamma)  # [B, K]
    step_ids = jnp.asarray(rollout["step_ids"], jnp.int32)  # [B, T]
    K = g_hat.shape[1]
    on_turn = (step_ids >= 0) & (step_ids < K)
    adv = jnp.where(on_turn, jnp.take_along_axis(g_hat, jnp.clip(step_ids, 0, K - 1), axis=1), 0.0)  # [B, T]
    metrics = adv_ops.stats(adv, rollout["mask"])
    metrics["adv/turn_return_mean"] = jnp.sum(g_hat * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    return adv, metrics


def turn_weights(mask: Array, step_ids: Array, num_turns: int) -> Array:
    """``1 / (|seg_{i,k(t)}| K_i)`` per token of ``mask`` ``[B, T]`` (0 elsewhere): each turn's token
    mean, then the mean over the row's turns with tokens."""
    onehot = jax.nn.one_hot(step_ids, num_turns, dtype=jnp.float32) * mask[..., None]  # [B, T, K]
    seg = jnp.sum(onehot, axis=1)  # |seg_{i,k}| [B, K]
    turns = jnp.sum((seg > 0).astype(jnp.float32), axis=1, keepdims=True)  # K_i [B, 1]
    per_turn = jnp.where(seg > 0, 1.0 / (jnp.maximum(seg, 1.0) * jnp.maximum(turns, 1.0)), 0.0)  # [B, K]
    return jnp.einsum("btk,bk->bt", onehot, per_turn)


def weighted_nll(logprobs: Array, batch: Batch) -> Array:
    """``-(1/B) sum_i (1/K_i) sum_k (G^_{i,k} / |seg_{i,k}|) sum_t log pi`` with the global ``B``."""
    mask = jnp.asarray(batch["mask"], jnp.float32)  # [B, T]
    adv = inputs.per_token(batch["advantages"], mask, "advantages", NAME)  # G^_{k(t)} [B, T]
    num_turns = int(jnp.shape(batch["step_rewards"])[1])
    w = turn_weights(mask, jnp.asarray(batch["step_ids"], jnp.int32), num_turns)  # [B, T]
    return -jnp.sum(w * adv * jnp.asarray(logprobs, jnp.float32) * mask) / jnp.asarray(batch["num_seqs"], jnp.float32)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """The reward-weighted NLL of the strategy turns (plus ``beta`` * KL when ``beta`` > 0)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    policy = weighted_nll(x["logprobs"], batch)
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # drift from the collecting policy
    metrics = diagnostics.ratio_stats(ratio, mask, nt)
    metrics["clip_frac"] = jnp.zeros((), jnp.float32)  # nothing is clipped
    metrics["nll"] = -jnp.sum(x["logprobs"] * mask) / nt
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """The loss is REINFORCE itself (no ratio): its own surrogate, for the invariant suite."""
    return weighted_nll(logprobs, batch)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random turn structure for the invariant suite: K = 3 turns (the last one missing on every
    other row), tokens assigned to turns, sparse process rewards."""
    K = 3
    k1, k2 = jax.random.split(key)
    missing = (jnp.arange(batch_size)[:, None] % 2 == 1) & (jnp.arange(K)[None, :] == K - 1)
    step_ids = jax.random.randint(k1, (batch_size, seq_len), 0, K)
    step_ids = jnp.where(missing.any(axis=1, keepdims=True), jnp.minimum(step_ids, K - 2), step_ids)
    rewards = jax.random.bernoulli(k2, 0.5, (batch_size, K)).astype(jnp.float32)
    return {
        "step_ids": step_ids.astype(jnp.int32),
        "step_rewards": jnp.where(missing, 0.0, rewards),
        "anchor_ids": jnp.where(missing, -1, 0).astype(jnp.int32),
    }
