"""Single-stream Policy Optimization (SPO): one sample per prompt, a persistent per-prompt baseline.

Zhongwen Xu, Zihan Ding, "Single-stream Policy Optimization", arXiv 2509.13232 (2025),
https://arxiv.org/abs/2509.13232. Official code: verl-recipe ``spo/spo_ray_trainer.py``.
Not to be confused with *Segment* Policy Optimization (arXiv 2505.23564), also called SPO.

Objective. Each prompt ``x`` of a finite pool of ``N`` prompts carries a Beta tracker
``(alpha_x, beta_x)`` of its success rate. A batch holds ONE response ``y_i`` per prompt ``x_i``:

    p_hat_x = alpha_x / (alpha_x + beta_x)                       (tracker value BEFORE this sample)
    a_i     = r_i - p_hat_{x_i}
    A_i     = (a_i - mean_B a) / (std_B(a; ddof=1) + 1e-8)       (over the whole batch, no groups)
    L(theta) = token-mean_{i,t} -min(rho_{i,t} A_i, clip(rho_{i,t}, 1 - eps_low, 1 + eps_high) A_i)
               [+ beta * token-mean k3, off by default]

After the sample, the tracker of ``x`` forgets at a rate set by how far the policy moved:

    D_x   = mean_t |log pi_stored(y'_x,t) - log pi_theta(y'_x,t)|   (y'_x: x's response of its
                                                                    previous visit; D = 0 on a first visit)
    rho_x = clip(2^(-D_x / D_half), rho_min, rho_max)
    alpha_x <- rho_x alpha_x + r,   beta_x <- rho_x beta_x + (1 - r)

Prompts are drawn without replacement with probability ``w_x ∝ sqrt(p_hat_x (1 - p_hat_x)) + eps``
(``select_prompts``). An optional offline pass of ``N_off`` samples per prompt from the initial
policy sets the prior (``with_offline_prior``): with ``k_x`` of them correct and
``N_init = 1 / (1 - rho_min)``, ``alpha_0 = N_init (k_x + 0.5) / (N_off + 1)`` and
``beta_0 = N_init (N_off - k_x + 0.5) / (N_off + 1)``; without it ``alpha = beta = 0.5``.

Differs from GRPO in:
  1. Rollout: one response per prompt (``group_size = 1``); no group, so no degenerate group
     (all-correct / all-wrong) whose samples carry zero advantage.
  2. Baseline: the tracker value ``p_hat_x`` carried across steps, not the group mean.
  3. Normalization: one mean/std over the whole batch, not per group.
  4. State: ``(alpha, beta)``, the visit count, and the last response with its log-probs, per
     prompt (``init_state`` / ``update_state``; checkpointed by the trainer).
  5. Prompt selection: prioritized by ``sqrt(p_hat (1 - p_hat))`` (``select_prompts``), so prompts
     near 50 % success are sampled most.
  6. Loss: PPO-clip with clip-higher (0.2 / 0.28), token-mean, no KL (the verl recipe's settings).

Code vs paper (arXiv 2509.13232 against the verl recipe, https://github.com/verl-project/verl-recipe,
``spo/``), and the defaults chosen:
  * ``rho_mode="kl"`` (default, the released code): ``D`` is the mean absolute log-ratio on the ONE
    stored response, which the paper calls a KL. ``rho_mode="constant"`` uses ``rho_const``.
  * The tracker absorbs the raw reward ``r`` (the code does; the prior counts ``1[score > 0]``),
    so it is a Beta posterior only for rewards in {0, 1}.
  * Forgetting is applied per visit of a prompt, not per step (the code does this).
  * The policy shift ``D`` spans ONE MORE update than in the code. The code
    (``_get_spo_rho``, called after ``update_actor``) stores the log-probs of the new response
    recomputed AFTER this step's update (policy theta_{s1+1} for a visit at step s1) and compares
    them, at the next visit s2, with the policy after that step's update (theta_{s2+1}): s2 - s1
    updates. Here the stored log-probs are the rollout's behaviour log-probs (theta_{s1}, BEFORE
    the update) and the replay is scored at ``update_state`` time, also after the update
    (theta_{s2+1}): s2 - s1 + 1 updates. So ``D`` is larger by about one update's shift, ``rho``
    a little smaller (slightly faster forgetting); identical on a first visit (``D = 0``). Matching
    the code needs one more log-prob pass per step (the updated policy on the new responses),
    which the trainer does not run; kept as is and documented, not changed.
  * The code's candidate pool is one dataloader chunk (``candidate_pool_size``); 0 here means the
    whole pool, which is what a small finite prompt set wants.

Trainer hooks defined here (besides ``advantages`` / ``loss`` / ``init_state`` / ``update_state``):
  * ``select_prompts(state, num_prompts, key, cfg) -> int32 [num_prompts]`` prompt-pool indices;
    the trainer samples ONE completion for each and puts them in ``rollout["prompt_ids"]``.
  * ``replay_tokens(state, rollout, cfg) -> {"tokens", "mask"}`` ``[B, T]``: the response stored at
    each row's prompt's previous visit. With ``rho_mode="kl"`` the trainer scores them under the
    current policy after the row's own prompt, and passes the log-probs as
    ``rollout["replay_logprobs"]`` ``[B, T]`` to ``update_state``.
  * ``with_offline_prior(state, offline_rewards, cfg)``: the optional offline prior.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, masked, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "single_stream_spo"
PAPER = "Single-stream Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2509.13232"

RHO_MODES = ("kl", "constant")
ROLLOUT = "single_stream"  # prompts drawn by priority (``select_prompts``), responses replayed


@dataclasses.dataclass(frozen=True)
class Config:
    """Single-stream SPO hyperparameters (paper symbols in comments; defaults from the verl recipe)."""

    num_prompts: int = 256  # N: size of the finite prompt pool the tracker covers
    max_response_len: int = 256  # T of the stored last responses (the sampler's max_new_tokens)
    eps_low: float = 0.2  # epsilon_low of the PPO clip
    eps_high: float = 0.28  # epsilon_high (clip-higher, as in the recipe's train.sh)
    clip_c: float | None = None  # dual-clip constant; None = off
    beta: float = 0.0  # KL weight; the recipe uses no KL
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    aggregation: str = "token_mean"  # verl default, not overridden by the recipe
    adv_eps: float = 1e-8  # epsilon of the global advantage normalization
    adv_ddof: int = 1  # torch.std in the code: unbiased
    rho_mode: str = "kl"  # "kl" (KL-adaptive forgetting, code) | "constant"
    rho_const: float = 0.96  # rho when rho_mode == "constant"
    rho_min: float = 0.875  # rho_min (code: rho.clip_lower); also sets N_init = 1 / (1 - rho_min)
    rho_max: float = 0.96  # rho_max (hard-coded in the code)
    d_half: float = 0.06  # D_half: the policy shift that halves the tracker's memory
    n_offline: int = 8  # N_off: offline samples per prompt for the prior (0 = no offline pass)
    priority_eps: float = 0.05  # epsilon of the sampling weight sqrt(p(1-p)) + eps
    candidate_pool_size: int = 0  # prompts drawn uniformly before the prioritized draw; 0 = all N

    def __post_init__(self):
        if self.num_prompts < 1:
            raise ValueError(f"single_stream_spo.Config.num_prompts must be >= 1, got {self.num_prompts}")
        if self.max_response_len < 1:
            raise ValueError(f"single_stream_spo.Config.max_response_len must be >= 1, got {self.max_response_len}")
        if self.rho_mode not in RHO_MODES:
            raise ValueError(f"single_stream_spo.Config.rho_mode must be one of {RHO_MODES}, got {self.rho_mode!r}")
        if not 0.0 < self.rho_min <= self.rho_max <= 1.0:
            raise ValueError(
                f"single_stream_spo.Config: need 0 < rho_min <= rho_max <= 1, got {self.rho_min}, {self.rho_max}"
            )
        if not 0.0 < self.rho_const <= 1.0:
            raise ValueError(f"single_stream_spo.Config.rho_const must be in (0, 1], got {self.rho_const}")
        if self.d_half <= 0:
            raise ValueError(f"single_stream_spo.Config.d_half must be > 0, got {self.d_half}")
        if self.priority_eps < 0 or self.n_offline < 0 or self.candidate_pool_size < 0:
            raise ValueError("single_stream_spo.Config: priority_eps, n_offline, candidate_pool_size must be >= 0")
        if self.aggregation not in aggregation.MODES:
            raise ValueError(
                f"single_stream_spo.Config.aggregation must be one of {aggregation.MODES}, got {self.aggregation!r}"
            )


# ---------------------------------------------------------------- tracker math (pure, elementwise)


def tracker_value(alpha: Array, beta: Array) -> Array:
    """``p_hat = alpha / (alpha + beta)``, the tracker's success-rate estimate. Elementwise."""
    return alpha / (alpha + beta)


