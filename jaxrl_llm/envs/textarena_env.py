"""TextArena games on the ``envs.base`` protocol (optional extra ``agents``: ``textarena==0.7.4``).

TextArena (Guertler et al. 2025, "TextArena", https://arxiv.org/abs/2504.11442,
https://github.com/LeonGuertler/TextArena) plays text games through ``reset(num_players, seed)``,
``get_observation() -> (player_id, text)`` and ``step(action) -> (done, info)``; rewards arrive
only when the game ends (``state.rewards``). This adapter makes one of its games an ``Env``:

* The policy is player 0. In a game of several players the others are played by ``partner``, a
  function ``observation text -> action text`` (a frozen model, or the scripted default
  ``scripted_partner``), inside ``step``: the policy sees the game after every partner move.
* ``observation``: only the text that is new since the policy's last observation (TextArena's
  player view is the whole log; resending it every turn would grow the context quadratically).
* ``reward``: player 0's final reward on the step that ends the game, 0 before; ``success`` when
  it is at least ``success_reward`` (1 = a solved FrozenLake or Sokoban, a won two-player game).
* Invalid actions: TextArena answers a move it cannot parse or apply with a ``[GAME]`` message and
  counts it (``state.error_count``); the adapter reports that as ``info["invalid"]`` with the
  game's reason, never as an exception.
* ``anchor``: the text of the policy's latest observation (the board in the grid games).

Games (``game``): ``FrozenLake-v0``, ``Sokoban-v0``, ``SimpleNegotiation-v0-short``,
``UsedCarNegotiation-v0``, ... (any registered id; ``num_players`` must fit the game).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable

from jaxrl_llm.envs.base import Step

try:
    import textarena
except ImportError:  # the optional extra is not installed; TextArenaEnv says so when built
    textarena = None

_INVALID = re.compile(r"\[GAME\][^\n]*(invalid|Invalid)[^\n]*")


def scripted_partner(observation: str) -> str:
    """The default other player of a negotiation: accepts a pending offer, otherwise waits
    (a deterministic stand-in for a frozen partner model)."""
    tail = observation[-400:].lower()
    return "[Accept]" if "offer" in tail and "made no new trade offer" not in tail[-60:] else "[Deny]"


class TextArenaEnv:
    """One TextArena game as an ``Env`` (module docstring)."""

    def __init__(
        self,
        game: str = "FrozenLake-v0",
        num_players: int = 1,
        partner: Callable[[str], str] | None = None,
        success_reward: float = 1.0,
        instructions: str = "",
    ):
        if textarena is None:
            raise ImportError("env 'textarena' needs the optional package: pip install 'jaxrl_llm[agents]'")
        if num_players < 1:
            raise ValueError(f"textarena: num_players must be >= 1, got {num_players}")
        self.game, self.num_players, self.success_reward = game, num_players, success_reward
        self.partner = partner or scripted_partner
        self.instructions = instructions
        self.env = None
        self._seen = {}  # player id -> characters of its observation log already shown
        self._last = ""

    def _new_text(self, player: int, full: str) -> str:
        new = full[self._seen.get(player, 0) :]
        self._seen[player] = len(full)
        return new.strip("\n")

    def _play_partners(self) -> tuple[bool, str]:
        """Partner moves until it is player 0's turn or the game ends: (done, policy's new text)."""
        done = self.env.state.done
        player, full = self.env.get_observation()
        while not done and player != 0:
            done, _ = self.env.step(self.partner(self._new_text(player, full)))
            player, full = self.env.get_observation()
        text = self._new_text(0, full) if player == 0 else ""
        return done, text

    def reset(self, seed: int) -> str:
        try:
            self.env = textarena.make(self.game)
        except Exception as e:  # noqa: BLE001 -- an unknown id is a config error, named here
            raise ValueError(f"env.kwargs.game: textarena cannot make {self.game!r}: {e}") from None
        self.env.reset(num_players=self.num_players, seed=int(seed))
        self._seen = {}
        _, self._last = self._play_partners()
        return self._last

    def step(self, action: str) -> Step:
        if self.env is None:
            raise RuntimeError("textarena: step() before reset()")
        if self.env.state.done:
            return Step("The game is over.", 0.0, True, {"invalid": True, "reason": "step after the game ended"})
        errors = self.env.state.error_count
        done, _ = self.env.step(action)
        info: dict = {}
        if not done and self.env.state.error_count > errors:
            player, full = self.env.get_observation()
            found = _INVALID.findall(full[self._seen.get(player, 0) :]) if player == 0 else []
            reason = re.search(r"Reason: ([^\n]*)", full[self._seen.get(player, 0) :]) if player == 0 else None
            info = {"invalid": True, "reason": reason.group(1) if reason else (found[0] if found else "invalid move")}
        if not done:
            done, text = self._play_partners()
        else:
            text = self._new_text(0, self.env.get_observation()[1])
        reward = 0.0
        if done:
            rewards = self.env.state.rewards or {}
            reward = float(rewards.get(0, 0.0))
            info["success"] = reward >= self.success_reward
            reason = (self.env.state.game_info or {}).get(0, {}).get("reason")
            text = (text + "\n" + reason).strip() if reason else text
        self._last = text
        return Step(text, reward, bool(done), info)

    @property
    def anchor(self) -> Hashable:
        return self._last
