"""HBPO: Hierarchical Budget Policy Optimization (budget subgroups and a budget-aware reward).

Shangke Lyu, Linjuan Wu, Yuchen Yan, Xingyu Wu, Hao Li, Yongliang Shen, Peisheng Jiang, Weiming Lu,
Jun Xiao, Yueting Zhuang, "Hierarchical Budget Policy Optimization for Adaptive Reasoning",
arXiv 2507.15844 (2025), https://arxiv.org/abs/2507.15844. Official code: github.com/ZJU-REAL/HBPO
(``verl/utils/reward_score/math.py``, ``verl/trainer/ppo/core_algos.py``).

Rollout. Each group of ``G`` samples of a prompt is split into ``k`` subgroups of ``G / k``; the
subgroup with budget ``b`` generates after the phrase "I will answer the question within b
tokens" inserted right after ``<think>`` (``group_prompts``), and each row records its ``budgets``.

Reward (``budget_reward``; ``n`` = generated tokens, ``L = L_max``, ``s`` = the paper's beta):

    f1(n, b) = s cos(pi n / 2L) - alpha |n - b|          f2(b) = s cos(pi b / 2L)
    paper:  R = f2(b) if correct and n <= b;  f1(n, b) if correct and b < n <= L;  0 otherwise
    code:   R = min(f1(n, b), f2(b)) if correct and n <= L;  0 otherwise (and -1 without an answer)

Advantage, for sample ``j`` of subgroup ``i`` (budget ``b_i``) in a group:

    A_ij = (R_ij - mean_group R) / (std_group(R; ddof=1) + eps)  +  m (mu_i - f2(b_i))

with ``mu_i`` the subgroup's mean reward, so ``A^intra_i = mu_i - f2(b_i) <= 0`` is constant
within the subgroup and ``m`` is ``intra_multiplier`` (1 in the paper, 2 in the code).
Loss: PPO-clip with clip-higher (0.2 / 0.28), token-mean, no KL.

Differs from GRPO in:
  1. Rollout: the group is split into budget subgroups, each prompted with its own token budget.
  2. Reward: a length- and budget-aware cosine reward replaces the 0/1 correctness reward
     (``shape_rewards``), rewarding shorter correct answers while keeping every budget in play.
  3. Advantage: the group z-score (inter-subgroup) plus the subgroup's shortfall from its budget's
     ideal reward (intra-subgroup).
  4. Loss: clip-higher (eps_high = 0.28), token-mean, no KL (DAPO-style settings of the code).

Code vs paper (arXiv 2507.15844 against github.com/ZJU-REAL/HBPO); defaults follow the paper:
  * ``reward_mode="paper"`` (f2 within budget) vs ``"code"`` (``min(f1, f2)`` everywhere, which
    can be below f2 for ``n << b``).
  * ``intra_multiplier=1`` (paper) vs ``2`` (the code adds ``A^intra`` twice, a duplicated line).
  * ``no_answer_reward=0`` (paper) vs ``-1`` (code, for a completion without a boxed answer; needs
    ``rollout["has_answer"]``).
  * The code approximates pi by 3.1416 (differences in the 4th decimal); exact pi here.
  * The budget phrase: "within" (paper) vs "with" (the code's regex); ``budget_template``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import aggregation, clipping, diagnostics, inputs, kl, ratios
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "hbpo"
PAPER = "Hierarchical Budget Policy Optimization for Adaptive Reasoning"
PAPER_URL = "https://arxiv.org/abs/2507.15844"

REWARD_MODES = ("paper", "code")
ROLLOUT = "budgeted"  # each group's rows carry their own budget prompt (``group_prompts``)


@dataclasses.dataclass(frozen=True)
class Config:
    """HBPO hyperparameters (paper symbols in comments; paper defaults)."""

    budgets: tuple[int, ...] = (512, 1024, 2048, 2560)  # B: one token budget per subgroup
    l_max: int = 4096  # L_max: the context the cosine decays over (2 L_max = 8192 in the code)
    reward_scale: float = 4.0  # the paper's beta in f1/f2 (renamed: ``beta`` is the KL weight)
    alpha: float = 1.0 / 4096  # alpha: penalty per token of deviation |n - b|
    reward_mode: str = "paper"  # "paper" | "code" (min(f1, f2))
    intra_multiplier: float = 1.0  # 1 (paper, Alg. 1) | 2 (the code's duplicated line)
    no_answer_reward: float = 0.0  # 0 (paper) | -1 (code, needs rollout["has_answer"])
    correct_threshold: float = 0.5  # a task reward above this counts as correct
    budget_template: str = "<think> I will answer the question within {budget} tokens."
    std_eps: float = 1e-6  # verl's epsilon of the group std
    std_ddof: int = 1  # torch.std: unbiased
    eps_low: float = 0.2
    eps_high: float = 0.28
    clip_c: float | None = None  # dual-clip constant; None = off
    beta: float = 0.0  # KL weight; HBPO disables the KL
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # clamp of the per-token KL value (verl: 10); None = none
    aggregation: str = "token_mean"

    def __post_init__(self):
        if not self.budgets or any(int(b) <= 0 for b in self.budgets) or len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"hbpo.Config.budgets must be distinct positive token counts, got {self.budgets!r}")
        if max(self.budgets) > self.l_max:
            raise ValueError(f"hbpo.Config: every budget must be <= l_max={self.l_max}, got {self.budgets!r}")
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(f"hbpo.Config.reward_mode must be one of {REWARD_MODES}, got {self.reward_mode!r}")
        if "{budget}" not in self.budget_template:
            raise ValueError(f"hbpo.Config.budget_template must contain '{{budget}}', got {self.budget_template!r}")
        if self.aggregation not in aggregation.MODES:
            raise ValueError(f"hbpo.Config.aggregation must be one of {aggregation.MODES}, got {self.aggregation!r}")


def ideal_reward(budgets: Array, cfg: Config) -> Array:
    """``f2(b) = s cos(pi b / (2 L_max))``: the reward of a correct answer within its budget. Elementwise."""
    b = jnp.asarray(budgets, jnp.float32)
    return cfg.reward_scale * jnp.cos(math.pi * b / (2.0 * cfg.l_max))


def budget_reward(
    correct: Array, lengths: Array, budgets: Array, cfg: Config, has_answer: Array | None = None
) -> Array:
    """HBPO reward ``R(n, b)`` (module docstring), ``reward_mode`` picking paper or code. ``[B]`` each.

    ``correct``: bool; ``lengths``: generated tokens ``n``; ``budgets``: ``b``. ``has_answer``
    (bool) is needed only when ``no_answer_reward != 0``: an incorrect row without an answer gets
    ``no_answer_reward`` instead of 0.
    """
    n = jnp.asarray(lengths, jnp.float32)
    b = jnp.asarray(budgets, jnp.float32)
    f1 = cfg.reward_scale * jnp.cos(math.pi * n / (2.0 * cfg.l_max)) - cfg.alpha * jnp.abs(n - b)
    f2 = ideal_reward(b, cfg)
    within_context = n <= cfg.l_max
    if cfg.reward_mode == "paper":
        correct_reward = jnp.where(n <= b, f2, f1)
    else:
        correct_reward = jnp.minimum(f1, f2)
    r = jnp.where(jnp.asarray(correct) & within_context, correct_reward, 0.0)
    if cfg.no_answer_reward != 0.0:
        if has_answer is None:
            raise KeyError(f"hbpo: no_answer_reward={cfg.no_answer_reward} needs rollout['has_answer'] [B] bool")
        r = jnp.where(~jnp.asarray(correct) & ~jnp.asarray(has_answer, bool), cfg.no_answer_reward, r)
    return r


def _budgets(rollout: Rollout, where: str) -> Array:
    if "budgets" not in rollout:
        raise KeyError(f"hbpo.{where}: rollout needs 'budgets' [B] (each row's token budget, from group_prompts)")
    return rollout["budgets"]


def shape_rewards(rewards: Array, rollout: Rollout, cfg: Config) -> Array:
    """Replaces the task reward by the budget-aware reward: correct = ``rewards > correct_threshold``.

    Needs ``rollout["lengths"]`` [B] (generated tokens) and ``rollout["budgets"]`` [B]. ``[B] -> [B]``.
    """
    budgets = _budgets(rollout, "shape_rewards")
    if "lengths" not in rollout:
        raise KeyError("hbpo.shape_rewards: rollout needs 'lengths' [B] (generated tokens per row)")
    correct = jnp.asarray(rewards) > cfg.correct_threshold
    return budget_reward(correct, rollout["lengths"], budgets, cfg, rollout.get("has_answer"))


def check_config(run_cfg: Any) -> str | None:
    """Why a run config cannot train HBPO (``None`` when it can): every subgroup needs an equal
    share of the group, and every budget must be reachable by the sampler."""
    cfg, g, t = run_cfg.algo, run_cfg.train.group_size, run_cfg.sampling.max_new_tokens
    if g % len(cfg.budgets):
        return f"train.group_size={g} is not a multiple of the {len(cfg.budgets)} budgets {cfg.budgets}"
    if max(cfg.budgets) > t:
        return (
            f"budget {max(cfg.budgets)} > sampling.max_new_tokens={t}: the sampler stops before it; "
            f"scale algo.budgets (and algo.l_max) to the completion length, as experiments/hbpo.py does"
        )
    return None


def group_prompts(prompt: str, group_size: int, cfg: Config) -> tuple[list[str], dict[str, np.ndarray]]:
    """The ``G`` prompts of one group: ``G / k`` copies per budget, budget phrase appended.

    Returns ``(prompts, {"budgets": int32 [G]})``, subgroups contiguous in ``cfg.budgets`` order.
    ``prompt`` is the rendered prompt ending where the completion starts, so the phrase
    (``cfg.budget_template``, which opens ``<think>``) begins the response. The trainer samples ONE
    completion per returned prompt and keeps the rows group-major.
    """
    k = len(cfg.budgets)
    if group_size % k:
        raise ValueError(
            f"hbpo.group_prompts: group_size={group_size} must be a multiple of the number of budgets ({k}: {cfg.budgets})"
        )
    per = group_size // k
    budgets = np.repeat(np.asarray(cfg.budgets, np.int32), per)
    return [prompt + cfg.budget_template.format(budget=int(b)) for b in budgets], {"budgets": budgets}


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """``A = z-score over the group + intra_multiplier * (mu_subgroup - f2(b))``. ``[B]``.

    ``rollout["rewards"]`` are the budget-aware rewards (after ``shape_rewards``); subgroups are the
    rows of a group with equal ``budgets``. Metrics: advantage stats, ``frac_zero_std_groups``,
    ``hbpo/adv_intra_mean`` and, per budget ``b``, ``hbpo/len_b{b}`` (mean generated tokens) and
    ``hbpo/reward_b{b}`` (mean reward).
    """
    del state
    r = jnp.asarray(rollout["rewards"], jnp.float32)
    budgets = jnp.asarray(_budgets(rollout, "advantages"))
    chex.assert_equal_shape([r, budgets])
    g = adv_ops.group_size_of(rollout)
    inter = adv_ops.group_normalized(r, g, ddof=cfg.std_ddof, eps=cfg.std_eps)
    rg, bg = r.reshape(-1, g), budgets.reshape(-1, g)  # [P, G]
    same = (bg[:, :, None] == bg[:, None, :]).astype(jnp.float32)  # [P, G, G]
    mu = jnp.sum(same * rg[:, None, :], axis=-1) / jnp.sum(same, axis=-1)  # [P, G] subgroup mean
    intra = (mu - ideal_reward(bg, cfg)).reshape(-1)  # [B]
    adv = inter + cfg.intra_multiplier * intra
    mask = rollout["mask"]
    lengths = jnp.asarray(rollout["lengths"], jnp.float32) if "lengths" in rollout else jnp.sum(mask, axis=1)
    metrics = {
        **adv_ops.stats(adv, mask),
        "frac_zero_std_groups": jnp.mean(adv_ops.zero_std_groups(r, g).astype(jnp.float32)),
        "hbpo/adv_intra_mean": jnp.mean(intra),
    }
    for b in cfg.budgets:
        sel = (budgets == b).astype(jnp.float32)
        count = jnp.maximum(jnp.sum(sel), 1.0)
        metrics[f"hbpo/len_b{b}"] = jnp.sum(sel * lengths) / count
        metrics[f"hbpo/reward_b{b}"] = jnp.sum(sel * r) / count
    return adv, metrics


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """PPO-clip surrogate (clip-higher), aggregated with GLOBAL normalizers; ``+ beta`` KL if ``beta > 0``.

    ``l_{i,t} = -min(rho A_i, clip(rho, 1 - eps_low, 1 + eps_high) A_i)``,
    ``rho = exp(logprobs - old_logprobs)``; ``logprobs`` [B, T].
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
    """Extra rollout keys for the invariant suite: ``budgets`` [B], the default budgets cycling within each group."""
    del key, seq_len
    budgets = np.asarray(Config().budgets, np.int32)
    return {"budgets": jnp.asarray(budgets[np.arange(batch_size) % group_size % len(budgets)])}
