"""PAPO: Perception-Aware Policy Optimization (PAPO_G, the GRPO variant).

Citation: Zhenhailong Wang, Xuehang Guo, Sofia Stoica, Haiyang Xu, Hongru Wang, Hyeonjeong Ha,
Xiusi Chen, Yangyi Chen, Ming Yan, Fei Huang, Heng Ji, "Perception-Aware Policy Optimization for
Multimodal Reasoning", 2025, https://arxiv.org/abs/2507.06448 (Eq. 2). Official code:
https://github.com/MikeWangWZHL/PAPO (an EasyR1/verl fork; ``verl/workers/actor/dp_actor.py``,
``verl/trainer/papo_utils.py``).

Objective (paper Eq. 2, maximized; ``loss`` returns the code's minimized form). For each prompt
(question q, image I), G outputs o_i ~ pi_old(. | q, I); I_mask is I with random patches blacked
out (each patch independently with probability ``mask_ratio``, ONE mask per prompt, shared by its
G rollouts):

    J = token-mean_{i,t} min(rho A_i, clip(rho, 1-eps_low, 1+eps_high) A_i)
        - beta  KL[pi_theta || pi_ref]
        + gamma KL_prc[pi_theta(.|q,I) || pi_mask(.|q,I_mask)]
        - eta_1 H[pi_theta] - eta_2 H[pi_mask]

As the code computes it, per token t of the sampled o_i (all terms token-mean over the batch):

    loss = pg + beta * k3(log pi_theta, log pi_ref)
              - gamma * k3(log pi_theta, l_mask)           KL_prc, d = l_mask - log pi_theta
              + eta_1 * (-log pi_theta)                     H_ori estimate
              + eta_2 * (-l_mask)                           H_mask estimate
    l_mask = log pi_old(o_t | q, I_mask)   (computed once per step before the update, DETACHED)

Maximizing KL_prc rewards outputs whose probability depends on the image: an answer that the
text alone would produce just as well earns nothing. The double-entropy terms (the code adds
+eta * (-mean log pi), i.e. it MINIMIZES the sampled entropy estimates; the paper's text writes
"-eta H" with H = log pi, the code is the authority on the sign) counter the collapse that a large
gamma alone causes.

Differs from GRPO in:
  1. A second, corrupted-image forward pass: ``l_mask`` (``batch["masked_logprobs"]`` [B, T],
     detached, as the code's default ``RECOMPUTE_AUG_LOG_PROBS = False``; with it the eta_2 term
     has no gradient).
  2. Minus ``gamma`` times the k3 estimate of KL(pi_theta || pi_mask) on the sampled tokens
     (clamped to ``[-kl_prc_clamp, kl_prc_clamp]`` like verl's ``low_var_kl``).
  3. Plus the two sampled-entropy terms ``eta_1 H_ori + eta_2 H_mask``.
  4. Aggregation ``token_mean`` over the batch (verl), GRPO's is ``seq_mean_token_mean``; the KL
     to the reference is verl's ``low_var_kl`` (k3, clamped at 10), ``beta = 0.01``.

Rows without an image (``batch["has_image"]`` = 0, e.g. the trainer's text tasks) have no
perception term and no masked entropy: PAPO degrades to GRPO (token-mean, k3 at beta) plus the
eta_1 entropy term. ``batch_extras`` fills ``has_image = 0`` and ``masked_logprobs =
old_logprobs`` when the rollout brought no corrupted pass, so every text run trains (and says so
in the metric ``papo/image_rows``).

Defaults: the code's GRPO-7B configuration (the one with every term): ``beta = 0.01``
(low_var_kl), ``gamma = 0.02``, ``eta_1 = eta_2 = 0.05``, eps 0.2 / 0.2, ``mask_ratio = 0.6``,
``mask_patch = 14`` pixels (the code's patch; small rendered images want a smaller one, e.g. the
vision encoder's patch). GRPO-3B sets eta to 0.

Corruption (``corrupt_images``): pixels in [0, 1], blacked-out patches set to 0, one mask per
group (group-major rows), the code's random masking (its DINOv2 "semantic" masking is not built:
the paper found random masking better).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "papo"
# On image tasks the group kind computes masked_logprobs with corrupt_images (rollouts.group).
ROLLOUT_EXTRAS = ("masked_logprobs",)
PAPER = "Perception-Aware Policy Optimization for Multimodal Reasoning"
PAPER_URL = "https://arxiv.org/abs/2507.06448"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon (lower clip)
    eps_high: float = 0.2  # epsilon (upper clip)
    beta: float = 0.01  # beta, KL weight to the reference (verl low_var_kl); 0 = no reference model
    kl_estimator: str = "k3"  # one of ops.kl.ESTIMATORS
    kl_clamp: float | None = 10.0  # verl clamps low_var_kl at 10
    gamma: float = 0.02  # gamma, weight of KL_prc (the perception term, maximized)
    kl_prc_clamp: float | None = 10.0  # clamp of the per-token KL_prc value (the code's low_var_kl)
    eta_1: float = 0.05  # eta_1, weight of the sampled entropy estimate of pi_theta(.|q, I)
    eta_2: float = 0.05  # eta_2, weight of the sampled entropy estimate of pi_mask (no gradient)
    mask_ratio: float = 0.6  # probability that a patch is blacked out in I_mask
    mask_patch: int = 14  # side of a blacked-out patch, pixels
    std_ddof: int = 1  # std of the group rewards (verl: unbiased)
    std_eps: float = 1e-6  # added to the std (verl)
    aggregation: str = "token_mean"  # verl's default loss_agg_mode


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO's outcome advantage (PAPO leaves it unchanged): ``(r_i - mean) / (std + std_eps)`` ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``masked_logprobs`` [B, T] and ``has_image`` [B]: the rollout's corrupted-image pass, or, for
    a rollout without one (text tasks), ``old_logprobs`` and 0 (no perception term; docstring)."""
    B = jnp.shape(rollout["tokens"])[0]
    if "masked_logprobs" in rollout:
        has = rollout["has_image"] if "has_image" in rollout else jnp.ones((B,), jnp.float32)
        return {"masked_logprobs": rollout["masked_logprobs"], "has_image": jnp.asarray(has, jnp.float32)}
    return {"masked_logprobs": rollout["old_logprobs"], "has_image": jnp.zeros((B,), jnp.float32)}


