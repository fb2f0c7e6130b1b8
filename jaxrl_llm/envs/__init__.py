"""Multi-turn text environments and tools for the ``episode`` rollout kind.

``make(name, **kwargs)`` builds a registered environment (``ENVS``); ``base.reset_group`` resets
``N`` copies from one seed (a GiGPO group); ``tools`` holds the tool registry (``python``: the
sandbox; ``search``: BM25 over a bundled corpus, ``search.py``). Built in (pure Python, for the
core tests and small experiments): ``gridworld``, ``keydoor``, ``frozenlake`` (``grid.py``);
``keydoor_strategy``: the key-door world played by a strategist through a frozen actor
(``strategic.py``, EPO-strategic; ``partner.py``: a frozen model beside the policy). Adapters
behind the optional extra ``agents`` (each raises a clear ImportError when its package is
missing): ``textarena`` (FrozenLake, Sokoban, negotiation games with a scripted or model partner),
``scienceworld`` (one task, its variation from the seed), ``textworld`` (a small game generated
offline from the seed), ``overcooked`` (an overcooked_ai kitchen told in text, played with
language macro-actions beside a waiting, scripted or model partner chef).
"""

from __future__ import annotations

from collections.abc import Callable

from jaxrl_llm.envs import (
    base,
    combination_lock,
    grid,
    overcooked_env,
    scienceworld_env,
    strategic,
    textarena_env,
    textworld_env,
    tools,
)
from jaxrl_llm.envs.base import Env, Step, reset_group

ENVS: dict[str, Callable[..., Env]] = {
    "gridworld": grid.GridWorld,
    "keydoor": lambda **kw: grid.GridWorld(key_door=True, **kw),
    "frozenlake": grid.FrozenLake,
    "combination_lock": combination_lock.CombinationLock,
    "keydoor_strategy": strategic.keydoor_strategy,
    "textarena": textarena_env.TextArenaEnv,
    "scienceworld": scienceworld_env.ScienceWorldEnv,
    "textworld": textworld_env.TextWorldEnv,
    "overcooked": overcooked_env.OvercookedEnv,
}


def make(name: str, **kwargs) -> Env:
    """A fresh environment ``name`` built with ``kwargs``; unknown names raise, listing the known."""
    if name not in ENVS:
        raise ValueError(f"env.name: unknown environment {name!r}; known: {sorted(ENVS)}")
    try:
        return ENVS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"env.kwargs for {name!r}: {e}") from None


__all__ = ["ENVS", "Env", "Step", "base", "grid", "make", "reset_group", "strategic", "tools"]
