"""Run directories (issue #14 B): a directory holds one run's config; another config is refused in
one line naming the keys that differ; ``extend`` changes only keys that keep the run valid and
records the change; a finished run's files are left alone; records are never deleted."""

import json
import os
import pathlib
import warnings

import pytest

from jaxrl_llm import config as config_lib
from jaxrl_llm import metrics_log, run_dir
from jaxrl_llm.run_dir import RunDirError


def _cfg(**overrides) -> dict:
    cfg = config_lib.resolve_algo(config_lib.default_config())
    cfg = config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    return config_lib.to_dict(cfg)


def _snapshot(path: pathlib.Path) -> dict:
    return {
        p.relative_to(path).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_new_directory_gets_the_config(tmp_path):
    d = tmp_path / "runs" / "a"
    cfg = _cfg()
    assert run_dir.prepare(d, cfg) == "new"
    assert json.loads((d / "config.json").read_text()) == cfg
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_dir.prepare(empty, cfg) == "new"


def test_same_config_resumes_and_writes_nothing(tmp_path):
    cfg = _cfg()
    run_dir.prepare(tmp_path / "r", cfg)
    (tmp_path / "r" / "metrics.jsonl").write_text('{"phase": "rl", "step": 1}\n')
    before = _snapshot(tmp_path / "r")
    # a config read back from JSON (lists for tuples) and where-it-lives keys do not count
    again = json.loads(json.dumps(cfg))
    again["run_dir"] = str(tmp_path / "r")
    again["compilation_cache_dir"] = "/tmp/xla"
    again["log"]["progress"] = not again["log"]["progress"]
    assert run_dir.prepare(tmp_path / "r", again) == "resume"
    assert _snapshot(tmp_path / "r") == before


def test_finished_run_is_left_alone(tmp_path):
    d = tmp_path / "r"
    cfg = _cfg()
    run_dir.prepare(d, cfg)
    summary = {"status": "finished", "step": 10, "wall_time_s": 1335.0}
    (d / "summary.json").write_text(json.dumps(summary))
    before = _snapshot(d)
    assert run_dir.prepare(d, cfg) == "finished"
    assert run_dir.read_summary(d) == summary
    assert _snapshot(d) == before
    (d / "summary.json").write_text(json.dumps({"status": "interrupted", "step": 4}))
    assert run_dir.prepare(d, cfg) == "resume"


def test_other_config_is_refused_in_one_line(tmp_path):
    d = tmp_path / "r"
    run_dir.prepare(d, _cfg())
    before = _snapshot(d)
    with pytest.raises(RunDirError) as e:
        run_dir.prepare(d, _cfg(**{"model.name": "tiny"}))
    msg = str(e.value)
    assert "\n" not in msg and str(d) in msg
    assert 'model.name: "small" -> "tiny"' in msg
    assert "--run-dir" in msg and "--set name=" in msg
    assert "--extend" in msg  # says what --extend could change, though it cannot here
    assert _snapshot(d) == before

    many = {
        "model.name": "tiny",
        "seed": 3,
        "train.group_size": 4,
        "train.prompts_per_step": 2,
        "sampling.temperature": 0.5,
        "optim.learning_rate": 0.1,
        "eval.k": 2,
    }
    with pytest.raises(RunDirError, match=r"\(and 2 more\)"):
        run_dir.prepare(d, _cfg(**many))
    with pytest.raises(RunDirError, match=r"algo\.beta: 0\.04 -> 0\.5"):
        run_dir.prepare(d, _cfg(**{"algo.beta": 0.5}))


def test_extendable_change_needs_extend_then_is_recorded(tmp_path):
    d = tmp_path / "r"
    old = _cfg(**{"train.steps": 10})
    run_dir.prepare(d, old)
    (d / "summary.json").write_text(json.dumps({"status": "finished", "step": 10}))
    new = _cfg(**{"train.steps": 20, "eval.every": 5})
    with pytest.raises(RunDirError, match=r"train\.steps: 10 -> 20.*add --extend"):
        run_dir.prepare(d, new)
    assert json.loads((d / "config.json").read_text()) == old

    assert run_dir.prepare(d, new, extend=True) == "resume"
    assert json.loads((d / "config.json").read_text()) == new
    history = [json.loads(line) for line in (d / "config_history.jsonl").read_text().splitlines()]
    assert [h["config"] for h in history] == [old, new]
    assert history[1]["changed"] == {"eval.every": [old["eval"]["every"], 5], "train.steps": [10, 20]}
    # the finished run's summary is kept under another name: the extended run is not finished
    assert not (d / "summary.json").exists()
    assert json.loads((d / "summary-step10.json").read_text())["step"] == 10
    assert run_dir.prepare(d, new) == "resume"

    newer = _cfg(**{"train.steps": 30, "eval.every": 5})
    assert run_dir.prepare(d, newer, extend=True) == "resume"
    lines = (d / "config_history.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["changed"] == {"train.steps": [20, 30]}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"train.steps": 5}, "train.steps"),  # fewer steps: a finished run would hold steps past the end
        ({"train.steps": 20, "optim.schedule": "cosine"}, "optim.schedule"),
        ({"train.steps": 20, "model.name": "tiny"}, "model.name"),
    ],
)
def test_extend_refuses_changes_that_invalidate_the_run(tmp_path, change, reason):
    d = tmp_path / "r"
    run_dir.prepare(d, _cfg(**{"train.steps": 10}))
    before = _snapshot(d)
    with pytest.raises(RunDirError, match=rf"--extend cannot change [^;]*{reason}"):
        run_dir.prepare(d, _cfg(**change), extend=True)
    assert _snapshot(d) == before