def _terms(logprobs: Array, batch: Batch, cfg: Config, x: dict[str, Array]) -> dict[str, Array]:
    """The perception and entropy terms, each aggregated like the policy term."""
    mask, nt, ns = x["mask"], x["num_tokens"], x["num_seqs"]
    inputs.require(batch, ("masked_logprobs", "has_image"), f"{NAME} (they come from papo.batch_extras)")
    masked = jax.lax.stop_gradient(inputs.token_array(batch, "masked_logprobs", mask, NAME))  # l_mask [B, T]
    image = inputs.per_token(batch["has_image"], mask, "has_image", NAME)  # [B, T] 1 where the row has an image
    kl_prc = kl.estimate(logprobs, masked, "k3", cfg.kl_prc_clamp) * image  # k3, d = l_mask - log pi [B, T]
    agg = lambda v: aggregation.aggregate(v, mask, cfg.aggregation, nt, ns)
    return {
        "kl_prc": agg(kl_prc),  # KL_prc[pi_theta || pi_mask]
        "entropy_ori": agg(-logprobs),  # H[pi_theta] ~ -log pi_theta(o_t)
        "entropy_mask": agg(-masked * image),  # H[pi_mask] ~ -l_mask (no gradient)
    }


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clipped surrogate + beta * KL_ref - gamma * KL_prc + eta_1 H_ori + eta_2 H_mask (docstring).

    ``logprobs`` [B, T]; ``batch`` per ``jaxrl_llm.types`` plus ``masked_logprobs`` [B, T] and
    ``has_image`` [B] (``batch_extras``), ``ref_logprobs`` when ``beta > 0``. A micro-batch gives
    its share of the full-batch loss (every term uses the global normalizers).
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token-mean
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    t = _terms(x["logprobs"], batch, cfg, x)
    papo = -cfg.gamma * t["kl_prc"] + cfg.eta_1 * t["entropy_ori"] + cfg.eta_2 * t["entropy_mask"]
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    metrics.update(
        {
            "papo/kl_prc": t["kl_prc"],
            "papo/entropy_ori": t["entropy_ori"],
            "papo/entropy_mask": t["entropy_mask"],
            "papo/image_rows": jnp.sum(jnp.asarray(batch["has_image"], jnp.float32)) / ns,  # share of rows
        }
    )
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, extra=papo, where=NAME)


def reinforce_loss(logprobs: Array, batch: Batch, cfg: Config) -> Array:
    """The on-policy (ratio 1, beta 0) gradient target: REINFORCE plus the PAPO terms."""
    mask = jnp.asarray(batch["mask"], jnp.float32)
    adv = inputs.per_token(batch["advantages"], mask, "advantages", NAME)
    x = {"mask": mask, "num_tokens": batch["num_tokens"], "num_seqs": batch["num_seqs"]}
    t = _terms(logprobs, batch, cfg, x)
    reinforce = aggregation.aggregate(-adv * logprobs, mask, cfg.aggregation, batch["num_tokens"], batch["num_seqs"])
    return reinforce - cfg.gamma * t["kl_prc"] + cfg.eta_1 * t["entropy_ori"] + cfg.eta_2 * t["entropy_mask"]


def corrupt_images(key: Array, images: Array, group_size: int, cfg: Config) -> Array:
    """I_mask: ``images`` [B, N, H, W, C] pixels in [0, 1], rows group-major; each ``mask_patch``
    square is set to 0 with probability ``mask_ratio``, one draw per group (its G rows share it).
    H and W need not be multiples of the patch (the last patch row/column is partial)."""
    B, N, H, W, _ = images.shape
    if B % group_size:
        raise ValueError(f"papo.corrupt_images: {B} rows are not whole groups of group_size={group_size}")
    p = cfg.mask_patch
    gh, gw = -(-H // p), -(-W // p)
    drop = jax.random.bernoulli(key, cfg.mask_ratio, (B // group_size, N, gh, gw))  # [P, N, gh, gw]
    drop = jnp.repeat(drop, group_size, axis=0)  # shared by the G rows of a group
    drop = jnp.repeat(jnp.repeat(drop, p, axis=2), p, axis=3)[:, :, :H, :W]  # [B, N, H, W]
    return jnp.where(drop[..., None], jnp.zeros_like(images), images)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Extra rollout keys for the invariant suite: ``masked_logprobs`` [B, T] (negative) and
    ``has_image`` [B] in {0, 1} (both kinds of rows)."""
    del group_size
    k1, k2 = jax.random.split(key)
    masked = -jax.random.uniform(k1, (batch_size, seq_len), minval=0.05, maxval=3.0)
    has = (jax.random.uniform(k2, (batch_size,)) < 0.7).astype(jnp.float32).at[0].set(1.0).at[-1].set(0.0)
    return {"masked_logprobs": masked, "has_image": has}
