"""``images:gui`` (tasks/gui.py): deterministic screens, disjoint splits, boxes that match the drawn
pixels, hard items with their look-alike on screen, demonstrations the reward accepts, named errors."""

import numpy as np
import pytest

from jaxrl_llm import tasks
from jaxrl_llm.rewards import gui_grounding as gg
from jaxrl_llm.tasks import gui


def test_examples_are_deterministic_per_seed_split_and_index():
    a, b = tasks.make_task("images:gui"), tasks.make_task("images:gui")
    for i in (0, 7, 123):
        x, y = a.train_example(i), b.train_example(i)
        np.testing.assert_array_equal(x.metadata["image"], y.metadata["image"])
        assert (x.prompt, x.answer, x.metadata["bbox"], x.metadata["hard"]) == (
            y.prompt,
            y.answer,
            y.metadata["bbox"],
            y.metadata["hard"],
        )
    other = tasks.make_task("images:gui", seed=1)
    assert any(
        not np.array_equal(a.train_example(i).metadata["image"], other.train_example(i).metadata["image"])
        for i in range(5)
    )
    it1, it2 = a.train_iter(3), a.train_iter(3)
    assert [next(it1).id for _ in range(5)] == [next(it2).id for _ in range(5)]


def test_train_and_eval_are_disjoint_streams():
    t = tasks.make_task("images:gui", size=400, num_eval=100)
    train = {t.train_example(i).metadata["image"].tobytes() + t.train_example(i).prompt.encode() for i in range(400)}
    held = [e.metadata["image"].tobytes() + e.prompt.encode() for e in t.eval_examples()]
    assert len(set(held)) == 100
    assert not set(held) & train
    assert {e.id.split("/")[1] for e in t.eval_examples(3)} == {"eval"}


def test_bbox_matches_the_drawn_pixels_of_the_target():
    t = tasks.make_task("images:gui", num_elements=5)
    for i in range(50):
        e = t.train_example(i)
        img = e.metadata["image"]
        assert img.shape == (16, 16, 1) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
        x1, y1, x2, y2 = e.metadata["bbox"]
        assert 0 <= x1 <= x2 <= 15 and 0 <= y1 <= y2 <= 15
        # the target's 4 px cell holds exactly the target's shape, tight in its box
        cx, cy = x1 // 4 * 4, y1 // 4 * 4
        cell = img[cy : cy + 4, cx : cx + 4, 0] > 0
        np.testing.assert_array_equal(cell, gui.SHAPES[e.metadata["target"]])
        ys, xs = np.nonzero(img[..., 0] > 0)
        inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
        assert inside.sum() == gui.SHAPES[e.metadata["target"]].sum()  # no other element's pixel in the box
        assert e.prompt == f"Click the {e.metadata['target']}."
        assert len(e.metadata["elements"]) == 5
        assert len({k for k, _ in e.metadata["elements"]}) == 5  # distinct kinds


def test_hard_items_hold_the_lookalike_and_easy_ones_do_not():
    t = tasks.make_task("images:gui", hard_fraction=0.5)
    examples = [t.train_example(i) for i in range(200)]
    hard = [e.metadata["hard"] for e in examples]
    assert 0.35 < np.mean(hard) < 0.65
    for e in examples:
        kinds = {k for k, _ in e.metadata["elements"]}
        assert (gui.LOOKALIKE[e.metadata["target"]] in kinds) == e.metadata["hard"]
    assert not any(e.metadata["hard"] for e in tasks.make_task("images:gui", hard_fraction=0.0).eval_examples(50))
    assert all(e.metadata["hard"] for e in tasks.make_task("images:gui", hard_fraction=1.0).eval_examples(50))


@pytest.mark.parametrize("think, fmt", [(True, "point_2d"), (False, "pair")])
def test_demonstrations_are_one_centre_point_the_reward_accepts(think, fmt):
    for reward in ("aer", "single"):
        t = tasks.make_task("images:gui", reward=reward, think=think, point_format=fmt)
        ((fn, weight),) = t.reward_fns
        assert weight == 1.0
        for e in t.eval_examples(20):
            points = gg.parse_points(e.answer, think, fmt).points
            assert points == (gui.centre(e.metadata["bbox"]),)
            assert fn(e.answer, e) == (2.0 if reward == "aer" else 1.0)
            assert t.answer_fn(e.answer, e) == "{},{}".format(*points[0])
    assert tasks.make_task("images:gui").reward_fns[0][0].name == "aer"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_elements": 1}, r"num_elements=1 must be in \[2, 5\]"),
        ({"num_elements": 6}, r"num_elements=6"),
        ({"hard_fraction": 1.5}, r"hard_fraction=1.5 must lie in \[0, 1\]"),
        ({"reward": "iou"}, r"reward='iou' must be one of \('aer', 'single'\)"),
        ({"point_format": "xy"}, r"point_format='xy'"),
        ({"size": 0}, r"size=0 must be >= 1"),
        ({"colour": 1}, r"takes no argument\(s\) \['colour'\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(tasks.TaskDataError, match=match):
        tasks.make_task("images:gui", **kwargs)


def test_explore_demos_propose_target_and_lookalike_on_hard_items_only():
    t = tasks.make_task("images:gui", think=False, point_format="pair", explore_demos=1.0)
    plain = tasks.make_task("images:gui", think=False, point_format="pair")
    firsts = []
    for i in range(60):
        e, p = t.train_example(i), plain.train_example(i)
        np.testing.assert_array_equal(e.metadata["image"], p.metadata["image"])  # same screens
        points = gg.parse_points(e.answer, False, "pair").points
        if not e.metadata["hard"]:
            assert e.answer == p.answer
            continue
        look = dict(e.metadata["elements"])[gui.LOOKALIKE[e.metadata["target"]]]
        assert set(points) == {gui.centre(e.metadata["bbox"]), gui.centre(look)}
        firsts.append(points[0] == gui.centre(e.metadata["bbox"]))
    assert 0 < np.mean(firsts) < 1  # both orders occur
    with pytest.raises(tasks.TaskDataError, match=r"explore_demos=2 must lie in \[0, 1\]"):
        tasks.make_task("images:gui", explore_demos=2)


def test_evaluation_counts_the_first_point_and_splits_hard_from_easy():
    t = tasks.make_task("images:gui", think=False, point_format="pair")
    assert t.eval_splits == (("hard", "hard", "easy"),)
    e = next(x for x in t.eval_examples(50) if x.metadata["hard"])
    hit = gui.centre(e.metadata["bbox"])
    x1, y1, x2, y2 = e.metadata["bbox"]
    miss = (0, 0) if not (x1 <= 0 <= x2 and y1 <= 0 <= y2) else (15, 15)
    first_right = gg.format_points([hit, miss], False, "pair")
    second_right = gg.format_points([miss, hit], False, "pair")
    ((aer, _),) = t.reward_fns
    assert aer(second_right, e) > 0  # AER pays for a hit at rank 2 ...
    assert t.correct_fn(first_right, e) and not t.correct_fn(second_right, e)  # ... evaluation does not
