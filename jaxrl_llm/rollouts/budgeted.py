"""``budgeted``: groups whose rows carry their own prompt (HBPO's budget prompts).

Lyu et al., "Hierarchical Budget Policy Optimization for Adaptive Reasoning",
https://arxiv.org/abs/2507.15844 (code: https://github.com/zju-real/hbpo). Each group's ``G`` rows
are split into subgroups, each prompted with its own token budget: the method's
``group_prompts(rendered prompt, G, cfg) -> (G prompt texts, per-row arrays)`` gives the texts
(the budget phrase appended where the completion starts) and e.g. ``budgets`` [G]. Every prompt is
sampled once, rows group-major, and the per-row arrays land in the rollout's extras. Groups are
then filtered and assembled like the ``group`` kind.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxrl_llm import tasks
from jaxrl_llm.rollouts import group
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.types import Example, Rollout


def encode_budgets(ctx: Context, examples: list[Example], group_size: int):
    """The hook's ``G`` prompt texts per example, [P*G, Sp] group-major, sampled once each."""
    hook, name = ctx.algo.hooks["group_prompts"], ctx.algo.name
    system = ctx.cfg.task.system_prompt or None
    ids, names, arrays = [], [], []
    for e in examples:
        texts, extra = hook(
            tasks.render_prompt(e, ctx.policy.tokenizer, system_prompt=system), group_size, ctx.algo_cfg
        )
        if len(texts) != group_size:
            raise ValueError(f"{name}.group_prompts returned {len(texts)} prompts for group size {group_size}")
        ids.extend(ctx.policy.encode_text(t) for t in texts)
        names.extend(f"a {name}.group_prompts prompt of example {e.id!r}" for _ in texts)
        arrays.append(extra)
    tokens, mask = ctx.policy.pad_prompts(ids, names)
    return tokens, mask, 1, {k: np.concatenate([np.asarray(a[k]) for a in arrays]) for k in arrays[0]}


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """P prompts from the task stream, each expanded into the method's ``G`` budget prompts."""
    return group.collect_groups(ctx, key, state, group.draw_from_stream, encode_budgets)


KIND = Kind(name="budgeted", collect=collect, hooks=("group_prompts",))