def forgetting_rate(d: Array, cfg: Config) -> Array:
    """KL-adaptive forgetting ``rho = clip(2^(-D / D_half), rho_min, rho_max)``. Elementwise.

    ``D = 0`` (a first visit, or no policy change) gives ``rho_max``.
    """
    return jnp.clip(jnp.exp2(-d / cfg.d_half), cfg.rho_min, cfg.rho_max)


def sampling_weights(alpha: Array, beta: Array, cfg: Config) -> Array:
    """Unnormalized prioritized-sampling weight ``w = sqrt(p_hat (1 - p_hat)) + eps``. ``[N] -> [N]``."""
    p = tracker_value(alpha, beta)
    return jnp.sqrt(jnp.clip(p * (1.0 - p), 0.0, None)) + cfg.priority_eps


def offline_prior(correct_counts: Array, cfg: Config) -> tuple[Array, Array]:
    """Prior ``(alpha_0, beta_0)`` from ``k`` correct out of ``N_off`` offline samples. ``[N] -> [N], [N]``.

    ``alpha_0 = N_init (k + 0.5) / (N_off + 1)``, ``beta_0 = N_init (N_off - k + 0.5) / (N_off + 1)``,
    ``N_init = 1 / (1 - rho_min)``, so ``alpha_0 + beta_0 = N_init``. ``N_off = 0`` gives 0.5 / 0.5.
    """
    k = jnp.asarray(correct_counts, jnp.float32)
    if cfg.n_offline == 0:
        return jnp.full_like(k, 0.5), jnp.full_like(k, 0.5)
    n_init = 1.0 / (1.0 - cfg.rho_min)
    n_off = float(cfg.n_offline)
    return n_init * (k + 0.5) / (n_off + 1.0), n_init * (n_off - k + 0.5) / (n_off + 1.0)


