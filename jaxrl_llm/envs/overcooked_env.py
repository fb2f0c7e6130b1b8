"""Overcooked on the ``envs.base`` protocol (optional extra ``agents``: ``overcooked-ai==1.1.0``).

Overcooked-AI (Carroll et al. 2019, "On the Utility of Learning about Humans for Human-AI
Coordination", https://arxiv.org/abs/1910.05789, https://github.com/HumanCompatibleAI/overcooked_ai)
is a two-chef kitchen on a grid: chefs fetch onions (or tomatoes), fill a pot, start it cooking,
plate the soup with a dish and serve it; every primitive tick both chefs move (up, down, left,
right, stay) or interact with the cell they face. POAD (Wen et al. 2024, "Reinforcing Language
Agents via Policy Optimization with Action Decomposition", https://arxiv.org/abs/2405.15821) trains
a language agent on Overcooked by telling it the state in sentences and letting it choose among a
few language macro-actions that walk and interact by themselves (its code uses TWOSOME's
single-chef salad kitchen, ``gym-macro-overcooked``, which is not on PyPI). This adapter does the
same on overcooked_ai's soup kitchen, two chefs on one layout (``layout``, default
``cramped_room``):

* The policy is chef 0. Chef 1 is played by ``partner``, a function ``observation text -> action
  text`` called once per (valid) step with the kitchen told from chef 1's side, or a name:
  ``"wait"`` (default: chef 1 only waits, so the reward is the policy's own) or ``"scripted"``
  (``scripted_partner``: cooks and serves onion soups by itself).
* Actions (``action_names``): the macro-actions ``pick up onion``, ``put onion in pot``, ``start
  cooking``, ``pick up dish``, ``pick up soup``, ``serve soup``, ``put down`` (onto the nearest
  free counter) and ``wait`` (alias ``stay``); ``pick up tomato`` / ``put tomato in pot`` on
  layouts with tomatoes; with ``moves=True`` also the primitives ``up``, ``down``, ``left``,
  ``right`` and ``interact`` (one tick each). A macro-action walks by breadth-first search over
  the floor to the nearest place it needs (round the other chef when a way round exists), turns
  to face it and interacts; ``pick up soup`` at a cooking pot waits there until the soup is ready.
  The action is the text inside the last ``<action>...</action>`` if there is one, else the whole
  text; of the action phrases in it (articles ignored) the last one counts.
* A step plays both chefs' actions tick by tick until the policy's has finished; the partner's is
  cut there (it is asked anew next step), except that the policy's ``wait`` lasts until the
  partner's action has finished (one tick at least). So that the chefs never block each other for
  good: of two chefs stepping into one cell chef 0 goes first, in a head-on meeting chef 1 steps
  aside, and a chef that waits (or is done) steps aside from the other's only way. A policy
  macro-action unfinished after ``2 * width * height + the longest cook time`` ticks (its way
  blocked, or what it went for taken by the partner) ends the step with ``info["blocked"]``.
* Invalid actions: text naming no action, or a macro-action that cannot start (``serve soup``
  holding nothing, ``put onion in pot`` with no pot that takes one, nothing reachable) is
  ``info["invalid"]`` with ``info["reason"]``: the kitchen is unchanged, the partner is not asked,
  the turn counts toward ``horizon``. An invalid partner action is played as ``wait``
  (``info["partner_invalid"]`` holds the reason).
* ``observation``: both chefs' cells, facing and held objects, each pot's contents and cooking
  status, the objects on counters and the soups served, as short lines (``You:`` / ``Partner:``).
  ``instructions``: the task, the orders with their cook times, the kitchen map and the actions.
* ``reward``: overcooked_ai's sparse delivery reward (the order's value, 20 for cramped_room's
  onion soup; 0 for a soup no order asks for), summed over the step's ticks and both chefs (the
  team reward), times ``reward_scale`` (default 1/20: one cramped_room soup = 1). ``done`` after
  ``target_soups`` soups that filled an order (``None``: play to the horizon) or at ``horizon``
  turns; ``success``: at least ``target_soups`` (or, with ``None``, one) such soups served.
* ``reset(seed)``: the layout's start state (the seed ignored: the layout is deterministic); with
  ``random_start=True`` the seed draws chef 0's start cell and facing (chef 1 keeps its start).
* ``anchor``: the chefs' cells, facing and held objects, and the objects in pots and on counters
  (no tick count, no history).
"""

