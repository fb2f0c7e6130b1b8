"""Shardings of the model's parameters and KV cache, from their logical axis names.

Every ``nnx.Param`` of ``Decoder`` carries ``logical_axes`` metadata; ``jaxrl_llm.sharding.RULES``
maps those names to mesh axes. A dim the mesh does not divide is replicated
(``sharding.divisible_sharding``), so any model runs on any mesh.

For the trainer::

    graphdef, params = nnx.split(model, nnx.Param)
    shardings = partition.param_shardings(model, mesh)   # same tree structure as ``params``
    step = jax.jit(train_step, in_shardings=(shardings, ...), out_shardings=(shardings, ...))

or ``partition.shard_model(model, mesh)`` to move a model's parameters in place.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxrl_llm import sharding
from jaxrl_llm.models import cache as cache_lib


def _is_var(x):
    return isinstance(x, nnx.Variable)


def param_shardings(model, mesh):
    """An ``nnx.State`` of ``NamedSharding`` matching ``nnx.state(model, nnx.Param)``'s structure."""
    state = nnx.state(model, nnx.Param)

    def spec(var):
        axes = var.get_metadata().get("logical_axes")
        if axes is None:
            raise ValueError(f"parameter of shape {var.shape} has no logical_axes metadata")
        return sharding.divisible_sharding(mesh, axes, var.shape)

    return jax.tree.map(spec, state, is_leaf=_is_var)


def shard_model(model, mesh):
    """Moves every parameter of ``model`` onto its shard of ``mesh`` (in place). Returns ``model``."""
    state = nnx.state(model, nnx.Param)
    placed = jax.device_put(state, param_shardings(model, mesh))
    nnx.update(model, placed)
    return model


def cache_shardings(cache: cache_lib.KVCache, mesh) -> cache_lib.KVCache:
    """A ``KVCache`` of ``NamedSharding`` (k/v by ``KV_AXES``, valid by ``VALID_AXES``, index replicated)."""
    kv = sharding.divisible_sharding(mesh, cache_lib.KV_AXES, cache.k.shape)
    return cache_lib.KVCache(
        k=kv,
        v=kv,
        valid=sharding.divisible_sharding(mesh, cache_lib.VALID_AXES, cache.valid.shape),
        index=sharding.named_sharding(mesh, ()),
    )