# ---------------------------------------------------------------- state


def init_state(cfg: Config) -> dict[str, Array]:
    """Uninformed tracker state (``alpha = beta = 0.5``, no visits, nothing stored).

    Keys: ``alpha``, ``beta`` ``[N]`` f32; ``visits`` ``[N]`` int32; ``last_tokens`` ``[N, T]`` int32,
    ``last_logprobs`` ``[N, T]`` f32 and ``last_mask`` ``[N, T]`` f32 (the response of each prompt's
    latest visit; ``T = 0`` when ``rho_mode == "constant"``, which needs no replay).
    """
    n = cfg.num_prompts
    t = cfg.max_response_len if cfg.rho_mode == "kl" else 0
    return {
        "alpha": jnp.full((n,), 0.5, jnp.float32),
        "beta": jnp.full((n,), 0.5, jnp.float32),
        "visits": jnp.zeros((n,), jnp.int32),
        "last_tokens": jnp.zeros((n, t), jnp.int32),
        "last_logprobs": jnp.zeros((n, t), jnp.float32),
        "last_mask": jnp.zeros((n, t), jnp.float32),
    }


def with_offline_prior(state: Mapping[str, Array], offline_rewards: Array, cfg: Config) -> dict[str, Array]:
    """Sets ``(alpha, beta)`` from an offline pass: ``offline_rewards`` ``[N, N_off]`` scores of
    ``N_off = cfg.n_offline`` samples per prompt from the initial policy (correct = ``score > 0``)."""
    offline_rewards = jnp.asarray(offline_rewards)
    expected = (cfg.num_prompts, cfg.n_offline)
    if offline_rewards.shape != expected:
        raise ValueError(
            f"with_offline_prior: offline_rewards must have shape {expected} (num_prompts, n_offline), got {offline_rewards.shape}"
        )
    alpha, beta = offline_prior(jnp.sum(offline_rewards > 0, axis=1), cfg)
    return {**state, "alpha": alpha, "beta": beta}


def _prompt_ids(rollout: Rollout, cfg: Config, where: str) -> Array:
    if "prompt_ids" not in rollout:
        raise KeyError(
            f"single_stream_spo.{where}: rollout needs 'prompt_ids' [B] int32 (indices into the prompt pool, from select_prompts)"
        )
    ids = rollout["prompt_ids"]
    chex.assert_rank(ids, 1)
    try:
        concrete = np.asarray(ids)
    except jax.errors.TracerArrayConversionError:
        return ids
    if concrete.size and (concrete.min() < 0 or concrete.max() >= cfg.num_prompts):
        raise ValueError(
            f"single_stream_spo.{where}: prompt_ids must lie in [0, {cfg.num_prompts}) (cfg.num_prompts), got range [{concrete.min()}, {concrete.max()}]"
        )
    return ids


