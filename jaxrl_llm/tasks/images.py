"""Image tasks with verifiable answers, and a text-prior knob for measuring perception.

Two sources, each an ordinary ``Task`` whose ``Example.metadata`` carries the picture:

* ``images:digits``: scikit-learn's ``load_digits`` (1797 handwritten digits, 8x8 grey, values
  0..16; Alpaydin & Kaynak, UCI "Optical Recognition of Handwritten Digits"), "Which digit is
  shown?". Held out: ``num_eval`` digits chosen by a permutation seeded with ``split_seed``; the
  rest train (disjoint by construction).
* ``images:count``: PIL-rendered canvases with ``N`` in ``[1, max_count]`` filled shapes (squares
  and discs, one per cell of a grid, so none overlap), "How many shapes?". Example ``i`` is drawn
  from ``default_rng((seed, split, i))``; train and eval are different ``split`` streams.
  With ``worked=True`` the answer counts out loud ("1 2 3 so 3") and the reward reads the last
  integer, so completion length grows with the count (APO's length term has room to act).

The text-prior knob. With probability ``text_prior`` (decided per example, deterministically), the
question also states the answer in words ("Hint: the answer is 7."): that question is answerable
from the text alone (``metadata["needs_image"] = False``); the others need the picture. A method
that only learns the text prior scores on the hinted share and at chance on the rest, so accuracy
split by ``needs_image`` measures perception (the PAPO claim: Wang et al., "Perception-Aware
Policy Optimization for Multimodal Reasoning", https://arxiv.org/abs/2507.06448, code
https://github.com/MikeWangWZHL/PAPO).

``metadata["image"]`` is ``[H, W, 1]`` float32 in [0, 1] (``models.vision.normalize`` maps it to
the encoder's range); ``metadata["question"]`` is the question without any image placeholder: the
caller lays out ``[placeholders x n_patches] + question`` for its vision model. The reward is
exact match of the first integer of the completion with the answer (``answer_reward``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jaxrl_llm.tasks.example import Example, TaskDataError
from jaxrl_llm.tasks.task import Task

try:  # the optional "vision" extra; only images:digits needs it
    from sklearn.datasets import load_digits
except ImportError:
    load_digits = None

_INT = re.compile(r"-?\d+")
# evaluation splits greedy accuracy by whether the question needs the picture (``Task.eval_splits``)
NEEDS_IMAGE_SPLIT = ("needs_image", "needs_image", "text_answerable")


def first_integer(completion: str, example: Example | None = None) -> str | None:
    """The completion's first integer (the answer the reward reads), or None."""
    m = _INT.search(completion)
    return None if m is None else m.group(0)


def answer_reward(completion: str, example: Example) -> float:
    """1.0 when the completion's first integer equals the reference answer, else 0.0."""
    got = first_integer(completion)
    return float(got is not None and example.answer is not None and got == example.answer.strip())


def last_integer(completion: str, example: Example | None = None) -> str | None:
    """The completion's last integer (the answer a worked count ends on), or None."""
    found = _INT.findall(completion)
    return found[-1] if found else None


def final_count_reward(completion: str, example: Example) -> float:
    """1.0 when the completion's last integer equals ``metadata["count"]``, else 0.0 (worked counts)."""
    got = last_integer(completion)
    return float(got is not None and got == str(example.metadata["count"]))


def count_aloud(count: int) -> str:
    """The worked count of ``count`` shapes: ``3`` -> ``"1 2 3 so 3"`` (its length grows with the count)."""
    return " ".join(str(k) for k in range(1, count + 1)) + f" so {count}"


def _hinted(seed: int, split: int, index: int, text_prior: float) -> bool:
    return bool(np.random.default_rng((seed, split, index, 7)).random() < text_prior)


def _example(kind: str, split: str, index: int, image: np.ndarray, answer: int, question: str, hint: bool) -> Example:
    if hint:
        question = f"{question} Hint: the answer is {answer}."
    meta = {"image": image, "question": question, "needs_image": not hint, "kind": kind}
    return Example(prompt=question, answer=str(answer), metadata=meta, id=f"{kind}/{split}/{index}")


@dataclasses.dataclass(frozen=True)
class _Digits:
    """Picklable index -> digit ``Example`` over a fixed index array."""

    indices: np.ndarray
    split: str
    text_prior: float
    seed: int

    def __call__(self, i: int) -> Example:
        data = _digits()
        j = int(self.indices[int(i)])
        image = (data.images[j] / 16.0).astype(np.float32)[..., None]  # [8, 8, 1]
        hint = _hinted(self.seed, 0 if self.split == "train" else 1, j, self.text_prior)
        return _example("digits", self.split, j, image, int(data.target[j]), "Which digit is shown?", hint)


