"""Built-in text grid games (pure Python, deterministic given the seed): ``gridworld``,
``keydoor`` and ``frozenlake``.

All three move one cell per action: the action text names ``up``, ``down``, ``left`` or ``right``
(inside ``<action>...</action>`` when present, else the last such word in the text; with
``letters=True`` (grid worlds) its first character is ``u``/``d``/``l``/``r``); text naming
none is an invalid action (reported in ``info``, the state unchanged). A move into the edge (or a
closed door) is a valid action that leaves the state unchanged (``info["blocked"]``): the loops
GiGPO's anchor groups single out (Feng et al. 2025, https://arxiv.org/abs/2505.10978, Sec. 4.2).

* ``gridworld``: reach the goal on a ``size x size`` grid; observation ``pos=(r,c) goal=(r,c)``
  (the minimal GiGPO reproduction's state text); reward 1 at the goal, 0 otherwise.
* ``keydoor``: the goal is a door that opens only after the agent has stepped on the key.
* ``frozenlake``: FrozenLake without slipping (Brockman et al. 2016, "OpenAI Gym",
  https://arxiv.org/abs/1606.01540): from the top-left corner to the goal in the bottom-right
  corner of a map with holes (drawn from the seed, always solvable); a hole ends the episode with
  reward 0. The observation is the map with ``P`` at the agent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Hashable

from jaxrl_llm.envs.base import Step

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
_TAG = re.compile(r"<action>(.*?)</action>", re.S | re.I)
_WORD = re.compile(r"\b(up|down|left|right)\b", re.I)


def parse_move(text: str, letters: bool = False) -> str | None:
    """The move an action text names (module docstring), or ``None``. ``letters``: the action is
    the first non-space character, ``u``/``d``/``l``/``r`` (a compact action space for small
    from-scratch models)."""
    if letters:
        head = text.lstrip()[:1].lower()
        return {"u": "up", "d": "down", "l": "left", "r": "right"}.get(head)
    tagged = _TAG.findall(text)
    words = _WORD.findall(tagged[-1] if tagged else text)
    return words[-1].lower() if words else None


def _invalid(text: str) -> dict:
    shown = text.strip().replace("\n", " ")[:40]
    return {"invalid": True, "reason": f"no move (up/down/left/right) in action {shown!r}"}


class GridWorld:
    """``gridworld`` (``key_door=False``) and ``keydoor`` (module docstring)."""

    def __init__(self, size: int = 5, key_door: bool = False, letters: bool = False):
        if size < 2:
            raise ValueError(f"gridworld size must be >= 2, got {size}")
        self.size, self.key_door, self.letters = size, key_door, letters
        goal = "the goal (a door: get the key first)" if key_door else "the goal"
        moves = "u, d, l or r" if letters else "up, down, left or right"
        self.instructions = f"Reach {goal} on a {size}x{size} grid, row 0 on top. Move: {moves}."
        self.pos = self.goal = self.key = None
        self.has_key = False

    def reset(self, seed: int) -> str:
        rng = random.Random(seed)
        cells = [(r, c) for r in range(self.size) for c in range(self.size)]
        picks = rng.sample(cells, 3)
        self.pos, self.goal = picks[0], picks[1]
        self.key = picks[2] if self.key_door else None
        self.has_key = False
        return self.observation()

    def observation(self) -> str:
        text = f"pos=({self.pos[0]},{self.pos[1]}) goal=({self.goal[0]},{self.goal[1]})"
        if self.key_door:
            text += " key=held" if self.has_key else f" key=({self.key[0]},{self.key[1]})"
        return text

    @property
    def anchor(self) -> Hashable:
        return (self.pos, self.has_key)

    def step(self, action: str) -> Step:
        move = parse_move(action, self.letters)
        if move is None:
            return Step("invalid action; " + self.observation(), 0.0, False, _invalid(action))
        dr, dc = MOVES[move]
        r, c = self.pos[0] + dr, self.pos[1] + dc
        inside = 0 <= r < self.size and 0 <= c < self.size
        locked = self.key_door and (r, c) == self.goal and not self.has_key
        if not inside or locked:
            return Step("blocked; " + self.observation(), 0.0, False, {"blocked": True})
        self.pos = (r, c)
        if self.key_door and self.pos == self.key:
            self.has_key = True
        if self.pos == self.goal:
            return Step("goal reached", 1.0, True, {"success": True})
        return Step(self.observation(), 0.0, False, {})


class FrozenLake:
    """``frozenlake`` (module docstring): ``size x size`` map, each cell but start and goal a hole
    with probability ``hole_prob``, redrawn until a path exists."""

    def __init__(self, size: int = 4, hole_prob: float = 0.2):
        if size < 2 or not 0 <= hole_prob < 1:
            raise ValueError(f"frozenlake needs size >= 2 and 0 <= hole_prob < 1, got {size}, {hole_prob}")
        self.size, self.hole_prob = size, hole_prob
        self.instructions = (
            f"Cross a frozen lake ({size}x{size} map, row 0 on top): P is you, G the goal, H a hole, "
            "F ice. Move: up, down, left or right."
        )
        self.holes: frozenset = frozenset()
        self.pos = (0, 0)

    def _solvable(self, holes: frozenset) -> bool:
        goal, seen, todo = (self.size - 1, self.size - 1), {(0, 0)}, [(0, 0)]
        while todo:
            r, c = todo.pop()
            if (r, c) == goal:
                return True
            for dr, dc in MOVES.values():
                nxt = (r + dr, c + dc)
                if 0 <= nxt[0] < self.size and 0 <= nxt[1] < self.size and nxt not in holes and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    def reset(self, seed: int) -> str:
        rng = random.Random(seed)
        ends = {(0, 0), (self.size - 1, self.size - 1)}
        while True:
            cells = [(r, c) for r in range(self.size) for c in range(self.size) if (r, c) not in ends]
            holes = frozenset(x for x in cells if rng.random() < self.hole_prob)
            if self._solvable(holes):
                break
        self.holes, self.pos = holes, (0, 0)
        return self.observation()

    def observation(self) -> str:
        rows = []
        for r in range(self.size):
            row = ""
            for c in range(self.size):
                cell = (r, c)
                row += (
                    "P"
                    if cell == self.pos
                    else "G"
                    if cell == (self.size - 1, self.size - 1)
                    else "H"
                    if cell in self.holes
                    else "F"
                )
            rows.append(row)
        return "\n".join(rows)

    @property
    def anchor(self) -> Hashable:
        return self.pos

    def step(self, action: str) -> Step:
        move = parse_move(action)
        if move is None:
            return Step("invalid action;\n" + self.observation(), 0.0, False, _invalid(action))
        dr, dc = MOVES[move]
        r, c = self.pos[0] + dr, self.pos[1] + dc
        if not (0 <= r < self.size and 0 <= c < self.size):
            return Step("blocked;\n" + self.observation(), 0.0, False, {"blocked": True})
        self.pos = (r, c)
        if self.pos in self.holes:
            return Step("you fell into a hole", 0.0, True, {"success": False})
        if self.pos == (self.size - 1, self.size - 1):
            return Step("goal reached", 1.0, True, {"success": True})
        return Step(self.observation(), 0.0, False, {})
