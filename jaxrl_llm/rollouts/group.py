"""``group``: P prompts x G completions, with dynamic sampling.

Each round draws ``P = train.prompts_per_step`` training examples from the task stream, samples
``G = train.group_size`` completions of each (the prompt's prefill is shared), scores them, adds the
answer classes for methods that ask for ``answer_ids`` (``Algorithm.rollout_extras``: the task's
``answer_fn`` reads each answer as its reward does) and the raw reward of each reward function for
methods that ask for ``reward_components`` ``[N, C]`` (GDPO; in the run's reward order) and
``sum_pi_squared`` ``[N, T]`` for those that ask for it (``rollouts.token_stats``), and asks
the method's ``filter_groups``
which groups to keep. Rounds repeat (at most ``train.max_sampling_rounds``) until ``P`` groups are
kept; ``backfill`` then assembles the batch: the first ``P`` kept groups in sampling order, and when
fewer were kept (underfilled), groups that were dropped, each at most once, with their
``loss_mask`` zeroed so they count in no loss (the batch's structure stays the same either way:
no recompilation when a step underfills) (DAPO's dynamic sampling, Yu et al. 2025,
https://arxiv.org/abs/2503.14476, Eq. 11: only groups with 0 < #correct < G train).

Image tasks: each row carries its prompt's pictures (``Rollout.images``, from
``Policy.prompt_images``), and a method that asks for ``masked_logprobs`` (PAPO) gets the sampled
tokens' log-probs with those pictures corrupted by its ``corrupt_images`` hook.

Rows are group-major: row ``b`` is completion ``b % G`` of group ``b // G`` (``group_ids``);
``prompt_ids`` holds each row's training-example index. Without a ``filter_groups`` hook every
group is kept and one round suffices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxrl_llm.rewards import extract
from jaxrl_llm.rollouts import token_stats
from jaxrl_llm.rollouts.base import Context, Kind, score_texts
from jaxrl_llm.types import Example, Rollout

# draw(ctx, P, key, state) -> (examples [P], example indices [P] int32)
Draw = Callable[[Context, int, jax.Array, Any], tuple[list[Example], np.ndarray]]
# encode(ctx, examples, G) -> (prompt tokens, prompt mask, samples per prompt, per-row arrays)
Encode = Callable[[Context, list[Example], int], tuple[np.ndarray, np.ndarray, int, dict[str, np.ndarray]]]


def draw_from_stream(ctx: Context, num_prompts: int, key: jax.Array, state: Any) -> tuple[list[Example], np.ndarray]:
    """The next ``num_prompts`` examples of the task's training stream and their indices."""
    pairs = [ctx.data.next_indexed() for _ in range(num_prompts)]
    return [e for _, e in pairs], np.asarray([i for i, _ in pairs], np.int32)


def encode_shared(ctx: Context, examples: list[Example], group_size: int):
    """One prompt per example [P, Sp], sampled ``G`` times (its prefill shared)."""
    tokens, mask = ctx.policy.encode_prompts(examples)
    return tokens, mask, group_size, {}


