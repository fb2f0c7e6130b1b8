"""A jittable ring-buffer replay memory whose whole state is a pytree of arrays (so it checkpoints
with the rest of a train state and resumes exactly).

Our own rather than flashbax: the off-policy methods then need nothing outside the core install.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_llm.types import Array


class Buffer(NamedTuple):
    data: Any  # pytree, every leaf [C, ...]
    position: Array  # [] i32, next slot to write
    size: Array  # [] i32, filled slots (<= C)


def init(example: Any, capacity: int) -> Buffer:
    """An empty buffer of ``capacity`` items shaped like ``example`` (one item, no batch axis)."""
    if capacity < 1:
        raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return Buffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def capacity(buffer: Buffer) -> int:
    return jax.tree.leaves(buffer.data)[0].shape[0]


def add(buffer: Buffer, items: Any) -> Buffer:
    """Writes a batch of items (every leaf ``[n, ...]``, n <= capacity) at the ring position, oldest overwritten."""
    cap = capacity(buffer)
    n = jax.tree.leaves(items)[0].shape[0]
    if n > cap:
        raise ValueError(f"adding {n} items to a replay buffer of capacity {cap}")
    idx = (buffer.position + jnp.arange(n)) % cap  # [n]
    data = jax.tree.map(lambda d, x: d.at[idx].set(x.astype(d.dtype)), buffer.data, items)
    return Buffer(data, (buffer.position + n) % cap, jnp.minimum(buffer.size + n, cap))


def sample(buffer: Buffer, key: Array, batch_size: int) -> Any:
    """``batch_size`` items drawn uniformly with replacement from the filled slots (the buffer must not be empty)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[idx], buffer.data)
