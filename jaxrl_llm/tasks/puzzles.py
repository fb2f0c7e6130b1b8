"""Puzzles drawn as pictures: reasoning-gym's mazes and 1-D ARC, and lattice-triangle geometry.

Three image tasks whose answer-determining content is only in the picture (the prompt never holds
the grid); each is an ordinary ``Task`` whose ``Example.metadata`` carries ``image`` ``[H, W, 1]``
float32 in [0, 1] and ``question`` (no image placeholder), like ``tasks.images``. Pictures are grey
(one channel, what ``tiny-vlm-16px`` reads); "colours" are grey levels. Default ``image_size=16``.

* ``images:maze``: reasoning-gym's ``maze`` (``reasoning_gym/games/maze.py``): a square grid of
  walls and passages with a start and a goal. From reasoning-gym: the grid, the start and goal, the
  answer (the BFS shortest-path length, in steps) and the scorer (``score_answer``: 1 on an exact
  match, ``len(answer) / len(completion_answer)`` when the reference is a substring of it, else 0;
  it is handed the completion's first integer). Ours: the drawing (``render_maze``, one cell per
  ``image_size // max_grid_size`` px square at the top-left, ``MAZE_LEVELS``) and the question.
* ``images:arc``: reasoning-gym's ``arc_1d`` (1-D ARC, Xu et al. https://arxiv.org/abs/2305.18354):
  ``num_train`` input -> output rows of one rule, and a test input. From reasoning-gym: the rows,
  the answer (the test output as space-separated colours, ``"0 0 3 3 0"``) and the scorer (as for
  the maze; handed ``procedural.extract_for_scoring(completion, "auto")``, i.e. the stripped
  completion unless it holds ``<answer>`` tags or ``\\boxed{}``). Ours: the drawing
  (``render_arc``: one picture row per grid row, example 1 input, example 1 output, ..., test
  input, top to bottom; colour ``c`` is grey ``(c + 1) / 10`` so colour 0 differs from the empty
  canvas 0.0) and the question.
* ``images:geometry``: ours (reasoning-gym's ``simple_geometry`` / ``advanced_geometry`` state
  their numbers in text with 2-3 decimals and pay 0.01-0.05 for any wrong answer, which a 16 px
  picture cannot carry). Three lattice points of a ``grid_size`` x ``grid_size`` grid of unit
  cells are the corners of a triangle; the picture shows the corners as bright cells (1.0) and the
  edges between the cell centres as grey lines (0.5). Question: its area in unit cells. Answer
  (shoelace formula) ``|x1 (y2 - y3) + x2 (y3 - y1) + x3 (y1 - y2)| / 2``, written ``"4"`` or
  ``"4.5"``; the reward is 1 when the completion's first number equals it exactly (``4.50`` too),
  else 0 (``area_reward``). Corners are drawn uniformly among non-collinear triples.

Splits. The reasoning-gym tasks build one dataset with ``seed``: its indices ``[0, num_eval)`` are
held out and ``[num_eval, num_eval + size)`` train (disjoint indices, as ``rg:<name>``; a small
puzzle space can still repeat a puzzle across them). Geometry example ``i`` of a split is drawn
from ``default_rng((seed, split, i))`` (split 0 = train, 1 = eval). Every example is a pure
function of ``(seed, split, index)``.

Size limits. A grid cell is at least 2 x 2 px: the maze needs ``image_size >= 2 * max_grid_size``,
ARC ``image_size >= 2 * max(max_size, 2 * num_train + 1)`` (reasoning-gym's ``arc_1d`` needs
``min_size >= 8``, so 16 px holds 8-cell rows and 3 examples), geometry
``image_size >= 2 * grid_size``. reasoning-gym's maze generator can fail on a 5 x 5 grid (its
3 x 3 interior may hold a single passage) so ``min_grid_size >= 6``. A bad parameter raises
``TaskDataError`` naming it and the bound, at ``make_task`` time.

The text-prior knob (``text_prior``, as ``images:count``): that share of questions, decided per
example, also states the answer ("Hint: the answer is 7."; ``metadata["needs_image"] = False``), so
evaluation splits accuracy by ``NEEDS_IMAGE_SPLIT``. Held-out evaluation counts a completion correct
when its reward is exactly 1 (``Task.correct_fn``), not reasoning-gym's partial credit.
"""

from __future__ import annotations

import dataclasses
import json
import re
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jaxrl_llm.tasks import procedural
from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.images import NEEDS_IMAGE_SPLIT, _check_prior, _hinted, first_integer
from jaxrl_llm.tasks.task import Task

