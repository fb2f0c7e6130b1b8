"""BNPO: Beta Normalization Policy Optimization.

Changyi Xiao, Mengdi Zhang, Yixin Cao, "BNPO: Beta Normalization Policy Optimization", 2025,
https://arxiv.org/abs/2506.02864. Official code: github.com/changyi7231/BNPO
(``recipe/bnpo/src/bnpo_ray_trainer.py``, ``compute_bnpo_outcome_advantage``).

Objective (maximized; ``loss`` returns its negative): the PPO clipped surrogate with dual-clip,
aggregated ``seq-mean-token-sum``, over the advantage

    A_i = (R_i - p_q) / f_Beta(p_q; alpha, beta)

* rewards are mapped to ``[0, 1]`` by ``(R - reward_min) / (reward_max - reward_min)``;
* ``p_q = mean_{i in group q} R_i`` (the sample itself included; ``p = 0`` for groups of one);
* ``(alpha, beta)`` come from a method-of-moments Beta fit of the per-prompt success rates:
  ``mu = mean_q p_q``, ``v = var_q p_q`` (``var_ddof``), ``a = (mu (1 - mu) / v - 1) mu``,
  ``b = (mu (1 - mu) / v - 1) (1 - mu)``, and the variance-optimal normalizer of the paper's
  theorem is ``alpha = max(1, 1 + a/3)``, ``beta = max(1, 1 + b/3)`` (one prompt: ``mu = 0, v = 1``);
* ``1 / f_Beta`` is clamped to ``[0, 1e6]``; at ``p in {0, 1}`` the numerator is 0, so ``A = 0``.

``alpha = beta = 1`` is REINFORCE with a group-mean baseline; ``alpha = beta = 3/2`` is
``(pi/8) (R - p) / sqrt(p (1 - p))``, GRPO with the population std scaled by ``pi/8``.

Differs from GRPO in:
  1. the advantage divides ``R - p`` by a Beta density at ``p`` instead of the group std, and the
     density's parameters follow the batch's distribution of success rates (the "dynamically
     updated" normalizer), which the paper proves minimizes the gradient variance;
  2. loss aggregated ``seq-mean-token-sum`` (sum over a response's tokens, mean over responses);
  3. asymmetric clip ``eps_low = 0.2``, ``eps_high = 0.28`` with dual-clip ``c = 10``;
  4. no KL term (``beta = 0``).

State: ``{mu, v, alpha, beta, steps}`` per reward component. With ``momentum = 0`` (the default,
the paper and code: the normalizer is refit on every batch) the advantages depend on this batch
only and the state records the fitted trajectory of ``(alpha, beta)``. ``momentum in (0, 1)``
tracks ``mu`` and ``v`` by an exponential moving average across steps, which steadies the fit
when a batch holds few prompts (the trainer checkpoints the state; a resumed run continues it).

Defaults and code-vs-paper differences (config fields):
  * ``var_ddof = 1``: the code's ``torch.var`` (unbiased); 0 is the population variance.
  * ``var_floor = 1e-6``: when every prompt has the same success rate, ``v = 0`` and the code
    divides by zero; flooring ``v`` gives a very peaked Beta and ``A -> 0``, the limit.
  * ``reward_components = 0``: one reward. ``K > 0`` is the code's ``use_advantage_decomposition``:
    the BNPO advantage of each column of ``rollout["reward_components"]`` ``[B, K]`` (each fit
    separately), averaged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Metrics

NAME = "bnpo"
PAPER = "BNPO: Beta Normalization Policy Optimization (Xiao, Zhang, Cao, 2025)"
PAPER_URL = "https://arxiv.org/abs/2506.02864"


@dataclasses.dataclass(frozen=True)
class Config:
    """BNPO hyper-parameters (defaults from the official ``run.sh`` / trainer)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    clip_c: float = 10.0  # dual-clip c (verl clip_ratio_c)
    beta: float = 0.0  # KL weight (not the Beta parameter; that one lives in the state)
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    aggregation: str = "seq_mean_token_sum"
    reward_min: float = 0.0  # affine map of rewards to [0, 1]
    reward_max: float = 1.0
    var_ddof: int = 1
    var_floor: float = 1e-6
    max_inv_density: float = 1e6  # clamp of 1 / f_Beta
    momentum: float = 0.0  # EMA of (mu, v) across steps; 0 = refit per batch (paper, code)
    reward_components: int = 0  # K > 0: advantage decomposition over rollout["reward_components"]

    def __post_init__(self):
        if not self.reward_max > self.reward_min:
            raise ValueError(f"bnpo.Config: need reward_max > reward_min, got {self.reward_min}, {self.reward_max}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"bnpo.Config.momentum must be in [0, 1), got {self.momentum}")
        if self.clip_c <= 1 or self.eps_low <= 0 or self.eps_high <= 0:
            raise ValueError(
                f"bnpo.Config: need clip_c > 1 and eps > 0, got {self.clip_c}, {self.eps_low}, {self.eps_high}"
            )
        if self.aggregation not in aggregation.MODES or self.aggregation == "seq_mean_token_sum_norm":
            raise ValueError(f"bnpo.Config.aggregation={self.aggregation!r}; allowed: {aggregation.MODES[:3]}")
        if self.var_ddof not in (0, 1) or self.var_floor <= 0 or self.reward_components < 0 or self.beta < 0:
            raise ValueError(f"bnpo.Config: bad var_ddof / var_floor / reward_components / beta in {self}")
        if kl.ESTIMATORS.get(self.kl_estimator) is None:
            raise ValueError(f"bnpo.Config.kl_estimator={self.kl_estimator!r}; known: {sorted(kl.ESTIMATORS)}")


# --------------------------------------------------------------------------------------------
# Beta normalization
# --------------------------------------------------------------------------------------------


def fit_beta(mu: Array, v: Array) -> tuple[Array, Array]:
    """BNPO normalizer parameters from the mean ``mu`` and variance ``v`` of the success rates.

    ``a = (mu (1 - mu) / v - 1) mu``, ``b = (mu (1 - mu) / v - 1) (1 - mu)`` (method of moments),
    ``alpha = max(1, 1 + a/3)``, ``beta = max(1, 1 + b/3)``. Any matching shapes. Reference:
    arXiv 2506.02864, Theorem 2 and Eq. 10 (code ``compute_bnpo_outcome_advantage``).
    """
    k = mu * (1.0 - mu) / v - 1.0
    return jnp.maximum(1.0, 1.0 + k * mu / 3.0), jnp.maximum(1.0, 1.0 + k * (1.0 - mu) / 3.0)


def inverse_density(p: Array, alpha: Array, beta: Array, max_value: float = 1e6) -> Array:
    """``clip(1 / f_Beta(p; alpha, beta), 0, max_value)``, computed in log space.

    ``log f = (alpha - 1) log p + (beta - 1) log(1 - p) - log B(alpha, beta)``, with ``0 log 0 = 0``
    so ``alpha = 1`` at ``p = 0`` is finite. Same shape as ``p``.
    """
    log_f = jsp.xlogy(alpha - 1.0, p) + jsp.xlog1py(beta - 1.0, -p) - jsp.betaln(alpha, beta)
    return jnp.exp(jnp.minimum(-log_f, jnp.log(max_value)))


def _success_rates(r01: Array, g: int) -> Array:
    """``p_q`` per row ``[B]`` (group mean; 0 for groups of one, as the code)."""
    if g == 1:
        return jnp.zeros_like(r01)
    return adv_ops.group_mean(r01, g)


def _batch_moments(p_rows: Array, g: int, ddof: int) -> tuple[Array, Array]:
    """``(mu, v)`` over the per-prompt rates; one prompt gives ``(0, 1)`` as the code."""
    p = p_rows[::g]
    if p.shape[0] == 1:
        return jnp.float32(0.0), jnp.float32(1.0)
    return jnp.mean(p), jnp.var(p, ddof=ddof)


def _columns(rollout: Mapping[str, Any], cfg: Config) -> Array:
    """Rewards mapped to [0, 1], as columns ``[B, K]`` (``K = 1`` without decomposition)."""
    if cfg.reward_components:
        if "reward_components" not in rollout:
            raise KeyError(
                f"bnpo: Config.reward_components={cfg.reward_components} needs rollout['reward_components'] [B, K]; it has {sorted(rollout)}"
            )
        r = jnp.asarray(rollout["reward_components"], jnp.float32)
        if r.ndim != 2 or r.shape[1] != cfg.reward_components:
            raise ValueError(
                f"bnpo: rollout['reward_components'] has shape {r.shape}; expected [B, {cfg.reward_components}]"
            )
    else:
        r = jnp.asarray(rollout["rewards"], jnp.float32)[:, None]
    r01 = (r - cfg.reward_min) / (cfg.reward_max - cfg.reward_min)
    if not isinstance(r01, jax.core.Tracer):
        lo, hi = float(np.min(r01)), float(np.max(r01))
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"bnpo: rewards map to [{lo:.4g}, {hi:.4g}] under reward_min={cfg.reward_min}, "
                f"reward_max={cfg.reward_max}; set them so rewards land in [0, 1]"
            )
    return r01


