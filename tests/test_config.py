"""Config: typed overrides, named errors before anything runs, serialization, experiment files."""

import dataclasses
import importlib
import pathlib

import pytest

from jaxrl_llm import algorithms, cli
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import grpo
from jaxrl_llm.control import config as control_config


def test_default_validates_and_overrides_parse_by_type():
    cfg = C.apply_overrides(
        C.default_config(),
        [
            "train.steps=7",
            "optim.learning_rate=3e-4",
            "log.tensorboard=false",
            "train.old_logprobs=recompute",
            'task.kwargs={"min_digits": 1}',
            "name=abc",
            "model.param_dtype=bfloat16",
        ],
    )
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.optim.learning_rate == 3e-4
    assert cfg.log.tensorboard is False
    assert cfg.train.old_logprobs == "recompute"
    assert cfg.task.kwargs == {"min_digits": 1}
    assert cfg.name == "abc" and cfg.model.param_dtype == "bfloat16"


def test_one_mapping_entry_is_set_and_the_others_kept():
    cfg = C.apply_overrides(
        C.default_config(),
        ['task.kwargs={"min_digits": 1, "num_eval": 500}', "task.kwargs.scratchpad_weight=0.5"],
    )
    assert cfg.task.kwargs == {"min_digits": 1, "num_eval": 500, "scratchpad_weight": 0.5}
    cfg = C.apply_overrides(cfg, ["task.kwargs.min_digits=2", "task.kwargs.dataset=rg:chain_sum"])
    assert cfg.task.kwargs == {"min_digits": 2, "num_eval": 500, "scratchpad_weight": 0.5, "dataset": "rg:chain_sum"}
    with pytest.raises(C.ConfigError, match="task.kwargs.a.b: task.kwargs is not a config section"):
        C.apply_overrides(cfg, ["task.kwargs.a.b=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stpes=3", "unknown config key 'train.stpes'"),
        ("trian.steps=3", "unknown config key 'trian.steps'"),
        ("train.steps=three", "train.steps must be an int"),
        ("train.steps=0", "train.steps must be > 0"),
        ("optim.learning_rate=fast", "optim.learning_rate must be a float"),
        ("log.tensorboard=maybe", "log.tensorboard must be a bool"),
        ("train.old_logprobs=magic", "train.old_logprobs must be one of"),
        ("sampling.top_p=1.5", "sampling.top_p must be in (0, 1]"),
        ("train.num_minibatches=3", "train.num_minibatches=3 must divide"),
        ("train", "must look like section.field=value"),
        ("train=3", "train is a section"),
        ("algo.betta=0.1", "unknown config key 'algo.betta'"),
        ("algo.beta=big", "algo.beta must be a float"),
        ("algorithm=nope", "algorithm 'nope' is not registered"),
        ("task.kwargs=[1,2", "task.kwargs must be JSON"),
    ],
)
def test_bad_overrides_are_named_errors(override, message):
    with pytest.raises(C.ConfigError) as e:
        C.apply_overrides(C.default_config(), [override])
    assert message in str(e.value)


def test_algo_overrides_are_typed_against_the_algorithm_config():
    cfg = C.apply_overrides(C.default_config(), ["algo.beta=0.0", "algo.eps_high=0.28"])
    assert isinstance(cfg.algo, grpo.Config)
    assert cfg.algo.beta == 0.0 and cfg.algo.eps_high == 0.28


def test_round_trip_through_dict():
    cfg = C.resolve_algo(C.apply_overrides(C.default_config(), ["algo.beta=0.01", "train.steps=5"]))
    again = C.from_dict(C.to_dict(cfg))
    assert again == cfg
    d = C.to_dict(cfg)
    d["train"]["bogus"] = 1
    with pytest.raises(C.ConfigError, match="train.bogus"):
        C.from_dict(d)


def test_validate_rejects_wrong_types_set_in_python():
    bad = dataclasses.replace(C.default_config(), train=dataclasses.replace(C.TrainConfig(), group_size=2.5))
    with pytest.raises(C.ConfigError, match="train.group_size must be an int"):
        C.validate(bad)


