"""``combination_lock``: a text-rendered GUI screen with dials and buttons (pure Python, deterministic
given the seed), the stand-in for an OSWorld task in ARPO's tiny reproduction (Lu et al. 2025,
"ARPO: End-to-End Policy Optimization for GUI Agents with Experience Replay",
https://arxiv.org/abs/2505.16282).

The task id is the seed: it fixes the lock (each dial's starting digit and its code digit). The
screen lists the dials (``A1*``: dial A shows 1; ``*``, the partial feedback, marks a dial that
shows its code digit) and the selected dial, compact because every character is a token of the
small agent's context::

    A1 B0* C2 sel:A

Buttons (the action names one; ``click(<button>)`` or the button's key, case-insensitive):
``u``/``up`` turns the selected dial up by one (modulo ``num_digits``), ``n``/``next`` selects the
next dial (wrapping), ``o``/``open`` tries the lock. Opening with every dial at its code digit ends
the episode with reward 1 (success); opening with a wrong code ends it with reward 0
(``wrong_open="end"``, the default) or leaves the lock shut (``"continue"``). The shortest solution
(``solution_length``, what ``expert_action`` plays) has ``min_solution`` to ``max_solution`` steps:
locks outside that range are redrawn from the seed's stream.

An action naming no button is a format error: the episode ends at once with reward 0 and
``info["invalid"]`` (ARPO's format reward of -1 for an unparsable action, which also ends the
episode; the method turns it into ``format = -1``).

Image screen (``screen="image"``, issue #20: GUI episodes seen as screenshots): the observation text
is empty (or ``wrong code; `` after a wrong open with ``wrong_open="continue"``) and ``screen()``
returns the lock drawn as an ``image_size`` x ``image_size`` grey picture [S, S, 1] float32 in
[0, 1] (default 16: ``tiny-vlm-16px``'s encoder). Dial ``i`` owns columns
``[i*w, i*w + w - 1)``, ``w = S // num_dials`` (the band's last column stays dark); inside them::

    rows 0-1          lit over the selected dial                       (``sel``)
    rows 2 .. S-3     a bar from row S-3 upwards, (digit + 1) * u rows  (u = (S - 4) // num_digits)
    rows S-2, S-1     feedback "dial": lit under a dial at its code digit (the ``*``);
                      "count": lit under the first ``ok`` dials; "none": dark

Lit pixels are 1, the rest 0: deterministic, and the state reads back from the pixels exactly.

Difficulty knobs: ``num_dials``, ``num_digits``, the solution range, ``feedback`` (``"dial"``: the
per-dial ``*``; ``"count"``: only how many dials are right, ``ok:2``; ``"none"``) and
``wrong_open``. Bad values raise ``LockConfigError`` naming the field.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Hashable

import numpy as np

from jaxrl_llm.envs.base import Step

BUTTONS = {"u": "up", "n": "next", "o": "open"}
FEEDBACK = ("dial", "count", "none")
WRONG_OPEN = ("end", "continue")
SCREENS = ("text", "image")
_CLICK = re.compile(r"^click\(\s*([a-z]+)\s*\)", re.I)


class LockConfigError(ValueError):
    """A ``combination_lock`` setting out of its range (the message names the field)."""


def parse_button(text: str) -> str | None:
    """The button key (``u``/``n``/``o``) an action names, or ``None``: ``click(<button>)`` with a
    button's key or label, else the first non-space character when it is a key."""
    text = text.strip()
    m = _CLICK.match(text)
    if m:
        name = m.group(1).lower()
        return name if name in BUTTONS else next((k for k, v in BUTTONS.items() if v == name), None)
    head = text[:1].lower()
    return head if head in BUTTONS else None


