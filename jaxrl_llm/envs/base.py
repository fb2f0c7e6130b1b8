"""The environment protocol of multi-turn rollouts, and the group reset GiGPO needs.

An environment is a text game: ``reset(seed) -> observation`` starts an episode (the same seed
gives the same initial state, so ``N`` copies reset from one seed are a GiGPO group), and
``step(action) -> Step(observation, reward, done, info)`` plays one action, the policy's decoded
text. An action the game cannot parse or apply is not an exception: it costs a turn, leaves the
state as it was, and is reported as ``info["invalid"] = True`` with ``info["reason"]`` (the
rollout adds ``env.invalid_penalty`` for it). ``anchor`` is a hashable key of the current state
(not of the history): two copies whose anchors are equal are in the same state, which is what
GiGPO's anchor-state step groups compare (Feng et al. 2025, "Group-in-Group Policy Optimization
for LLM Agent Training", https://arxiv.org/abs/2505.10978, Sec. 4.2).

Pictures (GUI screens): an environment that shows one with its observations also has
``screen() -> np.ndarray | None``, the picture [H, W, C] float32 in [0, 1] that goes with the
observation just returned (by ``reset``, or by a ``step`` that did not end the episode); ``None``:
this observation has none. The ``episode`` rollout puts the picture's placeholder ids at the start
of the observation's user message and the pixels beside the rows (a vision-language policy reads
them there); text environments need nothing (``screen`` reads their missing method as ``None``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class Step:
    """What ``Env.step`` returns: the next observation text, the step reward, whether the episode
    ended, and facts about the step (``invalid`` / ``reason`` for an action that was refused,
    ``success`` when the episode ended in the goal)."""

    observation: str
    reward: float
    done: bool
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Env(Protocol):
    """A text environment (module docstring). ``instructions`` is the task statement shown once,
    before the first observation (the system or first user message)."""

    instructions: str

    def reset(self, seed: int) -> str: ...

    def step(self, action: str) -> Step: ...

    @property
    def anchor(self) -> Hashable: ...


def screen(env: Env):
    """The picture of ``env``'s latest observation (module docstring), or ``None``."""
    show = getattr(env, "screen", None)
    return None if show is None else show()


def reset_group(make: Callable[[], Env], n: int, seed: int) -> tuple[list[Env], list[str]]:
    """``n`` fresh copies of an environment, all reset from ``seed`` (one GiGPO group): the copies
    and their (equal) first observations."""
    envs = [make() for _ in range(n)]
    return envs, [env.reset(seed) for env in envs]
