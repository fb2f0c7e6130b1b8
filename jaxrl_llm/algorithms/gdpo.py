"""GDPO: Group reward-Decoupled normalization Policy Optimization (multi-reward RL).

Citation: Shih-Yang Liu, Xin Dong, Ximing Lu, Shizhe Diao, Peter Belcak, Mingjie Liu, Min-Hung Chen,
Hongxu Yin, Yu-Chiang Frank Wang, Kwang-Ting Cheng, Yejin Choi, Jan Kautz, Pavlo Molchanov, "GDPO:
Group reward-Decoupled Normalization Policy Optimization for Multi-reward RL Optimization", 2026,
https://arxiv.org/abs/2601.05242; code https://github.com/NVlabs/GDPO.
verl: ``verl/trainer/ppo/core_algos.py: compute_gdpo_outcome_advantage`` (``adv_estimator=gdpo``,
``gdpo_reward_keys``, ``gdpo_reward_weights``) with verl's vanilla PPO loss; TRL:
``trl/trainer/grpo_trainer.py`` ``multi_objective_aggregation="normalize_then_sum"``.

Objective (maximized; ``loss`` returns its negative), for C reward components r_k (one per reward
function of the run) of each completion i in group g:

    A_{k,i} = (r_{k,i} - mean_{j in g} r_{k,j}) / (std_{j in g}(r_{k,j}) + eps)       (each component)
    S_i     = sum_k w_k A_{k,i}                                                      (then summed)
    A_i     = (S_i - mean S) / sqrt(var S + 1e-8)                                    (batch-whitened)
    J = E[ (1 / sum_i |o_i|) sum_i sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i) ]

GRPO normalizes the SUM of the rewards, so different reward combinations with the same total (and,
after the z-score, many more) collapse to one advantage; normalizing each component first keeps
them apart (paper Sec. 3). With one component GDPO is GRPO's z-score, batch-whitened.

Differs from GRPO in:
  1. Group z-score PER REWARD COMPONENT (``rollout["reward_components"]`` ``[B, C]``, the raw
     per-function rewards: ``ROLLOUT_EXTRAS`` asks the ``group`` kind for them), then a weighted sum.
  2. The sum is whitened over the whole batch.
  3. Token-level normalization (``token_mean``, verl's default) and ``beta = 0``.

Conventions (verl's by default): group std with ``ddof = 1``, ``eps = 1e-6`` added to it; the batch
statistics are over the batch's loss TOKENS (``whiten = "token"``: verl's ``masked_whiten`` of the
per-token advantages, Bessel-corrected, ``1e-8`` inside the square root), so a long completion
weighs more in the mean and variance. ``whiten = "sequence"`` is TRL's: over completions,
``(S - mean) / (std(ddof=1) + 1e-4)`` (set ``std_eps = 1e-4`` too for TRL's group step).

Where our default differs, and why: the weights ``w_k`` are ``algo.weights`` (all 1 when ``None``:
verl's ``gdpo_reward_weights`` default and the paper), not the run's ``reward`` weights, which a
per-component z-score would cancel anyway (TRL applies its ``reward_weights`` here: set
``algo.weights`` to them). A group of equal component rewards gives exactly 0 for that component
(as verl's); groups of one completion are refused (``ddof = 1``), where verl divides ``r`` by
``1 + eps``. Rows whose loss mask is empty (backfilled groups) take no part in the batch statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipped_terms, clipping, inputs, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "gdpo"
PAPER = "GDPO: Group reward-Decoupled Normalization Policy Optimization for Multi-reward RL Optimization"
PAPER_URL = "https://arxiv.org/abs/2601.05242"
# the raw reward of every reward function, [B, C] (rollouts/group.py builds it from the reward runner)
ROLLOUT_EXTRAS = ("reward_components",)
WHITEN = ("token", "sequence")


@dataclasses.dataclass(frozen=True)
class Config:
    weights: tuple[float, ...] | None = None  # w_k per reward component; None: all 1
    whiten: str = "token"  # batch statistics over loss tokens (verl) or completions (TRL)
    std_ddof: int = 1
    std_eps: float = 1e-6  # eps of the per-component group z-score (verl; TRL 1e-4)
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "token_mean"

    def __post_init__(self):
        if self.whiten not in WHITEN:
            raise ValueError(f"gdpo.Config.whiten must be one of {WHITEN}, got {self.whiten!r}")


def component_normalized(components: Array, group_size: int, ddof: int, eps: float) -> Array:
    """``A_{k,i}``: the group z-score of each component column. ``[B, C] -> [B, C]``."""
    z = jax.vmap(lambda r: adv_ops.group_normalized(r, group_size, ddof, eps), in_axes=1, out_axes=1)
    return z(components)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = whiten(sum_k w_k z_group(r_k)_i)`` (module docstring): ``[B]``. Needs
    ``rollout["reward_components"]`` ``[B, C]``."""
    inputs.require(rollout, ("reward_components",), f"{NAME}.advantages (from the group rollout's reward runner)")
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    comps = jnp.asarray(rollout["reward_components"], jnp.float32)
    if comps.ndim != 2 or comps.shape[0] != rewards.shape[0]:
        raise ValueError(f"{NAME}: reward_components has shape {comps.shape}; expected [{rewards.shape[0]}, C]")
    C = comps.shape[1]
    w = jnp.ones((C,), jnp.float32) if cfg.weights is None else jnp.asarray(cfg.weights, jnp.float32)
    if w.shape != (C,):
        raise ValueError(f"{NAME}: algo.weights has {w.shape[0]} entries for {C} reward components")
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)
    summed = component_normalized(comps, g, cfg.std_ddof, cfg.std_eps) @ w  # S_i = sum_k w_k A_{k,i} [B]
    if cfg.whiten == "token":  # verl: masked_whiten over the loss tokens
        tokens = jnp.broadcast_to(summed[:, None], mask.shape)
        mean, var = masked.masked_mean(tokens, mask), masked.masked_var(tokens, mask, ddof=1)
        a = (summed - mean) / jnp.sqrt(var + 1e-8)  # [B]
    else:  # TRL: over completions
        rows = jnp.any(mask != 0, axis=1).astype(jnp.float32)
        mean, std = masked.masked_mean(summed, rows), masked.masked_std(summed, rows, ddof=1)
        a = (summed - mean) / (std + 1e-4)  # [B]
    metrics = adv_ops.group_stats(a, rewards, rollout["mask"], g)
    for k in range(C):
        metrics[f"reward/component_{k}"] = jnp.mean(comps[:, k])
    return a, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate, ``token_mean`` over the whole batch (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # / sum_i |o_i|
    return clipped_terms.finalize(x, batch, ratio, policy, cfg, NAME)  # + beta * KL, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Two random reward components ``[B, 2]`` (0/1 correctness, continuous format) for the invariant suite."""
    k1, k2 = jax.random.split(key)
    return {
        "reward_components": jnp.stack(
            [
                jax.random.bernoulli(k1, 0.5, (batch_size,)).astype(jnp.float32),
                jax.random.uniform(k2, (batch_size,)),
            ],
            axis=1,
        )
    }