def init_state(cfg: Config) -> dict[str, Array]:
    """``mu``, ``v`` (tracked moments), ``alpha``, ``beta`` (last fit), each ``[K]``; ``steps`` ``[]``."""
    k = max(cfg.reward_components, 1)
    ones = jnp.ones(k, jnp.float32)
    return {"mu": jnp.zeros(k, jnp.float32), "v": ones, "alpha": ones, "beta": ones, "steps": jnp.zeros((), jnp.int32)}


def _fit(rollout, cfg, state):
    """Per column: rates ``p`` ``[B, K]``, the tracked moments ``(mu, v)`` ``[K]``, ``(alpha, beta)`` ``[K]``."""
    g = adv_ops.group_size_of(rollout)
    r01 = _columns(rollout, cfg)
    p = jnp.stack([_success_rates(r01[:, k], g) for k in range(r01.shape[1])], axis=1)  # [B, K]
    moments = [_batch_moments(p[:, k], g, cfg.var_ddof) for k in range(r01.shape[1])]
    mu = jnp.stack([m[0] for m in moments])
    v = jnp.stack([m[1] for m in moments])
    if state is not None and cfg.momentum > 0:
        fresh = state["steps"] == 0
        mu = jnp.where(fresh, mu, cfg.momentum * state["mu"] + (1 - cfg.momentum) * mu)
        v = jnp.where(fresh, v, cfg.momentum * state["v"] + (1 - cfg.momentum) * v)
    alpha, beta = fit_beta(mu, jnp.maximum(v, cfg.var_floor))
    return g, r01, p, mu, v, alpha, beta


