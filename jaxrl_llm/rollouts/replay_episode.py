"""``replay_episode``: ``episode`` rows over a fixed task set, with ARPO's replay of buffered
successes into all-failure groups (Lu et al. 2025, "ARPO: End-to-End Policy Optimization for GUI
Agents with Experience Replay", https://arxiv.org/abs/2505.16282; ``algorithms/arpo_gui.py``).

Each step draws ``P = train.prompts_per_step`` distinct tasks from ``[0, algo.num_tasks)`` (a task
is an environment seed) and plays ``G = train.group_size`` episodes of each (``episode.play``,
one row per episode, ``episode.episode_rows``). Per row it adds ``eval`` (the episode's success,
0/1), ``format`` (-1 when an action was invalid, i.e. unparsable, else 0), ``task_ids``,
``episode_mask`` (the rows' attention mask, which the batch's ``mask`` no longer is) and
``replaced``. Then, with ``algo.replay``, each group whose evaluations all fail
(``substitute``: std < ``algo.std_max``, mean < ``algo.mean_max``) and whose task buffer (the
method's state, ``ops.replay``) holds an episode gets one, drawn uniformly, in place of its first
row. The method pushes the step's original successes after the update (``update_state``).
Episodes with pictures (``episode.play``): a replayed row takes the buffered episode's ``images``
and the completion part of its ``image_mask`` too (``algo.episode_images`` must be set).

Old log-probs: the rows leave ``policy_logprobs`` unset, so the trainer recomputes pi_old with the
current policy for every row (a replayed row's sampling-time log-probs are stale); its
``sampler_logprobs`` and ``entropies`` are zero (the method forbids a rollout correction).
With ``algo.eval_every`` > 0, every that many updates (from 0, before the first) the step also
plays ``algo.eval_locks x algo.eval_samples`` sampled episodes on held-out tasks (seeds
``episode.EVAL_SEED_BASE + j``), logged as ``heldout/success`` (and ``heldout/*``).
Metrics: ``replay/all_fail_frac`` (share of groups that trigger, before replacement),
``replay/replaced``, ``replay/buffer_fill`` (mean fraction of buffer slots used), ``replay/tasks_buffered``
and the ``episode/*`` of the ORIGINAL episodes (``episode/success``: the training success rate).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.ops import replay
from jaxrl_llm.rollouts import episode
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.rollouts.group import rollout_metrics
from jaxrl_llm.types import Rollout


def all_failure(ev: np.ndarray, group_size: int, std_max: float, mean_max: float) -> np.ndarray:
    """Per group ``[P]``: ``std(eval) < std_max`` and ``mean(eval) < mean_max`` (population std)."""
    g = np.asarray(ev, np.float64).reshape(-1, group_size)
    return (g.std(axis=1) < std_max) & (g.mean(axis=1) < mean_max)


def substitute(
    rollout: Rollout, state: Any, task_ids: np.ndarray, key: jax.Array, cfg: Any
) -> tuple[Rollout, dict[str, float]]:
    """The rollout with the first row of every all-failure group whose task buffer is non-empty
    replaced by a buffered episode of its task (``cfg`` the method's config; ``task_ids`` [P]).
    The replaced row keeps its group's prompt (a task's first prompt is the same in every episode)."""
    G = rollout.group_size
    ev = np.asarray(rollout["eval"], np.float32)
    trigger = all_failure(ev, G, cfg.std_max, cfg.mean_max)  # [P]
    buffer = state["buffer"]
    counts = np.asarray(buffer["count"])[task_ids]  # [P]
    chosen = np.flatnonzero(trigger & (counts > 0)) if cfg.replay else np.zeros((0,), np.int64)
    metrics = {
        "replay/all_fail_frac": float(trigger.mean()),
        "replay/replaced": float(len(chosen)),
        "replay/buffer_fill": float(np.asarray(buffer["count"]).mean() / replay.capacity_of(buffer)),
        "replay/tasks_buffered": float((np.asarray(buffer["count"]) > 0).mean()),
    }
    # Drawn for every group each step (cheap: P rows), so its one program compiles at the first step;
    # fetched to the host only when a group takes its row.
    drawn = replay.draw_per_group(buffer, np.asarray(task_ids), key) if cfg.replay else {}
    if not len(chosen):
        return rollout, metrics
    drawn = jax.device_get(drawn)
    names = ("tokens", "mask", "loss_mask", "lengths", "rewards", "sampler_logprobs", "entropies")
    arrays = {name: np.array(rollout[name]) for name in names + ("images", "image_mask") if name in rollout}
    extras = {k: np.array(v) for k, v in rollout.extras.items()}
    K = extras["step_rewards"].shape[1]
    for p in chosen:
        b = int(p) * G
        row = {k: v[p] for k, v in drawn.items()}
        arrays["tokens"][b], arrays["mask"][b], arrays["loss_mask"][b] = row["tokens"], row["mask"], row["loss_mask"]
        arrays["lengths"][b], arrays["rewards"][b] = row["lengths"], row["eval"]
        arrays["sampler_logprobs"][b], arrays["entropies"][b] = 0.0, 0.0
        n = int(row["num_steps"])
        extras["step_ids"][b], extras["num_steps"][b] = row["step_ids"], n
        extras["step_rewards"][b] = 0.0
        extras["step_rewards"][b, min(max(n - 1, 0), K - 1)] = row["eval"]
        extras["anchor_ids"][b] = -1  # anchor ids compare states within one step's group only
        extras["success"][b], extras["eval"][b], extras["format"][b] = row["eval"], row["eval"], row["format"]
        extras["episode_mask"][b], extras["replaced"][b] = row["mask"], 1.0
        if "images" in arrays:
            arrays["images"][b], arrays["image_mask"][b, -len(row["image_mask"]) :] = row["images"], row["image_mask"]
    return rollout.replace(**arrays, extras=extras), metrics


def check_buffer(rollout: Rollout, state: Any, cfg: Any) -> None:
    """Rows with pictures need a buffer that keeps them (``algo.episode_images``, ``image_shape``)
    when replay can put a buffered episode in their place; a mismatch is named."""
    items = state["buffer"]["items"]
    if rollout.images is None:
        if "images" in items:
            raise ValueError("algo.episode_images > 0 but the episodes show no pictures; set it to 0")
        return
    want = tuple(np.shape(rollout.images)[1:])
    if "images" not in items:
        if cfg.replay:
            raise ValueError(
                f"the episodes show pictures {want}: set algo.episode_images={want[0]} and "
                f"algo.image_shape={want[1:]} so that replayed episodes keep theirs"
            )
    elif tuple(items["images"].shape[2:]) != want:
        raise ValueError(
            f"algo.episode_images / image_shape give buffered pictures {tuple(items['images'].shape[2:])}, "
            f"the episodes show {want}"
        )


def heldout(ctx: Context, key: jax.Array, state: Any) -> dict[str, float]:
    """``heldout/*``: ``eval_locks x eval_samples`` sampled episodes on held-out tasks."""
    a = ctx.algo_cfg
    seeds = [episode.EVAL_SEED_BASE + j for j in range(a.eval_locks) for _ in range(a.eval_samples)]
    episodes, _ = episode.play(ctx, seeds, key, state)
    return {k.replace("episode/", "heldout/"): v for k, v in episode.episode_metrics(episodes).items()}


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """``P`` distinct tasks x ``G`` episodes, then replay (module docstring)."""
    a, P, G = ctx.algo_cfg, ctx.cfg.train.prompts_per_step, ctx.cfg.train.group_size
    task_ids = np.asarray(jax.random.choice(jax.random.fold_in(key, 1), a.num_tasks, (P,), replace=False), np.int32)
    episodes, times = episode.play(ctx, [int(t) for t in task_ids for _ in range(G)], jax.random.fold_in(key, 2), state)
    rollout = episode.episode_rows(ctx, episodes, G)
    B = len(episodes)
    rollout = rollout.replace(policy_logprobs=None).with_items(
        eval=np.asarray([ep.success for ep in episodes], np.float32),
        format=np.asarray([-1.0 if any(ep.invalid) else 0.0 for ep in episodes], np.float32),
        task_ids=np.repeat(task_ids, G),
        episode_mask=np.asarray(rollout.mask, np.float32),
        replaced=np.zeros((B,), np.float32),
    )
    metrics = rollout_metrics(rollout, ctx.cfg.eval.correct_threshold)
    metrics.update(episode.episode_metrics(episodes))
    metrics["episode/format_fail"] = float(np.mean(np.asarray(rollout["format"]) < 0))
    check_buffer(rollout, state, a)
    rollout, replay_metrics = substitute(rollout, state, task_ids, jax.random.fold_in(key, 3), a)
    metrics.update(replay_metrics)
    step = int(state["step"])
    if a.eval_every and a.eval_locks and step % a.eval_every == 0:
        t0 = time.perf_counter()
        metrics.update(heldout(ctx, jax.random.fold_in(key, 4), state))
        times["time/sample"] += time.perf_counter() - t0
    metrics.update({"time/sample": times["time/sample"], "time/reward": times["time/env"], "reward/failures": 0.0})
    return rollout, metrics


KIND = Kind(name="replay_episode", collect=collect)
