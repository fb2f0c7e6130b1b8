"""``images:gui``: a synthetic GUI-grounding task (the tiny reproduction of AEPO / InfiGUI-G1).

Liu et al., "InfiGUI-G1: Advancing GUI Grounding with Adaptive Exploration Policy Optimization",
2025, https://arxiv.org/abs/2508.05731; code https://github.com/InfiXAI/InfiGUI-G1. The paper grounds
instructions in real screenshots; here a "screen" is a 16x16 grey picture on a 4x4 grid of 4 px
cells, each holding at most one element, an instruction names one ("Click the ring."), and the
ground truth is the target's bounding box.

Elements: six kinds, three look-alike pairs (filled vs hollow of one shape, or one bar turned):

    square  ####   hollow square  ####   disc  .##.   ring  .##.   bar  ....   column  .##.
            ####                  #..#         ####         #..#        ####           .##.
            ####                  #..#         ####         #..#        ####           .##.
            ####                  ####         .##.         .##.        ....           .##.

drawn at an intensity in {0.6, 0.8, 1.0} (on black). A screen holds ``num_elements`` elements of
distinct kinds at distinct cells. An item is "hard" (``metadata["hard"]``, with probability
``hard_fraction``) when the target's look-alike is also on the screen, so a model that has only
learned the coarse shape is confidently wrong about half the time (AEPO's "confidence trap");
otherwise the look-alike is absent.

Example ``i`` of a split is drawn from ``numpy.random.default_rng((seed, split, i))`` (split 0 =
train, 1 = eval): the two splits are different streams, and every example is a pure function of
``(seed, split, i)``.

Metadata: ``image`` ``[16, 16, 1]`` float32 in [0, 1]; ``question`` (the instruction); ``bbox``
``(x1, y1, x2, y2)``, inclusive pixel coordinates of the target's drawn pixels (0..15); ``hard``;
``target`` (its kind); ``elements`` (every element's ``(kind, bbox)``). ``Example.answer`` is the
demonstration for the SFT stage (``sft.template = "{answer}"``): one point at the box centre,
written in the reward's format (``rewards.gui_grounding.format_points``). With ``explore_demos > 0``
that share of the HARD items' demonstrations propose two points instead, the target's centre and
its look-alike's in random order, so the warm-started policy can already emit lists of N > 1
(the paper's base model is prompted for several points; a model trained from scratch is not).

The reward (``reward=``): ``"aer"``, AEPO's multi-answer Adaptive Exploration Reward, or
``"single"``, the +1/-1 first-point reward of single-answer RLVR; ``think`` and ``point_format``
pass to the reward and the demonstration (defaults: the paper's format; ``think=False,
point_format="pair"`` for character-level tiny models). Held-out evaluation counts top-1 (the first
point in the box, ``Task.correct_fn``) under either reward, split into ``eval/accuracy/hard`` and
``eval/accuracy/easy``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from jaxrl_llm.rewards import gui_grounding
from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.task import Task

IMAGE_SIZE = 16
CELL = 4
GRID = IMAGE_SIZE // CELL
INTENSITIES = (0.6, 0.8, 1.0)


def _mask(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows], bool)


SHAPES: dict[str, np.ndarray] = {
    "square": _mask(("####", "####", "####", "####")),
    "hollow square": _mask(("####", "#..#", "#..#", "####")),
    "disc": _mask((".##.", "####", "####", ".##.")),
    "ring": _mask((".##.", "#..#", "#..#", ".##.")),
    "bar": _mask(("....", "####", "####", "....")),
    "column": _mask((".##.", ".##.", ".##.", ".##.")),
}
KINDS = tuple(SHAPES)
LOOKALIKE = {
    "square": "hollow square",
    "hollow square": "square",
    "disc": "ring",
    "ring": "disc",
    "bar": "column",
    "column": "bar",
}
REWARDS = ("aer", "single")


def shape_bbox(kind: str, cell: int) -> tuple[int, int, int, int]:
    """Inclusive pixel box ``(x1, y1, x2, y2)`` of ``kind`` drawn in grid cell ``cell`` (row-major)."""
    ys, xs = np.nonzero(SHAPES[kind])
    row, col = divmod(int(cell), GRID)
    return (
        CELL * col + int(xs.min()),
        CELL * row + int(ys.min()),
        CELL * col + int(xs.max()),
        CELL * row + int(ys.max()),
    )


def render_screen(elements: list[tuple[str, int, float]]) -> np.ndarray:
    """``[16, 16, 1]`` float32: each ``(kind, cell, intensity)`` drawn in its cell on black."""
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for kind, cell, intensity in elements:
        row, col = divmod(int(cell), GRID)
        image[CELL * row : CELL * (row + 1), CELL * col : CELL * (col + 1)] = SHAPES[kind] * np.float32(intensity)
    return image[..., None]


def centre(bbox: tuple[int, int, int, int]) -> tuple[int, int]:
    """The integer centre of an inclusive box (rounded down)."""
    return ((bbox[0] + bbox[2]) // 2, (bbox[1] + bbox[3]) // 2)


@dataclasses.dataclass(frozen=True)
class _Screens:
    """Picklable index -> GUI ``Example`` (split 0 = train, 1 = eval)."""

    split: int
    num_elements: int
    hard_fraction: float
    seed: int
    think: bool
    point_format: str
    explore_demos: float

    def __call__(self, i: int) -> Example:
        rng = np.random.default_rng((self.seed, self.split, int(i)))
        target = KINDS[int(rng.integers(len(KINDS)))]
        hard = bool(rng.random() < self.hard_fraction)
        others = [k for k in KINDS if k not in (target, LOOKALIKE[target])]
        first = [target, LOOKALIKE[target]] if hard else [target]
        picks = rng.choice(len(others), size=self.num_elements - len(first), replace=False)
        kinds = first + [others[int(j)] for j in picks]
        cells = rng.choice(GRID * GRID, size=len(kinds), replace=False)
        levels = rng.choice(len(INTENSITIES), size=len(kinds))
        elements = [(k, int(c), INTENSITIES[int(v)]) for k, c, v in zip(kinds, cells, levels)]
        bbox = shape_bbox(target, elements[0][1])
        question = f"Click the {target}."
        demo = [centre(bbox)]
        if hard and rng.random() < self.explore_demos:  # hedge: target and look-alike, in random order
            demo.append(centre(shape_bbox(LOOKALIKE[target], elements[1][1])))
            demo = demo[:: 1 if rng.random() < 0.5 else -1]
        answer = gui_grounding.format_points(demo, self.think, self.point_format)
        meta = {
            "image": render_screen(elements),
            "question": question,
            "bbox": bbox,
            "hard": hard,
            "target": target,
            "elements": tuple((k, shape_bbox(k, c)) for k, c, _ in elements),
        }
        name = "train" if self.split == 0 else "eval"
        return Example(prompt=question, answer=answer, metadata=meta, id=f"gui/{name}/{int(i)}")


def gui_task(
    num_elements: int = 4,
    hard_fraction: float = 0.5,
    reward: str = "aer",
    think: bool = True,
    point_format: str = "point_2d",
    explore_demos: float = 0.0,
    size: int = 10_000,
    num_eval: int = 200,
    seed: int = 0,
) -> Task:
    """``images:gui`` (module docstring): ``size`` training screens, ``num_eval`` held out."""
    if not 2 <= num_elements <= len(KINDS) - 1:
        # a screen without the look-alike holds the target and elements of the 4 unrelated kinds
        raise TaskDataError(f"images:gui: num_elements={num_elements} must be in [2, {len(KINDS) - 1}]")
    if not 0.0 <= hard_fraction <= 1.0:
        raise TaskDataError(f"images:gui: hard_fraction={hard_fraction} must lie in [0, 1]")
    if not 0.0 <= explore_demos <= 1.0:
        raise TaskDataError(f"images:gui: explore_demos={explore_demos} must lie in [0, 1]")
    if reward not in REWARDS:
        raise TaskDataError(f"images:gui: reward={reward!r} must be one of {REWARDS}")
    if point_format not in gui_grounding.POINT_FORMATS:
        raise TaskDataError(f"images:gui: point_format={point_format!r} must be one of {gui_grounding.POINT_FORMATS}")
    if size < 1 or num_eval < 0:
        raise TaskDataError(f"images:gui: size={size} must be >= 1 and num_eval={num_eval} >= 0")
    reward_cls = gui_grounding.AdaptiveExplorationReward if reward == "aer" else gui_grounding.SingleAnswerReward
    return Task(
        name="images:gui",
        num_train=size,
        train_example=_Screens(0, num_elements, hard_fraction, seed, think, point_format, explore_demos),
        num_eval=num_eval,
        eval_example=_Screens(1, num_elements, hard_fraction, seed, think, point_format, explore_demos),
        reward_fns=((reward_cls(think=think, point_format=point_format), 1.0),),
        answer_fn=gui_grounding.FirstPoint(think, point_format),
        # evaluation counts top-1 (the first point in the box), whatever the training reward pays
        correct_fn=functools.partial(gui_grounding.first_point_hit, think=think, point_format=point_format),
        eval_splits=(("hard", "hard", "easy"),),
    )


BUILDERS = {"images:gui": gui_task}
