"""GUI-grounding rewards: AEPO's Adaptive Exploration Reward (AER) and the single-answer baseline.

Reference: Liu et al., "InfiGUI-G1: Advancing GUI Grounding with Adaptive Exploration Policy
Optimization", 2025, https://arxiv.org/abs/2508.05731 (Sec. 3, Eqs. 2-3); code
https://github.com/InfiXAI/InfiGUI-G1, ``recipe/infigui-g1/reward_fn.py`` (read, not copied).

The completion is ``<think>...</think>`` followed by a JSON list of N candidate points
``[{"point_2d": [x, y]}, ...]``; the ground truth is a bounding box ``(x1, y1, x2, y2)``
(inclusive pixel coordinates, ``example.metadata["bbox"]``). AER, in the code's order:

  1. ``<think>`` format wrong (the completion must start with ``<think>``, hold exactly one
     ``<think>`` and one ``</think>``, and a non-empty answer after ``</think>``)  -> R = -1
  2. the answer is not a JSON list of points with two numbers each, or the list is empty -> R = -1
  3. any three points collinear (exact cross product 0; two equal points and any third point count,
     so duplicates are penalized)                                                        -> R = -1
  4. otherwise R = R_format + R_acc with R_format = 1 and
         R_acc = 1 / sqrt(N k)   if a point lies in the box, k = 1-based rank of the first such point
         R_acc = -1 / N          if none does.

The paper's derivation: efficiency eta = U / C with utility U = +1 (hit) / -1 (miss) and cost
C = sqrt(C_p C_v), C_p = N proposals, C_v = k verifications on a hit, N on a miss.

Choices where paper (arXiv 2508.05731, Eqs. 2-3) and code (InfiGUI-G1 ``recipe/infigui-g1/reward_fn.py``) differ:
  * Collinear points: the paper sets R_acc = -1 (total 0); the code returns -1 in total. Default:
    the code's -1 (``collinear_reward``).
  * The code compares cross products with ``math.isclose(c, 0)`` at default tolerances, which is
    exact equality; here the cross product is computed exactly (``fractions.Fraction``), also for
    float coordinates.

Knobs for tiny models (both default to the code's behaviour):
  * ``think=False``: no ``<think>`` block; the whole completion (whitespace stripped) is the answer.
  * ``point_format="pair"``: points written ``[[x, y], ...]`` instead of ``[{"point_2d": [x, y]}, ...]``
    (a third of the tokens for a character-level tokenizer). The rules above are otherwise unchanged.

``single_answer``: the naive-RLVR baseline's reward: the same parse (rules 1-2; no collinearity
rule, it reads one point), +1 when the FIRST point lies in the box, else -1.
``first_point_hit`` / ``any_point_hit`` / ``num_points``: the top-1 and "exploration success"
metrics and the number of proposals, for measurement.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

from jaxrl_llm.types import Example

POINT_FORMATS = ("point_2d", "pair")
POINT_KEY = "point_2d"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Named reasons a completion earns no accuracy term (``parse_points(...).reason``).
OK = "ok"
THINK_FORMAT = "think_format"  # <think> block missing, repeated, not first, or no answer after it
MALFORMED_JSON = "malformed_json"  # json.loads fails
NOT_A_LIST = "not_a_list"  # the JSON value is not a list
BAD_POINT = "bad_point"  # an item is not a point of exactly two numbers (wrong arity, key, type)
EMPTY = "empty"  # N = 0
COLLINEAR = "collinear"  # three points on one line (AER only)

Point = tuple[float, float]
BBox = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class Parsed:
    """The points of a completion in order, or ``reason`` (one of the names above) when it has none."""

    points: tuple[Point, ...]
    reason: str

    @property
    def ok(self) -> bool:
        return self.reason == OK


def _fail(reason: str) -> Parsed:
    return Parsed((), reason)


def answer_text(completion: str, think: bool = True) -> str | None:
    """The answer part of a completion: after the single ``</think>`` (``think=True``; ``None``
    when the ``<think>`` format is wrong), else the whole completion; whitespace stripped."""
    if not think:
        return completion.strip()
    text = completion.strip()
    if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return None
    answer = text.split(THINK_CLOSE, 1)[1].strip()
    return answer or None


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _point(item: object, point_format: str) -> Point | None:
    if point_format == "point_2d":
        if not isinstance(item, dict) or set(item) != {POINT_KEY}:
            return None
        item = item[POINT_KEY]
    if not isinstance(item, list) or len(item) != 2 or not all(_number(v) for v in item):
        return None
    return (item[0], item[1])


def parse_points(completion: str, think: bool = True, point_format: str = "point_2d") -> Parsed:
    """The candidate points of ``completion`` (rules 1-2 of the module docstring) or the named reason
    it has none: ``think_format``, ``malformed_json``, ``not_a_list``, ``bad_point``, ``empty``."""
    if point_format not in POINT_FORMATS:
        raise ValueError(f"gui_grounding: point_format={point_format!r} must be one of {POINT_FORMATS}")
    answer = answer_text(completion, think)
    if answer is None:
        return _fail(THINK_FORMAT)
    try:
        value = json.loads(answer)
    except (json.JSONDecodeError, RecursionError):
        return _fail(MALFORMED_JSON)
    if not isinstance(value, list):
        return _fail(NOT_A_LIST)
    points = [_point(item, point_format) for item in value]
    if any(p is None for p in points):
        return _fail(BAD_POINT)
    if not points:
        return _fail(EMPTY)
    return Parsed(tuple(points), OK)


def cross(a: Point, b: Point, c: Point) -> Fraction:
    """Exact ``(b - a) x (c - a)``; 0 iff ``a, b, c`` are collinear (or two of them coincide)."""
    a, b, c = ([Fraction(v) for v in p] for p in (a, b, c))
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def has_collinear_triple(points: Sequence[Point]) -> bool:
    """Whether any three of ``points`` lie on one line (duplicates included); False for N < 3."""
    return any(cross(a, b, c) == 0 for a, b, c in itertools.combinations(points, 3))


def inside(point: Point, bbox: BBox) -> bool:
    """``x1 <= x <= x2`` and ``y1 <= y <= y2`` (inclusive box)."""
    x1, y1, x2, y2 = bbox
    return x1 <= point[0] <= x2 and y1 <= point[1] <= y2


def first_hit_rank(points: Sequence[Point], bbox: BBox) -> int | None:
    """1-based rank k of the first point inside ``bbox``; None when none is."""
    return next((i + 1 for i, p in enumerate(points) if inside(p, bbox)), None)


def accuracy_reward(n: int, k: int | None) -> float:
    """AER's accuracy term: ``1/sqrt(N k)`` on a hit at rank ``k``, ``-1/N`` on a miss."""
    if n < 1:
        raise ValueError(f"accuracy_reward: N={n} must be >= 1")
    return 1.0 / math.sqrt(n * k) if k is not None else -1.0 / n


