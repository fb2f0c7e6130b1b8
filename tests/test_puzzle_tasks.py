"""Puzzle image tasks (tasks/puzzles.py): the picture encodes the answer (recovered from pixels),
deterministic and disjoint splits, rewards, the text-prior knob, named errors, and a trainer run."""

import collections
import pickle

import numpy as np
import pytest

from jaxrl_llm import config as C
from jaxrl_llm import tasks, train
from jaxrl_llm.tasks import puzzles
from jaxrl_llm.tasks.example import TaskDataError

NAMES = ("images:maze", "images:arc", "images:geometry")
_STEPS = ((-1, 0), (0, 1), (1, 0), (0, -1))


def small(name, **kwargs):
    return tasks.make_task(name, **{"size": 60, "num_eval": 20, **kwargs})


def cells(image, cell):
    """The grey level of each ``cell`` x ``cell`` block, checked uniform: [H / cell, W / cell]."""
    h, w = image.shape[0] // cell, image.shape[1] // cell
    blocks = image[: h * cell, : w * cell, 0].reshape(h, cell, w, cell)
    assert np.all(blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3))), "a cell is not one grey level"
    return blocks[:, 0, :, 0]


def bfs(kinds, start, goal):
    """Shortest 4-neighbour path length through the cells that are not walls or outside."""
    dist = {start: 0}
    queue = collections.deque([start])
    while queue:
        r, c = queue.popleft()
        if (r, c) == goal:
            return dist[(r, c)]
        for dr, dc in _STEPS:
            n = (r + dr, c + dc)
            inside = 0 <= n[0] < kinds.shape[0] and 0 <= n[1] < kinds.shape[1]
            if inside and n not in dist and kinds[n] not in ("wall", "outside"):
                dist[n] = dist[(r, c)] + 1
                queue.append(n)
    return None


