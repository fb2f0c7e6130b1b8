"""Meshes and the ONE logical-axis rules table.

Parameters, activations and the KV cache carry logical axis names (``"embed"``, ``"mlp"``,
``"heads"``, ...). ``RULES`` maps each name to mesh axes. Nothing else in the codebase names a
mesh axis; losses and ``ops/`` never see a mesh.

We use GSPMD-style ``Auto`` mesh axes on purpose (``jax.make_mesh`` defaults to ``Explicit`` in
current JAX): shardings are placed on inputs/params with ``jax.jit(in_shardings=...)`` /
``jax.device_put`` and XLA propagates them; ``with_sharding_constraint`` works inside the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None for replicated)
RULES: Mapping[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "seq": None,
    "cache_seq": None,
    "layers": None,
    "norm": None,
    # the vision tower (models/vision.py): small beside the decoder, split the same way
    "vision_embed": "fsdp",
    "vision_mlp": "tensor",
    "vision_heads": "tensor",
    "patch_pixels": None,
    "image_patches": None,
}


def make_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a ``("data", "fsdp", "tensor")`` mesh with Auto axis types.

    ``shape`` maps axis name to size; one axis may be -1 (takes the remaining devices). Missing axes
    have size 1. Default: all devices on ``data``.
    """
    devices = list(devices if devices is not None else jax.devices())
    shape = dict(shape or {"data": -1})
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; expected a subset of {MESH_AXES}")
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {shape}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {shape} does not divide {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, have {len(devices)}")
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_spec(logical_axes: Sequence[str | None], mesh: Mesh | None = None) -> PartitionSpec:
    """Maps logical axis names to a ``PartitionSpec`` via ``RULES``.

    A mesh axis is used at most once (later dims that map to an already-used axis are replicated),
    and axes of size 1 in ``mesh`` are dropped.
    """
    used: set[str] = set()
    spec = []
    for name in logical_axes:
        if name is None:
            spec.append(None)
            continue
        if name not in RULES:
            raise KeyError(f"logical axis {name!r} has no rule in jaxrl_llm.sharding.RULES")
        target = RULES[name]
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape[a] > 1))
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, logical_axes: Sequence[str | None]) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(logical_axes, mesh))


def axis_shards(mesh: Mesh, logical_axis: str) -> int:
    """How many shards ``mesh`` splits a ``logical_axis`` dimension into (the product of the mesh
    axes ``RULES`` maps it to; 1 when it maps to none of size > 1)."""
    return _spec_entry_size(mesh, logical_to_spec((logical_axis,), mesh)[0])


def _spec_entry_size(mesh: Mesh, axes: str | tuple[str, ...] | None) -> int:
    """The number of shards one ``PartitionSpec`` entry (None, a mesh axis or a tuple) makes."""
    names = () if axes is None else (axes,) if isinstance(axes, str) else axes
    return int(np.prod([mesh.shape[a] for a in names]))


def divisible_sharding(mesh: Mesh, logical_axes: Sequence[str | None], shape: Sequence[int]) -> NamedSharding:
    """Like ``named_sharding`` but replicates any dim whose size the mesh axes do not divide."""
    spec = list(logical_to_spec(logical_axes, mesh))
    spec += [None] * (len(shape) - len(spec))
    for i, (axes, dim) in enumerate(zip(spec, shape)):
        if dim % _spec_entry_size(mesh, axes):
            spec[i] = None
    return NamedSharding(mesh, PartitionSpec(*spec))