def bbox_of(example: Example) -> BBox:
    """``example.metadata["bbox"]`` as ``(x1, y1, x2, y2)``; ValueError naming the example otherwise."""
    bbox = example.metadata.get("bbox") if example.metadata else None
    if bbox is None or len(bbox) != 4 or not all(_number(v) for v in bbox) or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
        raise ValueError(
            f"gui_grounding: example {example.id!r} needs metadata['bbox'] = (x1, y1, x2, y2), got {bbox!r}"
        )
    return tuple(bbox)


def aer_breakdown(completion: str, bbox: BBox, think: bool = True, point_format: str = "point_2d") -> tuple[float, str]:
    """``(R, reason)``: AER (module docstring) and why it is -1 (``ok`` when the accuracy term applies)."""
    parsed = parse_points(completion, think, point_format)
    if not parsed.ok:
        return -1.0, parsed.reason
    if has_collinear_triple(parsed.points):
        return -1.0, COLLINEAR
    n = len(parsed.points)
    return 1.0 + accuracy_reward(n, first_hit_rank(parsed.points, bbox)), OK


@dataclasses.dataclass(frozen=True)
class AdaptiveExplorationReward:
    """AER as a reward function ``(completion, example) -> float`` (module docstring); logged as
    ``reward/aer``."""

    think: bool = True
    point_format: Literal["point_2d", "pair"] = "point_2d"
    name: str = "aer"

    def __call__(self, completion: str, example: Example) -> float:
        return aer_breakdown(completion, bbox_of(example), self.think, self.point_format)[0]


@dataclasses.dataclass(frozen=True)
class SingleAnswerReward:
    """Naive RLVR: +1 when the first parsed point lies in the box, -1 otherwise (any parse failure
    included); logged as ``reward/single_answer``."""

    think: bool = True
    point_format: Literal["point_2d", "pair"] = "point_2d"
    name: str = "single_answer"

    def __call__(self, completion: str, example: Example) -> float:
        return 1.0 if first_point_hit(completion, example, self.think, self.point_format) else -1.0


def first_point_hit(completion: str, example: Example, think: bool = True, point_format: str = "point_2d") -> bool:
    """Top-1 correctness: the completion parses and its FIRST point lies in the box."""
    parsed = parse_points(completion, think, point_format)
    return parsed.ok and inside(parsed.points[0], bbox_of(example))


def any_point_hit(completion: str, example: Example, think: bool = True, point_format: str = "point_2d") -> bool:
    """Exploration success: the completion parses and SOME point lies in the box."""
    parsed = parse_points(completion, think, point_format)
    return parsed.ok and first_hit_rank(parsed.points, bbox_of(example)) is not None


def num_points(completion: str, think: bool = True, point_format: str = "point_2d") -> int:
    """N, the number of proposals of a well-formed completion; 0 when it does not parse."""
    return len(parse_points(completion, think, point_format).points)


def format_points(
    points: Sequence[Point], think: bool = True, point_format: str = "point_2d", thought: str = ""
) -> str:
    """The completion that proposes ``points`` (the inverse of ``parse_points``); demonstrations use it."""
    if point_format not in POINT_FORMATS:
        raise ValueError(f"gui_grounding: point_format={point_format!r} must be one of {POINT_FORMATS}")
    items = [[x, y] if point_format == "pair" else {POINT_KEY: [x, y]} for x, y in points]
    answer = json.dumps(items, separators=(",", ":"))
    return f"{THINK_OPEN}{thought}{THINK_CLOSE}{answer}" if think else answer


@dataclasses.dataclass(frozen=True)
class FirstPoint:
    """The answer a grounding reward reads as a string, ``"x,y"`` of the first point (None when the
    completion does not parse): a task's ``answer_fn``, for methods that compare answers in a group."""

    think: bool = True
    point_format: Literal["point_2d", "pair"] = "point_2d"

    def __call__(self, completion: str, example: Example | None = None) -> str | None:
        parsed = parse_points(completion, self.think, self.point_format)
        return f"{parsed.points[0][0]},{parsed.points[0][1]}" if parsed.ok else None