def _experiment_configs(monkeypatch) -> list:
    """The LLM ``Config`` of every experiment file (control configs are validated and left out).
    Experiments on the learning suite's tasks build (or load) their cached SFT start in get_config;
    loading a config here must not train one: the start is stubbed by its path."""
    monkeypatch.syspath_prepend(str(C.EXPERIMENTS_DIR))
    suite = importlib.import_module("suite")
    monkeypatch.setattr(suite, "sft_start", lambda task, cache, *a, **k: str(cache / f"{task.key}-stub"))
    files = sorted(C.EXPERIMENTS_DIR.glob("*.py"))
    assert files, "experiments/ holds no experiment files"
    configs = []
    for path in files:
        text = path.read_text()
        if "def get_config(" not in text:  # a script (experiments/find.py, igpo.py): python experiments/<f>.py
            assert 'if __name__ == "__main__":' in text, f"{path.name}: neither get_config() nor a script"
            continue
        cfg = control_config.load_experiment(str(path))
        if isinstance(cfg, C.Config):
            configs.append(cfg)
    return configs


def test_every_experiment_file_loads(monkeypatch):
    for cfg in _experiment_configs(monkeypatch):
        C.resolve_algo(cfg)


@pytest.mark.parametrize("name", ["default", "smollm2_grpo"])
def test_trainer_experiments_document_command_hardware_time_result(name):
    doc = (C.EXPERIMENTS_DIR / f"{name}.py").read_text().split('"""')[1].lower()
    for word in ("jaxrl-llm train", "hardware", "time", "expected"):
        assert word in doc, f"{name}.py: docstring lacks {word!r}"


def test_unknown_experiment_is_named():
    with pytest.raises(C.ConfigError, match="experiment 'no_such_experiment' not found"):
        C.load_experiment("no_such_experiment")


def test_cli_reports_config_errors_before_running(capsys):
    assert cli.main(["train", "--set", "train.stpes=3"]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "train.stpes" in err
    assert cli.main(["train", "--set", "algo.beta=0.1", "--print-config"]) == 0
    assert '"beta": 0.1' in capsys.readouterr().out


def test_cli_plot_errors_on_missing_run(tmp_path: pathlib.Path, capsys):
    assert cli.main(["plot", str(tmp_path / "nope")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,reason",
    [
        ("hbpo", "budget 2560 > sampling.max_new_tokens=4"),
        ("single_stream_spo", "algo.max_response_len=256 != sampling.max_new_tokens=4"),
    ],
)
def test_methods_the_default_run_cannot_train_are_rejected_in_one_line(name, reason, capsys):
    """Regression (issue #14 item C): these failed with tracebacks inside the trainer."""
    with pytest.raises(C.ConfigError, match=f"algorithm '{name}' cannot run this config: .*{reason}"):
        C.apply_overrides(C.default_config(), [f"algorithm={name}"])
    assert cli.main(["train", "--set", f"algorithm={name}"]) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1


# Methods whose experiment is a script with its own loop (no ``get_config``), and why. Empty since
# the trainer carries images (papo.py is a trainer experiment now).
SCRIPT_EXPERIMENTS: dict[str, str] = {}


def test_every_registered_method_has_an_experiment_file(monkeypatch):
    methods = {cfg.algorithm for cfg in _experiment_configs(monkeypatch)}
    missing = set(algorithms.REGISTRY) - methods - set(SCRIPT_EXPERIMENTS)
    assert not missing, sorted(missing)
    for name, why in SCRIPT_EXPERIMENTS.items():
        assert (C.EXPERIMENTS_DIR / f"{name}.py").is_file(), (name, why)


def test_rollout_correction_settings_are_checked():
    cfg = C.apply_overrides(C.default_config(), ["train.rollout_correction=sequence_mis", "train.critic=shared"])
    assert cfg.train.rollout_correction == "sequence_mis" and cfg.train.critic == "shared"
    with pytest.raises(C.ConfigError, match="train.rollout_correction must be one of"):
        C.apply_overrides(C.default_config(), ["train.rollout_correction=tis"])
    with pytest.raises(C.ConfigError, match="rollout_correction_low < rollout_correction_high"):
        C.apply_overrides(C.default_config(), ["train.rollout_correction_low=3.0"])