def _behaviour_logprobs(rollout: Rollout) -> Array:
    # The stored log-probs must be those of the unmodified policy, like the replay's; the sampler's
    # equal them at temperature 1 without top-k/top-p.
    for key in ("policy_logprobs", "sampler_logprobs"):
        if key in rollout:
            return rollout[key]
    raise KeyError(
        "single_stream_spo.update_state: rollout needs 'policy_logprobs' or 'sampler_logprobs' [B, T] to store for the next visit"
    )


def replay_tokens(state: Mapping[str, Array], rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """The response stored at the previous visit of each row's prompt: ``{"tokens", "mask"}`` ``[B, T]``.

    The trainer scores ``tokens`` after the row's prompt under the CURRENT policy and passes the
    log-probs as ``rollout["replay_logprobs"]`` to ``update_state`` (``rho_mode == "kl"`` only).
    Rows whose prompt was never visited get an all-zero mask; their ``D`` is 0 by definition.
    """
    ids = _prompt_ids(rollout, cfg, "replay_tokens")
    return {"tokens": state["last_tokens"][ids], "mask": state["last_mask"][ids]}


def policy_shift(state: Mapping[str, Array], rollout: Rollout, cfg: Config) -> Array:
    """``D_x = mean_t |log pi_stored - log pi_theta|`` on each row's stored response; 0 on a first visit. ``[B]``."""
    ids = _prompt_ids(rollout, cfg, "policy_shift")
    if "replay_logprobs" not in rollout:
        raise KeyError(
            "single_stream_spo: rho_mode='kl' needs rollout['replay_logprobs'] [B, T], the current policy's "
            "log-probs of replay_tokens(state, rollout, cfg); provide them or use rho_mode='constant'"
        )
    stored_lp = state["last_logprobs"][ids]  # [B, T]
    stored_mask = state["last_mask"][ids]
    chex.assert_equal_shape([stored_lp, rollout["replay_logprobs"]])
    d = masked.masked_mean(jnp.abs(stored_lp - rollout["replay_logprobs"]), stored_mask, axis=1)
    return jnp.where(state["visits"][ids] > 0, d, 0.0)


def update_state(state: Mapping[str, Array], rollout: Rollout, cfg: Config) -> dict[str, Array]:
    """Absorbs this batch into the trackers: ``alpha <- rho alpha + r``, ``beta <- rho beta + (1 - r)``.

    Per row ``i`` (prompt ``x_i``), ``rho`` is ``forgetting_rate(D)`` with ``D`` from ``policy_shift``
    (``rho_mode == "kl"``) or ``rho_const``. Also stores the row's response and behaviour log-probs
    for the next visit and counts the visit. Rows are folded in order, so a prompt drawn twice in
    one batch is updated twice (its ``D`` uses the response stored before the batch).
    Needs ``prompt_ids`` [B], ``rewards`` [B] and, for ``"kl"``, ``tokens``, ``mask``,
    ``policy_logprobs`` (or ``sampler_logprobs``) and ``replay_logprobs`` [B, T].
    """
    ids = _prompt_ids(rollout, cfg, "update_state")
    r = jnp.asarray(rollout["rewards"], jnp.float32)
    b = ids.shape[0]
    if cfg.rho_mode == "kl":
        rho = forgetting_rate(policy_shift(state, rollout, cfg), cfg)
        t = state["last_tokens"].shape[1]
        if rollout["tokens"].shape[1] != t:
            raise ValueError(
                f"single_stream_spo.update_state: rollout tokens have T={rollout['tokens'].shape[1]} but the state stores T={t} (cfg.max_response_len)"
            )
        new = (
            rollout["tokens"].astype(jnp.int32),
            _behaviour_logprobs(rollout).astype(jnp.float32),
            rollout["mask"].astype(jnp.float32),
        )
    else:
        rho = jnp.full((b,), cfg.rho_const, jnp.float32)
        new = (jnp.zeros((b, 0), jnp.int32), jnp.zeros((b, 0), jnp.float32), jnp.zeros((b, 0), jnp.float32))

    def absorb(s, row):
        x, r_i, rho_i, tok, lp, m = row
        s = dict(s)
        s["alpha"] = s["alpha"].at[x].set(rho_i * s["alpha"][x] + r_i)
        s["beta"] = s["beta"].at[x].set(rho_i * s["beta"][x] + (1.0 - r_i))
        s["visits"] = s["visits"].at[x].add(1)
        s["last_tokens"] = s["last_tokens"].at[x].set(tok)
        s["last_logprobs"] = s["last_logprobs"].at[x].set(lp)
        s["last_mask"] = s["last_mask"].at[x].set(m)
        return s, None

    out, _ = jax.lax.scan(absorb, dict(state), (ids, r, rho) + new)
    return out


def check_config(run_cfg: Any) -> str | None:
    """Why a run config cannot train single-stream SPO (``None`` when it can): the stored responses
    have the sampler's length."""
    t, n = run_cfg.algo.max_response_len, run_cfg.sampling.max_new_tokens
    if t != n:
        return f"algo.max_response_len={t} != sampling.max_new_tokens={n}: the tracker stores responses of that length; make them equal"
    return None


def select_prompts(state: Mapping[str, Array], num_prompts: int, key: Array, cfg: Config) -> Array:
    """Prioritized prompt draw: ``num_prompts`` pool indices ``[num_prompts]`` int32.

    Without replacement (with replacement only when the candidate pool is smaller than
    ``num_prompts``, as in the code), with probability ``∝ sqrt(p_hat (1 - p_hat)) + eps``. With
    ``candidate_pool_size = C > 0`` a uniform chunk of ``C`` prompts is drawn first (the code's
    dataloader batch). ``num_prompts`` is static.
    """
    n = cfg.num_prompts
    w = sampling_weights(state["alpha"], state["beta"], cfg)  # [N]
    pool_key, draw_key = jax.random.split(key)
    if 0 < cfg.candidate_pool_size < n:
        candidates = jax.random.choice(pool_key, n, (cfg.candidate_pool_size,), replace=False)
    else:
        candidates = jnp.arange(n)
    wc = w[candidates]
    pick = jax.random.choice(
        draw_key, candidates.shape[0], (num_prompts,), replace=num_prompts > candidates.shape[0], p=wc / jnp.sum(wc)
    )
    return candidates[pick].astype(jnp.int32)


# ---------------------------------------------------------------- advantages and loss


def advantages(rollout: Rollout, cfg: Config, state: Mapping[str, Array] | None = None) -> tuple[Array, Metrics]:
    """``A_i = (a_i - mean a) / (std(a; ddof) + eps)`` with ``a_i = r_i - p_hat_{x_i}``. ``[B]``.

    ``state`` is the tracker BEFORE this batch (``init_state(cfg)`` when None). Needs
    ``rollout["prompt_ids"]`` [B], ``rewards`` [B], ``mask`` [B, T]. Metrics: advantage stats,
    ``spo/p_hat_mean``, ``spo/raw_adv_mean`` and ``frac_zero_adv``, the fraction of samples whose
    raw advantage is 0 (``r == p_hat``): the samples that carry no learning signal (GRPO's analogue
    is the fraction of rows in zero-std groups).
    """
    if state is None:
        state = init_state(cfg)
    ids = _prompt_ids(rollout, cfg, "advantages")
    r = jnp.asarray(rollout["rewards"], jnp.float32)
    chex.assert_equal_shape([ids, r])
    p_hat = tracker_value(state["alpha"], state["beta"])[ids]  # [B]
    raw = r - p_hat
    adv = adv_ops.batch_normalized(raw, ddof=cfg.adv_ddof, eps=cfg.adv_eps)
    metrics = {
        **adv_ops.stats(adv, rollout["mask"]),
        "spo/p_hat_mean": jnp.mean(p_hat),
        "spo/raw_adv_mean": jnp.mean(raw),
        "frac_zero_adv": jnp.mean((jnp.abs(raw) < 1e-6).astype(jnp.float32)),
    }
    return adv, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO-clip surrogate with the tracker advantages, aggregated with GLOBAL normalizers.

    ``l_{i,t} = -min(rho A_i, clip(rho, 1 - eps_low, 1 + eps_high) A_i)`` (dual-clip when
    ``clip_c``), ``rho = exp(logprobs - old_logprobs)``; reduced by ``cfg.aggregation`` over
    ``num_tokens`` / ``num_seqs``; ``+ beta * token-mean KL`` when ``beta > 0``. ``logprobs`` [B, T].
    """
    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    mask, adv, nt, ns = x["mask"], x["advantages"], x["num_tokens"], x["num_seqs"]
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)  # rho_{i,t} [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)  # clip-higher [B, T]
    if cfg.clip_c is not None:
        per_token = clipping.dual_clip(per_token, adv, cfg.clip_c)  # capped at -c A where A < 0
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


def example_extras(key: Array, batch_size: int, seq_len: int, group_size: int) -> dict[str, Array]:
    """Extra rollout keys for the invariant suite: one distinct pool prompt per row (``prompt_ids`` [B])."""
    del key, seq_len, group_size
    return {"prompt_ids": jnp.arange(batch_size, dtype=jnp.int32) % Config().num_prompts}