def pad_cat(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenates rows whose trailing dims may differ (prompt buckets): left-pads the narrower."""
    parts = [np.asarray(p) for p in parts]
    if parts[0].ndim == 1 or len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts, axis=0)
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (width - p.shape[1], 0))) for p in parts], axis=0)


def concat(rollouts: Sequence[Rollout]) -> Rollout:
    """The rows of several rollouts of one structure, in order."""
    return jax.tree.map(lambda *xs: pad_cat(xs), *rollouts)


def take_groups(rollout: Rollout, groups: np.ndarray) -> Rollout:
    """The rows of the given groups (group-major), in the given order."""
    G = rollout.group_size
    rows = (np.asarray(groups)[:, None] * G + np.arange(G)[None]).reshape(-1)
    return jax.tree.map(lambda x: np.asarray(x)[rows], rollout)


def backfill(candidates: Rollout, keep_groups: np.ndarray, num_groups: int) -> tuple[Rollout, int]:
    """The dynamic-sampling batch: ``num_groups`` groups of the candidates, static shapes.

    ``candidates``: group-major rows of every group sampled this step, in sampling order;
    ``keep_groups`` [N] bool: the method's verdict per group. Output: the kept groups first, in
    sampling order, then (underfilled) dropped groups in sampling order, each candidate at most
    once, with ``loss_mask`` zeroed on the dropped ones so they contribute to no loss and to no
    normalizer. ``group_ids`` are renumbered ``0 .. num_groups - 1``. Returns ``(rollout, number of
    kept groups in it)``. Needs at least ``num_groups`` candidates.
    """
    keep_groups = np.asarray(keep_groups, bool)
    if keep_groups.shape[0] < num_groups:
        raise ValueError(f"backfill: {keep_groups.shape[0]} candidate groups < the {num_groups} the batch needs")
    order = np.argsort(~keep_groups, kind="stable")[:num_groups]
    out = take_groups(candidates, order)
    G = candidates.group_size
    valid = np.repeat(keep_groups[order], G)
    if not valid.all():
        loss_mask = out.loss_mask if out.loss_mask is not None else out.mask
        out = out.replace(loss_mask=np.where(valid[:, None], loss_mask, 0).astype(np.float32))
    out = out.replace(group_ids=np.repeat(np.arange(num_groups, dtype=np.int32), G))
    return out, int(keep_groups[order].sum())


def rollout_metrics(rollout: Rollout, correct_threshold: float) -> dict[str, float]:
    """Reward, length and entropy statistics of one round's rows (``reward/*``, ``completion_len/*``,
    ``frac_zero_std_groups`` where rows are grouped, ``entropy``)."""
    r, lengths, G = np.asarray(rollout.rewards), np.asarray(rollout.lengths), rollout.group_size
    out = {
        "reward/mean": float(r.mean()),
        "reward/std": float(r.std()),
        "reward/max": float(r.max()),
        "reward/min": float(r.min()),
        "completion_len/mean": float(lengths.mean()),
        "completion_len/max": float(lengths.max()),
    }
    wrong = r < correct_threshold  # the eval's notion of a correct completion
    if wrong.any():
        out["completion_len/wrong"] = float(lengths[wrong].mean())
    if (~wrong).any():
        out["completion_len/correct"] = float(lengths[~wrong].mean())
    if G > 1:  # a group of one always has zero spread: the fraction would read 1 and mean nothing
        out["frac_zero_std_groups"] = float((r.reshape(-1, G).std(axis=1) == 0).mean())
    if rollout.entropies is not None:
        m = np.asarray(rollout.mask)
        out["entropy"] = float((np.asarray(rollout.entropies) * m).sum() / max(m.sum(), 1.0))
    return out


def sample_round(
    ctx: Context, examples: list[Example], ids: np.ndarray, key: jax.Array, state: Any, encode: Encode
) -> tuple[Rollout, dict[str, float]]:
    """Samples and scores the groups of ``examples``: a group-major ``Rollout`` of ``P * G`` rows."""
    G = ctx.cfg.train.group_size
    rule, rule_params = ctx.algo.temperature(ctx.algo_cfg, state)
    t0 = time.perf_counter()
    prompt_tokens, prompt_mask, samples, row_arrays = encode(ctx, examples, G)
    images = ctx.policy.prompt_images(examples)  # [P, N, H, W, C] or None (text prompts)
    out = ctx.policy.generate(
        prompt_tokens,
        prompt_mask,
        key,
        samples,
        temperature_rule=rule,
        temperature_rule_params=rule_params,
        images=None if images is None else np.repeat(images, len(prompt_tokens) // len(examples), axis=0),
    )
    row_images = None if images is None else np.repeat(images, G, axis=0)
    sample_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    row_examples = [e for e in examples for _ in range(G)]
    completions = ctx.policy.decode(out["tokens"], out["lengths"])
    scored = score_texts(ctx, completions, row_examples)
    rewards, info = scored.rewards, scored.info
    extras = dict(row_arrays)
    if "answer_ids" in ctx.algo.rollout_extras:  # the answers as the task's reward reads them
        answers = [ctx.task.answer_fn(c, e) for c, e in zip(completions, row_examples)]
        extras["answer_ids"] = extract.answer_classes(answers, G)
    if "reward_components" in ctx.algo.rollout_extras:  # raw reward of each reward function [N, C] (GDPO)
        extras["reward_components"] = np.stack(list(info["per_fn"].values()), axis=1).astype(np.float32)
    if "sum_pi_squared" in ctx.algo.rollout_extras:  # sum_v pi_old(v)^2 [N, T] (optimal token baseline)
        extras["sum_pi_squared"] = token_stats.sum_pi_squared(
            ctx.policy, out["prompt_tokens"], out["prompt_mask"], out["tokens"], out["mask"]
        )
    if "masked_logprobs" in ctx.algo.rollout_extras and row_images is not None:  # PAPO's corrupted-image pass
        extras.update(masked_image_logprobs(ctx, jax.random.fold_in(key, 2), out, row_images, G))
    optional = {k: out[k].astype(np.float32) for k in ("policy_logprobs", "entropies") if k in out}
    mask = out["mask"].astype(np.float32)  # every completion token is the policy's: loss_mask = mask
    rollout = Rollout(
        prompt_tokens=out["prompt_tokens"].astype(np.int32),
        prompt_mask=out["prompt_mask"].astype(np.int32),
        tokens=out["tokens"].astype(np.int32),
        mask=mask,
        loss_mask=mask,
        rewards=np.asarray(rewards, np.float32),
        group_ids=np.repeat(np.arange(len(examples), dtype=np.int32), G),
        prompt_ids=np.repeat(np.asarray(ids, np.int32), G),
        lengths=out["lengths"].astype(np.int32),
        sampler_logprobs=out["logprobs"].astype(np.float32),
        images=row_images,
        extras=extras,
        group_size=G,
        **optional,
    )
    metrics = {"time/sample": sample_time, "time/reward": time.perf_counter() - t0, **scored.metrics}
    return rollout, metrics


def masked_image_logprobs(
    ctx: Context, key: jax.Array, out: dict[str, np.ndarray], images: np.ndarray, group_size: int
) -> dict[str, np.ndarray]:
    """``masked_logprobs`` [N, T]: the sampled tokens' log-probs under the sampling params with each
    row's pictures corrupted by the method's ``corrupt_images(key, images, G, cfg)`` hook (one
    corruption per group), and ``has_image`` [N] = 1 (PAPO's perception pass; no gradient)."""
    corrupted = np.asarray(ctx.algo.hooks["corrupt_images"](key, images, group_size, ctx.algo_cfg), np.float32)
    tokens = np.concatenate([out["prompt_tokens"], out["tokens"]], axis=1)
    attention = np.concatenate([out["prompt_mask"], out["mask"]], axis=1).astype(np.float32)
    T = out["tokens"].shape[1]
    masked = ctx.policy.logprobs(ctx.policy.params, tokens, attention, T, group_size, images=corrupted)
    return {"masked_logprobs": masked, "has_image": np.ones((len(tokens),), np.float32)}


def collect_groups(
    ctx: Context, key: jax.Array, state: Any, draw: Draw, encode: Encode
) -> tuple[Rollout, dict[str, float]]:
    """The dynamic-sampling loop shared by the group-shaped kinds (module docstring): ``draw``
    picks each round's examples, ``encode`` their prompts. Round ``i`` samples with
    ``fold_in(key, i)`` and draws with ``fold_in(fold_in(key, i), 1)``."""
    c = ctx.cfg
    P = c.train.prompts_per_step
    candidates, keeps = [], []
    metrics: dict[str, float] = {"time/sample": 0.0, "time/reward": 0.0, "reward/failures": 0.0}
    for round_ in range(c.train.max_sampling_rounds):
        round_key = jax.random.fold_in(key, round_)
        examples, ids = draw(ctx, P, jax.random.fold_in(round_key, 1), state)
        chunk, m = sample_round(ctx, examples, ids, round_key, state, encode)
        for k in ("time/sample", "time/reward", "reward/failures"):
            metrics[k] += m[k]
        if round_ == 0:
            metrics.update(rollout_metrics(chunk, c.eval.correct_threshold))
            metrics.update({k: v for k, v in m.items() if k.startswith("reward/") and k != "reward/failures"})
        keep_rows = np.asarray(ctx.algo.filter_groups(chunk, ctx.algo_cfg), bool)  # [P*G]
        candidates.append(chunk)
        keeps.append(keep_rows.reshape(-1, chunk.group_size).any(axis=1))
        if sum(int(k.sum()) for k in keeps) >= P:
            break
    metrics["sampling_rounds"] = float(round_ + 1)
    rollout, kept = backfill(concat(candidates), np.concatenate(keeps), P)
    if kept < P:
        metrics["filter/underfilled"] = float(P - kept)
    return rollout, metrics


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P prompts from the task stream x G completions each (module docstring)."""
    return collect_groups(ctx, key, state, draw_from_stream, encode_shared)


KIND = Kind(name="group", collect=collect)
