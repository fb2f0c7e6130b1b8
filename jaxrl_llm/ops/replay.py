"""A fixed-shape experience-replay store: one FIFO of rows per slot (a task), as arrays.

Layout (a pytree of arrays, so it jits and checkpoints with an algorithm's state)::

    {"items": {name: [N, C, *shape]}, "count": [N] int32, "next": [N] int32}

``N`` slots (one per task id), capacity ``C`` each. ``count[n]`` rows are held in slot ``n``, at
positions ``0 .. count[n] - 1``; ``next[n]`` is where the next row goes (the oldest row once the
slot is full, so a full slot drops its oldest row first). Used by ARPO's per-task buffer of
successful episodes (Lu et al. 2025, https://arxiv.org/abs/2505.16282; ``algorithms/arpo_gui.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm.types import Array


def init(num_slots: int, capacity: int, fields: Mapping[str, tuple[tuple[int, ...], Any]]) -> dict[str, Any]:
    """An empty store: ``fields`` maps a row field's name to ``(shape, dtype)`` of one row."""
    if num_slots < 1 or capacity < 1:
        raise ValueError(f"replay store needs num_slots >= 1 and capacity >= 1, got {num_slots}, {capacity}")
    return {
        "items": {k: jnp.zeros((num_slots, capacity, *shape), dtype) for k, (shape, dtype) in fields.items()},
        "count": jnp.zeros((num_slots,), jnp.int32),
        "next": jnp.zeros((num_slots,), jnp.int32),
    }


def capacity_of(store: Mapping[str, Any]) -> int:
    """``C``, the rows a slot holds (static)."""
    return int(jax.tree.leaves(store["items"])[0].shape[1])


def push(store: dict[str, Any], slots: Array, rows: Mapping[str, Array], keep: Array) -> dict[str, Any]:
    """Appends row ``b`` of ``rows`` (each ``[B, *shape]``) to slot ``slots[b]`` where ``keep[b]``,
    in row order (FIFO: a full slot overwrites its oldest row). Pure and jittable."""
    C = capacity_of(store)

    def one(st, x):
        slot, row, k = x
        pos = st["next"][slot]
        items = jax.tree.map(
            lambda a, r: a.at[slot, pos].set(jnp.where(k, r.astype(a.dtype), a[slot, pos])), st["items"], row
        )
        count = st["count"].at[slot].add(jnp.where(k & (st["count"][slot] < C), 1, 0))
        nxt = st["next"].at[slot].set(jnp.where(k, (pos + 1) % C, pos))
        return {"items": items, "count": count, "next": nxt}, None

    rows = {name: jnp.asarray(rows[name]) for name in store["items"]}
    out, _ = jax.lax.scan(one, store, (jnp.asarray(slots, jnp.int32), rows, jnp.asarray(keep, bool)))
    return out


def draw(store: Mapping[str, Any], slot: int, key: Array) -> dict[str, Array]:
    """One row of slot ``slot``, uniformly among the ``count[slot]`` it holds (the slot must hold
    one): draws with replacement, as ``random.choices``."""
    i = jax.random.randint(key, (), 0, jnp.maximum(store["count"][slot], 1))
    return {name: a[slot, i] for name, a in store["items"].items()}


@jax.jit
def draw_per_group(store: Mapping[str, Any], slots: Array, key: Array) -> dict[str, Array]:
    """Row ``p`` of each field (``[P, *shape]``) is ``draw(store, slots[p], fold_in(key, p))``, the
    same row a call per group would draw. One jitted program for all ``P`` groups: a run compiles it
    at its first step (inside warm-up), where eager per-group calls compiled their indexing again
    for each new slot whenever a first replacement came. A group whose slot is empty gets that
    slot's position 0 (a zero row); the caller uses rows of non-empty slots only."""
    groups = jnp.arange(slots.shape[0])
    keys = jax.vmap(lambda p: jax.random.fold_in(key, p))(groups)
    return jax.vmap(draw, in_axes=(None, 0, 0))(store, slots.astype(jnp.int32), keys)