def advantages(
    rollout: Mapping[str, Any], cfg: Config, state: Mapping[str, Array] | None = None
) -> tuple[Array, Metrics]:
    """``A_i = (R_i - p_q) / f_Beta(p_q; alpha, beta)`` ``[B]`` (averaged over reward components).

    Needs ``rewards`` [B] (or ``reward_components`` [B, K]), ``mask`` and the group size.
    """
    inputs.require(rollout, ("rewards", "mask"), f"{NAME}.advantages")
    g, r01, p, _, _, alpha, beta = _fit(rollout, cfg, state)
    inv_f = inverse_density(p, alpha[None, :], beta[None, :], cfg.max_inv_density)  # [B, K]
    a = jnp.mean((r01 - p) * inv_f, axis=1)
    metrics = adv_ops.group_stats(a, jnp.asarray(rollout["rewards"], jnp.float32), rollout["mask"], g)
    metrics["bnpo/alpha"] = alpha[0]
    metrics["bnpo/beta"] = beta[0]
    metrics["bnpo/inv_density_mean"] = jnp.mean(inv_f[:, 0])
    return a, metrics


def update_state(state: Mapping[str, Array], rollout: Mapping[str, Any], cfg: Config) -> dict[str, Array]:
    """Stores the tracked moments and the ``(alpha, beta)`` fitted on this batch."""
    _, _, _, mu, v, alpha, beta = _fit(rollout, cfg, state)
    return {"mu": mu, "v": v, "alpha": alpha, "beta": beta, "steps": state["steps"] + 1}


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


def loss(logprobs: Array, batch: Mapping[str, Any], cfg: Config) -> tuple[Array, Metrics]:
    """PPO clipped surrogate with dual-clip (+ ``beta`` KL), aggregated by ``cfg.aggregation``.

    ``l = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)``, capped at ``-c A`` for ``A < 0``,
    times ``is_weights``. ``logprobs`` ``[B, T]``; batch keys as in ``jaxrl_llm.types``.
    Reference: arXiv 2506.02864 (the code runs verl's ``compute_policy_loss``).
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A where A < 0
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # seq-mean-token-sum
    kl_term = (
        kl.penalty(
            x["logprobs"], x["ref_logprobs"], mask, cfg.kl_estimator, cfg.aggregation, nt, ns, clamp=cfg.kl_clamp
        )
        if cfg.beta > 0
        else None
    )
    metrics = diagnostics.ratio_metrics(
        ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high, cfg.clip_c
    )  # clip_frac, ratio/*
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta, where=NAME)  # policy (+ beta * KL)


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """``rewards`` in ``[0, 1]`` (BNPO's domain) for the invariant suite: an all-correct group, a
    binary group, then uniform rewards."""
    r = jax.random.uniform(key, (batch_size,))
    r = r.at[:group_size].set(1.0)
    r = r.at[group_size : 2 * group_size].set(jnp.arange(group_size) % 2)
    return {"rewards": r}
