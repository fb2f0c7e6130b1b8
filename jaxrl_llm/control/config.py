"""The config of a control run, and loading an experiment file that may hold one.

A control experiment's ``get_config()`` returns a ``ControlConfig``: the env, the method and its
own ``Config`` (``algo``), the number of iterations, the seed, logging and checkpoint cadence.
``jaxrl-llm train <experiment>`` sends such a file to ``jaxrl_llm.control.train``; overrides use
the same ``--set a.b=value`` syntax as LLM runs (``--set algo.lr=1e-3 --set iterations=50``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxrl_llm import config as config_lib
from jaxrl_llm.control import mdpo, mdpo_offpolicy, ppo, tgpo

METHODS = {m.NAME: m for m in (ppo, mdpo, mdpo_offpolicy, tgpo)}


@dataclasses.dataclass(frozen=True)
class ControlConfig:
    name: str = "control"  # the run lives in runs/<name> unless run_dir is given
    env: str = "point_mass"  # envs.make: point_mass, gymnax:<id>, brax:<name>
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method: str = "ppo"  # a key of METHODS
    algo: Any = None  # the method's Config; None = its defaults
    iterations: int = 100  # train steps (one rollout + update each)
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 10
    max_to_keep: int = 2
    async_save: bool = True
    tensorboard: bool = False
    run_dir: str | None = None

    @property
    def resolved_run_dir(self) -> str:
        return self.run_dir or str(pathlib.Path("runs") / self.name)


def validate(cfg: ControlConfig) -> ControlConfig:
    """Fills ``algo`` with the method's defaults and checks the fields; raises ``ConfigError`` naming the field."""
    if cfg.method not in METHODS:
        raise config_lib.ConfigError(f"method={cfg.method!r} is not a control method; known: {sorted(METHODS)}")
    cls = METHODS[cfg.method].Config
    if cfg.algo is None:
        cfg = dataclasses.replace(cfg, algo=cls())
    elif not isinstance(cfg.algo, cls):
        raise config_lib.ConfigError(
            f"algo is a {type(cfg.algo).__name__} but method {cfg.method!r} expects {cls.__module__}.Config"
        )
    for key in ("iterations", "log_every", "checkpoint_every", "max_to_keep"):
        if getattr(cfg, key) < 1:
            raise config_lib.ConfigError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    return cfg


def apply_overrides(cfg: ControlConfig, overrides: Sequence[str]) -> ControlConfig:
    """Applies ``["a.b=value", ...]`` in order (``algo.<field>`` for the method's fields) and validates."""
    cfg = validate(cfg)
    for item in overrides:
        if "=" not in item:
            raise config_lib.ConfigError(f"override {item!r} must look like field=value or algo.field=value")
        key, text = item.split("=", 1)
        key = key.strip()
        cfg = config_lib.set_field(cfg, key, text)
        if key == "method":
            cfg = dataclasses.replace(cfg, algo=None)
        cfg = validate(cfg)
    return cfg


def to_dict(cfg: ControlConfig) -> dict[str, Any]:
    """JSON-serializable dict (``config.json`` of the run directory)."""
    out = dataclasses.asdict(cfg)
    out["kind"] = "control"
    return json.loads(json.dumps(out, default=lambda x: dict(x) if isinstance(x, Mapping) else str(x)))


def load_experiment(spec: str | None) -> config_lib.Config | ControlConfig:
    """``get_config()`` of an experiment (``jaxrl_llm.config.experiment_config``), validated, accepting
    a ``ControlConfig`` as well as an LLM ``Config``."""
    cfg = config_lib.experiment_config(spec)
    if isinstance(cfg, ControlConfig):
        return validate(cfg)
    if not isinstance(cfg, config_lib.Config):
        raise config_lib.ConfigError(
            f"experiment {spec}: get_config() returned {type(cfg).__name__}, expected Config or ControlConfig"
        )
    return config_lib.validate(cfg)
