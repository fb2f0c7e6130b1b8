"""Decode backends: the device-specific half of a decoding step, behind one small protocol.

``decode.decode_step`` writes the decoder block once, in plain JAX: the embedding, the norms, the
q/k/v biases and q/k norms, RoPE, the cache writes and the residual stream. What it multiplies,
how it attends and how it draws a token go through a backend (B rows, S new tokens per row):

- ``prepare(model) -> DecodeWeights``: every per-layer parameter, with the projections laid out
  the backend's way, once per sampling call (read at every step);
- ``project(weights, layer, group, x) -> (y_1, ...)``: the products ``x @ W_i`` of a group of
  weights that read the same input (``GROUPS``), x [B, S, K], each y_i [B, S, N_i]; by default
  one ``product(weights, layer, name, x)`` per member;
- ``project_residual_norm(weights, layer, group, parts, residual, norm, eps) -> (x', h)``:
  a block's output product, the residual add and the next RMSNorm,
  ``x' = residual + a @ W`` and ``h = x' / sqrt(mean(x'^2) + eps) * norm``, with ``a = parts[0]``,
  or ``a = silu(gate) * up`` for ``parts = (gate, up)`` (SwiGLU);
- ``attend(q, k, v, valid, index, allowed) -> out``: attention of q [B, S, H, Dh] over the decode
  cache (``decode.DecodeCache`` layout), [B, S, H, Dh];
- ``unembed(weights, model, h) -> logits`` [B, S, V] f32;
- ``draw(logits, temperature, uniform, with_entropy) -> (token, log q(token), H(q) or None)``:
  one token per row from ``q = softmax(logits / temperature)``, the first v with
  ``q_0 + ... + q_v > uniform`` (inverse CDF; ``processors.inverse_cdf_sample``).

``Xla`` is the reference and the default: jnp einsums that XLA compiles for any device. A backend
subclasses it and overrides what it accelerates, falling back to the reference elsewhere, and must
give the reference's tokens and log-probs (to float rounding). Optional backends live outside
``sampling/`` (``jaxrl_llm.kernels``) and ``register`` themselves under a name when imported;
``resolve`` picks the backend of a call from ``SamplingConfig.backend``: a registered name, or
``"auto"``: the first registered backend that supports the call, is meant for its devices
(``picked_by_auto``) and is built here, else ``Xla``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_llm.models.decoder import rms_norm
from jaxrl_llm.sampling import processors

# A block's projections grouped by the input they read, in the order a step runs them: a backend
# may run a group as one product (one pass over x).
GROUPS = {"qkv": ("wq", "wk", "wv"), "o": ("wo",), "gate_up": ("w_gate", "w_up"), "down": ("w_down",)}


@struct.dataclass
class DecodeWeights:
    """What a decoding step reads, laid out once per sampling call by ``Backend.prepare``.

    layers: L dicts of per-layer arrays (compute dtype): the norms and biases as the model holds
      them, the projections as the backend lays them out (the reference: the model's own shapes).
    unembed: the backend's output matrix, or None (``model.unembed``).
    laid_out: the names in ``layers`` whose entry has the backend's own layout (static).
    """

    layers: tuple
    unembed: jax.Array | None = None
    laid_out: frozenset = struct.field(pytree_node=False, default=frozenset())


def _matrix(name: str, w: jax.Array) -> jax.Array:
    """A per-layer projection as [K, N]: wq/wk/wv [D, H, Dh] -> [D, H*Dh], wo [H, Dh, D] -> [H*Dh, D]."""
    if name == "wo":
        return w.reshape(-1, w.shape[-1])
    return w.reshape(w.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Xla:
    """The reference backend: XLA's einsums and softmax, on any device and dtype.

    Instances are static arguments of the compiled sampler: frozen and hashable.
    """

    name: ClassVar[str] = "xla"

    @classmethod
    def unsupported(cls, model_cfg, mesh, rows: int) -> str | None:
        """Why this backend cannot run a call of ``rows`` rows of ``model_cfg`` on ``mesh``, or None."""
        return None

    @classmethod
    def picked_by_auto(cls, model_cfg, mesh, rows: int) -> bool:
        """Whether ``"auto"`` may pick this backend for a call it supports: a backend that runs
        everywhere but pays off only on some devices says where (default: wherever it runs)."""
        return True

    @classmethod
    def available(cls) -> bool:
        """Whether the backend is usable in this process (built, loaded); may build it."""
        return True

    @classmethod
    def for_call(cls, mesh) -> Xla:
        """The backend instance of a call on ``mesh`` (None: one device)."""
        return cls()

    def prepare(self, model) -> DecodeWeights:
        """The stacked layer parameters as L dicts of per-layer arrays (compute dtype): the step's
        weight slices are then plain inputs, not a dynamic slice of the stack before every GEMM.
        The tied unembedding stays [V, D]: a [D, V] copy for XLA's logits GEMM took 3.5% longer at
        batch 1 on a CPU and no less at batch 16."""
        cfg = model.cfg
        stacked = {name: var[...].astype(cfg.compute_dtype) for name, var in model.layers.items()}
        return DecodeWeights(layers=tuple({name: w[l] for name, w in stacked.items()} for l in range(cfg.num_layers)))

    def product(self, weights: DecodeWeights, layer: int, name: str, x: jax.Array) -> jax.Array:
        """``x @ W`` for the projection ``name`` of ``layer``: x [B, S, K] -> [B, S, N]."""
        return jnp.einsum("bsk,kn->bsn", x, _matrix(name, weights.layers[layer][name]))

    def project(self, weights: DecodeWeights, layer: int, group: str, x: jax.Array) -> tuple:
        return tuple(self.product(weights, layer, name, x) for name in GROUPS[group])

    def project_residual_norm(
        self,
        weights: DecodeWeights,
        layer: int,
        group: str,
        parts: tuple,
        residual: jax.Array,
        norm: jax.Array,
        eps: float,
    ) -> tuple[jax.Array, jax.Array]:
        a = parts[0] if len(parts) == 1 else jax.nn.silu(parts[0]) * parts[1]
        (y,) = self.project(weights, layer, group, a)
        x = residual + y
        return x, rms_norm(x, norm, eps)

    def attend(self, q, k_cache, v_cache, valid, index, allowed) -> jax.Array:
        """Softmax attention (f32 scores) of q [B, S, H, Dh] over k [B*K, Dh, Smax] and
        v [B*K, Smax, Dh] where ``allowed`` [B, 1, G*S, Smax] (G = H / K query heads per kv head)."""
        B, S, H, Dh = q.shape
        K = k_cache.shape[0] // B
        G = H // K
        cdt = q.dtype
        q = q.reshape(B, S, K, G, Dh).transpose(0, 2, 3, 1, 4).reshape(B * K, G * S, Dh)
        scores = jnp.einsum("nqd,ndt->nqt", q, k_cache.astype(cdt), preferred_element_type=jnp.float32)
        scores = scores.reshape(B, K, G * S, -1)
        scores = jnp.where(allowed, scores * (1.0 / math.sqrt(Dh)), jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(cdt).reshape(B * K, G * S, -1)
        out = jnp.einsum("nqt,ntd->nqd", probs, v_cache.astype(cdt))  # [B*K, G*S, Dh]
        return out.reshape(B, K, G, S, Dh).transpose(0, 3, 1, 2, 4).reshape(B, S, H, Dh)

    def unembed(self, weights: DecodeWeights, model, h: jax.Array) -> jax.Array:
        return model.unembed(h)

    def draw(self, logits, temperature, uniform, with_entropy: bool):
        return processors.draw(logits / temperature[:, None], uniform, with_entropy)


_REGISTRY: dict[str, type] = {Xla.name: Xla}


def rows_only_mesh_problem(mesh, rows: int) -> str | None:
    """Why a per-device kernel cannot run ``rows`` rows on ``mesh`` (each device its own rows over
    ``'data'``, nothing else sharded), or None; a backend's ``unsupported`` for meshes."""
    shape = dict(mesh.shape)
    sharded = {a: n for a, n in shape.items() if a != "data" and n != 1}
    if sharded:
        return f"the mesh shards more than rows over 'data' ({sharded})"
    if rows % shape.get("data", 1):
        return f"{rows} rows do not split over the mesh's {shape.get('data', 1)} 'data' devices"
    return None


def register(cls: type) -> type:
    """Registers a backend class (an ``Xla`` subclass) under ``cls.name``; usable as a decorator.
    Registration order is the order ``"auto"`` tries them in."""
    if not (isinstance(cls, type) and issubclass(cls, Xla)):
        raise TypeError(f"register: a backend must subclass sampling.backend.Xla, got {cls!r}")
    if cls.name == "auto" or _REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"register: the backend name {cls.name!r} is taken")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    """The registered backend names (``"xla"`` first)."""
    return tuple(_REGISTRY)


