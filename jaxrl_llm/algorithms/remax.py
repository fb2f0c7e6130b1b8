"""ReMax: REINFORCE with the reward of the policy's greedy response as the baseline.

Citation: Ziniu Li, Tian Xu, Yushun Zhang, Zhihang Lin, Yang Yu, Ruoyu Sun, Zhi-Quan Luo, "ReMax: A
Simple, Effective, and Efficient Reinforcement Learning Method for Aligning Large Language Models",
2023, https://arxiv.org/abs/2310.10505 (Algorithm 1); code https://github.com/liziniu/ReMax.
verl: ``verl/trainer/ppo/core_algos.py: compute_remax_outcome_advantage`` (``adv_estimator=remax``,
``reward_baselines`` from one greedy generation per prompt) with verl's vanilla PPO loss; TRL: none.

Objective (maximized; ``loss`` returns its negative), for each prompt x, sampled responses y_i and
the greedy response y_bar = argmax decoding of pi_old:

    A_i = r(x, y_i) - r(x, y_bar)
    J = E[ (1/N) sum_i sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1-eps_low, 1+eps_high) A_i) ]

On-policy (``rho = 1``) this is ReMax's REINFORCE gradient ``sum_t grad log pi(y_{i,t}) (r_i - r_bar)``
per response, averaged over responses; the clip only matters when a rollout is reused (verl's
pairing with the PPO loss).

Differs from GRPO in:
  1. The baseline is the reward of a GREEDY response to the same prompt (one extra decode per
     prompt, rollout kind ``greedy_baseline``), not the group mean; no std division. It needs no
     group: ``train.group_size = 1`` is ReMax's setting.
  2. Per-response token SUM, mean over responses (``seq_mean_token_sum``): the paper's REINFORCE
     sums the log-probs of a response.
  3. ``beta = 0`` by default (the paper adds its KL to the reward for RLHF; here optional in the loss).

Defaults: ``eps = 0.2`` (verl's PPO clip), ``seq_mean_token_sum``, no KL. verl places the reward on
the last token and uses the reward-to-go ``sum_{s >= t} r_s`` minus the baseline at every token,
which for an outcome reward equals ``A_i`` on every token, as here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipped_terms, clipping, inputs, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "remax"
PAPER = "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for Aligning Large Language Models"
PAPER_URL = "https://arxiv.org/abs/2310.10505"
ROLLOUT = "greedy_baseline"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"  # used only when beta > 0
    kl_clamp: float | None = None
    aggregation: str = "seq_mean_token_sum"


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = r_i - r(greedy response to the prompt of i)``: ``[B]``. Needs ``rollout["greedy_rewards"]``
    ``[B]`` (the ``greedy_baseline`` rollout kind)."""
    inputs.require(rollout, ("greedy_rewards",), f"{NAME}.advantages (from the greedy_baseline rollout kind)")
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    baseline = jnp.asarray(rollout["greedy_rewards"], jnp.float32)
    if baseline.shape != rewards.shape:
        raise ValueError(f"{NAME}: greedy_rewards has shape {baseline.shape}; expected {rewards.shape} like 'rewards'")
    a = rewards - baseline
    metrics = adv_ops.stats(a, rollout["mask"])
    metrics["reward/greedy"] = jnp.mean(baseline)
    return a, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate, per-response token sum averaged over ``num_seqs`` (+ ``beta`` * KL likewise)."""
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # (1/N) sum_i sum_t
    return clipped_terms.finalize(x, batch, ratio, policy, cfg, NAME)  # + beta * KL, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random 0/1 greedy-response rewards ``[B]``, equal within a group, for the invariant suite."""
    per_prompt = jax.random.bernoulli(key, 0.5, (batch_size // group_size,)).astype(jnp.float32)
    return {"greedy_rewards": jnp.repeat(per_prompt, group_size)}