MIN_CELL = 2  # px per grid cell, each way: below this neighbouring cells blur into one patch pixel
MAZE_LEVELS = {"outside": 0.0, "wall": 0.25, "start": 0.5, "goal": 0.75, "passage": 1.0}
GEOMETRY_CORNER, GEOMETRY_EDGE = 1.0, 0.5
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _image(canvas: Image.Image) -> np.ndarray:
    return (np.asarray(canvas, np.float32) / 255.0)[..., None]  # [H, W, 1]


def _grey(level: float) -> int:
    return round(255 * level)


def render_maze(entry: dict[str, Any], image_size: int, cell: int) -> np.ndarray:
    """reasoning-gym maze ``entry`` drawn as ``[image_size, image_size, 1]`` float32: grid cell
    ``(r, c)`` fills pixels ``[cell r, cell (r + 1)) x [cell c, cell (c + 1))`` with its
    ``MAZE_LEVELS`` grey; pixels outside the grid are ``"outside"``."""
    meta = entry["metadata"]
    kinds = {meta["wall"]: "wall", meta["path"]: "passage", meta["start"]: "start", meta["goal"]: "goal"}
    canvas = Image.new("L", (image_size, image_size), _grey(MAZE_LEVELS["outside"]))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(meta["grid"]):
        for c, ch in enumerate(row):
            box = (cell * c, cell * r, cell * (c + 1) - 1, cell * (r + 1) - 1)
            draw.rectangle(box, fill=_grey(MAZE_LEVELS[kinds[ch]]))
    return _image(canvas)


def arc_rows(entry: dict[str, Any]) -> list[list[int]]:
    """The rows ``render_arc`` draws, top to bottom: each example's input and output, then the test input."""
    meta = entry["metadata"]
    rows = [row for ex in meta["train_examples"] for row in (ex["input"], ex["output"])]
    return [*rows, meta["test_example"]["input"]]


def render_arc(entry: dict[str, Any], image_size: int, cell: int) -> np.ndarray:
    """reasoning-gym ``arc_1d`` ``entry`` drawn as ``[image_size, image_size, 1]`` float32: row ``k``
    of ``arc_rows`` fills pixel rows ``[cell k, cell (k + 1))``, its colour ``v`` at column ``c``
    the square from ``cell c`` at grey ``(v + 1) / 10``; the rest of the canvas is 0."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(arc_rows(entry)):
        for c, v in enumerate(row):
            draw.rectangle((cell * c, cell * r, cell * (c + 1) - 1, cell * (r + 1) - 1), fill=_grey((v + 1) / 10))
    return _image(canvas)


def doubled_area(corners: np.ndarray) -> int:
    """Twice the area of the triangle with lattice ``corners`` ``[3, 2]`` (shoelace formula)."""
    (x1, y1), (x2, y2), (x3, y3) = corners.tolist()
    return abs(x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))


def render_triangle(corners: np.ndarray, image_size: int, cell: int) -> np.ndarray:
    """Lattice triangle ``corners`` ``[3, 2]`` (column, row) drawn as ``[image_size, image_size, 1]``
    float32: edges between cell centres at ``GEOMETRY_EDGE``, then each corner's cell filled at
    ``GEOMETRY_CORNER``, on 0."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    centres = [(cell * int(x) + cell // 2, cell * int(y) + cell // 2) for x, y in corners]
    draw.line([*centres, centres[0]], fill=_grey(GEOMETRY_EDGE), width=1)
    for x, y in corners.tolist():
        draw.rectangle((cell * x, cell * y, cell * (x + 1) - 1, cell * (y + 1) - 1), fill=_grey(GEOMETRY_CORNER))
    return _image(canvas)


