"""Groups scored by a judge instead of (or beside) the verifiable reward: ``self_judged`` (URPO)
and ``rubric`` (MPO).

``self_judged``: ``train.group_size`` samples per prompt from the policy, then THE SAME MODEL, with
its live params, scores each sample through the generative judge path
(``judges.generative.SamplerJudgeModel.from_policy``): the referee's score mapped to [0, 1] is the
reward, mixed with the verifiable reward by ``algo.self_reward_weight``. The verifiable reward is
kept for measurement: ``urpo/referee_accuracy`` is the fraction of same-prompt sample pairs with
different verifiable rewards that the referee orders the same way (``urpo/referee_pairs`` of them).

``rubric``: samples scored by a ``judges.rubric.RubricJudge`` over the rubric text held in the
algorithm state (``state["rubric"]``, bytes); after each update, every ``algo.num_mpo_interval``
updates, ``state_inputs`` runs the meta-reward model on ``algo.mpo_samples`` rows of the batch and
hands the (maybe) refined rubric to the method's ``update_state`` as ``batch["mpo_rubric"]``.
``mpo/true_quality`` is the verifiable reward the rubric judge never sees.

Both add ``time/judge`` (seconds in judge calls; also counted in ``time/reward``).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.judges import generative, rubric
from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.types import Batch, Rollout

_REFEREES: dict[int, tuple[Any, generative.GenerativeJudge]] = {}


def referee(ctx: Context) -> generative.GenerativeJudge:
    """The policy as its own judge (built once per policy object, reading its live params)."""
    cfg = ctx.algo_cfg
    cached = _REFEREES.get(id(ctx.policy))
    if cached is not None and cached[0] is ctx.policy:
        return cached[1]
    model = generative.SamplerJudgeModel.from_policy(
        ctx.policy,
        max_new_tokens=cfg.referee_max_new_tokens,
        max_prompt_len=cfg.referee_max_prompt_len,
        batch_size=ctx.cfg.train.prompts_per_step * ctx.cfg.train.group_size,
    )
    judge = generative.GenerativeJudge.on_sampler(
        model,
        mode=cfg.referee_mode,
        low=cfg.referee_low,
        high=cfg.referee_high,
        **({"rubric": cfg.rubric} if cfg.rubric else {}),
    )
    _REFEREES[id(ctx.policy)] = (ctx.policy, judge)
    return judge


def ordering_accuracy(scores: np.ndarray, truth: np.ndarray, group_ids: np.ndarray) -> tuple[float, int]:
    """Over same-group pairs whose ``truth`` differs: the fraction ordered the same way by ``scores``
    (a tie in ``scores`` counts as wrong), and the number of such pairs."""
    agree = total = 0
    for g in np.unique(group_ids):
        idx = np.flatnonzero(group_ids == g)
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                if truth[i] != truth[j]:
                    total += 1
                    agree += int((scores[i] - scores[j]) * (truth[i] - truth[j]) > 0)
    return (agree / total if total else 0.0), total


def _sample(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float], list, list[str]]:
    P = ctx.cfg.train.prompts_per_step
    examples, ids = group.draw_from_stream(ctx, P, jax.random.fold_in(key, 1), state)
    samples, metrics = group.sample_round(ctx, examples, ids, key, None, group.encode_shared)
    metrics.update(group.rollout_metrics(samples, ctx.cfg.eval.correct_threshold))
    row_examples = [e for e in examples for _ in range(samples.group_size)]
    return samples, metrics, row_examples, ctx.policy.decode(samples.tokens, samples.lengths)


def collect_self_judged(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """Player samples, scored by the player itself as referee (module docstring)."""
    cfg = ctx.algo_cfg
    samples, metrics, row_examples, completions = _sample(ctx, key, state)
    t0 = time.perf_counter()
    judge = referee(ctx)
    unparsable = judge.num_unparsable
    scores, _ = judge.score(row_examples, completions)
    metrics["time/judge"] = time.perf_counter() - t0
    metrics["time/reward"] += metrics["time/judge"]
    self_reward = (scores - cfg.referee_low) / (cfg.referee_high - cfg.referee_low)  # [B] in [0, 1]
    verifiable = np.asarray(samples.rewards, np.float32)
    w = cfg.self_reward_weight
    acc, n_pairs = ordering_accuracy(scores, verifiable, np.asarray(samples.group_ids))
    metrics.update(
        {
            "urpo/self_reward": float(self_reward.mean()),
            "urpo/verifiable_reward": float(verifiable.mean()),
            "urpo/referee_accuracy": acc,
            "urpo/referee_pairs": float(n_pairs),
            "urpo/unparsable": float(judge.num_unparsable - unparsable),
        }
    )
    rewards = (w * self_reward + (1.0 - w) * verifiable).astype(np.float32)
    return samples.replace(rewards=rewards), metrics


SELF_JUDGED_KIND = Kind(name="self_judged", collect=collect_self_judged)


def current_rubric(state: Any) -> str:
    return rubric.decode(np.asarray(jax.device_get(state["rubric"])))


def collect_rubric(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """Samples scored by the state's rubric (module docstring)."""
    samples, metrics, row_examples, completions = _sample(ctx, key, state)
    t0 = time.perf_counter()
    text = current_rubric(state)
    scores, _ = rubric.RubricJudge(text).score(row_examples, completions)
    metrics["time/judge"] = time.perf_counter() - t0
    metrics["time/reward"] += metrics["time/judge"]
    true = np.asarray(samples.rewards, np.float32)
    top = rubric.maximum(text)
    item_points = rubric.points(text)
    metrics.update(
        {
            "mpo/rubric_score": float(scores.mean()),
            "mpo/rubric_score_frac": float(scores.mean() / top),
            "mpo/true_quality": float(true.mean()),
            "mpo/gap": float(scores.mean() / top - true.mean()),
            "mpo/rubric_items": float(len(rubric.parse(text))),
            "mpo/rubric_version": float(np.asarray(state["version"])),
            **{f"mpo/points/{n}": item_points.get(n, 0.0) for n in rubric.ITEMS},
        }
    )
    return samples.replace(rewards=scores.astype(np.float32)), metrics


def rubric_state_inputs(ctx: Context, batch: Batch, state: Any) -> Batch:
    """Every ``num_mpo_interval``-th update: the meta-reward model's refined rubric of
    ``mpo_samples`` rows of this batch, as ``batch["mpo_rubric"]`` (bytes; unchanged otherwise,
    and always when ``num_mpo_interval = 0``, the fixed-rubric baseline)."""
    cfg = ctx.algo_cfg
    text = current_rubric(state)
    if cfg.num_mpo_interval and (int(np.asarray(state["updates"])) + 1) % cfg.num_mpo_interval == 0:
        tokens, lengths = np.asarray(batch["tokens"]), np.asarray(batch["lengths"])
        rows = np.arange(min(cfg.mpo_samples, tokens.shape[0]))
        examples = [ctx.task.train_example(int(i)) for i in np.asarray(batch["prompt_ids"])[rows]]
        completions = ctx.policy.decode(tokens[rows], lengths[rows])
        scores = np.asarray(batch["rewards"])[rows]
        text = rubric.ProgrammaticMRM(cfg.mrm_high, cfg.max_items, cfg.mrm_reweigh).refine(
            text, examples, completions, scores
        )
    return batch.with_items(mpo_rubric=rubric.encode(text, cfg.rubric_bytes))


RUBRIC_KIND = Kind(name="rubric", collect=collect_rubric, state_inputs=rubric_state_inputs)