from __future__ import annotations

import collections
import contextlib
import io
import random
import re
from collections.abc import Callable, Hashable

import numpy as np

from jaxrl_llm.envs.base import Step

if not hasattr(np, "Inf"):
    np.Inf = np.inf  # overcooked_ai 1.1.0 still uses the alias NumPy 2 removed
try:
    with contextlib.redirect_stderr(io.StringIO()):  # gym 0.26, imported by it, prints a notice
        from overcooked_ai_py.mdp import overcooked_mdp
except ImportError:  # the optional extra is not installed; OvercookedEnv says so when built
    overcooked_mdp = None

# overcooked_ai's primitive actions: a direction (dx, dy) with y growing downwards, or "interact".
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
STAY, INTERACT = (0, 0), "interact"
_DIRECTION_NAMES = {d: name for name, d in DIRECTIONS.items()}
_MOVES = (*DIRECTIONS, INTERACT)
_TAG = re.compile(r"<action>(.*?)</action>", re.S | re.I)
_ARTICLES = re.compile(r"\b(the|a|an)\b")
_DONE, _GOING, _STUCK = "done", "going", "stuck"  # how a chef's action stands after a tick


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("o") else f"{n} {word}s"


def _ingredients_text(ingredients) -> str:
    counts = collections.Counter(ingredients)
    return " and ".join(_plural(counts[name], name) for name in sorted(counts)) or "nothing"


def _object_text(obj) -> str:
    """An object's name as the observation tells it: ``onion``, ``dish``, ``soup of 3 onions``."""
    return f"soup of {_ingredients_text(obj.ingredients)}" if obj.name == "soup" else obj.name


def _with_article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _held_text(obj) -> str:
    return "nothing" if obj is None else _with_article(_object_text(obj))


def _object_key(obj) -> Hashable:
    if obj is None:
        return None
    if obj.name == "soup":
        return ("soup", tuple(sorted(obj.ingredients)), -1 if obj.is_idle else obj.cook_time_remaining)
    return (obj.name,)


def _xy(pos) -> str:
    return f"({pos[0]},{pos[1]})"


def wait_partner(observation: str) -> str:
    """A partner that only waits (the policy cooks alone; it steps aside when in the policy's way)."""
    return "wait"


def scripted_partner(observation: str) -> str:
    """A deterministic partner that cooks onion soups alone, reading the observation text: serves a
    soup it holds, plates a cooking or ready soup with a dish, fills a pot with onions and starts it
    when full, fetches a dish once a pot cooks (unless the other chef holds one), otherwise waits."""
    lines = observation.splitlines()
    you = next((line for line in lines if line.startswith("You:")), "")
    other = next((line for line in lines if line.startswith("Partner:")), "")
    pots = [line for line in lines if line.startswith("Pot ")]
    cooking = any(", cooking" in p or ", ready" in p for p in pots)
    takes = any(p.endswith("empty.") or ("not cooking" in p and "full" not in p) for p in pots)
    if "holding a soup" in you:
        return "serve soup"
    if "holding a dish" in you:
        return "pick up soup" if cooking else "wait"
    if "holding an onion" in you:
        return "put onion in pot" if takes else "put down"
    if "holding nothing" not in you:
        return "put down"
    if any("full, not cooking" in p for p in pots):
        return "start cooking"
    if cooking and "holding a dish" not in other and "holding a soup" not in other:
        return "pick up dish"
    return "pick up onion" if takes else "wait"


PARTNERS: dict[str, Callable[[str], str]] = {"wait": wait_partner, "scripted": scripted_partner}