def test_cosine_schedule_cannot_be_extended(tmp_path):
    d = tmp_path / "r"
    run_dir.prepare(d, _cfg(**{"train.steps": 10, "optim.schedule": "cosine"}))
    with pytest.raises(RunDirError, match=r"--extend cannot change train\.steps.*cosine"):
        run_dir.prepare(d, _cfg(**{"train.steps": 20, "optim.schedule": "cosine"}), extend=True)


def test_bad_paths_name_the_path(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(RunDirError, match=rf"{f} exists and is not a directory"):
        run_dir.prepare(f, _cfg())
    d = tmp_path / "garbled"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    with pytest.raises(RunDirError, match=rf"cannot read {d / 'config.json'}"):
        run_dir.prepare(d, _cfg())
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=rf"{other} is not empty and has no config.json"):
        run_dir.prepare(other, _cfg())
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_read_summary(tmp_path):
    assert run_dir.read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text("[1, 2")
    assert run_dir.read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text('{"status": "finished"}')
    assert run_dir.read_summary(tmp_path) == {"status": "finished"}


# ------------------------------------------------------------------ metrics.jsonl on resume


def _records(n: int, phase: str = "rl") -> list[dict]:
    return [{"phase": phase, "step": s, "loss": float(s)} for s in range(1, n + 1)]


def _write(path: pathlib.Path, records: list[dict], torn: bool = False) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text + ('{"phase": "rl", "st' if torn else ""))


def test_resume_keeps_records_up_to_the_restored_step(tmp_path):
    _write(tmp_path / "metrics.jsonl", _records(73), torn=True)
    logger = metrics_log.MetricsLogger(tmp_path, resume_step=70, tensorboard=False)
    logger.log("rl", 71, {"loss": 71.5})
    logger.close()
    records = metrics_log.read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 72))
    assert records[-1]["loss"] == 71.5
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")


def test_no_restore_keeps_old_records_aside(tmp_path):
    """The issue's 73 -> 6 records: a run that restored nothing wiped the file. Now the old records
    are kept (renamed) and the new run's records start a new file."""
    _write(tmp_path / "metrics.jsonl", _records(73))
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out").write_text("old events")
    with pytest.warns(UserWarning, match=r"held records but no checkpoint was restored: kept them as metrics-"):
        logger = metrics_log.MetricsLogger(tmp_path, resume_step=None, tensorboard=False)
    logger.log("rl", 1, {"loss": 0.5})
    logger.close()
    assert metrics_log.read_metrics(tmp_path) == [{"phase": "rl", "step": 1, "loss": 0.5}]
    (aside,) = tmp_path.glob("metrics-*.jsonl")
    assert [json.loads(line) for line in aside.read_text().splitlines()] == _records(73)
    (tb_aside,) = tmp_path.glob("tb-*")
    assert (tb_aside / "events.out").read_text() == "old events"


def test_fresh_directory_logs_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger = metrics_log.MetricsLogger(tmp_path / "new", resume_step=None, tensorboard=False)
    logger.log("rl", 1, {"loss": 0.5})
    logger.close()
    assert os.listdir(tmp_path / "new") == ["metrics.jsonl"]
