"""The "cpu" decode backend: the sampler's step on the hand-written kernels of ``cpu_matmul``.

Registered with ``jaxrl_llm.sampling.backend`` when ``jaxrl_llm.kernels`` is imported; ``"auto"``
picks it for f32 compute on CPU devices: one device, or a data-parallel mesh (only "data" > 1,
dividing the rows), where each device runs the kernels on its own rows under ``shard_map`` (the
custom calls have no partitioning rule). It overrides the reference (``backend.Xla``) where a
kernel applies and falls back to it elsewhere:

- ``prepare`` packs each projection once per call into contiguous 64-column panels
  (``cpu_matmul.pack``), q/k/v and gate/up side by side (one product and one pass over x per
  group), and the output matrix; a weight whose output width 64 does not divide stays the
  reference's einsum. XLA:CPU's GEMM streamed SmolLM2-135M's weights at ~20 GB/s at 16 rows, half
  its rate at one row.
- ``project_residual_norm``: the output projection, the residual add and the next RMSNorm (and
  SwiGLU's ``silu(gate) * up`` before the down projection) in one call
  (``cpu_matmul.matmul_residual_norm``): no XLA ops between the kernels.
- ``attend``: one new token's attention reads only the cache slots up to the step's index
  (``cpu_matmul.decode_attention``, head_dim a multiple of 16, f32 cache); XLA ran it on one core.
- ``draw``: the unfiltered draw, its log q and H(q) in one pass per row (``cpu_matmul.sample_rows``).

Each product prefetches the first panels of the one that runs next (``ahead``). Sums run in
another order than XLA's: tokens and log-probs equal the reference's to f32 rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_llm.kernels import cpu_matmul
from jaxrl_llm.sampling import backend

# the order a step runs its products in: a fused group's name, or a member packed alone
_STEP_ORDER = ("qkv", "wq", "wk", "wv", "o", "gate_up", "w_gate", "w_up", "down")


@struct.dataclass
class PackedWeights:
    """``backend.DecodeWeights`` with packed panels: ``layers[l][g]`` for a packed group g (or a
    member packed alone) holds ``cpu_matmul.pack`` of its [K, N] matrix; ``unembed`` the packed
    [D, V] output matrix or None; ``laid_out`` the packed names; ``widths`` the pairs (packed group,
    its members' N_i)."""

    layers: tuple
    unembed: jax.Array | None = None
    laid_out: frozenset = struct.field(pytree_node=False, default=frozenset())
    widths: tuple = struct.field(pytree_node=False, default=())

    def following(self, layer: int | None, name: str) -> jax.Array | None:
        """The packed weight of the product a step runs after ``name`` of ``layer`` (the
        unembedding, ``layer`` None, is followed by the next step's first): ``ahead``."""
        chain = [(l, n) for l in range(len(self.layers)) for n in _STEP_ORDER if n in self.laid_out]
        chain += [(None, "unembed")] if self.unembed is not None else []
        l, n = chain[(chain.index((layer, name)) + 1) % len(chain)]
        return self.unembed if n == "unembed" else self.layers[l][n]


def _stacked_matrix(name: str, w: jax.Array) -> jax.Array:
    """A stacked projection as [L, K, N]: wq/wk/wv [L, D, H, Dh] -> [L, D, H*Dh], wo [L, H, Dh, D] -> [L, H*Dh, D]."""
    if name == "wo":
        return w.reshape(w.shape[0], -1, w.shape[-1])
    return w.reshape(*w.shape[:2], -1)


@backend.register
@dataclasses.dataclass(frozen=True)
class CpuKernels(backend.Xla):
    """The CPU kernels as a decode backend. mesh: the data-parallel mesh the kernels run under
    (``shard_map``: each device its own rows), or None (one device)."""

    name: ClassVar[str] = "cpu"
    mesh: Any = None

    @classmethod
    def unsupported(cls, model_cfg, mesh, rows: int) -> str | None:
        if jnp.dtype(model_cfg.compute_dtype) != jnp.float32:
            return f"the kernels compute in float32, the model in {jnp.dtype(model_cfg.compute_dtype).name}"
        devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
        platforms = sorted({d.platform for d in devices} - {"cpu"})
        if platforms:
            return f"the kernels run on CPU devices, these are {platforms}"
        if len(devices) > 1:
            return backend.rows_only_mesh_problem(mesh, rows)
        return None

    @classmethod
    def available(cls) -> bool:
        return cpu_matmul.available()

    @classmethod
    def for_call(cls, mesh) -> CpuKernels:
        return cls(mesh=mesh if mesh is not None and mesh.size > 1 else None)

    @property
    def threads(self) -> int:
        """The kernels' ``max_threads``: all of the pool on one device; one each on a mesh, where
        every device already runs on its own core."""
        return 0 if self.mesh is None else 1

    def _per_shard(self, fn, *row_args, replicated=()):
        """``fn(*row_args, *replicated)``; on a mesh each device runs it on its own rows
        (``row_args`` and the result split along their leading axis, ``replicated`` whole)."""
        if self.mesh is None:
            return fn(*row_args, *replicated)
        rows, whole = jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec()
        return jax.shard_map(
            fn,
            mesh=self.mesh,
            in_specs=(rows,) * len(row_args) + (whole,) * len(replicated),
            out_specs=rows,
            check_vma=False,
        )(*row_args, *replicated)

    def _matmul(self, x2d, packed, ahead):
        matmul = functools.partial(cpu_matmul.matmul, max_threads=self.threads)
        return self._per_shard(lambda x, w, a: matmul(x, w, ahead=a), x2d, replicated=(packed, ahead))

    def prepare(self, model) -> PackedWeights:
        """The reference's per-layer weights with every packable projection packed: a group whose
        members all pack is one matrix (its members side by side, no concatenated copy first)."""
        ref = super().prepare(model)
        cfg = model.cfg
        cdt = cfg.compute_dtype
        matrices = {
            name: _stacked_matrix(name, model.layers[name][...].astype(cdt))
            for names in backend.GROUPS.values()
            for name in names
        }
        single = {name for name, w in matrices.items() if cpu_matmul.packable(w.shape[2], cdt)}
        fused = {group: names for group, names in backend.GROUPS.items() if single.issuperset(names)}
        for names in fused.values():
            single -= set(names)
        sources = {name: [matrices[name]] for name in single}
        sources.update({group: [matrices[name] for name in names] for group, names in fused.items()})
        members = {name for names in fused.values() for name in names}
        layers = []
        for l, p in enumerate(ref.layers):
            layer = {name: w for name, w in p.items() if name not in single and name not in members}
            layer.update({name: cpu_matmul.pack(source, layer=l) for name, source in sources.items()})
            layers.append(layer)
        unembed = None
        if cpu_matmul.packable(cfg.vocab_size, cdt):
            unembed = (
                cpu_matmul.pack(model.embed[...].astype(cdt), transposed=True)
                if cfg.tie_word_embeddings
                else cpu_matmul.pack(model.lm_head[...].astype(cdt))
            )
        widths = tuple((group, tuple(matrices[name].shape[2] for name in names)) for group, names in fused.items())
        return PackedWeights(layers=tuple(layers), unembed=unembed, laid_out=frozenset(sources), widths=widths)

    def product(self, weights: PackedWeights, layer: int, name: str, x: jax.Array) -> jax.Array:
        if name not in weights.laid_out:
            return super().product(weights, layer, name, x)
        B, S = x.shape[:2]
        y = self._matmul(x.reshape(B * S, -1), weights.layers[layer][name], weights.following(layer, name))
        return y.reshape(B, S, -1)

    def project(self, weights: PackedWeights, layer: int, group: str, x: jax.Array) -> tuple:
        if group not in weights.laid_out:
            return super().project(weights, layer, group, x)
        y = self.product(weights, layer, group, x)  # [B, S, sum N_i]
        return tuple(jnp.split(y, list(itertools.accumulate(dict(weights.widths)[group]))[:-1], axis=-1))

    def project_residual_norm(
        self,
        weights: PackedWeights,
        layer: int,
        group: str,
        parts: tuple,
        residual: jax.Array,
        norm: jax.Array,
        eps: float,
    ) -> tuple[jax.Array, jax.Array]:
        if group not in weights.laid_out:
            return super().project_residual_norm(weights, layer, group, parts, residual, norm, eps)
        # (gate, up) travel as one [.., 2F] input, silu(gate) * up computed in the call; when they
        # are the split of one fused product XLA folds the concatenation away
        a = jnp.concatenate(parts, axis=-1)
        call = functools.partial(
            cpu_matmul.matmul_residual_norm, eps=eps, swiglu=len(parts) == 2, max_threads=self.threads
        )
        B, S = residual.shape[:2]
        x, h = self._per_shard(
            lambda a, r, w, n, ahead: call(a, w, r, n, ahead=ahead),
            a.reshape(B * S, -1),
            residual.reshape(B * S, -1),
            replicated=(weights.layers[layer][group], norm, weights.following(layer, group)),
        )
        return x.reshape(residual.shape), h.reshape(residual.shape)

    def attend(self, q, k_cache, v_cache, valid, index, allowed) -> jax.Array:
        B, S, H, Dh = q.shape
        if S != 1 or Dh % 16 or k_cache.dtype != jnp.float32:
            return super().attend(q, k_cache, v_cache, valid, index, allowed)
        K = k_cache.shape[0] // B
        attend = functools.partial(cpu_matmul.decode_attention, scale=1.0 / math.sqrt(Dh), max_threads=self.threads)
        out = self._per_shard(attend, q.reshape(B * K, H // K, Dh), k_cache, v_cache, valid, replicated=(index,))
        return out.reshape(B, S, H, Dh)

    def unembed(self, weights: PackedWeights, model, h: jax.Array) -> jax.Array:
        if weights.unembed is None:
            return super().unembed(weights, model, h)
        B, S = h.shape[:2]
        logits = self._matmul(h.reshape(B * S, -1), weights.unembed, weights.following(None, "unembed"))
        return logits.reshape(B, S, -1)

    def draw(self, logits, temperature, uniform, with_entropy: bool):
        draw = functools.partial(cpu_matmul.sample_rows, max_threads=self.threads)
        token, logq, entropy = self._per_shard(lambda *a: tuple(draw(*a)), logits, temperature, uniform)
        return token, logq, entropy if with_entropy else None