class OvercookedEnv:
    """One overcooked_ai layout as an ``Env`` (module docstring)."""

    def __init__(
        self,
        layout: str = "cramped_room",
        partner: Callable[[str], str] | str = "wait",
        horizon: int = 30,
        target_soups: int | None = 1,
        reward_scale: float = 1.0 / 20.0,
        random_start: bool = False,
        moves: bool = False,
    ):
        if overcooked_mdp is None:
            raise ImportError("env 'overcooked' needs the optional package: pip install 'jaxrl_llm[agents]'")
        if isinstance(partner, str):
            if partner not in PARTNERS:
                raise ValueError(f"env.kwargs.partner: unknown partner {partner!r}; known: {sorted(PARTNERS)}")
            partner = PARTNERS[partner]
        if horizon < 1:
            raise ValueError(f"overcooked: horizon must be >= 1, got {horizon}")
        if target_soups is not None and target_soups < 1:
            raise ValueError(f"overcooked: target_soups must be >= 1 or None, got {target_soups}")
        try:
            self.mdp = overcooked_mdp.OvercookedGridworld.from_layout_name(layout)
        except FileNotFoundError:
            raise ValueError(f"env.kwargs.layout: overcooked_ai has no layout {layout!r}") from None
        if self.mdp.num_players != 2:
            raise ValueError(f"overcooked: layout {layout!r} has {self.mdp.num_players} chefs, the adapter plays 2")
        self.layout, self.partner, self.horizon = layout, partner, int(horizon)
        self.target_soups, self.reward_scale = target_soups, float(reward_scale)
        self.random_start, self.moves = random_start, moves
        self.floor = frozenset(self.mdp.get_valid_player_positions())
        self.counters = frozenset(self.mdp.get_counter_locations())
        onions, tomatoes = self.mdp.get_onion_dispenser_locations(), self.mdp.get_tomato_dispenser_locations()
        self.dispensers = {name: list(cells) for name, cells in (("onion", onions), ("tomato", tomatoes)) if cells}
        self.ingredients = list(self.dispensers)
        self._use_recipes()
        recipes = overcooked_mdp.Recipe
        self.orders = [recipes.from_dict(order) for order in self.mdp.start_all_orders]
        self.max_ticks = 2 * self.mdp.width * self.mdp.height + max(r.time for r in recipes.ALL_RECIPES)
        self.action_names = self._action_names()
        longest_first = sorted([*self.action_names, "stay"], key=len, reverse=True)
        self._phrases = re.compile(r"\b(" + "|".join(re.escape(name) for name in longest_first) + r")\b")
        self.instructions = self._instructions()
        self.state = None
        self.turn = self.soups = 0
        self.done = False

    # -- the text the policy reads ---------------------------------------------------------------

    def _action_names(self) -> list[str]:
        names = [f"pick up {i}" for i in self.ingredients] + [f"put {i} in pot" for i in self.ingredients]
        names += ["start cooking", "pick up dish", "pick up soup", "serve soup", "put down", "wait"]
        return names + list(_MOVES) if self.moves else names

    def _instructions(self) -> str:
        legend = {"X": "counter", "O": "onions", "T": "tomatoes", "P": "pot", "D": "dishes", "S": "serving window"}
        shown = sorted({c for row in self.mdp.terrain_mtx for c in row} - {" "})
        key = ", ".join(f"{c} {legend[c]}" for c in shown if c in legend)
        kitchen = "\n".join("".join(row).replace(" ", ".") for row in self.mdp.terrain_mtx)
        orders = "; ".join(
            f"a soup of {_ingredients_text(r.ingredients)} ({r.value} points, cooks {r.time} ticks)"
            for r in self.orders
        )
        cook = f"put the ingredients in a pot ({overcooked_mdp.Recipe.MAX_NUM_INGREDIENTS} at most), start cooking"
        walk = "Each action walks to the nearest place it needs and uses it; wait lets your partner finish its action"
        if self.moves:
            walk += "; up, down, left, right move one cell and interact uses the cell you face"
        return (
            f"Overcooked (layout {self.layout}): you are chef 0 of two chefs in a kitchen; your partner is "
            "chef 1. Serve soups that fill an order.\n"
            f"Orders: {orders}.\n"
            f"To cook: {cook}, wait until it is ready, pick up a dish, pick up the soup with it and serve it "
            "at the serving window.\n"
            f"Kitchen (cells (x,y), x to the right, y down; {key}, . floor):\n{kitchen}\n"
            f"Actions (one per turn): {', '.join(self.action_names)}. {walk}."
        )

    def _pot_text(self, pos) -> str:
        soup = self.state.objects.get(pos)
        if soup is None:
            return f"Pot {_xy(pos)}: empty."
        what = _ingredients_text(soup.ingredients)
        if soup.is_ready:
            return f"Pot {_xy(pos)}: {what}, ready."
        if soup.is_cooking:
            return f"Pot {_xy(pos)}: {what}, cooking, ready in {soup.cook_time_remaining} ticks."
        full = ", full" if soup.is_full else ""
        return f"Pot {_xy(pos)}: {what}{full}, not cooking."

    def observation(self, chef: int = 0) -> str:
        """The kitchen told from chef ``chef``'s side (module docstring)."""
        lines = []
        for who, i in (("You", chef), ("Partner", 1 - chef)):
            p = self.state.players[i]
            facing = _DIRECTION_NAMES[p.orientation]
            lines.append(f"{who}: at {_xy(p.position)} facing {facing}, holding {_held_text(p.held_object)}.")
        lines += [self._pot_text(pos) for pos in self.mdp.get_pot_locations()]
        on_counters = [
            f"{_object_text(obj)} at {_xy(pos)}"
            for pos, obj in sorted(self.state.objects.items())
            if pos in self.counters
        ]
        lines.append(f"Counters: {', '.join(on_counters) if on_counters else 'nothing on them'}.")
        lines.append(f"Soups served: {self.soups}.")
        return "\n".join(lines)

    @property
    def anchor(self) -> Hashable:
        players = tuple((p.position, p.orientation, _object_key(p.held_object)) for p in self.state.players)
        objects = tuple(sorted((pos, _object_key(obj)) for pos, obj in self.state.objects.items()))
        return players, objects

    # -- the game ----------------------------------------------------------------------------------

    def _use_recipes(self) -> None:
        # overcooked_ai keeps cook times and soup values in class attributes of Recipe, set by the
        # layout built last: put this layout's back before playing (two layouts in one process).
        if overcooked_mdp.Recipe.configuration is not self.mdp.recipe_config:
            overcooked_mdp.Recipe.configure(self.mdp.recipe_config)

    def reset(self, seed: int) -> str:
        self._use_recipes()
        self.state = self.mdp.get_standard_start_state().deepcopy()
        if self.random_start:
            rng = random.Random(seed)
            cell = rng.choice(sorted(self.floor - {self.state.players[1].position}))
            self.state.players[0].update_pos_and_or(cell, DIRECTIONS[rng.choice(sorted(DIRECTIONS))])
        self.turn = self.soups = 0
        self.done = False
        return self.observation()

    def parse(self, text: str) -> str | None:
        """The action a text names (module docstring), or ``None``."""
        tagged = _TAG.findall(text)
        words = re.sub(r"[^a-z]+", " ", (tagged[-1] if tagged else text).lower())
        words = " ".join(_ARTICLES.sub(" ", words).split())
        found = self._phrases.findall(words)
        if not found:
            return None
        return "wait" if found[-1] == "stay" else found[-1]

    def _targets(self, chef: int, action: str) -> list:
        """The cells an action's final interact may face, for chef ``chef`` now."""
        objects, held = self.state.objects, self.state.players[chef].held_object
        pots = self.mdp.get_pot_locations()

        def on_counters(name):
            return [pos for pos, obj in objects.items() if pos in self.counters and obj.name == name]

        if action.startswith("put ") and action.endswith(" in pot"):
            return [p for p in pots if p not in objects or (objects[p].is_idle and not objects[p].is_full)]
        if action.startswith("pick up ") and action[8:] in self.dispensers:
            return self.dispensers[action[8:]] + on_counters(action[8:])
        if action == "pick up dish":
            return list(self.mdp.get_dish_dispenser_locations()) + on_counters("dish")
        if action == "start cooking":
            return [p for p in pots if p in objects and objects[p].is_idle and objects[p].ingredients]
        if action == "pick up soup":
            if held is None:
                return on_counters("soup")
            return [p for p in pots if p in objects and not objects[p].is_idle]
        if action == "serve soup":
            return list(self.mdp.get_serving_locations())
        if action == "put down":
            return [pos for pos in self.counters if pos not in objects]
        return []

    def _refusal(self, chef: int, action: str | None, text: str) -> str | None:
        """Why chef ``chef`` cannot start ``action`` now, or ``None`` when it can."""
        if action is None:
            shown = text.strip().replace("\n", " ")[:40]
            return f"no action in {shown!r}; the actions: {', '.join(self.action_names)}"
        if action == "wait" or action in _MOVES:
            return None
        held = self.state.players[chef].held_object
        holding = None if held is None else held.name
        if action == "put down":
            need, ok = "something in hand", holding is not None
        elif action == "serve soup":
            need, ok = "a soup in hand", holding == "soup"
        elif action.startswith("put "):  # put <ingredient> in pot
            ingredient = action.split()[1]
            need, ok = f"{_with_article(ingredient)} in hand", holding == ingredient
        elif action == "pick up soup":
            need, ok = "a dish in hand (or empty hands, for a soup on a counter)", holding in (None, "dish")
        else:  # pick up <ingredient> / dish, start cooking
            need, ok = "empty hands", holding is None
        if not ok:
            return f"{action} needs {need}; you are holding {_held_text(held)}"
        if self._route(self.state.players[chef].position, self._targets(chef, action), frozenset()) is None:
            missing = {
                "pick up dish": "dish",
                "pick up soup": "soup on a counter" if holding is None else "pot with a soup cooking or ready",
                "start cooking": "pot with ingredients waiting to cook",
                "serve soup": "serving window",
                "put down": "free counter",
            }
            missing.update({f"pick up {i}": i for i in self.ingredients})
            missing.update({f"put {i} in pot": f"pot that takes {_with_article(i)}" for i in self.ingredients})
            return f"{action}: no {missing[action]} within reach"
        return None

    def _route(self, start, targets, blocked) -> tuple | None:
        """Breadth-first search over the floor (less ``blocked``) from ``start`` to the nearest cell
        beside one of ``targets``: (target, first move or None when already there), or ``None``."""
        targets = sorted(targets)
        first_move = {start: None}
        queue = collections.deque([start])
        while queue:
            cell = queue.popleft()
            for target in targets:
                if abs(target[0] - cell[0]) + abs(target[1] - cell[1]) == 1:
                    return target, first_move[cell]
            for name, (dx, dy) in DIRECTIONS.items():
                nxt = (cell[0] + dx, cell[1] + dy)
                if nxt in self.floor and nxt not in blocked and nxt not in first_move:
                    first_move[nxt] = first_move[cell] or DIRECTIONS[name]
                    queue.append(nxt)
        return None

    def _primitive(self, chef: int, action: str) -> tuple:
        """Chef ``chef``'s primitive action this tick toward ``action``, and whether that action
        finishes it (``_DONE``), leaves it going (``_GOING``) or it cannot go on (``_STUCK``)."""
        if action == "wait":
            return STAY, _DONE
        if action in _MOVES:
            return (INTERACT if action == INTERACT else DIRECTIONS[action]), _DONE
        player, other = self.state.players[chef], self.state.players[1 - chef]
        targets = self._targets(chef, action)
        route = self._route(player.position, targets, frozenset([other.position]))
        route = route or self._route(player.position, targets, frozenset())
        if route is None:
            return STAY, _STUCK
        target, move = route
        if move is not None:
            return move, _GOING
        facing = (target[0] - player.position[0], target[1] - player.position[1])
        if player.orientation != facing:
            return facing, _GOING  # a move toward a counter turns the chef in place
        soup = self.state.objects.get(target)
        if action == "pick up soup" and soup is not None and soup.name == "soup" and soup.is_cooking:
            return STAY, _GOING
        return INTERACT, _DONE

    def _next_cell(self, chef: int, primitive) -> tuple:
        pos = self.state.players[chef].position
        if primitive in (STAY, INTERACT):
            return pos
        cell = (pos[0] + primitive[0], pos[1] + primitive[1])
        return cell if cell in self.floor else pos

    def _step_aside(self, chef: int) -> tuple:
        """The first move that takes idle chef ``chef`` out of the other's only way, or ``STAY``."""
        (x, y), other = self.state.players[chef].position, self.state.players[1 - chef].position
        for dx, dy in DIRECTIONS.values():
            if (x + dx, y + dy) in self.floor and (x + dx, y + dy) != other:
                return dx, dy
        return STAY

    def _give_way(self, joint: list, idle: list[bool]) -> list:
        """The tick's joint action with the chefs kept from blocking each other for ever: an idle
        chef in the other's only way steps aside, in a head-on meeting chef 1 steps aside, and of
        two chefs stepping into one cell chef 0 goes first (overcooked_ai would keep both still)."""
        here = [player.position for player in self.state.players]
        goes = [self._next_cell(chef, joint[chef]) for chef in (0, 1)]
        for chef in (0, 1):
            if idle[chef] and not idle[1 - chef] and goes[1 - chef] == here[chef]:
                joint[chef] = self._step_aside(chef)
        if goes[0] == here[1] and goes[1] == here[0]:
            joint[1] = self._step_aside(1)
        elif goes[0] == goes[1] != here[1]:
            joint[1] = STAY
        return joint

    def _play(self, actions: list[str]) -> tuple[float, bool]:
        """Both chefs' actions tick by tick (module docstring) until chef 0's has finished (its
        ``wait``: until the partner's has): (the summed sparse reward, whether chef 0's finished)."""
        status = [_GOING, _GOING]
        reward = 0.0
        for _ in range(self.max_ticks):
            idle = [status[chef] != _GOING or action == "wait" for chef, action in enumerate(actions)]
            joint = [STAY, STAY]
            for chef, action in enumerate(actions):
                if status[chef] == _GOING:
                    joint[chef], status[chef] = self._primitive(chef, action)
            joint = self._give_way(joint, idle)
            self.state, infos = self.mdp.get_state_transition(self.state, tuple(joint))
            rewards = infos["sparse_reward_by_agent"]
            reward += float(sum(rewards))
            self.soups += sum(r > 0 for r in rewards)
            if status[0] != _GOING and (actions[0] != "wait" or status[1] != _GOING):
                break
        return reward, status[0] == _DONE

    def _success(self) -> bool:
        return self.soups >= (self.target_soups or 1)

    def step(self, action: str) -> Step:
        if self.state is None:
            raise RuntimeError("overcooked: step() before reset()")
        if self.done:
            return Step("The episode is over.", 0.0, True, {"invalid": True, "reason": "step after the episode ended"})
        self._use_recipes()
        self.turn += 1
        chosen = self.parse(action)
        reason = self._refusal(0, chosen, action)
        if reason is not None:
            self.done = self.turn >= self.horizon
            refused = {"invalid": True, "reason": reason, "success": self._success()}
            return Step(f"Invalid action: {reason}.\n{self.observation()}", 0.0, self.done, refused)
        info: dict = {}
        partner_text = self.partner(self.observation(1))
        partner_action = self.parse(partner_text)
        partner_reason = self._refusal(1, partner_action, partner_text)
        if partner_reason is not None:
            info["partner_invalid"] = partner_reason
            partner_action = "wait"
        reward, finished = self._play([chosen, partner_action])
        if not finished:
            info["blocked"] = True
        reached = self.target_soups is not None and self.soups >= self.target_soups
        self.done = reached or self.turn >= self.horizon
        info["success"] = self._success()
        info["soups"] = self.soups
        return Step(self.observation(), reward * self.reward_scale, self.done, info)
