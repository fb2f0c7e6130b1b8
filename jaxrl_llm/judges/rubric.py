"""A rubric as text, a programmatic rubric judge, and MPO's programmatic meta-reward stand-in.

MPO (Kim et al. 2025, "Toward Evaluative Thinking: Meta Policy Optimization with Evolving Reward
Models", https://arxiv.org/abs/2504.20157; code https://github.com/minnesotanlp/mpo) scores each
rollout with an LLM judge prompted by a rubric of ``<item>`` entries, ``R = sum_items score`` (each
item 0..5), and every ``num_mpo_interval`` updates lets a meta-reward model (MRM) rewrite the rubric:
per sampled rollout a meta-analysis (is the score inflated? is a criterion missing?) and a
refinement, then a merge of the refined rubrics into one, deduplicated.

Here the rubric is TEXT (``<item>name: description</item>`` lines; it is what the algorithm state
stores and checkpoints). ``RubricJudge`` scores an item by its ``name`` with a programmatic check
(``ITEMS``); an item it does not know scores 0 and is counted. ``ProgrammaticMRM`` is the stand-in
for the meta-reward model the MPO code runs through a 32B-72B LLM (a 135M judge does not follow
its meta-prompts): for each sampled rollout, if the rubric score is high while the rollout is
wrong, or its text repeats itself, it proposes the items that would have caught it
(``correct``, ``no_repetition``); the merge is the union of item names in order of first appearance
(the MPO code merges with a set), capped at ``max_items``.

Points. An item may carry its maximum, ``<item>name [P]: description</item>`` (``P`` in
``(0, 5]``; none = 5): it scores ``check(text) * P / 5``, and the rubric's maximum is the sum of
its items' ``P``. The MPO meta-analysis critiques a score's "point distribution" besides missing
criteria; the stand-in's version of it (``ProgrammaticMRM.reweigh``): when a sampled rollout is
wrong and its score high (inflated), every item other than ``correct`` that pays the inflated
wrong rollouts on average at least as much as the right ones (all of the sample's right ones; 0
when none was right) does not tell right from wrong, and its points are halved, down to
``min_points``. Without it (``reweigh=False``) the stand-in only adds items, as before 2026-12-08.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np

from jaxrl_llm.types import Example

ITEM_MAX = 5.0
_ITEM = re.compile(r"<item>\s*([a-z_]+)\s*(?:\[\s*([0-9]*\.?[0-9]+)\s*\])?\s*:(.*?)</item>", re.S)
_ANSWER = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")
_INT = re.compile(r"-?\d+")


def answer_int(text: str) -> int | None:
    """The integer inside ``<answer>..</answer>``, else the last integer in the text, else None."""
    m = _ANSWER.search(text or "")
    if m:
        return int(m.group(1))
    found = _INT.findall(text or "")
    return int(found[-1]) if found else None


def _format(text: str, example: Example) -> float:
    return ITEM_MAX if _ANSWER.search(text or "") else 0.0


def _digits(text: str, example: Example) -> float:
    return float(min(sum(c.isdigit() for c in text or ""), int(ITEM_MAX)))


def _longest_run(text: str) -> int:
    best = run = 0
    prev = None
    for c in text or "":
        run = run + 1 if c == prev else 1
        prev = c
        best = max(best, run)
    return best


def _no_repetition(text: str, example: Example) -> float:
    return float(max(ITEM_MAX - max(_longest_run(text) - 1, 0), 0.0))


def _correct(text: str, example: Example) -> float:
    try:
        return ITEM_MAX * float(answer_int(text) == int(str(example.answer).strip()))
    except (TypeError, ValueError):
        return 0.0


# name -> (description, check(text, example) in [0, ITEM_MAX])
ITEMS: dict[str, tuple[str, Callable[[str, Example], float]]] = {
    "format": ("the final answer is given inside <answer></answer> tags", _format),
    "digits": ("the response shows its numeric work (one point per digit, at most 5)", _digits),
    "no_repetition": ("no character is repeated in a run (5 minus the longest run beyond 1)", _no_repetition),
    "correct": ("the final answer equals the correct result", _correct),
}

# The hackable seed rubric of the MPO experiment: it pays for digits, whatever they say.
SEED_RUBRIC = f"<item>digits: {ITEMS['digits'][0]}</item>\n<item>format: {ITEMS['format'][0]}</item>"


def parse(rubric: str) -> list[str]:
    """The item names of a rubric text, in order, each once."""
    return list(points(rubric))


def points(rubric: str) -> dict[str, float]:
    """Each item's maximum points (``[P]`` after its name; ``ITEM_MAX`` when absent), in order; an
    item named twice keeps its first entry."""
    out: dict[str, float] = {}
    for name, value, _ in _ITEM.findall(rubric or ""):
        if name not in out:
            out[name] = min(float(value), ITEM_MAX) if value else ITEM_MAX
    return out


def maximum(rubric: str) -> float:
    """The rubric's top score: the sum of its items' points (``ITEM_MAX`` for an empty rubric)."""
    return sum(points(rubric).values()) or ITEM_MAX


def render(names: Sequence[str], item_points: dict[str, float] | None = None) -> str:
    """A rubric text of the named items (their canonical descriptions), each with its points
    when they are not ``ITEM_MAX``."""

    def head(n: str) -> str:
        p = (item_points or {}).get(n, ITEM_MAX)
        return n if p == ITEM_MAX else f"{n} [{p:g}]"

    return "\n".join(f"<item>{head(n)}: {ITEMS[n][0] if n in ITEMS else ''}</item>" for n in names)


def encode(rubric: str, length: int) -> np.ndarray:
    """The rubric's UTF-8 bytes in a ``[length]`` uint8 array, zero-padded; a longer text is a ValueError."""
    data = rubric.encode("utf-8")
    if len(data) > length or b"\x00" in data:
        raise ValueError(f"rubric of {len(data)} bytes does not fit the state's {length}-byte buffer (or holds NUL)")
    out = np.zeros(length, np.uint8)
    out[: len(data)] = np.frombuffer(data, np.uint8)
    return out


