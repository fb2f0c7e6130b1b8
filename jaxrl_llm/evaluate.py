"""Held-out evaluation, and a policy loaded from a run directory without a trainer.

``evaluate(policy, task, score, eval_cfg, key)``: greedy accuracy (``eval/accuracy``), sampled
pass@1 and pass@k (``eval.k`` samples per prompt at ``eval.temperature``, the unbiased estimator
of Chen et al. 2021, "Evaluating Large Language Models Trained on Code",
https://arxiv.org/abs/2107.03374, Eq. 1) and the mean greedy completion length. A completion is
correct when its reward is >= ``eval.correct_threshold``, or by the task's own ``correct_fn``
when it has one (``images:gui``: the first point in the box). A task's ``eval_splits`` also split
the greedy accuracy by a boolean metadata key (image tasks with a text prior, ``tasks.images``:
``eval/accuracy/needs_image`` and ``eval/accuracy/text_answerable``; ``images:gui``: ``hard`` /
``easy``).

``load_policy(cfg, run_dir=None) -> (policy, step)``: the model of ``cfg.model`` with, when the run
directory holds a checkpoint, the params of its newest readable step (what ``jaxrl-llm eval``,
``sample`` and ``export`` need: no optimizer, no reward workers). ``make_scorer(task, cfg)``: the
reward runner over the task's rewards (close it when done).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxrl_llm import algorithms, rewards, state, tasks
from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as config_lib
from jaxrl_llm.config import Config, EvalConfig
from jaxrl_llm.policy import Policy
from jaxrl_llm.update import Updater

Score = Callable[[list[str], list[Any]], tuple[np.ndarray, dict[str, Any]]]


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k: ``1 - C(n - c, k) / C(n, k)`` for ``n`` samples of which ``c`` are correct."""
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.prod((num_samples - num_correct - i) / (num_samples - i) for i in range(k))


def evaluate(policy: Policy, task: Any, score: Score, eval_cfg: EvalConfig, key: jax.Array) -> dict[str, float]:
    """Held-out accuracy of ``policy`` on the first ``eval_cfg.num_examples`` of ``task``'s eval
    split (module docstring). ``score(completions, examples) -> (rewards, info)``."""
    e = eval_cfg
    examples = task.eval_examples(min(e.num_examples, task.num_eval))
    correct_fn = getattr(task, "correct_fn", None)

    def correct(completions: list[str], rows: list) -> list[bool]:
        if correct_fn is not None:
            return [bool(correct_fn(c, x)) for c, x in zip(completions, rows, strict=True)]
        r, _ = score(completions, rows)
        return (np.asarray(r) >= e.correct_threshold).tolist()

    greedy_correct, sampled, lengths = [], [], []
    for start in range(0, len(examples), e.batch_size):
        chunk = examples[start : start + e.batch_size]
        prompt_tokens, prompt_mask = policy.encode_prompts(chunk)
        images = policy.prompt_images(chunk)
        out = policy.generate(prompt_tokens, prompt_mask, key, 1, greedy=True, images=images)
        greedy_correct.extend(correct(policy.decode(out["tokens"], out["lengths"]), chunk))
        lengths.extend(out["lengths"].tolist())
        if e.k:
            out = policy.generate(
                prompt_tokens,
                prompt_mask,
                jax.random.fold_in(key, start),
                e.k,
                temperature=e.temperature,
                images=images,
            )
            rows = [x for x in chunk for _ in range(e.k)]
            hits = np.asarray(correct(policy.decode(out["tokens"], out["lengths"]), rows))
            sampled.extend(hits.reshape(len(chunk), e.k).sum(axis=1).tolist())
    out = {"eval/accuracy": float(np.mean(greedy_correct)), "eval/completion_len": float(np.mean(lengths))}
    hits = np.asarray(greedy_correct)
    for key, if_true, if_false in getattr(task, "eval_splits", ()):
        flag = np.asarray([bool(x.metadata.get(key, False)) for x in examples])
        for name, rows in ((if_true, flag), (if_false, ~flag)):
            if rows.any():
                out[f"eval/accuracy/{name}"] = float(hits[rows].mean())
    if e.k:
        out["eval/pass@1"] = float(np.mean([pass_at_k(e.k, c, 1) for c in sampled]))
        out["eval/pass@k"] = float(np.mean([pass_at_k(e.k, c, e.k) for c in sampled]))
    return out


def make_scorer(task: Any, cfg: Config) -> rewards.RewardRunner:
    """The reward runner over ``task.reward_fns`` (``reward.num_workers`` processes, per-item
    ``reward.timeout_s``); its ``score`` is ``evaluate``'s ``score``. Call ``close()`` when done."""
    return rewards.RewardRunner(task.reward_fns, num_workers=cfg.reward.num_workers, timeout_s=cfg.reward.timeout_s)


def opt_state_initializer(cfg: Config, policy: Policy) -> Callable[[str, Any], Any]:
    """``init(phase, critic) -> opt_state``: a fresh optimizer state of ``phase``'s layout."""
    sft_tx, rl_tx = state.optimizers(cfg)

    def init(phase: str, critic: Any) -> Any:
        tree = state.trainable(policy.params, critic)
        updater = Updater(policy.shardings_of(tree), policy.put, policy.replicated)
        return updater.init(sft_tx if phase == "sft" else rl_tx, tree)

    return init


def load_policy(
    cfg: Config, run_dir: str | pathlib.Path | None = None, step: int | None = None
) -> tuple[Policy, int | None]:
    """The policy of ``cfg`` with the params of the newest readable checkpoint in ``run_dir``
    (default ``cfg.resolved_run_dir``; or of checkpoint ``step``), or freshly built when it holds
    none (step ``None``).

    Returns ``(policy, step)``. Raises ``checkpoint.UnreadableCheckpointError`` when checkpoints
    exist and none restores.
    """
    policy, step, _ = restore_run(cfg, run_dir, step)
    return policy, step


def restore_run(
    cfg: Config, run_dir: str | pathlib.Path | None = None, step: int | None = None
) -> tuple[Policy, int | None, dict | None]:
    """``load_policy`` that also returns the restored state tree (``state.TrainState``'s keys:
    ``params``, ``opt_state``, ``ref_params``, ...), or None when there is no checkpoint."""
    policy = Policy.create(cfg)
    directory = pathlib.Path(run_dir or cfg.resolved_run_dir) / "checkpoints"
    if not directory.is_dir():
        return policy, None, None
    # the per-prompt state's size (``algo.num_prompts``) follows the task, as in the run
    cfg = config_lib.fit_to_task(cfg, tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs)).num_train)
    algo = algorithms.get(cfg.algorithm)
    init_opt = opt_state_initializer(cfg, policy)
    init_critic = lambda params: state.new_critic(cfg, params, policy.shardings_of)
    target = lambda meta: state.restore_target(
        meta, cfg, algo, policy.params, init_opt, init_critic, jax.random.key(cfg.seed)
    )
    ckpt = checkpoint_lib.Checkpointer(directory, cfg.checkpoint.max_to_keep, async_save=False)
    try:
        restored = ckpt.restore(target, step)
    finally:
        ckpt.close()
    if restored is None:
        return policy, None, None
    step, tree, _ = restored
    policy.params = tree["params"]
    return policy, step, tree