_DIGITS: dict[str, Any] = {}


def _digits():
    if load_digits is None:
        raise TaskDataError('images:digits needs scikit-learn: pip install -e ".[vision]"')
    if "data" not in _DIGITS:
        _DIGITS["data"] = load_digits()
    return _DIGITS["data"]


def render_count(count: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[image_size, image_size, 1]`` float32 canvas with ``count`` white shapes on black, one per
    grid cell (cells of 4 px), at random cells; squares or discs."""
    cells = image_size // 4
    if count > cells * cells:
        raise TaskDataError(f"count task: {count} shapes do not fit a {image_size}px canvas ({cells * cells} cells)")
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    for c in rng.choice(cells * cells, size=count, replace=False):
        y, x = divmod(int(c), cells)
        box = (4 * x, 4 * y, 4 * x + 2, 4 * y + 2)
        if rng.random() < 0.5:
            draw.rectangle(box, fill=255)
        else:
            draw.ellipse((4 * x, 4 * y, 4 * x + 3, 4 * y + 3), fill=255)
    return (np.asarray(canvas, np.float32) / 255.0)[..., None]


@dataclasses.dataclass(frozen=True)
class _Count:
    """Picklable index -> counting ``Example`` (split 0 = train, 1 = eval)."""

    split: int
    image_size: int
    max_count: int
    text_prior: float
    seed: int
    worked: bool = False

    def __call__(self, i: int) -> Example:
        rng = np.random.default_rng((self.seed, self.split, int(i)))
        count = int(rng.integers(1, self.max_count + 1))
        image = render_count(count, self.image_size, rng)
        hint = _hinted(self.seed, self.split, int(i), self.text_prior)
        name = "train" if self.split == 0 else "eval"
        ex = _example("count", name, int(i), image, count, "How many shapes?", hint)
        meta = {**ex.metadata, "count": count}
        if self.worked:  # the answer (the SFT demonstration) counts out loud, then states the total
            return dataclasses.replace(ex, answer=count_aloud(count), metadata=meta)
        return dataclasses.replace(ex, metadata=meta)


def _check_prior(text_prior: float) -> None:
    if not 0.0 <= text_prior <= 1.0:
        raise TaskDataError(f"image task: text_prior={text_prior} must lie in [0, 1]")


def digits_task(text_prior: float = 0.0, num_eval: int = 200, split_seed: int = 0) -> Task:
    """``images:digits`` (module docstring)."""
    _check_prior(text_prior)
    n = len(_digits().target)
    if not 0 <= num_eval < n:
        raise TaskDataError(f"images:digits: num_eval={num_eval} must be in [0, {n})")
    perm = np.random.default_rng(split_seed).permutation(n)
    eval_idx, train_idx = np.sort(perm[:num_eval]), np.sort(perm[num_eval:])
    return Task(
        name="images:digits",
        num_train=len(train_idx),
        train_example=_Digits(train_idx, "train", text_prior, split_seed),
        num_eval=len(eval_idx),
        eval_example=_Digits(eval_idx, "eval", text_prior, split_seed),
        reward_fns=((answer_reward, 1.0),),
        answer_fn=first_integer,
        eval_splits=(NEEDS_IMAGE_SPLIT,),
    )


def count_task(
    image_size: int = 16,
    max_count: int = 5,
    text_prior: float = 0.0,
    size: int = 10_000,
    num_eval: int = 200,
    seed: int = 0,
    worked: bool = False,
) -> Task:
    """``images:count`` (module docstring): ``size`` training canvases, ``num_eval`` held out.

    ``worked=True``: the reference answer counts out loud (``count_aloud``: ``"1 2 3 so 3"``), so
    the SFT demonstrations and the completions grow with the count, and the reward reads the
    completion's LAST integer (``final_count_reward``); ``metadata["count"]`` is the count."""
    _check_prior(text_prior)
    if image_size < 4 or image_size % 4:
        raise TaskDataError(f"images:count: image_size={image_size} must be a positive multiple of 4")
    if not 1 <= max_count <= (image_size // 4) ** 2:
        raise TaskDataError(f"images:count: max_count={max_count} must be in [1, {(image_size // 4) ** 2}]")
    return Task(
        name="images:count",
        num_train=size,
        train_example=_Count(0, image_size, max_count, text_prior, seed, worked),
        num_eval=num_eval,
        eval_example=_Count(1, image_size, max_count, text_prior, seed, worked),
        reward_fns=((final_count_reward, 1.0),) if worked else ((answer_reward, 1.0),),
        answer_fn=last_integer if worked else first_integer,
        eval_splits=(NEEDS_IMAGE_SPLIT,),
    )


BUILDERS = {"images:digits": digits_task, "images:count": count_task}
