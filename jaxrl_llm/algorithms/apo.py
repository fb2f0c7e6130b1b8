"""APO: Asymmetric Policy Optimization (text part): DADS on positive samples, STCR on negatives.

Minjie Hong, Zirun Guo, Yan Xia, Zehan Wang, Ziang Zhang, Tao Jin, Zhou Zhao, "APO: Enhancing
Reasoning Ability of MLLMs via Asymmetric Policy Optimization", arXiv 2506.21655 (2025), https://arxiv.org/abs/2506.21655
(model "View-R1"). Official code: github.com/Indolent-Kawhi/View-R1 at 093f2d8
(``openrlhf/trainer/ppo_utils/experience_maker.py`` for STCR, ``openrlhf/trainer/ray/ppo_actor.py``
for DADS). The paper's vision input is out of scope here; the objective is modality-agnostic.

Objective. Per group of ``G`` samples with rewards ``R_i``, correctness ``c_i = trunc(R_i)``
(accuracy in {0, 1} when ``R = acc + format`` with format in {0, 0.5}), lengths ``L_i``:

    p = mean_i c_i,  d = 1 - p                                  (difficulty of the prompt)
    L+ = sum_i c_i L_i / (sum_i c_i + 1e-9)                     (mean length of the correct ones)
    Delta_i = (L_i - L+) (1 - c_i)                              (excess length of a wrong answer)
    w_i = 1 + 1[sum c > 0] 1[Delta_i > 0] (1 - b^(-Delta_i))    (STCR: Suboptimal Trajectory
                                                                 Complexity Regularization)
    A_i = w_i (R_i - mean R) / (std(R; ddof=1) + 1e-9)
    omega(d) = 1 if d in {0, 1} else 1 - exp(-e (1 - d))        (DADS: Difficulty-Adaptive
    kappa_i = omega(d) if A_i > 0 else 1                        Divergence Shaping)
    L(theta) = token-mean_{i,t} -min(rho A_i, clip(rho, 1 - eps, 1 + eps) A_i)
               + beta (1/B) sum_i kappa_i (sum_t m_{i,t} k3_{i,t} / sum_t m_{i,t})

A wrong answer longer than the group's correct ones is pushed down harder (w > 1), and a correct
answer to a hard prompt (large d) is held less tightly to the reference (kappa < 1).

Differs from GRPO in:
  1. Advantage: negatives (wrong answers) longer than the mean correct length are scaled by
     ``w_i >= 1`` (STCR), growing with the excess length.
  2. KL weight: per sequence, ``beta * omega(d)`` for positive-advantage samples, with ``omega``
     decreasing in the prompt's difficulty ``d``; ``beta`` for the others (DADS).
  3. Aggregation: the policy term is a token-mean over the batch (OpenRLHF), the KL term a mean over
     sequences of each sequence's token-mean; GRPO takes both as ``seq_mean_token_mean``.
  4. Epsilons: ``std_eps = 1e-9`` (OpenRLHF), ``beta = 1e-3`` (the released script).

Defaults follow the released code (the View-R1 repository above; the paper's method section was not
read, so the code is the only verified source):
  * ``stcr_base = 1.00001``: the code's hard-coded base, which makes STCR at most ~4 % even at
    4096 excess tokens. It is a field because at toy lengths (< 100 tokens) the effect is invisible:
    use ~1.01 or more there.
  * ``dads_e = 2.71828``: the code's constant. ``omega(d)`` is 1 (not ``omega(0)``) for all-correct
    groups, which have zero advantages anyway.
  * "Positive" is the sign of the sample's advantage (the code checks ``advantage[0] > 0``), not its
    correctness.
  * Lengths count every generated token (the code's action-mask sum).

Trainer hook: ``batch_extras(rollout, cfg) -> {"kl_weights": kappa [B]}``, computed on the whole
rollout (kappa depends on the group) and merged into the loss batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "apo"
PAPER = "APO: Enhancing Reasoning Ability of MLLMs via Asymmetric Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2506.21655"


@dataclasses.dataclass(frozen=True)
class Config:
    """APO hyperparameters (symbols of the module docstring; defaults of the released code)."""

    eps_low: float = 0.2  # epsilon (symmetric clip in the code)
    eps_high: float = 0.2
    beta: float = 1e-3  # beta: KL weight (init_kl_coef)
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none (OpenRLHF)
    std_ddof: int = 1  # torch .std(): unbiased
    std_eps: float = 1e-9  # OpenRLHF's epsilon
    stcr_base: float = 1.00001  # b: STCR weight 1 - b^(-Delta); >= 1 (1 turns STCR off: an ablation)
    dads_e: float = 2.71828  # e in omega(d) = 1 - exp(-e (1 - d))
    correct_threshold: float = 1.0  # c_i = 1[R_i >= threshold] (== trunc(R_i) for R in [0, 2))
    aggregation: str = "token_mean"  # of the policy term
    kl_aggregation: str = "seq_mean_token_mean"  # of the kappa-weighted KL term

    def __post_init__(self):
        if self.stcr_base < 1.0:
            raise ValueError(f"apo.Config.stcr_base must be >= 1 (b of 1 - b^-Delta), got {self.stcr_base}")
        if self.dads_e <= 0:
            raise ValueError(f"apo.Config.dads_e must be > 0, got {self.dads_e}")
        for field in ("aggregation", "kl_aggregation"):
            if getattr(self, field) not in aggregation.MODES:
                raise ValueError(f"apo.Config.{field} must be one of {aggregation.MODES}, got {getattr(self, field)!r}")


def dads_weight(difficulty: Array, cfg: Config) -> Array:
    """DADS ``omega(d) = 1 - exp(-e (1 - d))`` for ``0 < d < 1``, and 1 at ``d`` in {0, 1}. Elementwise."""
    d = jnp.asarray(difficulty, jnp.float32)
    omega = -jnp.expm1(-cfg.dads_e * (1.0 - d))
    return jnp.where((d == 0.0) | (d == 1.0), 1.0, omega)


def stcr_weights(correct: Array, lengths: Array, group_size: int, cfg: Config) -> Array:
    """STCR ``w_i = 1 + 1[any correct] 1[Delta_i > 0] (1 - b^(-Delta_i))``. ``[B] -> [B]``.

    ``Delta_i = (L_i - L+) (1 - c_i)``, ``L+`` the group's mean correct length (``+ 1e-9`` in the
    denominator, as in the code). ``1 - b^(-Delta)`` is computed as ``-expm1(-Delta log b)``.
    """
    c = jnp.asarray(correct, jnp.float32).reshape(-1, group_size)  # [P, G]
    n = jnp.asarray(lengths, jnp.float32).reshape(-1, group_size)
    n_correct = jnp.sum(c, axis=1, keepdims=True)
    mean_correct_len = jnp.sum(c * n, axis=1, keepdims=True) / (n_correct + 1e-9)
    excess = (n - mean_correct_len) * (1.0 - c)
    penalty = -jnp.expm1(-jnp.maximum(excess, 0.0) * math.log(cfg.stcr_base))
    return (1.0 + jnp.where((n_correct > 0) & (excess > 0), penalty, 0.0)).reshape(-1)


def _group_terms(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    g = adv_ops.group_size_of(rollout)
    r = jnp.asarray(rollout["rewards"], jnp.float32)
    mask = jnp.asarray(rollout["mask"], jnp.float32)
    if mask.ndim != 2 or mask.shape[0] != r.shape[0]:
        raise ValueError(f"apo: rollout mask must be [B, T] with B = {r.shape[0]} rows like rewards, got {mask.shape}")
    correct = (r >= cfg.correct_threshold).astype(jnp.float32)
    lengths = jnp.sum(mask, axis=1)  # the code's response_length: generated tokens that count
    difficulty = jnp.repeat(1.0 - jnp.mean(correct.reshape(-1, g), axis=1), g)  # [B]
    w = stcr_weights(correct, lengths, g, cfg)
    adv = w * adv_ops.group_normalized(r, g, cfg.std_ddof, cfg.std_eps)
    kappa = jnp.where(adv > 0, dads_weight(difficulty, cfg), 1.0)
    return {
        "g": g,
        "r": r,
        "mask": mask,
        "correct": correct,
        "lengths": lengths,
        "difficulty": difficulty,
        "w": w,
        "adv": adv,
        "kappa": kappa,
    }


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """STCR-weighted GRPO advantage ``A_i = w_i (R_i - mean R) / (std(R) + std_eps)``. ``[B]``.

    Metrics: advantage stats, ``frac_zero_std_groups``, ``apo/len_wrong`` and ``apo/len_correct``
    (mean generated tokens of wrong / correct samples), ``apo/stcr_weight_wrong`` (mean ``w`` of
    wrong samples), ``apo/difficulty`` (mean ``d``), ``apo/kl_weight_pos`` (mean ``kappa`` of
    positive samples).
    """
    del state
    x = _group_terms(rollout, cfg)
    c, wrong, pos = x["correct"], 1.0 - x["correct"], (x["adv"] > 0).astype(jnp.float32)
    metrics = adv_ops.group_stats(x["adv"], x["r"], x["mask"], x["g"])
    metrics.update(
        {
            "apo/len_wrong": jnp.sum(wrong * x["lengths"]) / jnp.maximum(jnp.sum(wrong), 1.0),
            "apo/len_correct": jnp.sum(c * x["lengths"]) / jnp.maximum(jnp.sum(c), 1.0),
            "apo/stcr_weight_wrong": jnp.sum(wrong * x["w"]) / jnp.maximum(jnp.sum(wrong), 1.0),
            "apo/difficulty": jnp.mean(x["difficulty"]),
            "apo/kl_weight_pos": jnp.sum(pos * x["kappa"]) / jnp.maximum(jnp.sum(pos), 1.0),
        }
    )
    return x["adv"], metrics


def batch_extras(rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """``{"kl_weights": kappa [B]}``: DADS's per-sequence KL multiplier (``omega(d)`` if ``A > 0``, else 1).

    Depends on the whole group, so the trainer computes it on the full rollout and merges it into
    the batch before splitting into micro-batches.
    """
    return {"kl_weights": _group_terms(rollout, cfg)["kappa"]}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Clipped surrogate (``cfg.aggregation``) + ``beta`` * the kappa-weighted KL (``cfg.kl_aggregation``).

    ``logprobs`` [B, T]; ``batch`` per ``jaxrl_llm.types`` plus ``kl_weights`` [B] (from
    ``batch_extras``) and ``ref_logprobs`` when ``beta > 0``. With the default aggregations:
    ``sum m l / num_tokens + beta sum_i kappa_i (sum_t m k3 / |y_i|) / num_seqs``; a micro-batch
    gives its share of the full-batch loss.
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A_i, clip(rho) A_i) [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token-mean
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)  # clip_frac, ratio/*
    if cfg.beta == 0:
        return diagnostics.finalize(metrics, policy, batch, mask, nt, where=NAME)
    inputs.require(batch, ("kl_weights",), f"{NAME} (beta > 0; kl_weights come from apo.batch_extras)")
    kappa = inputs.per_token(batch["kl_weights"], mask, "kl_weights", NAME)  # DADS kappa_i [B, T]
    per_token_kl = kl.estimate(x["logprobs"], x["ref_logprobs"], cfg.kl_estimator, cfg.kl_clamp)  # [B, T]
    kl_term = aggregation.aggregate(
        kappa * per_token_kl, mask, cfg.kl_aggregation, nt, ns
    )  # (1/B) sum_i kappa_i mean_t KL
    total, metrics = diagnostics.finalize(
        metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME
    )  # + beta * KL
    metrics["kl"] = aggregation.aggregate(
        per_token_kl, mask, cfg.kl_aggregation, nt, ns
    )  # unweighted, comparable across methods
    return total, metrics


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Extra batch keys for the invariant suite: ``kl_weights`` [B] in the range of ``omega``, (0, 1]."""
    del seq_len, group_size
    return {"kl_weights": jax.random.uniform(key, (batch_size,), minval=0.05, maxval=1.0)}
