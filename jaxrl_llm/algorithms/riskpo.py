"""RiskPO: a mixed value-at-risk objective over bundles of questions, with tracked quantiles.

Tao Ren, Jinyang Jiang, Hui Yang, et al., Yijie Peng, "RiskPO: Risk-based Policy Optimization via
Verifiable Reward for LLM Post-Training", 2025, https://arxiv.org/abs/2510.00911. Official code:
github.com/RTkenny/RiskPO (``verl/trainer/ppo/core_algos.py::
compute_grpo_bundle_rvar_outcome_advantage_quantile_tracking``, ``ray_trainer.py``).

Objective (maximized). Consecutive prompts are grouped into bundles of ``bundle_size`` questions;
the k-th *paper* of a bundle is the tuple of the k-th completion of each of its questions, and its
score ``X_k = sum_{q in bundle} R_{q,k}`` (k = 1..G). Instead of the mean of X, RiskPO maximizes

    MVaR(X) = RVaR_{alpha,beta}(X) + w CVaR_alpha(X)

(RVaR: mean of X between its alpha- and beta-quantiles; CVaR: mean of its lower alpha-tail), whose
policy-gradient weight per paper, with quantiles ``q_d`` (level alpha) and ``q_u`` (level beta), is

    g_R(X)  = (X - q_d)^+ - (X - q_u)^+ + (q_d - q_u)     = clip(X, q_d, q_u) - q_u   (natural baseline)
    A_R     = g_R / (beta - alpha + eps),    A_C = -(q_d - X)^+ / (alpha + eps)
    A_paper = (w A_C + A_R) / (w + 1)  /  (std_k(X_k; ddof=1) + eps)

and each completion of paper k gets its share of ``A_paper`` (credit assignment, below). The policy
loss is verl's dual-clipped PPO surrogate, token-mean, no KL.

Differs from GRPO in:
  1. the advantage is the gradient weight of a risk measure (RVaR + w CVaR) instead of the mean:
     papers in the upper tail (X >= q_u) get 0, the lower tail gets the most negative weight, so the
     gradient concentrates on the hard part of the score distribution;
  2. it is computed on papers (sums over a bundle of questions), not per question, so a bundle's
     score is less binary than one question's reward and an all-correct question inside a mixed
     bundle still gets credit;
  3. per-paper credit is redistributed to the paper's completions (``credit``);
  4. quantile levels are tracked across steps by stochastic approximation (algorithm state);
  5. dual-clip, token-mean aggregation and no KL (verl's defaults in the scripts).

Defaults: the settings of ONE official script, ``scripts/run_qwen2.5_1.5b_MVaR_math.sh`` (the MATH
script): ``alpha = 0.2``, ``beta_upper = 0.9``, ``w = 1.5``, ``bundle_size = 5``, ``lr_q = 0.1``,
natural baseline (``natural_baseline_adv=True``), ``std`` credit, std normalization, mixing on. The
DAPO-Math script (``run_qwen2.5_1.5b_MVaR_dapomath.sh``) differs in three fields:
``beta_upper = 0.8``, ``natural_baseline = False``, ``credit = "sum_mean"``. (Until 2026-12 the
default ``beta_upper`` was 0.8, a mix of the two scripts that neither runs.)

Code-vs-paper differences, each a config field (default first, and why):
  * ``quantile_source``: ``"bundle"`` (each bundle's empirical quantiles of its G papers, linear
    interpolation like ``torch.quantile``). The scripts ask for ``use_q_track_mode='track'``, but in
    the released trainer the tracked quantiles are written to the batch AFTER its advantages are
    computed, so every published run used the bundle quantiles; this reproduces those runs.
    ``"tracked"``: the quantiles of the tracker in the state (the paper's intent), falling back to
    ``"bundle"`` until the tracker is initialized; ``"mix"``: their average (the code's ``mix``).
  * ``beta_upper``: 0.9 (the MATH script) | 0.8 (the DAPO-Math script).
  * ``natural_baseline``: True (MATH script; ``g_R <= 0``) | False (DAPO-Math script:
    ``clip(X, q_d, q_u) - q_d >= 0``; with it the sign of A flips, which interacts with dual-clip).
  * ``credit``: ``"std"`` (MATH script: ``A_paper / (std_q(R; ddof=1) + eps)``, a std below 1e-3
    replaced by 1) | ``"uniform"`` | ``"sum_mean"`` (DAPO-Math script: ``A_paper (R_i - mu_q) /
    sum_{j in paper} (R_j - mu_{q_j})``, an equal split when that sum is within 1e-6 of 0) |
    ``"score"`` (``0.5 A_paper`` if ``R_i > 0`` else ``1.5 A_paper``).
  * ``w = 1.5`` (both scripts); ``w = 0`` is the pure RVaR objective (``use_mixing_risk_measure=False``).
  * ``bundle_size = 5`` (both scripts); bundles are consecutive prompts in batch order, as in the
    code (the last bundle may be smaller). ``norm_by_std = True`` (both scripts).
  * Tracker: 19 levels {0.05, ..., 0.95}, initialized to the first batch's empirical quantiles of
    all paper scores, then ``q <- q + lr_q (level - mean_k 1[X_k < q])`` with ``lr_q = 0.1``; alpha
    and beta read the nearest level. The code's ``use_mean_as_baseline`` (off in both scripts) and
    the risk-seeking upper-tail ablation are not reproduced.
  * ``eps_low = eps_high = 0.2``, ``clip_c = 3.0``, ``aggregation = "token_mean"``, ``beta = 0``:
    verl's defaults, which the scripts keep (``use_kl_loss=False``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "riskpo"
PAPER = "RiskPO: Risk-based Policy Optimization via Verifiable Reward for LLM Post-Training (Ren et al., 2025)"
PAPER_URL = "https://arxiv.org/abs/2510.00911"

QUANTILE_SOURCES = ("bundle", "tracked", "mix")
CREDITS = ("std", "uniform", "sum_mean", "score")
TRACK_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


@dataclasses.dataclass(frozen=True)
class Config:
    alpha: float = 0.2  # alpha: lower quantile level (CVaR tail, RVaR lower end)
    beta_upper: float = 0.9  # beta of RVaR_{alpha,beta} (named so: ``beta`` is the KL weight); MATH script
    w: float = 1.5  # w: CVaR weight in MVaR = RVaR + w CVaR
    bundle_size: int = 5  # B: questions per bundle
    natural_baseline: bool = True  # g_R = clip(X, q_d, q_u) - q_u (True) or - q_d (False)
    credit: str = "std"  # one of CREDITS
    quantile_source: str = "bundle"  # one of QUANTILE_SOURCES
    lr_q: float = 0.1  # step size of the quantile tracker
    norm_by_std: bool = True  # divide A_paper by the bundle's std of paper scores
    std_eps: float = 1e-6  # eps of every division above
    eps_low: float = 0.2  # epsilon (lower clip)
    eps_high: float = 0.2  # epsilon (upper clip)
    clip_c: float = 3.0  # verl dual-clip constant c (> 1) for A < 0
    beta: float = 0.0  # KL weight; 0 means no reference model
    kl_estimator: str = "k3"  # one of ops.kl.ESTIMATORS
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    aggregation: str = "token_mean"  # one of ops.aggregation.MODES


def _check(cfg: Config) -> None:
    if not 0.0 < cfg.alpha < cfg.beta_upper < 1.0:
        raise ValueError(f"riskpo: need 0 < alpha < beta_upper < 1, got alpha={cfg.alpha}, beta_upper={cfg.beta_upper}")
    if cfg.quantile_source not in QUANTILE_SOURCES:
        raise ValueError(f"riskpo: unknown quantile_source {cfg.quantile_source!r}; known: {QUANTILE_SOURCES}")
    if cfg.credit not in CREDITS:
        raise ValueError(f"riskpo: unknown credit {cfg.credit!r}; known: {CREDITS}")
    if cfg.bundle_size < 1 or cfg.w < 0:
        raise ValueError(f"riskpo: need bundle_size >= 1 and w >= 0, got {cfg.bundle_size}, {cfg.w}")


def paper_scores(rewards: Array, group_size: int, bundle_size: int) -> Array:
    """Paper scores ``X[n, k] = sum_{q in bundle n} R_{q,k}``: ``[B] -> [N, G]``, ``N = ceil(P / bundle_size)``.

    Prompt ``p`` (rows ``p*G .. p*G+G-1``) belongs to bundle ``p // bundle_size``.
    """
    r = jnp.asarray(rewards, jnp.float32).reshape(-1, group_size)  # [P, G]
    p = r.shape[0]
    n = -(-p // bundle_size)
    return jax.ops.segment_sum(r, jnp.arange(p) // bundle_size, num_segments=n)


def _tracked_pair(state: Any, cfg: Config) -> tuple[Array, Array]:
    levels = np.asarray(TRACK_LEVELS)
    lo, hi = int(np.argmin(np.abs(levels - cfg.alpha))), int(np.argmin(np.abs(levels - cfg.beta_upper)))
    return state["q"][lo], state["q"][hi]


def paper_advantages(x: Array, cfg: Config, state: Any = None) -> tuple[Array, dict[str, Array]]:
    """``A_paper`` ``[N, G]`` from paper scores ``x`` ``[N, G]`` (module docstring), and the quantiles used.

    ``state``: the tracker (``init_state``), read when ``cfg.quantile_source != "bundle"`` and it is
    initialized. Returns ``(A_paper, {"q_low": [N], "q_high": [N]})``.
    """
    _check(cfg)
    g = x.shape[1]
    q_d = jnp.quantile(x, cfg.alpha, axis=1, method="linear")  # [N]
    q_u = jnp.quantile(x, cfg.beta_upper, axis=1, method="linear")
    if cfg.quantile_source != "bundle" and state is not None:
        t_d, t_u = _tracked_pair(state, cfg)
        if cfg.quantile_source == "mix":
            t_d, t_u = (t_d + q_d) / 2, (t_u + q_u) / 2
        ready = state["initialized"]
        q_d, q_u = jnp.where(ready, t_d, q_d), jnp.where(ready, t_u, q_u)
    qd, qu = q_d[:, None], q_u[:, None]
    # (X - q_d)^+ - (X - q_u)^+ written as a clip, so papers in the upper tail get exactly 0
    # rather than a rounding residue of q_d - q_u + q_u - q_d; tracked quantiles may cross (q_d > q_u).
    ordered = qd <= qu
    lo, hi = jnp.minimum(qd, qu), jnp.maximum(qd, qu)
    core = jnp.clip(x, lo, hi)
    if cfg.natural_baseline:
        g_r = jnp.where(ordered, core - qu, qd - core)
    else:
        g_r = jnp.where(ordered, core - qd, qu - core)
    a_r = g_r / (cfg.beta_upper - cfg.alpha + cfg.std_eps)
    a_c = -jnp.maximum(qd - x, 0.0) / (cfg.alpha + cfg.std_eps)
    a = (cfg.w * a_c + a_r) / (cfg.w + 1.0)
    if cfg.norm_by_std:
        # A single paper has no spread: the code divides by 1.
        std = jnp.std(x, axis=1, ddof=1, keepdims=True) if g > 1 else jnp.ones_like(qd)
        a = a / (std + cfg.std_eps)
    return a, {"q_low": q_d, "q_high": q_u}


def _credit(a_paper: Array, rewards: Array, g: int, cfg: Config) -> Array:
    """Per-row advantages ``[B]`` from ``A_paper`` ``[N, G]`` by ``cfg.credit``."""
    r = jnp.asarray(rewards, jnp.float32).reshape(-1, g)  # [P, G]
    p = r.shape[0]
    bundle = jnp.arange(p) // cfg.bundle_size  # [P]
    a = a_paper[bundle]  # [P, G]: row (q, k) inherits paper k of its bundle
    if cfg.credit == "uniform":
        out = a
    elif cfg.credit == "score":
        out = jnp.where(r > 0, 0.5, 1.5) * a
    elif cfg.credit == "std":
        sd = jnp.std(r, axis=1, ddof=1, keepdims=True) if g > 1 else jnp.zeros((p, 1))
        sd = jnp.where(sd > 1e-3, sd, 1.0)
        out = a / (sd + cfg.std_eps)
    else:  # sum_mean
        dev = r - jnp.mean(r, axis=1, keepdims=True)  # [P, G]
        n = a_paper.shape[0]
        total = jax.ops.segment_sum(dev, bundle, num_segments=n)[bundle]  # [P, G] sum over the paper
        size = jax.ops.segment_sum(jnp.ones(p), bundle, num_segments=n)[bundle][:, None]  # questions in the bundle
        split = jnp.abs(total) > 1e-6
        out = jnp.where(split, a * dev / jnp.where(split, total, 1.0), a / size)
    return out.reshape(-1)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """RiskPO advantage ``[B]``: bundle papers -> ``A_paper`` (MVaR weight) -> credit to completions.

    Needs ``rewards`` [B] (group-major) and the group size; prompts are bundled in row order.
    Metrics add ``paper_score/mean``, ``quantile/low``, ``quantile/high`` (mean over bundles of the
    quantiles used), ``frac_signal_rows`` (rows with a nonzero advantage) and, with a state, the
    tracker's values at alpha and beta (``quantile/tracked_low``, ``quantile/tracked_high``).
    """
    _check(cfg)
    g = adv_ops.group_size_of(rollout)
    rewards = jnp.asarray(rollout["rewards"], jnp.float32)
    x = paper_scores(rewards, g, cfg.bundle_size)
    a_paper, q = paper_advantages(x, cfg, state)
    a = _credit(a_paper, rewards, g, cfg)
    metrics = adv_ops.group_stats(a, rewards, rollout["mask"], g)
    metrics["paper_score/mean"] = jnp.mean(x)
    metrics["quantile/low"] = jnp.mean(q["q_low"])
    metrics["quantile/high"] = jnp.mean(q["q_high"])
    metrics["frac_signal_rows"] = jnp.mean((a != 0).astype(jnp.float32))
    if state is not None:
        t_d, t_u = _tracked_pair(state, cfg)
        metrics["quantile/tracked_low"], metrics["quantile/tracked_high"] = t_d, t_u
    return a, metrics


def init_state(cfg: Config) -> dict[str, Array]:
    """The quantile tracker: ``q`` [19] f32 at levels ``TRACK_LEVELS`` and ``initialized`` [] bool."""
    _check(cfg)
    return {"q": jnp.zeros(len(TRACK_LEVELS), jnp.float32), "initialized": jnp.asarray(False)}


def update_state(state: dict[str, Array], rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """One tracker step on this batch's paper scores ``X`` (all bundles, flattened).

    First call: ``q = quantile(X, levels)`` (linear interpolation). Afterwards the Robbins-Monro step
    ``q <- q + lr_q (level - mean 1[X < q])``, the SGD step on the pinball loss the code takes.
    """
    g = adv_ops.group_size_of(rollout)
    x = paper_scores(rollout["rewards"], g, cfg.bundle_size).reshape(-1)
    levels = jnp.asarray(TRACK_LEVELS, jnp.float32)
    fresh = jnp.quantile(x, levels, method="linear")
    below = jnp.mean((x[None, :] < state["q"][:, None]).astype(jnp.float32), axis=1)
    stepped = state["q"] + cfg.lr_q * (levels - below)
    q = jnp.where(state["initialized"], stepped, fresh)
    return {"q": q.astype(jnp.float32), "initialized": jnp.asarray(True)}


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """Dual-clipped PPO surrogate with the RiskPO advantages, ``cfg.aggregation`` (token-mean), + beta KL.

    ``logprobs`` ``[B, T]``; ``batch`` per ``jaxrl_llm.types``. A micro-batch gives its share of the
    full-batch loss (global normalizers).
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # -min(rho A, clip(rho) A) [B, T]
    per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # verl's dual-clip: capped at -c A where A < 0
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)  # token-mean
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
