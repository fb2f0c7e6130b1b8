"""MPO: Meta Policy Optimization with an evolving rubric.

Citation: Zae Myung Kim, Chanwoo Park, Vipul Raheja, Suin Kim, Dongyeop Kang, "Toward Evaluative
Thinking: Meta Policy Optimization with Evolving Reward Models", 2025,
https://arxiv.org/abs/2504.20157; code https://github.com/minnesotanlp/mpo (a TRL fork). Not TRL's
"MPO" (Mixed Preference Optimization).

A judge scores each rollout by a rubric of items, ``R = sum_items score_item`` (each 0..5), and the
policy is trained on R. Every ``num_mpo_interval`` updates a meta-reward model reads
``mpo_samples`` scored rollouts, critiques the scores (meta-analysis), rewrites the rubric per
sample (refinement) and merges the rewrites into the next rubric (``judges/rubric.py``):

    rubric_{k+1} = merge_{i in samples}( refine(rubric_k, x_i, y_i, R_k(x_i, y_i)) )

so a loophole the policy finds in rubric_k (a criterion it satisfies without doing the task) is
closed in rubric_{k+1}. The policy update here is GRPO's (the paper uses PPO with a value model;
the rubric mechanism is the method, the optimizer is the substrate).

State (checkpointed with the run, restored exactly): ``rubric`` (the current rubric's UTF-8 bytes,
``[rubric_bytes]`` uint8), ``history`` (every version, ``[max_versions, rubric_bytes]``),
``version`` and ``updates`` counters. The judge and the meta-reward model are programmatic
stand-ins (``judges.rubric.RubricJudge``, ``ProgrammaticMRM``): the paper's are 3B-72B LLMs
following task-specific meta-prompts, which a 135M model cannot.

Differs from GRPO in:
  1. The reward is a rubric judge's score, and the rubric is part of the algorithm state.
  2. Every ``num_mpo_interval`` updates the rubric is rewritten by a meta-reward model from scored
     rollouts (``num_mpo_interval = 0``: never, the fixed-rubric baseline).

Defaults: ``num_mpo_interval = 10`` and ``mpo_samples = 20`` (the code's defaults; its launch
script uses 20 / 16); the seed rubric is ``judges.rubric.SEED_RUBRIC``, hackable on purpose.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.judges import rubric as rubric_lib
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "mpo"
PAPER = "Toward Evaluative Thinking: Meta Policy Optimization with Evolving Reward Models"
PAPER_URL = "https://arxiv.org/abs/2504.20157"
ROLLOUT = "rubric"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.04
    kl_estimator: str = "k3"
    std_ddof: int = 1
    std_eps: float = 1e-6
    aggregation: str = "seq_mean_token_mean"
    seed_rubric: str = rubric_lib.SEED_RUBRIC  # rubric_0
    num_mpo_interval: int = 10  # updates between rubric rewrites; 0 = a fixed rubric
    mpo_samples: int = 20  # scored rollouts the meta-reward model reads per rewrite
    mrm_high: float = 0.5  # a score above this fraction of the rubric's maximum is "high"
    max_items: int = 6  # the merged rubric's item cap
    # the stand-in MRM also halves the points of items that pay inflated wrong answers as much as
    # right ones (judges/rubric.py); False: it only adds items (the runs before 2026-12-08)
    mrm_reweigh: bool = True
    rubric_bytes: int = 1024  # the state's rubric buffer
    max_versions: int = 16  # rubric history rows kept in the state


def check_config(run_cfg: Any) -> str | None:
    cfg = run_cfg.algo
    if cfg.num_mpo_interval < 0 or cfg.mpo_samples < 1:
        return f"mpo needs algo.num_mpo_interval >= 0 and algo.mpo_samples >= 1, got {cfg.num_mpo_interval}, {cfg.mpo_samples}"
    try:
        rubric_lib.encode(cfg.seed_rubric, cfg.rubric_bytes)
    except ValueError as e:
        return f"mpo: algo.seed_rubric: {e}"
    if not rubric_lib.parse(cfg.seed_rubric):
        return "mpo: algo.seed_rubric has no '<item>name: description</item>' entry"
    return None


def init_state(cfg: Config) -> dict[str, Array]:
    """rubric_0 as bytes, its history row, and the counters."""
    seed = jnp.asarray(rubric_lib.encode(cfg.seed_rubric, cfg.rubric_bytes))
    history = jnp.zeros((cfg.max_versions, cfg.rubric_bytes), jnp.uint8).at[0].set(seed)
    return {"rubric": seed, "history": history, "version": jnp.int32(0), "updates": jnp.int32(0)}


def update_state(state: dict[str, Array], batch: Batch, cfg: Config) -> dict[str, Array]:
    """Adopt the rubric the kind's meta-reward step handed over (``batch["mpo_rubric"]``); a new
    one becomes the next version (and history row; the last row is overwritten once full)."""
    new = jnp.asarray(batch["mpo_rubric"], jnp.uint8) if cfg.num_mpo_interval > 0 else state["rubric"]
    changed = jnp.any(new != state["rubric"])
    version = state["version"] + changed.astype(jnp.int32)
    row = jnp.minimum(version, cfg.max_versions - 1)
    history = jnp.where(changed, state["history"].at[row].set(new), state["history"])
    return {"rubric": new, "history": history, "version": version, "updates": state["updates"] + 1}


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """Group-normalized rubric scores: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """GRPO's clipped surrogate + ``beta`` k3 (global normalizers). ``grpo.clipped_loss``."""
    return grpo.clipped_loss(
        logprobs, batch, cfg.eps_low, cfg.eps_high, cfg.beta, cfg.kl_estimator, cfg.aggregation, where=NAME
    )
