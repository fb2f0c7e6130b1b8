"""Local record files (jsonl, jsonl.gz, json, parquet) with errors that say where input is bad."""

import dataclasses
import gzip
import json
import os
from collections.abc import Mapping
from typing import Any

from jaxrl_llm.tasks.example import TaskDataError


@dataclasses.dataclass(frozen=True)
class Record:
    """One input record and where it came from (``path:line`` or ``path[row]``)."""

    where: str
    data: Mapping[str, Any]

    def field(self, name: str, types: type | tuple[type, ...] = str) -> Any:
        """The value of ``name``; a clear error naming the field and the record if it is
        missing or of the wrong type."""
        if name not in self.data:
            raise TaskDataError(f"{self.where}: record lacks field {name!r} (has {sorted(self.data)})")
        value = self.data[name]
        if not isinstance(value, types):
            raise TaskDataError(f"{self.where}: field {name!r} has type {type(value).__name__}, expected {types}")
        return value


def read_records(path: str | os.PathLike) -> list[Record]:
    """All records of a local file, by extension: ``.jsonl`` / ``.jsonl.gz`` (one JSON object a
    line, blank lines skipped), ``.json`` (a list of objects), ``.parquet`` (needs pyarrow).

    Raises ``TaskDataError`` naming the file and line for malformed JSON or non-object lines,
    and for an empty file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TaskDataError(f"{path}: no such file")
    if path.endswith((".jsonl", ".jsonl.gz")):
        records = _read_jsonl(path)
    elif path.endswith(".json"):
        records = _read_json(path)
    elif path.endswith(".parquet"):
        records = _read_parquet(path)
    else:
        raise TaskDataError(f"{path}: unknown format (expected .jsonl, .jsonl.gz, .json or .parquet)")
    if not records:
        raise TaskDataError(f"{path}: file holds no records")
    return records


def _read_jsonl(path: str) -> list[Record]:
    opener = gzip.open if path.endswith(".gz") else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{where}: malformed JSON line ({e.msg} at column {e.colno})") from None
            if not isinstance(data, dict):
                raise TaskDataError(f"{where}: expected a JSON object, got {type(data).__name__}")
            records.append(Record(where, data))
    return records


def _read_json(path: str) -> list[Record]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise TaskDataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    records = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise TaskDataError(f"{path}[{i}]: expected a JSON object, got {type(item).__name__}")
        records.append(Record(f"{path}[{i}]", item))
    return records


def _read_parquet(path: str) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskDataError(f"{path}: reading parquet needs pyarrow (pip install 'jaxrl_llm[parquet]')") from None
    rows = pq.read_table(path).to_pylist()
    return [Record(f"{path}[row {i}]", row) for i, row in enumerate(rows)]
