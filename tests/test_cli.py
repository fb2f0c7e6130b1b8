"""The command line (issue #14 C, 12): input errors end in one line and exit 2, real bugs keep
their traceback; ``--stop-after`` exits 0 and an interrupt 130; ``train`` draws ``curves.png``
once a run finished."""

import json
import pathlib

import numpy as np
import pytest

from jaxrl_llm import cli, metrics_log, train
from jaxrl_llm.models import safetensors_io

TINY = [
    "--set",
    "model.name=tiny",
    "--set",
    "reward.num_workers=0",
    "--set",
    "log.progress=false",
    "--set",
    "log.tensorboard=false",
    "--set",
    "train.steps=2",
    "--set",
    "train.prompts_per_step=2",
    "--set",
    "train.group_size=2",
    "--set",
    "sampling.max_new_tokens=4",
    "--set",
    "eval.num_examples=0",
    "--set",
    "sft.steps=0",
]


def _one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert "error: " in err, err
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.fixture
def truncated_checkpoint(tmp_path) -> pathlib.Path:
    """A Hugging Face checkpoint directory (a tiny Llama config) whose weights file is cut short."""
    path = tmp_path / "broken_model"
    path.mkdir()
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "num_hidden_layers": 1,
        "vocab_size": 64,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    }
    (path / "config.json").write_text(json.dumps(config))
    weights = path / "model.safetensors"
    safetensors_io.write(weights, {"model.embed_tokens.weight": np.ones((64, 16), np.float32)})
    weights.write_bytes(weights.read_bytes()[:200])
    return path


def test_run_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("not a run")
    assert cli.main(["train", "--run-dir", str(f), *TINY]) == 2
    _one_line_error(capsys, str(f), "not a directory")
    assert f.read_text() == "not a run"
    assert cli.main(["eval", str(f)]) == 2
    _one_line_error(capsys, str(f), "not a run directory")


