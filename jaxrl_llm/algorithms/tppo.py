"""T-PPO: PPO on windows of in-flight responses, with extended GAE and a value trained on finished ones.

Citation: Tiantian Fan et al. (ByteDance Seed), "Truncated Proximal Policy Optimization", 2025,
https://arxiv.org/abs/2506.15050 (no official code found; the defaults follow the VC-PPO / VAPO
line it builds on: gamma = 1, lam_critic = 1, clip-higher).

Rollouts come from the ``window`` kind (``rollouts/window.py``): each step advances ``N`` in-flight
responses by at most ``w`` tokens; row ``b`` is a response so far (length ``l``, tokens ``0..l-1``),
``loss_mask`` marks this step's window, ``finished`` [B] whether it ended. Objective (minimized):

    EGAE over t = 0..l-1:  delta_t = r_t + gamma V(s_{t+1}) - V(s_t),  A_t = sum_k (gamma lam)^k delta_{t+k}
        finished:  r_{l-1} = R (the score), V(s_l) = 0;
        truncated: r_t = 0 and the missing bootstrap V(s_l) := V(s_{l-1}), so delta_{l-1} = (gamma - 1) V(s_{l-1})
    A <- whiten(A) over the window tokens of the batch (``whiten_advantages``)
    L_pg = token_mean over window tokens of -min(rho_t A_t, clip(rho_t, 1-eps_low, 1+eps_high) A_t),
           rho_t = pi(y_t) / pi_old(y_t) with pi_old the policy that sampled y_t's window
    R_t  = GAE_{lam_critic}(finished rewards) + V_old(s_t)        (lam_critic = 1: the Monte Carlo return)
    L_v  = mean over ALL tokens of FINISHED responses of 1/2 (V(s_t) - R_t)^2
    L    = L_pg + c_v L_v

Truncated responses train the policy (on their newest window) but not the value: their only
target would be the bootstrap. ``value_scale`` [B] (from ``batch_extras``, over the whole rollout)
turns ``num_tokens`` (the window tokens) into the value normalizer (the finished responses'
tokens), so both terms stay exact under micro-batching.

Differs from GRPO in:
  1. Rollouts are windows of responses in flight across steps (the ``window`` kind): a response
     spans several policy versions, each window keeping its own old log-probs.
  2. A learned critic and EGAE: per-token advantages ``[B, T]``, the bootstrap
     V(s_l) := V(s_{l-1}) for truncated responses; no groups.
  3. The value loss ``c_v * L_v`` on finished responses only.
  4. Clip-higher (eps_high > eps_low) and token-level normalization, as DAPO.

The in-flight set is this method's state (``init_state`` / ``update_state``), sized by
``num_slots``, ``max_prompt_len``, ``max_response_len`` (they must equal the run's
``train.prompts_per_step * train.group_size``, ``task.max_prompt_len``, ``sampling.max_new_tokens``:
``check_config``), and checkpointed with the run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "tppo"
PAPER = "Truncated Proximal Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2506.15050"
ROLLOUT = "window"
DIFFERENTIABLE_BATCH_KEYS = ("values",)


@dataclasses.dataclass(frozen=True)
class Config:
    window: int = 16  # w: new tokens per response per step
    num_slots: int = 64  # N in-flight responses (= train.prompts_per_step * train.group_size)
    max_prompt_len: int = 64  # = task.max_prompt_len (slots hold fixed-width prompts)
    max_response_len: int = 96  # = sampling.max_new_tokens
    eps_low: float = 0.2
    eps_high: float = 0.28
    beta: float = 0.0  # KL in the reward (k1 vs pi_ref); 0 = no reference model
    gamma: float = 1.0
    lam: float = 0.95  # lambda of the policy's EGAE
    lam_critic: float = 1.0  # lambda of the value targets (1: Monte Carlo returns)
    c_v: float = 0.1  # value-loss coefficient
    whiten_advantages: bool = True
    aggregation: str = "token_mean"


def check_config(run_cfg: Any) -> str | None:
    """Why a run config cannot train T-PPO (``None`` when it can): the in-flight set has the run's
    shapes, and a window fits in a response."""
    a, t = run_cfg.algo, run_cfg.train
    want = {
        "num_slots": t.prompts_per_step * t.group_size,
        "max_prompt_len": run_cfg.task.max_prompt_len,
        "max_response_len": run_cfg.sampling.max_new_tokens,
    }
    wrong = [f"algo.{k}={getattr(a, k)} (need {v})" for k, v in want.items() if getattr(a, k) != v]
    if wrong:
        return (
            "the in-flight set is sized by " + ", ".join(wrong) + ": set them to train.prompts_per_step * "
            "train.group_size, task.max_prompt_len and sampling.max_new_tokens"
        )
    if not 1 <= a.window <= a.max_response_len:
        return f"algo.window={a.window} must be in [1, algo.max_response_len={a.max_response_len}]"
    return None


def init_state(cfg: Config) -> dict[str, Array]:
    """The empty in-flight set: per slot (``N = num_slots``) ``active`` [N] (1 = a response in
    flight), ``prompt_tokens`` / ``prompt_mask`` [N, Sp], ``prompt_ids`` [N], ``tokens`` [N, T],
    ``lengths`` [N], ``sampler_logprobs`` / ``policy_logprobs`` [N, T] (each window's own)."""
    N, Sp, T = cfg.num_slots, cfg.max_prompt_len, cfg.max_response_len
    return {
        "active": jnp.zeros((N,), jnp.int32),
        "prompt_tokens": jnp.zeros((N, Sp), jnp.int32),
        "prompt_mask": jnp.zeros((N, Sp), jnp.int32),
        "prompt_ids": jnp.zeros((N,), jnp.int32),
        "tokens": jnp.zeros((N, T), jnp.int32),
        "lengths": jnp.zeros((N,), jnp.int32),
        "sampler_logprobs": jnp.zeros((N, T), jnp.float32),
        "policy_logprobs": jnp.zeros((N, T), jnp.float32),
    }


def update_state(state: dict[str, Array], rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """After the update: the rows become the in-flight set; finished rows free their slot."""
    return {
        "active": (jnp.asarray(rollout["finished"]) == 0).astype(jnp.int32),
        "prompt_tokens": jnp.asarray(rollout["prompt_tokens"], jnp.int32),
        "prompt_mask": jnp.asarray(rollout["prompt_mask"], jnp.int32),
        "prompt_ids": jnp.asarray(rollout["prompt_ids"], jnp.int32),
        "tokens": jnp.asarray(rollout["tokens"], jnp.int32),
        "lengths": jnp.asarray(rollout["lengths"], jnp.int32),
        "sampler_logprobs": jnp.asarray(rollout["sampler_logprobs"], jnp.float32),
        "policy_logprobs": jnp.asarray(rollout["policy_logprobs"], jnp.float32),
    }


def response_mask(rollout: Rollout, where: str) -> Array:
    """[B, T]: 1 on each row's first ``lengths`` positions (the whole response so far)."""
    inputs.require(rollout, ("lengths", "tokens"), where)
    T = jnp.shape(rollout["tokens"])[1]
    return (jnp.arange(T)[None, :] < jnp.asarray(rollout["lengths"])[:, None]).astype(jnp.float32)


def _token_rewards(rollout: Rollout, values: Array, mask: Array, cfg: Config, bootstrap: bool) -> Array:
    """Per-token rewards [B, T]: R on a finished row's last token; with ``bootstrap`` a truncated
    row's last token gets gamma V(s_{l-1}) (the EGAE bootstrap V(s_l) := V(s_{l-1})), else 0;
    minus beta k1 on every token when ``beta > 0``."""
    where = f"{NAME}.advantages"
    finished = jnp.asarray(rollout["finished"], jnp.float32)  # [B]
    last = adv_ops.last_token_rewards(jnp.ones_like(finished), mask)  # [B, T] one-hot at l-1
    v_last = jnp.sum(values * last, axis=1)  # V(s_{l-1}) [B]
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    tail = jnp.where(finished > 0, rewards, cfg.gamma * v_last if bootstrap else 0.0)  # [B]
    token_rewards = tail[:, None] * last
    if cfg.beta > 0:
        key = "old_logprobs" if "old_logprobs" in rollout else "sampler_logprobs"
        inputs.require(rollout, (key,), where)
        old = inputs.token_array(rollout, key, mask, where)
        token_rewards = token_rewards - cfg.beta * masked.where_mask(
            kl.k1(old, inputs.ref_logprobs(rollout, mask, where)), mask
        )
    return token_rewards


def _values(rollout: Rollout, where: str) -> tuple[Array, Array]:
    inputs.require(rollout, ("values", "rewards", "mask", "finished"), where)
    mask = jnp.asarray(rollout["mask"], jnp.float32)  # the whole response so far
    return masked.where_mask(inputs.token_array(rollout, "values", mask, where), mask), mask


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """EGAE advantages ``[B, T]`` over each response so far (module docstring), whitened over the
    window tokens (``loss_mask``; the whole mask when unset). Needs ``values`` (V_old [B, T]),
    ``finished`` [B], ``rewards`` [B] (read on finished rows only)."""
    values, mask = _values(rollout, f"{NAME}.advantages")
    adv, _ = adv_ops.gae(_token_rewards(rollout, values, mask, cfg, True), values, mask, cfg.gamma, cfg.lam)
    window = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else mask, jnp.float32) * mask
    if cfg.whiten_advantages:
        adv = masked.whiten(adv, window, eps=1e-8)
    metrics = adv_ops.stats(adv, window)
    metrics["frac_finished"] = jnp.mean(jnp.asarray(rollout["finished"], jnp.float32))
    return masked.where_mask(adv, mask), metrics


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``returns`` R_t = GAE_{lam_critic} + V_old (finished rows' targets), ``old_values`` [B, T];
    ``value_scale`` [B]: (window tokens) / (tokens of finished responses) over the WHOLE rollout."""
    values, mask = _values(rollout, f"{NAME}.batch_extras")
    _, returns = adv_ops.gae(_token_rewards(rollout, values, mask, cfg, False), values, mask, cfg.gamma, cfg.lam_critic)
    window = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else mask, jnp.float32)
    finished = jnp.asarray(rollout["finished"], jnp.float32)
    n_value = jnp.maximum(jnp.sum(response_mask(rollout, NAME) * finished[:, None]), 1.0)
    scale = jnp.full(finished.shape, jnp.maximum(jnp.sum(window), 1.0) / n_value, jnp.float32)
    return {"returns": returns, "old_values": values, "value_scale": scale}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """``L_pg + c_v * L_v``: PPO-clip over the window tokens (``mask``, normalizer ``num_tokens``),
    the value over every token of the finished rows (``finished``, ``lengths``; normalizer
    ``num_tokens / value_scale``). ``batch`` also needs ``values`` (current critic output,
    differentiated), ``returns`` and ``value_scale`` (``batch_extras``). Metrics add ``loss/value``."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    inputs.require(batch, ("values", "returns", "value_scale", "finished", "lengths"), NAME)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]  # mask: window tokens
    finished = jnp.asarray(batch["finished"], jnp.float32)  # [B]
    value_mask = response_mask(batch, NAME) * finished[:, None]  # [B, T] all tokens of finished rows
    values = masked.where_mask(inputs.token_array(batch, "values", value_mask, NAME), value_mask)
    returns = masked.where_mask(inputs.token_array(batch, "returns", value_mask, NAME), value_mask)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_t [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # L_pg
    value_w = value_mask * jnp.asarray(batch["value_scale"], jnp.float32)[:, None]  # [B, T]
    v_loss = cfg.c_v * jnp.sum(0.5 * jnp.square(values - returns) * value_w) / nt  # c_v L_v
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    total, metrics = diagnostics.finalize(metrics, policy, batch, mask, nt, extra=v_loss, where=NAME)
    metrics["loss/value"] = v_loss
    return total, metrics


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Random critic values V_old ``[B, T]`` and ``finished`` flags [B] for the invariant suite."""
    k1, k2 = jax.random.split(key)
    return {
        "values": 0.5 * jax.random.normal(k1, (batch_size, seq_len), jnp.float32),
        "finished": (jax.random.uniform(k2, (batch_size,)) < 0.5).astype(jnp.float32),
    }
