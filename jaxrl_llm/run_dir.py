"""A run directory belongs to one run: the config it was started with decides what may use it.

``prepare(path, cfg_dict)`` is called (by process 0) before a run touches its directory:

  ``"new"``       the directory is absent or empty: it is created and ``config.json`` written;
  ``"resume"``    ``config.json`` holds the same config: nothing is written (the caller restores
                  the newest checkpoint);
  ``"finished"``  the same config, and ``summary.json`` says the run finished: nothing is written,
                  and the caller returns ``read_summary(path)`` without running or rewriting
                  anything;
  otherwise       ``RunDirError``, one line naming the keys that differ (``train.steps: 10 -> 20``)
                  and the two ways on: a new run directory, or ``--extend`` when every differing
                  key is one that can change mid-run without invalidating what is on disk
                  (``EXTENDABLE``).

With ``extend=True`` and only extendable keys differing, ``config.json`` is rewritten, one line
``{"time", "changed": {key: [old, new]}, "config": <the new config>}`` is appended to
``config_history.jsonl`` (the first line records the original config), a finished run's
``summary.json`` is renamed ``summary-step<N>.json`` (the run is no longer finished), and the
result is ``"resume"``. Nothing is ever deleted.

Keys in ``IGNORED`` (where the run lives, the compilation cache, the progress bar, async saving)
do not change what a run computes, so they never count as a difference.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Mapping
from typing import Any

from jaxrl_llm import errors

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
HISTORY_FILE = "config_history.jsonl"

# Keys that say how a run is executed or observed, not what it computes.
IGNORED = frozenset({"run_dir", "compilation_cache_dir", "log.progress", "checkpoint.async_save"})

# Keys that ``--extend`` may change on an existing run, and the condition for each: the steps
# done so far stay valid, and the steps still to come are computed as before.
EXTENDABLE = {
    "train.steps": "may only increase, and only with optim.schedule=constant (a cosine schedule is "
    "laid out over train.steps)",
    "eval.every": "evaluation cadence",
    "log.every": "logging cadence",
    "log.tensorboard": "logging",
    "checkpoint.every": "checkpoint cadence",
    "checkpoint.max_to_keep": "checkpoint retention",
}

_SHOWN = 5


class RunDirError(errors.UserError, ValueError):
    """The run directory cannot be used for this config; the one-line message says why and how on."""


def prepare(path: pathlib.Path, cfg_dict: dict, *, extend: bool = False) -> str:
    """Checks ``path`` against ``cfg_dict`` (``config.to_dict(cfg)``); returns ``"new"``,
    ``"resume"`` or ``"finished"`` (see the module docstring). Raises ``RunDirError`` when the
    directory holds a run of another config (unless ``extend`` allows the change), when ``path``
    is not a directory, or when its ``config.json`` cannot be read."""
    path = pathlib.Path(path)
    new = _normalized(cfg_dict)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {path} exists and is not a directory; pass another --run-dir")
    config_file = path / CONFIG_FILE
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        _write_json(config_file, new)
        return "new"
    if not config_file.is_file():
        raise RunDirError(
            f"{path} is not empty and has no {CONFIG_FILE}, so it is not a run directory; "
            "pass an empty or new --run-dir"
        )
    try:
        old = _normalized(json.loads(config_file.read_text()))
    except (OSError, ValueError) as e:
        raise RunDirError(
            f"cannot read {config_file} ({type(e).__name__}: {e}); fix or remove that file, or pass another --run-dir"
        ) from None
    if not isinstance(old, dict):
        raise RunDirError(f"{config_file} does not hold a config (a JSON object); pass another --run-dir")
    changed = diff(old, new)
    if not changed:
        summary = read_summary(path)
        return "finished" if summary is not None and summary.get("status") == "finished" else "resume"
    blocked = {k: v for k, v in changed.items() if not _extendable(k, v, new)}
    if extend and not blocked:
        _extend(path, old, new, changed)
        return "resume"
    raise RunDirError(_refusal(path, new, changed, blocked, extend))


def read_summary(path: pathlib.Path) -> dict | None:
    """The run's ``summary.json`` as a dict, or ``None`` when it is absent or unreadable."""
    try:
        summary = json.loads((pathlib.Path(path) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def diff(old: Mapping[str, Any], new: Mapping[str, Any], missing: Any = None) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every leaf that differs, ``IGNORED`` keys left out. A key
    present on one side only shows ``missing`` on the other; a section compared with a value
    (``algo`` of another algorithm against ``None``) differs as a whole."""
    out: dict[str, tuple[Any, Any]] = {}

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k, missing), b.get(k, missing), f"{prefix}{k}.")
            return
        key = prefix[:-1]
        if a != b and key not in IGNORED:
            out[key] = (a, b)

    walk(dict(old), dict(new), "")
    return out


def _normalized(d: Any) -> Any:
    """The JSON form (tuples as lists, keys as strings), so a loaded config equals a fresh one."""
    return json.loads(json.dumps(d, default=str))


def _extendable(key: str, change: tuple[Any, Any], new: Mapping[str, Any]) -> bool:
    if key not in EXTENDABLE:
        return False
    if key == "train.steps":
        old, cur = change
        schedule = new.get("optim", {}).get("schedule")
        return isinstance(old, int) and isinstance(cur, int) and cur > old and schedule == "constant"
    return True


def _extend(path: pathlib.Path, old: dict, new: dict, changed: dict[str, tuple[Any, Any]]) -> None:
    history = path / HISTORY_FILE
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = []
    if not history.exists():
        lines.append({"time": None, "changed": {}, "config": old})
    lines.append({"time": now, "changed": {k: list(v) for k, v in changed.items()}, "config": new})
    with open(history, "a") as f:
        f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    summary = read_summary(path)
    if summary is not None:
        step = summary.get("step", "unknown")
        target = path / f"summary-step{step}.json"
        n = 1
        while target.exists():
            n += 1
            target = path / f"summary-step{step}-{n}.json"
        (path / SUMMARY_FILE).rename(target)
    _write_json(path / CONFIG_FILE, new)


def _refusal(
    path: pathlib.Path,
    new: Mapping[str, Any],
    changed: dict[str, tuple[Any, Any]],
    blocked: dict[str, tuple[Any, Any]],
    extend: bool,
) -> str:
    shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(changed.items())[:_SHOWN])
    more = f" (and {len(changed) - _SHOWN} more)" if len(changed) > _SHOWN else ""
    new_run = "to start a new run instead, pass another --run-dir or --set name=NEW (which runs in runs/NEW)"
    extendable = ", ".join(sorted(EXTENDABLE))
    if not blocked:
        how = f"to extend this run on purpose, add --extend; {new_run}"
    elif extend:
        how = (
            f"--extend cannot change {', '.join(blocked)} (it may change {extendable}; train.steps "
            f"{EXTENDABLE['train.steps']}); {new_run}"
        )
    else:
        how = f"{new_run} (--extend may change only {extendable}; train.steps {EXTENDABLE['train.steps']})"
    return f"{path} holds a run with another config ({shown}{more}): {how}"


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_json(file: pathlib.Path, obj: Any) -> None:
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(file)