def registered(name: str) -> type:
    """The backend class registered under ``name``; a ``ValueError`` naming the registered ones if none."""
    if name not in _REGISTRY:
        raise ValueError(
            f"sampling backend {name!r} is not registered (registered: {list(_REGISTRY)}; "
            f"optional ones register on import, e.g. `import jaxrl_llm.kernels` for 'cpu')"
        )
    return _REGISTRY[name]


def resolve(name: str, model_cfg, mesh, rows: int) -> Xla:
    """The backend that runs a call of ``rows`` rows of ``model_cfg`` on ``mesh`` (None: one device).

    ``"auto"``: the first registered backend other than the reference that supports the call, is
    ``picked_by_auto`` for it and is available here, else ``Xla``. A name: that backend; a
    ``ValueError`` if it is not registered or cannot run this call (its reason), and ``Xla`` where
    it is registered but did not build here (the backend warns why).
    """
    if name == "auto":
        for cls in list(_REGISTRY.values())[1:]:
            if (
                cls.unsupported(model_cfg, mesh, rows) is None
                and cls.picked_by_auto(model_cfg, mesh, rows)
                and cls.available()
            ):
                return cls.for_call(mesh)
        return Xla()
    cls = registered(name)
    reason = cls.unsupported(model_cfg, mesh, rows)
    if reason is not None:
        raise ValueError(f"sampling backend {name!r} cannot run this call: {reason}")
    return cls.for_call(mesh) if cls.available() else Xla()
