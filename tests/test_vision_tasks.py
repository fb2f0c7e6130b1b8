"""Image tasks (tasks/images.py): deterministic, disjoint splits, the text-prior knob, rewards."""

import numpy as np
import pytest

from jaxrl_llm import tasks
from jaxrl_llm.tasks import images
from jaxrl_llm.tasks.example import TaskDataError


def test_count_task_renders_the_stated_number_of_shapes():
    task = tasks.make_task("images:count", image_size=16, max_count=5, size=50, num_eval=10)
    for i in range(20):
        ex = task.train_example(i)
        img = ex.metadata["image"]
        assert img.shape == (16, 16, 1) and img.dtype == np.float32
        # one shape per 4x4 cell: count the lit cells
        lit = (img[..., 0].reshape(4, 4, 4, 4).max(axis=(1, 3)) > 0).sum()
        assert str(lit) == ex.answer, ex.id
        again = task.train_example(i)  # a pure function of the index
        assert again.answer == ex.answer and np.array_equal(again.metadata["image"], img)
    # eval is another random stream, not a copy of the training one (few-shape canvases may repeat)
    same = [
        np.array_equal(task.eval_example(j).metadata["image"], task.train_example(j).metadata["image"])
        for j in range(10)
    ]
    assert not all(same)


def test_digits_task_splits_and_answers():
    pytest.importorskip("sklearn")
    task = tasks.make_task("images:digits", num_eval=100)
    assert task.num_train + task.num_eval == 1797
    ex = task.eval_example(0)
    assert ex.metadata["image"].shape == (8, 8, 1) and 0.0 <= ex.metadata["image"].max() <= 1.0
    assert ex.answer in [str(d) for d in range(10)]
    train_ids = {task.train_example(i).id.split("/")[-1] for i in range(task.num_train)}
    assert not train_ids & {task.eval_example(j).id.split("/")[-1] for j in range(100)}


def test_text_prior_knob_sets_the_hinted_share():
    task = tasks.make_task("images:count", text_prior=0.3, size=400, num_eval=0)
    exs = [task.train_example(i) for i in range(400)]
    hinted = [e for e in exs if not e.metadata["needs_image"]]
    assert 0.22 < len(hinted) / 400 < 0.38
    for e in hinted:  # the hint really gives the answer away; unhinted questions do not
        assert images.answer_reward(e.metadata["question"].split("Hint:")[1], e) == 1.0
    assert all("Hint" not in e.metadata["question"] for e in exs if e.metadata["needs_image"])
    none = tasks.make_task("images:count", text_prior=0.0, size=50, num_eval=0)
    assert all(none.train_example(i).metadata["needs_image"] for i in range(50))


def test_reward_and_bad_arguments():
    ex = tasks.make_task("images:count", size=5, num_eval=0).train_example(0)
    assert images.answer_reward(f" {ex.answer} shapes", ex) == 1.0
    assert images.answer_reward("none", ex) == 0.0
    with pytest.raises(TaskDataError, match="text_prior=1.5 must lie in"):
        tasks.make_task("images:count", text_prior=1.5)
    with pytest.raises(TaskDataError, match="max_count=17 must be in"):
        tasks.make_task("images:count", image_size=16, max_count=17)


def test_worked_count_answers_out_loud_and_rewards_the_last_integer():
    plain = tasks.make_task("images:count", max_count=12, size=30, num_eval=0)
    worked = tasks.make_task("images:count", max_count=12, size=30, num_eval=0, worked=True)
    for i in range(30):
        p, w = plain.train_example(i), worked.train_example(i)
        n = int(p.answer)
        assert np.array_equal(p.metadata["image"], w.metadata["image"]) and w.metadata["count"] == n
        assert w.answer == " ".join(str(k) for k in range(1, n + 1)) + f" so {n}"
        assert images.final_count_reward(w.answer, w) == 1.0  # the demonstration earns the reward
        assert worked.answer_fn(w.answer, w) == str(n)
    ex = worked.train_example(0)
    n = ex.metadata["count"]
    assert images.final_count_reward(f"1 2 so {n + 1}", ex) == 0.0  # a wrong total
    assert images.final_count_reward(f"{n} 1 2 so {n}", ex) == 1.0  # the last integer counts
    assert images.final_count_reward("many", ex) == 0.0
    assert [len(images.count_aloud(k)) for k in (1, 2, 9, 10)] == [6, 8, 22, 26]  # longer with the count
