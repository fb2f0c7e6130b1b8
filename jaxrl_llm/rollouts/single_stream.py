"""``single_stream``: single-stream policy optimization's prompt selection, replay and prior.

Zheng et al., "Single-stream Policy Optimization", https://arxiv.org/abs/2509.13232 (code:
https://github.com/zzhengz/single-stream-policy-optimization, a verl recipe). Rows are sampled like
the ``group`` kind, but each step's prompts come from the method's ``select_prompts(state, P, key,
cfg)`` (prioritized by the per-prompt value tracker) instead of the task stream. Two more steps:

* ``prepare_state`` (once, at RL start), the offline prior: with ``algo.n_offline = n > 0``, each of
  the ``N = algo.num_prompts`` pool prompts is sampled ``n`` times by the initial policy and
  scored; ``with_offline_prior(state, rewards [N, n], cfg)`` sets the tracker's prior from the
  counts of correct samples (the paper's Sec. 3.2 initialisation).
* ``state_inputs`` (after each update): the response stored at each row's prompt's previous visit
  (``replay_tokens``) is scored under the updated policy into ``replay_logprobs`` [B, T], from
  which ``update_state`` measures the policy shift that sets the tracker's forgetting rate.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np

from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.types import Batch, Example, Rollout


def draw_selected(ctx: Context, num_prompts: int, key: jax.Array, state: Any) -> tuple[list[Example], np.ndarray]:
    """``num_prompts`` pool indices from the method's ``select_prompts`` and their examples."""
    ids = np.asarray(ctx.algo.hooks["select_prompts"](state, num_prompts, key, ctx.algo_cfg), np.int32)
    n = ctx.task.num_train
    if ids.shape != (num_prompts,) or ids.min() < 0 or ids.max() >= n:
        raise ValueError(
            f"{ctx.algo.name}.select_prompts returned indices of shape {ids.shape} in "
            f"[{ids.min()}, {ids.max()}]; need [{num_prompts}] in [0, {n})"
        )
    return [ctx.task.train_example(int(i)) for i in ids], ids


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """The method's selected prompts x ``train.group_size`` completions (usually 1)."""
    return group.collect_groups(ctx, key, state, draw_selected, group.encode_shared)


def offline_rewards(ctx: Context, key: jax.Array, num_prompts: int, samples: int) -> np.ndarray:
    """Rewards [N, n] of ``n`` samples of each of the first ``N`` training prompts under the
    current policy, ``train.prompts_per_step`` prompts per sampler call. A failed or timed-out
    reward call scores 0, as in training, and is counted in one warning at the end."""
    P = ctx.cfg.train.prompts_per_step
    out, failures = [], 0
    for start in range(0, num_prompts, P):
        examples = [ctx.task.train_example(i) for i in range(start, min(start + P, num_prompts))]
        tokens, mask = ctx.policy.encode_prompts(examples)
        sampled = ctx.policy.generate(tokens, mask, jax.random.fold_in(key, start), samples)
        scored = score_texts(
            ctx, ctx.policy.decode(sampled["tokens"], sampled["lengths"]), [e for e in examples for _ in range(samples)]
        )
        failures += int(scored.metrics["reward/failures"])
        out.append(scored.rewards.reshape(len(examples), samples))
    rewards = np.concatenate(out, axis=0)
    if failures:
        warnings.warn(
            f"offline prior: {failures} of {rewards.size} reward calls failed or timed out and scored 0",
            stacklevel=2,
        )
    return rewards


def prepare_state(ctx: Context, key: jax.Array, state: Any) -> Any:
    """The offline prior pass (module docstring) when ``algo.n_offline > 0``."""
    a = ctx.algo_cfg
    if not a.n_offline:
        return state
    rewards = offline_rewards(ctx, jax.random.fold_in(key, 7), a.num_prompts, a.n_offline)
    return ctx.algo.hooks["with_offline_prior"](state, rewards, a)


def state_inputs(ctx: Context, batch: Batch, state: Any) -> Batch:
    """``replay_logprobs`` [B, T]: the stored responses scored after their prompts by the current
    (post-update) policy; unchanged when the method stores none (T = 0)."""
    replay = {k: np.asarray(v) for k, v in ctx.algo.hooks["replay_tokens"](state, batch, ctx.algo_cfg).items()}
    T = replay["tokens"].shape[1]
    if T == 0:
        return batch
    tokens = np.concatenate([np.asarray(batch.prompt_tokens), replay["tokens"].astype(np.int32)], axis=1)
    attention = np.concatenate([np.asarray(batch.prompt_mask, np.float32), replay["mask"].astype(np.float32)], axis=1)
    return batch.with_items(replay_logprobs=ctx.policy.logprobs(ctx.policy.params, tokens, attention, T))


KIND = Kind(
    name="single_stream",
    collect=collect,
    prepare_state=prepare_state,
    state_inputs=state_inputs,
    hooks=("select_prompts", "replay_tokens", "with_offline_prior"),
)
