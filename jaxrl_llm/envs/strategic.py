"""Strategist environments: the trained policy writes a strategy, a frozen actor acts on it.

EPO-strategic (Liu et al. 2025, "EPO: Explicit Policy Optimization for Strategic Reasoning in
LLMs via Reinforcement Learning", https://arxiv.org/abs/2502.12486, https://github.com/lxqpku/EPO)
trains a strategy model LLM^s that writes a natural-language strategy each turn; a frozen acting
model LLM^d turns (history, strategy) into the environment action. ``StrategyEnv`` wraps any
``Env`` that way, so the ``episode`` rollout kind plays it unchanged: the policy's turn is the
strategy, ``actor(wrapper, strategy) -> actions`` (a frozen model, ``partner_actor`` over a
``FrozenPartner`` of ``envs.partner``, or a scripted actor) plays up to ``actor_steps`` of them, and the strategist reads what
happened.

Rewards are the strategist turn's process reward (``process_rewards = True``; the paper's PRM is
GPT-4o marking the turns "critical for achieving the goal"; here an oracle ``critical(env,
strategy)`` stands in for it, evaluated before the actor moves):

    r_k = 1                 if turn k is critical
    r_k = final score       otherwise, on the last turn (1 for a success, else 0)
    r_k = 0                 otherwise

``process_rewards = False`` gives outcome-only rewards (the final score on the last turn): the
REINFORCE baseline of the paper's ablation. A strategy the actor cannot use (no known target) is an
invalid action: reported, the state unchanged.

Built in: ``keydoor_strategy``: the key-door grid world (``grid.py``); strategies name a target,
``key`` or ``door``; the scripted actor walks a shortest path to it around the closed door
(trying vertical moves first, or horizontal first with ``actor = "cols_first"``: the plug-in test
swaps actors), at most ``actor_steps`` moves. The door
opens only with the key, so the optimal plan is ``key`` then ``door``: the oracle marks a turn
critical when its target is the next one of that plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

from jaxrl_llm.envs import grid
from jaxrl_llm.envs.base import Step

_TARGET = re.compile(r"\b(key|door|goal)\b", re.I)


class StrategyEnv:
    """A strategist's view of ``env`` (module docstring)."""

    def __init__(
        self,
        env: Any,
        actor: Callable[[StrategyEnv, str], list[str] | None],
        critical: Callable[[Any, str], bool],
        actor_steps: int = 8,
        process_rewards: bool = True,
    ):
        self.env, self.actor, self.critical = env, actor, critical
        self.actor_steps, self.process_rewards = actor_steps, process_rewards
        self.instructions = env.instructions
        self.observation = ""

    def reset(self, seed: int) -> str:
        self.observation = self.env.reset(seed)
        return self.observation

    def step(self, strategy: str) -> Step:
        actions = self.actor(self, strategy)
        if actions is None:
            reason = f"the actor found no plan in the strategy {strategy.strip()[:40]!r}"
            return Step("The actor could not use that strategy.", 0.0, False, {"invalid": True, "reason": reason})
        critical = bool(self.critical(self.env, strategy))
        step = Step(self.observation, 0.0, False, {})
        for action in actions[: self.actor_steps]:
            step = self.env.step(action)
            if step.done:
                break
        success = bool(step.info.get("success", False)) if step.done else False
        final = 1.0 if success else 0.0
        reward = (
            (1.0 if critical else (final if step.done else 0.0))
            if self.process_rewards
            else (final if step.done else 0.0)
        )
        info = {"success": success, "critical": critical, "actions": len(actions[: self.actor_steps])}
        self.observation = step.observation
        return Step(step.observation, reward, step.done, info)

    @property
    def anchor(self) -> Hashable:
        return self.env.anchor


def parse_target(strategy: str, letters: bool = False) -> str | None:
    """The target a strategy names last, ``"key"`` or ``"door"`` (``goal`` counts as the door), or
    ``None``. ``letters``: the first non-space character, ``k`` or ``d``/``g`` (a compact action
    space for small from-scratch models)."""
    if letters:
        return {"k": "key", "d": "door", "g": "door"}.get(strategy.lstrip()[:1].lower())
    named = _TARGET.findall(strategy)
    return None if not named else ("key" if named[-1].lower() == "key" else "door")


def partner_actor(partner: Any, template: str) -> Callable[[StrategyEnv, str], list[str]]:
    """A frozen model as the actor (``envs.partner.FrozenPartner``): one action per strategist turn,
    its reply to ``template.format(observation=..., strategy=...)``."""
    act = partner.as_actor(template)
    return lambda wrapped, strategy: [act(wrapped.observation, strategy)]


def _walk(env: grid.GridWorld, target: tuple[int, int], cols_first: bool) -> list[str]:
    """A shortest path of moves from the agent to ``target`` that avoids the closed door (a
    breadth-first search; moves tried in the actor's order: rows first or columns first)."""
    order = ("left", "right", "up", "down") if cols_first else ("up", "down", "left", "right")
    blocked = None if env.has_key or target == env.goal else env.goal
    prev = {env.pos: None}
    queue = [env.pos]
    for cell in queue:
        if cell == target:
            break
        for move in order:
            dr, dc = grid.MOVES[move]
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < env.size and 0 <= nxt[1] < env.size and nxt != blocked and nxt not in prev:
                prev[nxt] = (cell, move)
                queue.append(nxt)
    path, cell = [], target
    while prev.get(cell) is not None:
        cell, move = prev[cell]
        path.append(move)
    return path[::-1]


def keydoor_actor(cols_first: bool = False, letters: bool = False) -> Callable[[StrategyEnv, str], list[str] | None]:
    """The scripted frozen actor of ``keydoor_strategy``: the moves from the agent to the target the
    strategy names (``parse_target``), none when that is the key and it is held, ``None`` when the
    strategy names no target."""

    def act(wrapped: StrategyEnv, strategy: str) -> list[str] | None:
        env, target = wrapped.env, parse_target(strategy, letters)
        if target is None:
            return None
        if target == "key":
            return [] if env.has_key else _walk(env, env.key, cols_first)
        return _walk(env, env.goal, cols_first)

    return act


def keydoor_critical(letters: bool = False) -> Callable[[grid.GridWorld, str], bool]:
    """The oracle PRM: the strategy's target is the next one of the optimal plan (key, then door)."""

    def critical(env: grid.GridWorld, strategy: str) -> bool:
        target = parse_target(strategy, letters)
        return target is not None and (target == "key") != env.has_key

    return critical


def keydoor_strategy(
    size: int = 4, actor: str = "rows_first", actor_steps: int = 8, process_rewards: bool = True, letters: bool = False
) -> StrategyEnv:
    """``keydoor_strategy`` (module docstring); ``actor``: ``rows_first`` or ``cols_first``;
    ``letters``: strategies are read by their first character (``parse_target``)."""
    if actor not in ("rows_first", "cols_first"):
        raise ValueError(f"keydoor_strategy: actor must be 'rows_first' or 'cols_first', got {actor!r}")
    env = grid.GridWorld(size=size, key_door=True)
    wrapped = StrategyEnv(
        env, keydoor_actor(actor == "cols_first", letters), keydoor_critical(letters), actor_steps, process_rewards
    )
    name = "k (key) or d (door)" if letters else "key or door"
    wrapped.instructions = (
        f"Guide an agent on a {size}x{size} grid to the goal, a door that opens only after the agent "
        f"has picked up the key. Each turn name the agent's next target: {name}."
    )
    return wrapped
