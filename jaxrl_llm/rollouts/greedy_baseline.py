"""``greedy_baseline``: the ``group`` kind plus one GREEDY completion per prompt, scored as a baseline.

ReMax (Ziniu Li, Tian Xu, Yushun Zhang, Zhihang Lin, Yang Yu, Ruoyu Sun, Zhi-Quan Luo, "ReMax: A
Simple, Effective, and Efficient Reinforcement Learning Method for Aligning Large Language Models",
2023, https://arxiv.org/abs/2310.10505) subtracts the reward of the policy's greedy response to
the same prompt, ``r(x, y_greedy)``, from each sampled response's reward. This kind runs the
``group`` kind (P prompts x G sampled completions, dynamic sampling as there), then decodes each of
the P prompts once with ``greedy=True`` under the same live params, scores those completions with
the task's reward, and adds ``extras["greedy_rewards"]`` ``[B]`` (the prompt's greedy reward on every
row of its group). The greedy completions train nothing: they are a baseline only.

verl produces the same baseline in its trainer loop (``reward_baselines`` for
``adv_estimator=remax``, one extra ``do_sample=False`` generation per prompt).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.types import Rollout


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """The ``group`` rollout with ``greedy_rewards`` ``[B]`` (module docstring); metrics add
    ``reward/greedy_mean``. The greedy decode uses ``fold_in(key, 2**20)``."""
    rollout, metrics = group.collect(ctx, key, state)
    G = rollout.group_size
    heads = np.arange(0, np.shape(rollout.tokens)[0], G)  # first row of each group: its prompt
    t0 = time.perf_counter()
    out = ctx.policy.generate(
        np.asarray(rollout.prompt_tokens)[heads],
        np.asarray(rollout.prompt_mask)[heads],
        jax.random.fold_in(key, 2**20),
        1,
        greedy=True,
    )
    metrics["time/sample"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    completions = ctx.policy.decode(out["tokens"], out["lengths"])
    examples = [ctx.task.train_example(int(i)) for i in np.asarray(rollout.prompt_ids)[heads]]
    greedy, info = ctx.score(completions, examples)
    metrics["time/reward"] += time.perf_counter() - t0
    metrics["reward/failures"] += float(sum(info["failures"].values()) + sum(info["timeouts"].values()))
    metrics["reward/greedy_mean"] = float(np.mean(greedy))
    return rollout.with_items(greedy_rewards=np.repeat(np.asarray(greedy, np.float32), G)), metrics


KIND = Kind(name="greedy_baseline", collect=collect)