def test_missing_model_path(tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    assert cli.main(["train", "--run-dir", str(tmp_path / "run"), *TINY, "--set", f"model.name={missing}"]) == 2
    _one_line_error(capsys, f"model.name={str(missing)!r}", "neither a built-in model")
    assert not (tmp_path / "run").exists()
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert cli.main(["train", "--run-dir", str(tmp_path / "run"), *TINY, "--set", f"model.name={empty}"]) == 2
    _one_line_error(capsys, "has no config.json")


def test_truncated_safetensors(tmp_path, capsys, truncated_checkpoint):
    broken = truncated_checkpoint
    assert cli.main(["train", "--run-dir", str(tmp_path / "run"), *TINY, "--set", f"model.name={broken}"]) == 2
    _one_line_error(capsys, str(broken / "model.safetensors"), "truncated")


def test_sample_arguments_are_checked(tmp_path, capsys):
    for bad in (["--prompt", "hi", "--n", "0"], ["--prompt", ""], ["--prompt", "   "], ["--prompt", "hi", "--n", "x"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["sample", str(tmp_path), *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("jaxrl-llm sample: error: argument")
        assert err.strip().splitlines()[-1].startswith("jaxrl-llm sample: error: argument " + bad[-2]), err


def test_eval_without_checkpoint_and_with_unreadable_ones(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--run-dir", str(run), *TINY, "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    assert cli.main(["eval", str(run)]) == 2
    _one_line_error(capsys, str(run), "no checkpoint")
    step = run / "checkpoints" / "3"
    (step / "state").mkdir(parents=True)
    (step / "state" / "junk").write_text("x")
    (step / "_CHECKPOINT_METADATA").write_text("{}")
    assert cli.main(["export", str(run), str(tmp_path / "hf")]) == 2
    _one_line_error(capsys, str(run / "checkpoints"), "restores")
    assert step.exists()


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(cfg, stop_after=None, **kwargs):
        raise RuntimeError("a bug in the trainer")

    monkeypatch.setattr(train, "train", broken)
    with pytest.raises(RuntimeError, match="a bug in the trainer"):
        cli.main(["train", "--run-dir", str(tmp_path / "run"), *TINY])
    with pytest.raises(KeyError):  # a KeyError from the code is not taken for bad input
        monkeypatch.setattr(train, "train", lambda cfg, **kw: {}["status"])
        cli.main(["train", "--run-dir", str(tmp_path / "run"), *TINY])


def _fake_train(summary: dict, metrics: list[dict] | None = None):
    def fake(cfg, stop_after=None, **kwargs):
        d = pathlib.Path(cfg.resolved_run_dir)
        d.mkdir(parents=True, exist_ok=True)
        if metrics is not None:
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
        return {"run_dir": str(d), **summary}

    return fake


def test_stop_after_exits_0_and_an_interrupt_130(monkeypatch, tmp_path, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr(train, "train", _fake_train({"status": "stopped", "step": 3}))
    assert cli.main(["train", "--run-dir", str(run), *TINY, "--stop-after", "3"]) == 0
    assert "stopped after step 3" in capsys.readouterr().err
    monkeypatch.setattr(train, "train", _fake_train({"status": "interrupted", "step": 3}))
    # Ctrl-C before the step --stop-after names, or without --stop-after: 130
    assert cli.main(["train", "--run-dir", str(run), *TINY, "--stop-after", "5"]) == 130
    assert cli.main(["train", "--run-dir", str(run), *TINY]) == 130
    with pytest.raises(SystemExit):
        cli.main(["train", "--run-dir", str(run), *TINY, "--stop-after", "0"])


def test_train_draws_curves_once_the_run_finished(monkeypatch, tmp_path, capsys):
    run = tmp_path / "run"
    records = [{"phase": "rl", "step": s, "loss": 1.0 / s, "reward/mean": 0.1 * s} for s in range(1, 6)]
    monkeypatch.setattr(train, "train", _fake_train({"status": "interrupted", "step": 2}, records))
    cli.main(["train", "--run-dir", str(run), *TINY])
    assert not (run / "curves.png").exists()  # not for an unfinished run
    monkeypatch.setattr(train, "train", _fake_train({"status": "finished", "step": 5}, records))
    assert cli.main(["train", "--run-dir", str(run), *TINY]) == 0
    curves = run / "curves.png"
    assert curves.stat().st_size > 0
    first = curves.stat().st_mtime_ns
    # a finished run returned again (metrics unchanged): its curves are left alone
    monkeypatch.setattr(train, "train", _fake_train({"status": "finished", "step": 5}))
    assert cli.main(["train", "--run-dir", str(run), *TINY]) == 0
    assert curves.stat().st_mtime_ns == first
    # nothing to draw: a warning, not a failed run
    other = tmp_path / "other"
    monkeypatch.setattr(
        train,
        "train",
        _fake_train({"status": "finished", "step": 1}, [{"phase": "rl", "step": 1, "nothing_known": 1.0}]),
    )
    capsys.readouterr()
    assert cli.main(["train", "--run-dir", str(other), *TINY]) == 0
    assert "warning: no curves written" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_directory_end_to_end(tmp_path, capsys):
    """Issue #14 B through the real trainer: stop, a refused config, resume, a finished run left
    alone, an extension on purpose; no record lost. Then eval/export read its last checkpoint."""
    run = tmp_path / "run"
    base = [
        "train",
        "--run-dir",
        str(run),
        *TINY,
        "--set",
        "task.name=rg:basic_arithmetic",
        "--set",
        "checkpoint.every=1",
        "--set",
        "train.steps=3",
        "--set",
        f"compilation_cache_dir={tmp_path / 'xla'}",
        "--set",
        "eval.num_examples=4",
        "--set",
        "eval.k=0",
    ]  # later runs load the programs
    assert cli.main([*base, "--stop-after", "2"]) == 0
    assert "stopped after step 2" in capsys.readouterr().err
    kept = {p: p.read_bytes() for p in (run / "metrics.jsonl", run / "config.json")}

    assert cli.main([*base, "--set", "model.name=small"]) == 2
    _one_line_error(capsys, str(run), 'model.name: "tiny" -> "small"')
    assert {p: p.read_bytes() for p in kept} == kept

    assert cli.main(base) == 0
    summary = (run / "summary.json").read_bytes()
    assert json.loads(summary)["status"] == "finished" and (run / "curves.png").exists()
    stamp = (run / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(base) == 0
    assert "holds a finished run (step 3" in capsys.readouterr().err
    assert (run / "summary.json").read_bytes() == summary and (run / "summary.json").stat().st_mtime_ns == stamp

    assert cli.main([*base, "--set", "train.steps=4"]) == 2
    _one_line_error(capsys, "train.steps: 3 -> 4", "--extend")
    assert cli.main([*base, "--set", "train.steps=4", "--extend"]) == 0
    assert [r["step"] for r in metrics_log.read_metrics(run) if r["phase"] == "rl"] == [1, 2, 3, 4]
    assert len((run / "config_history.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "summary-step3.json").read_bytes()) == json.loads(summary)
    # The extension evaluates its new end: the old end's "after" is kept as the eval at step 3.
    assert [r["step"] for r in metrics_log.read_metrics(run) if r["phase"] == "eval"][-1] == 4
    assert set(json.loads((run / "summary.json").read_bytes())["eval"]) == {"before", "3", "after"}

    capsys.readouterr()
    assert cli.main(["eval", str(run), "--set", "eval.num_examples=4", "--set", "eval.k=0"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 4
    assert cli.main(["export", str(run), str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").exists()
    capsys.readouterr()
    assert cli.main(["sample", str(run), "--prompt", "1 + 2 " * 200]) == 2
    _one_line_error(capsys, "--prompt", "task.max_prompt_len")


def test_eval_of_an_episode_run_plays_held_out_seeds_and_takes_env_overrides(tmp_path, capsys):
    """An ``episode`` run's eval is greedy episodes from held-out seeds (its task has no held-out
    split that it trains on); ``--set env.*`` evaluates the same policy in another setting, here
    EPO-strategic's strategist with the other frozen actor (the paper's plug-in test)."""
    run = tmp_path / "strategist"
    episode_run = [
        "--set", "model.name=tiny", "--set", "algorithm=epo_strategic", "--set", "env.name=keydoor_strategy",
        "--set", 'env.kwargs={"size": 4, "letters": true}', "--set", "env.max_turns=2",
        "--set", "env.max_episode_tokens=64", "--set", "sampling.max_new_tokens=2", "--set", "train.steps=1",
        "--set", "train.prompts_per_step=2", "--set", "train.group_size=2", "--set", "eval.num_examples=0",
        "--set", "sft.steps=0", "--set", "reward.num_workers=0", "--set", "checkpoint.every=1",
        "--set", "log.progress=false", "--set", "log.tensorboard=false",
    ]  # fmt: skip
    assert cli.main(["train", "--run-dir", str(run), *episode_run]) == 0
    capsys.readouterr()

    def evaluate(*args):
        assert cli.main(["eval", str(run), "--episodes", "3", *args]) == 0
        return json.loads(capsys.readouterr().out)

    own = evaluate()
    assert own["step"] == 1 and own["episodes"] == 3
    assert {"episode/success", "episode/steps", "episode/invalid_frac"} <= set(own)
    assert 1 <= own["episode/steps"] <= 2 and 0.0 <= own["episode/invalid_frac"] <= 1.0
    assert evaluate() == own  # greedy from fixed held-out seeds: the same episodes again
    swapped = evaluate("--set", 'env.kwargs={"size": 4, "letters": true, "actor": "cols_first"}')
    assert swapped.keys() == own.keys()
    bad = ["--set", 'env.kwargs={"size": 4, "actor": "diagonal"}']
    assert cli.main(["eval", str(run), *bad]) == 2
    _one_line_error(capsys, "env.kwargs=", "actor must be 'rows_first' or 'cols_first'")
    assert cli.main(["train", "--run-dir", str(tmp_path / "bad"), *episode_run, *bad]) == 2  # before any step
    _one_line_error(capsys, "env.name='keydoor_strategy'", "'diagonal'")
    assert not list((tmp_path / "bad").glob("**/metrics.jsonl"))
