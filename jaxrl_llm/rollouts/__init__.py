"""How a rollout is produced: one kind per file, a registry keyed by name.

Kinds: ``group`` (P prompts x G completions, dynamic sampling), ``single_stream`` (prioritized
prompt selection, replay, offline prior), ``budgeted`` (each row of a group its own prompt).
An algorithm names its kind (``ROLLOUT`` in its module, default ``"group"``); ``register`` adds a
kind (``tree``, ``episode``, ``pairs``, ``window``, ``vision``...) without touching the trainer.
See ``base.py`` for the contract and ``correction.py`` for the sampler/trainer mismatch weights.
"""

from jaxrl_llm.rollouts import (
    budgeted,
    chain,
    correction,
    dialogue,
    dialogue_tree,
    episode,
    greedy_baseline,
    group,
    judged,
    latent_space,
    pairs,
    replay_episode,
    reset,
    single_stream,
    tool_tree,
    tree,
    window,
)
from jaxrl_llm.rollouts.base import Context, Kind

KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Adds ``kind`` under ``kind.name`` (a second kind of the same name is an error)."""
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"rollout kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    """The kind registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown rollout kind {name!r}; known: {sorted(KINDS)}") from None


for _kind in (
    group.KIND,
    single_stream.KIND,
    budgeted.KIND,
    episode.KIND,
    reset.KIND,
    pairs.KIND,
    pairs.GROUPS_KIND,
    judged.SELF_JUDGED_KIND,
    judged.RUBRIC_KIND,
    dialogue.KIND,
    tree.KIND,
    chain.KIND,
    window.KIND,
    greedy_baseline.KIND,
    tool_tree.KIND,
    dialogue_tree.KIND,
    latent_space.KIND,
    replay_episode.KIND,
):
    register(_kind)

__all__ = ["Context", "KINDS", "Kind", "correction", "get", "register"]
