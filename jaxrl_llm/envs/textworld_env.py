"""TextWorld games on the ``envs.base`` protocol (optional extra ``agents``: ``textworld==1.7.0``).

TextWorld (Cote et al. 2018, "TextWorld: A Learning Environment for Text-based Games",
https://arxiv.org/abs/1806.11532, https://github.com/microsoft/TextWorld) generates text
adventures offline. ``reset(seed)`` generates (once per seed, then cached under ``game_dir``) a
small game from the seed (``nb_rooms`` rooms, ``nb_objects`` objects, a quest of
``quest_length`` steps; about 3-4 s per new seed) and starts it:

* ``instructions``: the game's objective; observations are the game's feedback text, followed by
  the admissible commands when ``show_admissible`` (the ALFWorld-style prompt).
* ``reward``: the change of the game score divided by its maximum, so a won episode returns 1;
  ``success`` when the game is won (a lost game ends the episode with ``success = False``).
* Invalid actions: a command not among the game's admissible commands is not played; it is
  reported as ``info["invalid"]`` and the state is unchanged.
* ``anchor``: (room description, inventory) text.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Hashable

from jaxrl_llm.envs.base import Step

try:
    import textworld
    import textworld.generator
except ImportError:  # the optional extra is not installed; TextWorldEnv says so when built
    textworld = None


def _clean(feedback: str) -> str:
    """The feedback without the interpreter's prompt and status lines (``>`` and ``-= Room =-``)."""
    lines = [ln.rstrip() for ln in feedback.split("\n")]
    keep = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(">") and "-=" not in ln]
    return "\n".join(keep).strip()


class TextWorldEnv:
    """One generated TextWorld game per seed as an ``Env`` (module docstring)."""

    def __init__(
        self,
        nb_rooms: int = 2,
        nb_objects: int = 3,
        quest_length: int = 2,
        game_dir: str = "",
        show_admissible: bool = True,
    ):
        if textworld is None:
            raise ImportError("env 'textworld' needs the optional package: pip install 'jaxrl_llm[agents]'")
        if min(nb_rooms, quest_length) < 1 or nb_objects < 0:
            raise ValueError(
                f"textworld: nb_rooms and quest_length must be >= 1 and nb_objects >= 0, got "
                f"{nb_rooms}, {quest_length}, {nb_objects}"
            )
        self.sizes = (int(nb_rooms), int(nb_objects), int(quest_length))
        self.game_dir = game_dir or os.path.join(tempfile.gettempdir(), "jaxrl_llm_textworld")
        self.show_admissible = show_admissible
        self.instructions = ""
        self.env = self.state = None
        self.infos = textworld.EnvInfos(
            admissible_commands=True, won=True, lost=True, description=True, inventory=True, objective=True
        )

    def game_file(self, seed: int) -> str:
        """The compiled game of ``seed`` (generated on first use)."""
        rooms, objects, quest = self.sizes
        path = os.path.join(self.game_dir, f"r{rooms}_o{objects}_q{quest}_s{int(seed)}.z8")
        if not os.path.exists(path):
            opts = textworld.GameOptions()
            opts.seeds = int(seed)
            opts.nb_rooms, opts.nb_objects, opts.quest_length = rooms, objects, quest
            opts.path, opts.file_ext, opts.force_recompile = path, ".z8", True
            os.makedirs(self.game_dir, exist_ok=True)
            textworld.generator.compile_game(textworld.generator.make_game(opts), opts)
        return path

    def _observation(self, text: str) -> str:
        if not self.show_admissible:
            return text
        return f"{text}\nAvailable actions: {', '.join(self.state.admissible_commands)}"

    def reset(self, seed: int) -> str:
        if self.env is not None:
            self.env.close()
        self.env = textworld.start(self.game_file(seed), request_infos=self.infos)
        self.state = self.env.reset()
        self.instructions = self.state["objective"]
        return self._observation(_clean(self.state.feedback))

    def step(self, action: str) -> Step:
        command = " ".join(action.strip().lower().split())
        if command not in self.state.admissible_commands:
            reason = f"{command[:40]!r} is not an available action"
            return Step(
                self._observation(f"Invalid action: {reason}."), 0.0, False, {"invalid": True, "reason": reason}
            )
        before = self.state.score
        self.state, _, done = self.env.step(command)
        reward = (self.state.score - before) / max(self.state.max_score, 1)
        done = bool(done or self.state["won"] or self.state["lost"])
        return Step(self._observation(_clean(self.state.feedback)), reward, done, {"success": bool(self.state["won"])})

    @property
    def anchor(self) -> Hashable:
        return (self.state["description"], self.state["inventory"])

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
