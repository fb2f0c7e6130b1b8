"""Reading and writing the safetensors format with NumPy, one tensor at a time.

Format (https://github.com/huggingface/safetensors#format): 8-byte little-endian header length
N, then N bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}``, then the raw little-endian tensor bytes (offsets relative to the end of the header).

Why not ``safetensors.numpy``: it cannot represent bfloat16 (NumPy has no such dtype), and its
framework loaders materialize whole files. Here tensors are memory-mapped (``ml_dtypes`` supplies
bfloat16), every offset is checked against the file size, so a truncated or corrupt file fails with
an error naming the file and the tensor, and the writer streams one tensor at a time.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A safetensors file that cannot be read (truncated, corrupt header, bad offsets)."""


class SafetensorsFile:
    """Read-only, memory-mapped view of one ``.safetensors`` file.

    ``f[name]`` returns a NumPy array (a view into the map: copy it before mutating).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"safetensors file not found: {self.path}")
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise SafetensorsError(f"{self.path}: truncated, {size} bytes is shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", prefix)
            if 8 + n > size:
                raise SafetensorsError(f"{self.path}: truncated, header says {n} bytes but the file has {size - 8}")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise SafetensorsError(f"{self.path}: corrupt header ({e})") from None
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        data_size = size - self._data_start
        self._entries = {}
        for name, e in header.items():
            if e.get("dtype") not in _DTYPES:
                raise SafetensorsError(f"{self.path}: tensor {name!r} has unsupported dtype {e.get('dtype')!r}")
            begin, end = e["data_offsets"]
            shape = tuple(int(d) for d in e["shape"])
            dtype = _DTYPES[e["dtype"]]
            if end > data_size:
                raise SafetensorsError(
                    f"{self.path}: truncated, tensor {name!r} needs bytes [{begin}, {end}) of the data "
                    f"section but only {data_size} are present"
                )
            if end - begin != int(np.prod(shape)) * dtype.itemsize:
                raise SafetensorsError(
                    f"{self.path}: tensor {name!r} has {end - begin} bytes, expected {shape} x {dtype.itemsize}"
                )
            self._entries[name] = (dtype, shape, begin)
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size else None

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def __getitem__(self, name: str) -> np.ndarray:
        dtype, shape, begin = self._entries[name]
        start = self._data_start + begin
        count = int(np.prod(shape))
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=start).reshape(shape)


def dtype_name(dtype) -> str:
    """The safetensors dtype string (``"F32"``, ``"BF16"``...) of a NumPy / JAX dtype."""
    return _NAMES[np.dtype(dtype)]


def write(
    path: str | os.PathLike,
    tensors: Iterable[tuple[str, np.ndarray]] | Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Writes ``tensors`` (name -> array, or (name, array) pairs) to ``path``.

    The header needs every shape up front, so ``tensors`` is materialized as a list of arrays
    (cheap for views and memory maps); bytes are then written one tensor at a time.
    """
    items = list(tensors.items() if isinstance(tensors, Mapping) else tensors)
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, arr in items:
        nbytes = arr.size * arr.dtype.itemsize
        header[name] = {
            "dtype": dtype_name(arr.dtype),
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, arr in items:
            f.write(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