@pytest.mark.parametrize("image_size", [16, 32])
def test_maze_picture_recomputes_the_answer_by_bfs(image_size):
    task = small("images:maze", image_size=image_size)
    names, levels = zip(*puzzles.MAZE_LEVELS.items())
    for ex in [task.train_example(i) for i in range(30)] + task.eval_examples(10):
        img = ex.metadata["image"]
        assert img.shape == (image_size, image_size, 1) and img.dtype == np.float32
        grey = cells(img, image_size // 8)  # max_grid_size=8
        kinds = np.array(names)[np.abs(grey[..., None] - np.array(levels)).argmin(-1)]
        assert np.abs(grey - np.array(levels)[np.abs(grey[..., None] - np.array(levels)).argmin(-1)]).max() < 1e-2
        (start,), (goal,) = map(tuple, np.argwhere(kinds == "start")), map(tuple, np.argwhere(kinds == "goal"))
        assert str(bfs(kinds, tuple(start), tuple(goal))) == ex.answer, ex.id
        meta = ex.metadata["entry"]["metadata"]  # and the picture is reasoning-gym's grid
        n = meta["grid_size"]
        want = {meta["wall"]: "wall", meta["path"]: "passage", meta["start"]: "start", meta["goal"]: "goal"}
        assert kinds[:n, :n].tolist() == [[want[ch] for ch in row] for row in meta["grid"]]
        assert (kinds[n:] == "outside").all() and (kinds[:, n:] == "outside").all()
        assert ex.prompt == puzzles.QUESTIONS["maze"]  # the grid is not in the text
        assert meta["grid"][1] not in ex.prompt


def test_arc_picture_holds_reasoning_gyms_rows_and_the_answer_is_its_test_output():
    task = small("images:arc")
    for ex in [task.train_example(i) for i in range(30)] + task.eval_examples(10):
        img = ex.metadata["image"]
        assert img.shape == (16, 16, 1) and img.dtype == np.float32
        grey = cells(img, 2)
        colours = np.rint(grey * 10).astype(int) - 1  # grey (c + 1) / 10; -1 is the empty canvas
        assert np.allclose(grey, (colours + 1) / 10, atol=1e-2)
        entry = ex.metadata["entry"]
        rows = puzzles.arc_rows(entry)
        assert len(rows) == 7 and colours[:7].tolist() == rows
        assert (colours[7:] == -1).all()
        assert ex.answer == " ".join(map(str, entry["metadata"]["test_example"]["output"]))
        assert ex.prompt == puzzles.QUESTIONS["arc"]
        assert " ".join(map(str, rows[-1])) not in ex.prompt


def test_geometry_picture_gives_the_area_by_the_shoelace_formula():
    task = small("images:geometry")
    areas, with_edges = set(), 0
    for ex in [task.train_example(i) for i in range(40)] + task.eval_examples(10):
        img = ex.metadata["image"]
        assert img.shape == (16, 16, 1) and img.dtype == np.float32
        blocks = img[..., 0].reshape(8, 2, 8, 2)
        corners = np.argwhere((blocks == puzzles.GEOMETRY_CORNER).all(axis=(1, 3)))[:, ::-1]  # (x, y)
        assert len(corners) == 3, ex.id
        assert sorted(map(tuple, corners.tolist())) == sorted(map(tuple, ex.metadata["corners"]))
        with_edges += bool((np.abs(img - puzzles.GEOMETRY_EDGE) < 1e-2).any())  # hidden when corners touch
        (x1, y1), (x2, y2), (x3, y3) = corners.tolist()
        doubled = abs((x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1))  # cross product, not the module's code
        assert float(ex.answer) == doubled / 2 and doubled > 0, ex.id
        areas.add(ex.answer)
    assert with_edges >= 40 and any("." in a for a in areas) and any("." not in a for a in areas)
    assert puzzles.format_area(9) == "4.5" and puzzles.format_area(8) == "4"


@pytest.mark.parametrize("name", NAMES)
def test_examples_are_deterministic_and_the_splits_disjoint(name):
    a, b = small(name), small(name)
    for i in range(10):
        x, y = a.train_example(i), b.train_example(i)
        assert x.metadata["image"].tobytes() == y.metadata["image"].tobytes() and x.answer == y.answer
        assert x.id == y.id and x.prompt == y.prompt
    pickle.loads(pickle.dumps(a))  # picklable for grain and reward workers
    train_ids = {a.train_example(i).id.split("/")[-1] for i in range(a.num_train)}
    eval_ids = {a.eval_example(j).id.split("/")[-1] for j in range(a.num_eval)}
    if name != "images:geometry":  # reasoning-gym: disjoint generator indices
        assert not train_ids & eval_ids and len(train_ids) == a.num_train
    train_images = {a.train_example(i).metadata["image"].tobytes() for i in range(a.num_train)}
    eval_images = [a.eval_example(j).metadata["image"].tobytes() for j in range(a.num_eval)]
    assert sum(e in train_images for e in eval_images) <= 1  # different puzzles, up to a rare repeat
    other = small(name, seed=1)
    assert any(other.train_example(i).answer != a.train_example(i).answer for i in range(10))


def test_rewards_pay_the_reference_and_not_a_wrong_answer():
    maze, arc, geo = (small(n).train_example(0) for n in NAMES)
    for task_name, ex in zip(NAMES, (maze, arc, geo)):
        task = small(task_name)
        ((reward, _),) = task.reward_fns
        assert reward(ex.answer, ex) == 1.0 and task.correct_fn(ex.answer, ex)
        assert task.answer_fn(ex.answer, ex) == ex.answer
        assert reward("", ex) == 0.0 and reward("nothing", ex) == 0.0
    assert puzzles.maze_reward(f"{maze.answer} steps", maze) == 1.0
    wrong = "9" if maze.answer != "9" else "7"
    assert puzzles.maze_reward(wrong, maze) == 0.0 and not puzzles.maze_correct(wrong, maze)
    # reasoning-gym's partial credit when the reference is inside a longer answer; not "correct"
    assert puzzles.maze_reward(f"1{maze.answer}", maze) == 0.5 and not puzzles.maze_correct(f"1{maze.answer}", maze)
    flipped = " ".join(str((int(v) + 1) % 10) for v in arc.answer.split())
    assert puzzles.arc_reward(flipped, arc) == 0.0 and puzzles.arc_reward(f"<answer>{arc.answer}</answer>", arc) == 1.0
    half = f"{geo.answer}.5" if "." not in geo.answer else geo.answer.split(".")[0]
    assert puzzles.area_reward(half, geo) == 0.0 and puzzles.area_reward(f"{float(geo.answer):.2f}", geo) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_text_prior_states_the_answer_on_its_share(name):
    task = tasks.make_task(name, text_prior=0.3, size=200, num_eval=0)
    exs = [task.train_example(i) for i in range(200)]
    hinted = [e for e in exs if not e.metadata["needs_image"]]
    assert 0.2 < len(hinted) / 200 < 0.4
    ((reward, _),) = task.reward_fns
    for e in hinted:
        assert e.prompt.endswith(f" Hint: the answer is {e.answer}.")
        assert reward(e.prompt.split("Hint: the answer is ")[1][:-1], e) == 1.0
    assert all(e.prompt == puzzles.QUESTIONS[e.metadata["kind"]] for e in exs if e.metadata["needs_image"])
    assert task.eval_splits == (("needs_image", "needs_image", "text_answerable"),)
    assert all(tasks.make_task(name, size=30, num_eval=0).train_example(i).metadata["needs_image"] for i in range(30))


def test_bad_parameters_are_named():
    with pytest.raises(TaskDataError, match=r"images:maze: image_size=12 is too small.*image_size >= 16"):
        tasks.make_task("images:maze", image_size=12)
    with pytest.raises(TaskDataError, match=r"images:maze: min_grid_size=5 must be >= 6"):
        tasks.make_task("images:maze", min_grid_size=5)
    with pytest.raises(TaskDataError, match=r"images:maze: reasoning-gym 'maze' cannot build.*max_dist"):
        tasks.make_task("images:maze", min_dist=4, max_dist=3)
    with pytest.raises(TaskDataError, match=r"images:arc: image_size=16 is too small.*image_size >= 20"):
        tasks.make_task("images:arc", max_size=10)
    with pytest.raises(TaskDataError, match=r"images:arc: image_size=16 is too small.*image_size >= 18"):
        tasks.make_task("images:arc", num_train=4)
    with pytest.raises(TaskDataError, match=r"images:arc: reasoning-gym 'arc_1d' cannot build.*min_size must be >= 8"):
        tasks.make_task("images:arc", min_size=6, max_size=6)
    with pytest.raises(TaskDataError, match=r"images:geometry: image_size=16 is too small.*image_size >= 20"):
        tasks.make_task("images:geometry", grid_size=10)
    with pytest.raises(TaskDataError, match=r"images:geometry: grid_size=1 must be >= 2"):
        tasks.make_task("images:geometry", grid_size=1)
    with pytest.raises(TaskDataError, match="text_prior=-0.1 must lie in"):
        tasks.make_task("images:arc", text_prior=-0.1)
    with pytest.raises(TaskDataError, match="need size >= 1"):
        tasks.make_task("images:geometry", size=0)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "images:maze" else n for n in NAMES]
)  # maze: ~30 s
def test_one_sft_and_one_rl_step_on_each_puzzle(tmp_path, name):
    overrides = [
        "model.name=tiny-vlm-16px",
        "algorithm=grpo",
        f"task.name={name}",
        'task.kwargs={"size": 50, "num_eval": 4}',
        "task.max_prompt_len=64",
        "train.prompts_per_step=2",
        "train.group_size=2",
        "train.steps=1",
        "sampling.max_new_tokens=16",
        "mesh.num_devices=1",
        "eval.every=0",
        "eval.num_examples=4",
        "eval.k=1",
        "sft.steps=1",
        "sft.batch_size=4",
        "reward.num_workers=0",
        f"run_dir={tmp_path / 'run'}",
    ]
    cfg = C.resolve_algo(C.apply_overrides(C.default_config(), overrides))
    summary = train.train(cfg)
    assert summary["status"] == "finished"
    after = summary["eval"]["after"]
    assert "eval/accuracy/needs_image" in after and 0.0 <= after["eval/accuracy"] <= 1.0
    rows = list(train.metrics_log.read_metrics(tmp_path / "run"))
    assert any("sft/loss" in r and np.isfinite(r["sft/loss"]) for r in rows)
    assert any(r.get("phase") == "rl" and np.isfinite(r["loss"]) for r in rows)
