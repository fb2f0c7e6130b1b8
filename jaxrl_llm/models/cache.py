"""The KV cache: preallocated per-layer keys/values plus a slot-validity mask.

Slots are written left to right at a shared ``index`` for every row. Rows may hold different
amounts of real context (left padding, per-row prefixes, branching from different positions):
``valid`` marks the slots a query may attend to, while RoPE positions are passed per token, so a
row's slots need not be contiguous in position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

# Logical axes of k / v (leading "layers") and of valid, for the sharding rules table.
KV_AXES = ("layers", "batch", "cache_seq", "kv_heads", "head_dim")
VALID_AXES = ("batch", "cache_seq")


@struct.dataclass
class KVCache:
    """k, v: [L, B, S_max, K, Dh]; valid: [B, S_max] bool; index: [] int32 next slot to write."""

    k: jax.Array
    v: jax.Array
    valid: jax.Array
    index: jax.Array

    @classmethod
    def empty(cls, num_layers, batch_size, max_len, num_kv_heads, head_dim, dtype=jnp.float32):
        shape = (num_layers, batch_size, max_len, num_kv_heads, head_dim)
        return cls(
            k=jnp.zeros(shape, dtype),
            v=jnp.zeros(shape, dtype),
            valid=jnp.zeros((batch_size, max_len), jnp.bool_),
            index=jnp.zeros((), jnp.int32),
        )

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    def take_rows(self, rows: jax.Array) -> KVCache:
        """Gathers rows (e.g. repeat each prompt's prefill G times, or branch K continuations)."""
        return KVCache(
            k=jnp.take(self.k, rows, axis=1),
            v=jnp.take(self.v, rows, axis=1),
            valid=jnp.take(self.valid, rows, axis=0),
            index=self.index,
        )

    def truncate(self, keep_until: jax.Array) -> KVCache:
        """Invalidates, per row, every slot at or after ``keep_until`` [B] (branching from a position)."""
        slots = jnp.arange(self.max_len)
        return self.replace(valid=self.valid & (slots[None, :] < keep_until[:, None]))
