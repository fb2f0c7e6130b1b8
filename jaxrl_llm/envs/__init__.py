"""Multi-turn text environments and tools for the ``episode`` rollout kind.

``make(name, **kwargs)`` builds a registered environment (``ENVS``); ``base.reset_group`` resets
``N`` copies from one seed (a GiGPO group); ``tools`` holds the tool registry. Built in (pure
Python, for the core tests and small experiments): ``gridworld``, ``keydoor``, ``frozenlake``
(``grid.py``). Adapters to TextWorld / ScienceWorld / TextArena are not here yet.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxrl_llm.envs import base, grid, tools
from jaxrl_llm.envs.base import Env, Step, reset_group

ENVS: dict[str, Callable[..., Env]] = {
    "gridworld": grid.GridWorld,
    "keydoor": lambda **kw: grid.GridWorld(key_door=True, **kw),
    "frozenlake": grid.FrozenLake,
}


def make(name: str, **kwargs) -> Env:
    """A fresh environment ``name`` built with ``kwargs``; unknown names raise, listing the known."""
    if name not in ENVS:
        raise ValueError(f"env.name: unknown environment {name!r}; known: {sorted(ENVS)}")
    try:
        return ENVS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"env.kwargs for {name!r}: {e}") from None


__all__ = ["ENVS", "Env", "Step", "base", "grid", "make", "reset_group", "tools"]
