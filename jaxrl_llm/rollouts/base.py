"""What every rollout kind shares: the read-only ``Context`` it runs in and the ``Kind`` record.

A rollout kind is one way of producing rows for the loss: a group of completions per prompt, a
single stream with replay, budget prompts, and later trees, windows, episodes, pairs, images. Each
lives in ``rollouts/<kind>.py`` and exposes a ``KIND`` record; ``rollouts.KINDS`` maps names to
them, and an algorithm names its kind (``Algorithm.rollout``). The trainer calls

    rollout, metrics = kind.collect(ctx, key, algo_state)        # every RL step
    algo_state = kind.prepare_state(ctx, key, algo_state)       # once, at RL start
    batch = kind.state_inputs(ctx, batch, algo_state)           # after the update, before update_state

and nothing else of a kind, so a new kind is a new file plus one ``register`` call.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxrl_llm.config import Config
from jaxrl_llm.types import Batch, Example, Rollout


@dataclasses.dataclass(frozen=True)
class Context:
    """The read-only record a rollout kind runs in (not the trainer).

    Attributes:
      cfg: the run config (``cfg.algo`` is the method's resolved config).
      algo: the method's ``algorithms.Algorithm`` record (hooks with no-op defaults).
      policy: ``jaxrl_llm.policy.Policy``: model apply and log-prob functions, the live params
        handle (``policy.params``), the sampler (``generate``), the tokenizer and prompt encoding.
      task: the ``tasks.Task`` (training examples by index, held-out split).
      data: the task's training stream (``TrainIterator``; its position is checkpointed).
      score: ``score(completions, examples) -> (rewards [N] f32, info)``, the reward runner.
    """

    cfg: Config
    algo: Any
    policy: Any
    task: Any
    data: Any
    score: Callable[[list[str], list[Example]], tuple[np.ndarray, dict[str, Any]]]

    @property
    def algo_cfg(self) -> Any:
        return self.cfg.algo


def _same_state(ctx: Context, key: Any, state: Any) -> Any:
    return state


def _same_batch(ctx: Context, batch: Batch, state: Any) -> Batch:
    return batch


@dataclasses.dataclass(frozen=True)
class Kind:
    """A rollout kind: ``collect(ctx, key, state) -> (Rollout, metrics)`` and its optional steps."""

    name: str
    collect: Callable[[Context, Any, Any], tuple[Rollout, dict[str, float]]]
    prepare_state: Callable[[Context, Any, Any], Any] = _same_state
    state_inputs: Callable[[Context, Batch, Any], Batch] = _same_batch
    hooks: tuple[str, ...] = ()  # the method hooks it calls (``Algorithm.hooks``); checked at start


@dataclasses.dataclass(frozen=True)
class Scored:
    """``score_texts``'s answer: ``rewards`` [N] f32 (the weighted sum), ``info`` (the runner's),
    and ``metrics``: ``reward/failures`` and, when the task has several reward functions, each
    one's raw mean ``reward/<name>`` (a format reward that rises while correctness does not is
    format hacking, visible only per function)."""

    rewards: np.ndarray
    info: dict[str, Any]
    metrics: dict[str, float]


def score_texts(ctx: Context, texts: list[str], examples: list[Example]) -> Scored:
    """``ctx.score`` on decoded completions, with failed or timed-out reward calls counted and
    warned about (with the runner's errors), for every rollout kind."""
    rewards, info = ctx.score(texts, examples)
    failures = sum(info["failures"].values()) + sum(info["timeouts"].values())
    if failures and info.get("errors"):
        warnings.warn(f"reward failures: {info['errors']}")
    metrics = {"reward/failures": float(failures)}
    per_fn = info.get("per_fn", {})  # a scorer other than RewardRunner may not report it
    if len(per_fn) > 1:  # one function's mean is reward/mean already
        metrics.update({f"reward/{name}": float(np.mean(v)) for name, v in per_fn.items()})
    return Scored(np.asarray(rewards, np.float32), info, metrics)