class CombinationLock:
    """The environment of the module docstring."""

    def __init__(
        self,
        num_dials: int = 3,
        num_digits: int = 4,
        min_solution: int = 6,
        max_solution: int = 10,
        feedback: str = "dial",
        wrong_open: str = "end",
        screen: str = "text",
        image_size: int = 16,
    ):
        if not 1 <= num_dials <= 26:
            raise LockConfigError(f"combination_lock num_dials must be in [1, 26], got {num_dials}")
        if not 2 <= num_digits <= 10:
            raise LockConfigError(f"combination_lock num_digits must be in [2, 10], got {num_digits}")
        longest = num_dials * (num_digits - 1) + num_dials  # every dial turned fully, then open
        if not 2 <= min_solution <= max_solution:
            raise LockConfigError(
                f"combination_lock min_solution/max_solution need 2 <= min <= max, got {min_solution}, {max_solution}"
            )
        if min_solution > longest:
            raise LockConfigError(
                f"combination_lock min_solution={min_solution} > {longest}, the longest solution of "
                f"{num_dials} dials of {num_digits} digits"
            )
        if feedback not in FEEDBACK:
            raise LockConfigError(f"combination_lock feedback must be one of {FEEDBACK}, got {feedback!r}")
        if wrong_open not in WRONG_OPEN:
            raise LockConfigError(f"combination_lock wrong_open must be one of {WRONG_OPEN}, got {wrong_open!r}")
        if screen not in SCREENS:
            raise LockConfigError(f"combination_lock screen must be one of {SCREENS}, got {screen!r}")
        if screen == "image" and (image_size // num_dials < 2 or (image_size - 4) // num_digits < 1):
            raise LockConfigError(
                f"combination_lock image_size={image_size} cannot draw {num_dials} dials of {num_digits} digits "
                f"(needs image_size >= 2 * num_dials and >= num_digits + 4)"
            )
        self.num_dials, self.num_digits = num_dials, num_digits
        self.min_solution, self.max_solution = min_solution, max_solution
        self.feedback, self.wrong_open = feedback, wrong_open
        self.image = screen == "image"
        self.image_size = image_size
        self.names = string.ascii_uppercase[:num_dials]
        if self.image:
            marks = {"dial": " Bottom mark: right digit.", "count": " Bottom marks: dials right.", "none": ""}
            screen_text = f" Screen: a bar per dial, taller for a higher digit; top mark: selected.{marks[feedback]}"
        else:
            screen_text = {"dial": " *: right digit.", "count": " ok: dials right.", "none": ""}[feedback]
        self.instructions = (
            f"Set each dial (digits 0-{num_digits - 1}) to its code, then open. "
            f"u: selected dial up, n: next dial, o: open.{screen_text}"
        )
        self.digits: list[int] = []
        self.code: list[int] = []
        self.sel = 0

    def reset(self, seed: int) -> str:
        rng = random.Random(seed)
        while True:
            self.digits = [rng.randrange(self.num_digits) for _ in self.names]
            self.code = [rng.randrange(self.num_digits) for _ in self.names]
            self.sel = 0
            if self.min_solution <= self.solution_length() <= self.max_solution:
                return self.observation()

    def observation(self) -> str:
        if self.image:  # the picture (``screen``) shows the state
            return ""
        dials = " ".join(
            f"{n}{d}{'*' if self.feedback == 'dial' and d == c else ''}"
            for n, d, c in zip(self.names, self.digits, self.code)
        )
        text = f"{dials} sel:{self.names[self.sel]}"
        if self.feedback == "count":
            text += f" ok:{self.num_right()}"
        return text

    def screen(self) -> np.ndarray | None:
        """The lock as a grey picture [S, S, 1] (module docstring), or ``None`` with the text screen."""
        if not self.image:
            return None
        S = self.image_size
        w, unit = S // self.num_dials, (S - 4) // self.num_digits
        pixels = np.zeros((S, S, 1), np.float32)
        right = [d == c for d, c in zip(self.digits, self.code)]
        for i, d in enumerate(self.digits):
            cols = slice(i * w, i * w + w - 1)
            pixels[S - 2 - (d + 1) * unit : S - 2, cols] = 1.0
            if i == self.sel:
                pixels[0:2, cols] = 1.0
            if (self.feedback == "dial" and right[i]) or (self.feedback == "count" and i < sum(right)):
                pixels[S - 2 :, cols] = 1.0
        return pixels

    def num_right(self) -> int:
        return sum(d == c for d, c in zip(self.digits, self.code))

    def expert_action(self) -> str:
        """The shortest solution's next button from the current state: turn the selected dial until
        it is right, open once every dial is right, otherwise select the next dial."""
        if self.digits[self.sel] != self.code[self.sel]:
            return "u"
        return "o" if self.num_right() == self.num_dials else "n"

    def solution_length(self) -> int:
        """Steps ``expert_action`` takes from the current state to open the lock."""
        wrong = [i for i in range(self.num_dials) if self.digits[i] != self.code[i]]
        turns = sum((self.code[i] - self.digits[i]) % self.num_digits for i in wrong)
        # dials are visited in order from the selected one (wrapping) up to the last wrong one
        moves = max(((i - self.sel) % self.num_dials for i in wrong), default=0)
        return turns + moves + 1

    @property
    def anchor(self) -> Hashable:
        return (tuple(self.digits), self.sel)

    def step(self, action: str) -> Step:
        button = parse_button(action)
        if button is None:
            shown = action.strip().replace("\n", " ")[:40]
            info = {"invalid": True, "success": False, "reason": f"no button (u/n/o) in action {shown!r}"}
            return Step("invalid action; the session ended", 0.0, True, info)
        if button == "u":
            self.digits[self.sel] = (self.digits[self.sel] + 1) % self.num_digits
        elif button == "n":
            self.sel = (self.sel + 1) % self.num_dials
        elif self.num_right() == self.num_dials:
            return Step("the lock opened", 1.0, True, {"success": True})
        elif self.wrong_open == "end":
            return Step("wrong code; the lock jammed", 0.0, True, {"success": False})
        else:
            return Step("wrong code; " + self.observation(), 0.0, False, {})
        return Step(self.observation(), 0.0, False, {})
