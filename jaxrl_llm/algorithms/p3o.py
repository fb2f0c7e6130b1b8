"""P3O: Pairwise Proximal Policy Optimization.

Citation: Tianhao Wu, Banghua Zhu, Ruoyu Zhang, Zhaojin Wen, Kannan Ramchandran, Jiantao Jiao,
"Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment", 2023,
https://arxiv.org/abs/2310.00212 (Eq. 6 and Sec. 4.2). No official code.

Two responses ``y1, y2 ~ pi_old`` per prompt, a KL-regularized trajectory reward

    r~(y) = r(y) - beta KL(y),   KL(y) = sum_t (log pi_old(y_t) - log pi_ref(y_t))    (sequence k1)

and the pairwise policy gradient ``E[(r~1 - r~2) grad (log pi(y1) - log pi(y2)) / 2]`` with
clipped sequence-level ratios ``rho_i = pi_theta(y_i|x) / pi_old(y_i|x)``, ``Delta = r~1 - r~2``:

    V1 ("separate"): L = -1/2 E[ min(rho1 Delta, clip(rho1, 1 +- eps) Delta)
                                 + min(rho2 (-Delta), clip(rho2, 1 +- eps) (-Delta)) ]
    V2 ("joint"):    L = -E[ min(rho12 Delta, clip(rho12, 1 +- eps) Delta) ],  rho12 = rho1 / rho2

Both depend on rewards only through ``Delta``: adding any constant (or any per-prompt shift
``delta(x)``) to the rewards leaves the loss and its gradient unchanged.

Rows: the ``pairs`` rollout kind, ``K = train.group_size`` samples per prompt (the paper: K = 2)
ranked by the task's reward into (best, worst); ``extras["chosen"]`` marks ``y1`` = the best,
``rewards`` the task's reward. Ties are kept (their ``Delta`` is the KL difference alone).

Differs from GRPO in:
  1. The advantage of a response is its reward minus its pair partner's, ``A_i = r~_i - r~_j``:
     no group mean, no std normalization (P3O's invariance to reward translation).
  2. Sequence-level ratios ``pi_theta(y)/pi_old(y)`` (summed log-probs, not per token, not
     length-normalized), clipped per response (V1) or jointly as ``rho1 / rho2`` (V2).
  3. The KL to the reference is in the reward (sequence k1 at pi_old, no gradient), not a loss term.
  4. The loss is a mean over pairs (``num_seqs / 2``), each response's sequence counted whole.

Defaults: ``eps = 0.2`` (the paper); ``clip = "separate"`` (V1; the spec of both forms is a
reconstruction, V2 is ``clip="joint"``); ``beta = 0.05`` (the repository's PPO KL-in-reward
default: the paper's value is not given in its text).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.judges import pairing as pairing_lib
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import clipping, diagnostics, inputs, sequence
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "p3o"
PAPER = "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment"
PAPER_URL = "https://arxiv.org/abs/2310.00212"
ROLLOUT = "pairs"
CLIPS = ("separate", "joint")
MAX_LOG_RATIO = 20.0


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon (lower side of the ratio clip)
    eps_high: float = 0.2  # epsilon (upper side)
    beta: float = 0.05  # beta: KL-in-reward weight; 0 = no reference model
    clip: str = "separate"  # "separate" (V1, per-response ratios) or "joint" (V2, rho1 / rho2)


def pairing(cfg: Config) -> pairing_lib.Pairing:
    """On-policy pairs ranked by the task's reward; ties kept (the KL still separates them)."""
    return pairing_lib.Pairing(source="policy", judge=None, drop_ties=False)


def check_config(run_cfg: Any) -> str | None:
    """A known clip form and whole pairs in every micro-batch."""
    if run_cfg.algo.clip not in CLIPS:
        return f"p3o: algo.clip must be one of {CLIPS}, got {run_cfg.algo.clip!r}"
    return pairing_lib.check_pairs_config(run_cfg, on_policy=True)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A_i = r~_i - r~_partner`` with ``r~ = r - beta KL(y)`` (sequence k1 at pi_old): ``[B]``."""
    mask = jnp.asarray(rollout["loss_mask"] if "loss_mask" in rollout else rollout["mask"], jnp.float32)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)  # r  [B]
    if cfg.beta > 0:
        old = rollout["old_logprobs"] if "old_logprobs" in rollout else rollout["sampler_logprobs"]
        kl_seq = sequence.sequence_log_ratio(old, rollout["ref_logprobs"], mask)  # KL(y)  [B]
        rewards = rewards - cfg.beta * kl_seq  # r~  [B]
    valid = sequence.pair_valid(rollout["group_ids"], mask)
    adv = (rewards - sequence.pair_other(rewards, rollout["group_ids"])) * valid  # A_i = r~_i - r~_j  [B]
    return adv, adv_ops.stats(adv, mask)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """V1 or V2 clipped pairwise loss, mean over pairs (global ``num_seqs / 2``)."""
    x = inputs.policy_inputs(logprobs, batch, NAME)
    mask, ns = x["mask"], x["num_seqs"]
    inputs.require(batch, ("group_ids", "chosen"), NAME)
    g, chosen = batch["group_ids"], batch["chosen"]
    adv = jnp.asarray(batch["advantages"], jnp.float32)
    if adv.ndim != 1:
        raise ValueError(f"{NAME}: advantages must be per sequence [B], got shape {adv.shape}")
    valid = sequence.pair_valid(g, mask)  # [B]
    log_ratio = jnp.clip(
        sequence.sequence_log_ratio(x["logprobs"], x["old_logprobs"], mask), -MAX_LOG_RATIO, MAX_LOG_RATIO
    )
    if cfg.clip == "separate":
        ratio = jnp.exp(log_ratio)  # rho_i  [B]
        per_row = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A)  [B]
        policy = jnp.sum(per_row * valid) / ns  # 1/2 per pair, over num_seqs / 2 pairs
        clip_ratio, clip_adv = ratio, adv
    else:
        ratio = jnp.exp(sequence.pair_margin(log_ratio, g, chosen))  # rho12 = rho(y1) / rho(y2)  [B]
        delta = sequence.pair_margin(adv, g, chosen) / 2.0  # Delta = r~(y1) - r~(y2)  [B]
        per_pair = clipping.clipped_surrogate(ratio, delta, cfg.eps_low, cfg.eps_high)  # [B]
        policy = sequence.pair_mean(per_pair, valid, ns)
        clip_ratio, clip_adv = ratio, delta
    metrics = diagnostics.ratio_metrics(clip_ratio, clip_adv, valid, ns, cfg.eps_low, cfg.eps_high)
    return diagnostics.finalize(metrics, policy, batch, mask, x["num_tokens"], where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """On-policy (all ratios 1) P3O is the pairwise policy gradient ``-sum_b c A_b log pi(y_b) /
    num_seqs``, ``c = 1`` for V1 and ``c = 2`` for V2 (whose gradient lacks V1's 1/2)."""
    seq = sequence.sequence_logprobs(logprobs, batch["mask"])
    c = 1.0 if cfg.clip == "separate" else 2.0
    return -c * jnp.sum(batch["advantages"] * seq) / batch["num_seqs"]


def example_extras(key: jax.Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Any]:
    """Pairs for the invariant suite: rows ``2p, 2p + 1`` form pair ``p``."""
    return sequence.example_pairs(key, batch_size)