def decode(buffer: np.ndarray) -> str:
    """The text ``encode`` stored (up to the first zero byte)."""
    data = bytes(np.asarray(buffer, np.uint8).tobytes())
    return data.split(b"\x00", 1)[0].decode("utf-8")


@dataclasses.dataclass
class RubricJudge:
    """``score = sum_items check(text) * P_item / ITEM_MAX`` over the rubric's known items (unknown names counted in
    ``num_unknown_items``, scoring 0); the rationale lists each item's score."""

    rubric: str
    num_unknown_items: int = 0

    def score(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        if len(prompts) != len(completions):
            raise ValueError(f"RubricJudge: {len(prompts)} prompts but {len(completions)} completions")
        item_points = points(self.rubric)
        known = [n for n in item_points if n in ITEMS]
        self.num_unknown_items += len(item_points) - len(known)
        scores, notes = [], []
        for p, c in zip(prompts, completions):
            parts = {n: ITEMS[n][1](c, p) * item_points[n] / ITEM_MAX for n in known}
            scores.append(sum(parts.values()))
            notes.append(", ".join(f"{n}={v:g}" for n, v in parts.items()))
        return np.asarray(scores, np.float32), notes


@dataclasses.dataclass(frozen=True)
class ProgrammaticMRM:
    """The programmatic meta-reward model (module docstring). ``high``: the fraction of the rubric's
    maximum above which a score counts as high; ``max_items``: the merged rubric's cap;
    ``reweigh``: also halve the points of items that pay inflated wrong rollouts as much as right
    ones, down to ``min_points``."""

    high: float = 0.5
    max_items: int = 6
    reweigh: bool = True
    min_points: float = 1.0

    def inflated(self, rubric: str, example: Example, completion: str, score: float) -> bool:
        """A high score (at least ``high`` of the rubric's maximum) on a wrong rollout."""
        return score >= self.high * maximum(rubric) and _correct(completion, example) < ITEM_MAX

    def analyze(self, rubric: str, example: Example, completion: str, score: float) -> list[str]:
        """Meta-analysis of one scored rollout: the items its score missed (empty: the score is fair)."""
        names = parse(rubric)
        proposals = []
        if self.inflated(rubric, example, completion, score):
            proposals.append("correct")
        if _longest_run(completion) > 2:
            proposals.append("no_repetition")
        return [p for p in proposals if p not in names]

    def refine(
        self, rubric: str, examples: Sequence[Example], completions: Sequence[str], scores: Sequence[float]
    ) -> str:
        """Analysis + refinement per sample, then the merge: the new rubric text (unchanged when no
        sample shows a missed criterion)."""
        names, old_points = parse(rubric), points(rubric)
        refined = [names + self.analyze(rubric, e, c, s) for e, c, s in zip(examples, completions, scores)]
        merged: list[str] = []
        for r in [names, *refined]:
            merged += [n for n in r if n not in merged]
        merged = merged[: self.max_items]
        new_points = {n: old_points.get(n, ITEM_MAX) for n in merged}
        if self.reweigh:
            new_points.update(self.redistribute(rubric, examples, completions, scores))
        if merged == names and new_points == old_points:
            return rubric
        return render(merged, new_points)

    def redistribute(
        self, rubric: str, examples: Sequence[Example], completions: Sequence[str], scores: Sequence[float]
    ) -> dict[str, float]:
        """Meta-analysis of the point distribution (module docstring): the new points of the items
        that pay the inflated wrong rollouts of this sample at least as much as its right ones."""
        item_points = points(rubric)
        rows = list(zip(examples, completions, scores))
        inflated = [(e, c) for e, c, s in rows if self.inflated(rubric, e, c, s)]
        right = [(e, c) for e, c, _ in rows if _correct(c, e) == ITEM_MAX]
        out: dict[str, float] = {}
        for n, p in item_points.items():
            if not inflated or n == "correct" or n not in ITEMS or p <= self.min_points:
                continue
            check = ITEMS[n][1]
            paid_wrong = float(np.mean([check(c, e) for e, c in inflated]))
            paid_right = float(np.mean([check(c, e) for e, c in right])) if right else 0.0
            if paid_wrong > 0 and paid_wrong >= paid_right:
                out[n] = max(p / 2, self.min_points)
        return out