def format_area(doubled: int) -> str:
    """``9 -> "4.5"``, ``8 -> "4"``: a lattice triangle's area from twice its area."""
    return str(doubled // 2) if doubled % 2 == 0 else f"{doubled // 2}.5"


def first_number(completion: str, example: Example | None = None) -> str | None:
    """The completion's first number (integer or decimal), or None."""
    m = _NUMBER.search(completion)
    return None if m is None else m.group(0)


def area_reward(completion: str, example: Example) -> float:
    """1.0 when the completion's first number equals the triangle's area exactly, else 0.0."""
    got = first_number(completion)
    return float(got is not None and Fraction(got) == Fraction(example.metadata["doubled_area"], 2))


def _rg_score(answer: str | None, example: Example) -> float:
    meta = example.metadata
    return float(procedural._dataset(meta["rg_dataset"], meta["rg_config"]).score_answer(answer, meta["entry"]))


def maze_reward(completion: str, example: Example) -> float:
    """reasoning-gym's maze ``score_answer`` on the completion's first integer."""
    return _rg_score(first_integer(completion), example)


def arc_answer(completion: str, example: Example | None = None) -> str | None:
    """The answer ``arc_reward`` scores: ``procedural.extract_for_scoring(completion, "auto")``."""
    return procedural.extract_for_scoring(completion, "auto")


def arc_reward(completion: str, example: Example) -> float:
    """reasoning-gym's ``arc_1d`` ``score_answer`` on ``arc_answer(completion)``."""
    return _rg_score(arc_answer(completion), example)


def maze_correct(completion: str, example: Example) -> bool:
    """Held-out correctness: ``maze_reward`` is exactly 1 (no partial credit)."""
    return maze_reward(completion, example) == 1.0


def arc_correct(completion: str, example: Example) -> bool:
    """Held-out correctness: ``arc_reward`` is exactly 1 (no partial credit)."""
    return arc_reward(completion, example) == 1.0


def geometry_correct(completion: str, example: Example) -> bool:
    """Held-out correctness: ``area_reward`` is 1."""
    return area_reward(completion, example) == 1.0


def _example(kind: str, split: int, index: int, image, answer: str, question: str, hint: bool, **meta) -> Example:
    if hint:
        question = f"{question} Hint: the answer is {answer}."
    name = "train" if split == 0 else "eval"
    meta = {"image": image, "question": question, "needs_image": not hint, "kind": kind, **meta}
    return Example(prompt=question, answer=answer, metadata=meta, id=f"{kind}/{name}/{index}")


@dataclasses.dataclass(frozen=True)
class _RGPuzzle:
    """Picklable index -> ``Example`` over one reasoning-gym dataset (``offset`` + index), drawn by ``kind``."""

    kind: str  # "maze" | "arc"
    rg_name: str
    image_size: int
    cell: int  # px per grid cell
    text_prior: float
    seed: int
    config_json: str = ""  # the reasoning-gym config (set by ``_rg_task``)
    offset: int = 0  # the split's first reasoning-gym index
    split: int = 0  # 0 = train, 1 = eval

    def __call__(self, i: int) -> Example:
        idx = self.offset + int(i)
        entry = procedural._dataset(self.rg_name, self.config_json)[idx]
        render = render_maze if self.kind == "maze" else render_arc
        image = render(entry, self.image_size, self.cell)
        hint = _hinted(self.seed, self.split, int(i), self.text_prior)
        question = QUESTIONS[self.kind]
        rg = {"rg_dataset": self.rg_name, "rg_config": self.config_json, "entry": entry}
        return _example(self.kind, self.split, idx, image, str(entry["answer"]), question, hint, **rg)


@dataclasses.dataclass(frozen=True)
class _Triangle:
    """Picklable index -> lattice-triangle ``Example`` (split 0 = train, 1 = eval)."""

    split: int
    image_size: int
    grid_size: int
    text_prior: float
    seed: int

    def __call__(self, i: int) -> Example:
        rng = np.random.default_rng((self.seed, self.split, int(i)))
        n = self.grid_size
        while True:  # rejection: a collinear triple has no area (at most a few draws on a >= 3 grid)
            cells = rng.choice(n * n, size=3, replace=False)
            corners = np.stack([cells % n, cells // n], axis=1)  # [3, 2] (column x, row y)
            doubled = doubled_area(corners)
            if doubled > 0:
                break
        image = render_triangle(corners, self.image_size, self.image_size // n)
        hint = _hinted(self.seed, self.split, int(i), self.text_prior)
        meta = {"corners": corners.tolist(), "doubled_area": doubled}
        return _example(
            "geometry", self.split, int(i), image, format_area(doubled), QUESTIONS["geometry"], hint, **meta
        )


QUESTIONS = {
    "maze": "How many steps from start to goal?",
    "arc": "Output row for the last input?",
    "geometry": "Area of the triangle in cells?",
}


def _check_counts(name: str, size: int, num_eval: int) -> None:
    if size < 1 or num_eval < 0:
        raise TaskDataError(f"{name}: need size >= 1 and num_eval >= 0, got size={size}, num_eval={num_eval}")


def _check_cell(name: str, image_size: int, cells: int, what: str) -> int:
    cell = image_size // cells
    if cell < MIN_CELL:
        raise TaskDataError(
            f"{name}: image_size={image_size} is too small for {what}: a cell needs >= {MIN_CELL} px, "
            f"so image_size >= {MIN_CELL * cells}"
        )
    return cell


def _rg_task(name: str, puzzle: _RGPuzzle, config: dict, size: int, num_eval: int, reward, answer_fn, correct) -> Task:
    """A ``Task`` over reasoning-gym dataset ``puzzle.rg_name`` built with ``config``: eval indices
    ``[0, num_eval)``, train ``[num_eval, num_eval + size)``."""
    cfg = {**config, "seed": puzzle.seed, "size": num_eval + size}
    config_json = json.dumps(cfg, sort_keys=True)
    try:
        procedural._dataset(puzzle.rg_name, config_json)[0]  # validates the config, and draws one puzzle
    except (AssertionError, ValueError, TypeError, RuntimeError) as e:
        raise TaskDataError(f"{name}: reasoning-gym {puzzle.rg_name!r} cannot build with {cfg}: {e}") from e
    puzzle = dataclasses.replace(puzzle, config_json=config_json)
    return Task(
        name=name,
        num_train=size,
        train_example=dataclasses.replace(puzzle, offset=num_eval, split=0),
        num_eval=num_eval,
        eval_example=dataclasses.replace(puzzle, offset=0, split=1),
        reward_fns=((reward, 1.0),),
        answer_fn=answer_fn,
        correct_fn=correct,
        eval_splits=(NEEDS_IMAGE_SPLIT,),
    )


def maze_task(
    image_size: int = 16,
    min_grid_size: int = 6,
    max_grid_size: int = 8,
    min_dist: int = 1,
    max_dist: int = 8,
    text_prior: float = 0.0,
    size: int = 10_000,
    num_eval: int = 200,
    seed: int = 0,
) -> Task:
    """``images:maze`` (module docstring): reasoning-gym mazes ``min_grid_size``..``max_grid_size``
    cells a side whose shortest path takes ``min_dist``..``max_dist`` steps, drawn on ``image_size``
    px (the defaults: answers 1..8, the most common one, 2, on about 22% of puzzles)."""
    name = "images:maze"
    _check_prior(text_prior)
    _check_counts(name, size, num_eval)
    if min_grid_size < 6:
        raise TaskDataError(
            f"{name}: min_grid_size={min_grid_size} must be >= 6 (reasoning-gym's maze generator can fail "
            "on a 5x5 grid: its 3x3 interior may hold a single passage)"
        )
    cell = _check_cell(name, image_size, max_grid_size, f"max_grid_size={max_grid_size}")
    config = {
        "min_grid_size": min_grid_size,
        "max_grid_size": max_grid_size,
        "min_dist": min_dist,
        "max_dist": max_dist,
    }
    puzzle = _RGPuzzle("maze", "maze", image_size, cell, text_prior, seed)
    return _rg_task(name, puzzle, config, size, num_eval, maze_reward, first_integer, maze_correct)


def arc_task(
    image_size: int = 16,
    min_size: int = 8,
    max_size: int = 8,
    num_train: int = 3,
    text_prior: float = 0.0,
    size: int = 10_000,
    num_eval: int = 200,
    seed: int = 0,
) -> Task:
    """``images:arc`` (module docstring): reasoning-gym ``arc_1d`` puzzles (70 rules) with rows of
    ``min_size``..``max_size`` cells and ``num_train`` worked examples, drawn on ``image_size`` px
    (the default 16 px holds 8-cell rows, the shortest reasoning-gym makes, and 3 examples)."""
    name = "images:arc"
    _check_prior(text_prior)
    _check_counts(name, size, num_eval)
    if num_train < 1:
        raise TaskDataError(f"{name}: num_train={num_train} must be >= 1")
    extent = max(max_size, 2 * num_train + 1)
    cell = _check_cell(name, image_size, extent, f"{2 * num_train + 1} rows of up to max_size={max_size} cells")
    config = {"min_size": min_size, "max_size": max_size, "num_train": num_train}
    puzzle = _RGPuzzle("arc", "arc_1d", image_size, cell, text_prior, seed)
    return _rg_task(name, puzzle, config, size, num_eval, arc_reward, arc_answer, arc_correct)


def geometry_task(
    image_size: int = 16,
    grid_size: int = 8,
    text_prior: float = 0.0,
    size: int = 10_000,
    num_eval: int = 200,
    seed: int = 0,
) -> Task:
    """``images:geometry`` (module docstring): triangles on a ``grid_size`` x ``grid_size`` lattice
    (areas 0.5 .. (grid_size - 1)^2 / 2), drawn on ``image_size`` px."""
    name = "images:geometry"
    _check_prior(text_prior)
    _check_counts(name, size, num_eval)
    if grid_size < 2:
        raise TaskDataError(f"{name}: grid_size={grid_size} must be >= 2 (a triangle needs 3 non-collinear cells)")
    _check_cell(name, image_size, grid_size, f"grid_size={grid_size}")
    return Task(
        name=name,
        num_train=size,
        train_example=_Triangle(0, image_size, grid_size, text_prior, seed),
        num_eval=num_eval,
        eval_example=_Triangle(1, image_size, grid_size, text_prior, seed),
        reward_fns=((area_reward, 1.0),),
        answer_fn=first_number,
        correct_fn=geometry_correct,
        eval_splits=(NEEDS_IMAGE_SPLIT,),
    )


BUILDERS = {"images:maze": maze_task, "images:arc": arc_task, "images:geometry": geometry_task}
