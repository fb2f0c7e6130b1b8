"""The CPU decode kernels: XLA FFI custom calls in ``cpu_matmul.cc`` (the "cpu" backend's ops).

Decoding multiplies a few rows (M = rows x new tokens) by every weight matrix, once per step, so
a step's time is the time to stream the weights. XLA:CPU's GEMM reads a [K, N] weight in place
and, at M = 16, streams SmolLM2-135M's projections at about half the rate it reaches at M = 1.

- ``pack`` lays a weight out once per sampling call as [N/64, K, 64] (contiguous 64-column
  panels); ``matmul`` multiplies by it.
- ``decode_attention``: one new token's attention over the decode cache, reading only the slots
  up to the step's index.
- ``sample_rows``: the unfiltered draw (inverse CDF), its log-prob and the entropy, one pass per row.

They run on worker threads of their own (``Workers`` in the source), as many as XLA's intra-op
pool has. Sums run in another order than XLA's: results agree to f32 rounding, not bit for bit.

The library is compiled by ``build()`` with the machine's ``g++`` (``$CXX``; ``-O3
-march=native``, a few seconds) into ``$JAXRL_LLM_KERNEL_CACHE`` (default
``~/.cache/jaxrl_llm/kernels``), keyed by the source, the jaxlib version and the CPU's feature
flags; a compilation prints one line to stderr saying so and where. ``available()`` builds (once
per process, when a sampling call first asks for the "cpu" backend) and registers the custom
calls; where the build fails (no compiler, no headers) it is False, a warning says why, and the
sampler decodes with the XLA reference. ``JAXRL_LLM_CPU_KERNELS=0`` turns the kernels off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
import warnings

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

PANEL = 64
TARGET = "jaxrl_llm_packed_matmul"
PACK_TARGET = "jaxrl_llm_pack"
ATTENTION_TARGET = "jaxrl_llm_decode_attention"
RESIDUAL_NORM_TARGET = "jaxrl_llm_matmul_residual_norm"
SAMPLE_TARGET = "jaxrl_llm_sample_rows"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_matmul.cc")

_lock = threading.Lock()
_state: dict = {}


def build() -> str:
    """Path of the compiled kernel library, compiling it first if the cache has none for this
    source, jaxlib and CPU; raises ``RuntimeError`` naming the command when the compiler fails."""
    with open(SOURCE, "rb") as f:
        key = f.read() + jaxlib.__version__.encode() + _cpu_flags()
    digest = hashlib.sha256(key).hexdigest()[:16]
    cache = os.environ.get("JAXRL_LLM_KERNEL_CACHE", os.path.expanduser("~/.cache/jaxrl_llm/kernels"))
    os.makedirs(cache, exist_ok=True)
    lib = os.path.join(cache, f"cpu_matmul-{digest}.so")
    if os.path.exists(lib):
        return lib
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)  # compile aside, then rename: no torn library
    os.close(fd)
    cmd = [
        os.environ.get("CXX", "g++"),
        "-O3",
        "-march=native",
        "-std=c++17",
        "-shared",
        "-fPIC",
        "-w",
        f"-I{jax.ffi.include_dir()}",
        SOURCE,
        "-o",
        tmp,
    ]
    print(
        f"jaxrl_llm: compiling the CPU decode kernels ({cmd[0]} -O3 -march=native) into {lib}",
        file=sys.stderr,
        flush=True,
    )
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except OSError as e:  # no such compiler
            raise RuntimeError(f"{' '.join(cmd)} failed: {e}") from None
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return lib


def _cpu_flags() -> bytes:
    """The CPU's feature flags: a library built with -march=native on one CPU is not reused on another."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            return next((line for line in f if line.startswith((b"flags", b"Features"))), b"")
    except OSError:
        return platform.processor().encode()


def available() -> bool:
    """Whether the kernels are built and registered (builds them on the first call; see ``build``)."""
    with _lock:
        if "ok" not in _state:
            if os.environ.get("JAXRL_LLM_CPU_KERNELS", "1") == "0":
                _state["ok"] = False
            else:
                try:
                    library = ctypes.cdll.LoadLibrary(build())
                    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.JaxrlLlmPackedMatmul), platform="cpu")
                    jax.ffi.register_ffi_target(PACK_TARGET, jax.ffi.pycapsule(library.JaxrlLlmPack), platform="cpu")
                    jax.ffi.register_ffi_target(
                        ATTENTION_TARGET, jax.ffi.pycapsule(library.JaxrlLlmDecodeAttention), platform="cpu"
                    )
                    jax.ffi.register_ffi_target(
                        RESIDUAL_NORM_TARGET, jax.ffi.pycapsule(library.JaxrlLlmMatmulResidualNorm), platform="cpu"
                    )
                    jax.ffi.register_ffi_target(
                        SAMPLE_TARGET, jax.ffi.pycapsule(library.JaxrlLlmSampleRows), platform="cpu"
                    )
                    _state["ok"] = True
                except Exception as e:  # no compiler, no headers, a sandbox without a writable home...
                    warnings.warn(f"jaxrl_llm's CPU decode kernels did not build, decoding falls back to XLA: {e}")
                    _state["ok"] = False
        return _state["ok"]


def packable(n: int, dtype) -> bool:
    """Whether a weight with ``n`` output columns and ``dtype`` can be packed."""
    return n % PANEL == 0 and jnp.dtype(dtype) == jnp.float32


def pack(w, layer: int | None = None, transposed: bool = False) -> jax.Array:
    """The [N/64, K, 64] panels of a weight W [K, N]: panel p holds columns [64p, 64p + 64).

    ``w`` is W itself [K, N], or a stack [L, K, N] (``layer`` picks one; no slice is copied
    first), or a list of such stacks [L, K, N_i] whose layer ``layer`` W concatenates along N
    (fused projections: no concatenated copy is made first), or with ``transposed`` W^T [N, K]
    (e.g. an embedding table used as the output matrix). The copy runs in ``cpu_matmul.cc`` on
    the kernels' worker threads.
    """
    ws = list(w) if isinstance(w, (list, tuple)) else [w]
    if transposed:
        if len(ws) != 1 or ws[0].ndim != 2:
            raise ValueError(f"pack: transposed packs one [N, K] table, got {[x.shape for x in ws]}")
        N, K = ws[0].shape
        layer = 0
    else:
        if layer is None:
            layer = 0
        ws = [x[None] if x.ndim == 2 else x for x in ws]
        if len({x.shape[:2] for x in ws}) != 1:
            raise ValueError(f"pack: the stacks' layers and rows differ: {[x.shape for x in ws]}")
        K = ws[0].shape[1]
        for x in ws:
            if not packable(x.shape[2], x.dtype):
                raise ValueError(f"pack: {x.shape[2]} columns of {x.dtype} do not split into f32 panels of {PANEL}")
        N = sum(x.shape[2] for x in ws)
    if not packable(N, ws[0].dtype):
        raise ValueError(f"pack: {N} columns of {ws[0].dtype} do not split into f32 panels of {PANEL}")
    out = jax.ShapeDtypeStruct((N // PANEL, K, PANEL), jnp.float32)
    return jax.ffi.ffi_call(PACK_TARGET, out)(*ws, layer=np.int64(layer), transposed=np.int64(transposed))


def unpack(packed: jax.Array) -> jax.Array:
    """The [K, N] matrix of ``pack``'s panels."""
    P, K, _ = packed.shape
    return packed.transpose(1, 0, 2).reshape(K, P * PANEL)


def _ahead_panels(ahead: jax.Array | None, caller: str) -> jax.Array:
    """A product's ``ahead`` hint, checked: packed f32 panels, or none ([0, 1, 64])."""
    if ahead is None:
        return jnp.zeros((0, 1, PANEL), jnp.float32)
    if ahead.ndim != 3 or ahead.shape[2] != PANEL or ahead.dtype != jnp.float32:
        raise ValueError(f"{caller}: ahead must be packed f32 panels [P, K, {PANEL}], got {ahead.shape} {ahead.dtype}")
    return ahead


def matmul(x: jax.Array, packed: jax.Array, max_threads: int = 0, ahead: jax.Array | None = None) -> jax.Array:
    """``x @ unpack(packed)`` for f32 ``x`` [..., K] on the CPU: [..., N].

    ``max_threads`` > 0 caps the threads it runs on (1 under a multi-device mesh, where each
    device already runs on its own core); 0: as many as XLA's intra-op pool has. ``ahead``: the
    packed weight of the product that will run next, whose first panels the call prefetches
    (read by no computation: a hint, which changes no value)."""
    P, K, _ = packed.shape
    if x.shape[-1] != K:
        raise ValueError(f"matmul: x's last dim {x.shape[-1]} != the packed weight's K {K}")
    ahead = _ahead_panels(ahead, "matmul")
    out = jax.ShapeDtypeStruct((*x.shape[:-1], P * PANEL), jnp.float32)
    return jax.ffi.ffi_call(TARGET, out)(x.astype(jnp.float32), packed, ahead, max_threads=np.int64(max_threads))


def matmul_residual_norm(
    x: jax.Array,
    packed: jax.Array,
    residual: jax.Array,
    norm: jax.Array,
    eps: float,
    swiglu: bool = False,
    max_threads: int = 0,
    ahead: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A decoder block's output projection and the next RMSNorm in one call: (x', h) with

        x' = residual + a @ unpack(packed),   h = x' / sqrt(mean(x'^2) + eps) * norm,

    where a = x, or with ``swiglu`` a = silu(x[..., :K]) * x[..., K:] (x [..., 2K]: the fused
    gate/up output feeding the down projection). residual [..., N] with x's leading dims, norm
    [N]; f32. ``max_threads`` and ``ahead`` as in ``matmul``.
    """
    P, K, _ = packed.shape
    N = P * PANEL
    if x.shape[-1] != (2 * K if swiglu else K) or residual.shape != (*x.shape[:-1], N) or norm.shape != (N,):
        raise ValueError(
            f"matmul_residual_norm: x {x.shape}, packed {packed.shape}, residual {residual.shape}, "
            f"norm {norm.shape} do not fit (swiglu={swiglu})"
        )
    ahead = _ahead_panels(ahead, "matmul_residual_norm")
    out = (jax.ShapeDtypeStruct(residual.shape, jnp.float32), jax.ShapeDtypeStruct(residual.shape, jnp.float32))
    return tuple(
        jax.ffi.ffi_call(RESIDUAL_NORM_TARGET, out)(
            x.astype(jnp.float32),
            packed,
            ahead,
            residual.astype(jnp.float32),
            norm.astype(jnp.float32),
            eps=np.float32(eps),
            swiglu=np.int64(swiglu),
            max_threads=np.int64(max_threads),
        )
    )


def decode_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, valid: jax.Array, index: jax.Array, scale: float, max_threads: int = 0
) -> jax.Array:
    """One new token's attention over a decode cache, per (row, kv head) n = b * K + kv:

        out[n, g] = sum_t softmax_t(scale * q[n, g] . k[n, :, t]) v[n, t, :]

    over the slots t <= ``index`` with ``valid[b, t]`` (slots after ``index`` are not read).
    q [B*K, G, Dh], k [B*K, Dh, T], v [B*K, T, Dh] f32; valid [B, T] bool; index [] int32.
    Returns [B*K, G, Dh] f32. The softmax's exp is a degree-6 polynomial (relative error < 2e-7).
    ``max_threads``: as in ``matmul``.
    """
    out = jax.ShapeDtypeStruct(q.shape, jnp.float32)
    return jax.ffi.ffi_call(ATTENTION_TARGET, out)(
        q,
        k,
        v,
        valid.astype(jnp.bool_),
        jnp.asarray(index, jnp.int32),
        scale=np.float32(scale),
        max_threads=np.int64(max_threads),
    )


def sample_rows(
    logits: jax.Array, temperature: jax.Array, uniform: jax.Array, max_threads: int = 0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One token per row from ``q = softmax(logits / temperature)`` by inverting its CDF at ``uniform``.

    The first v with ``q_0 + ... + q_v > uniform`` (a token with ``q = 0`` is never drawn), as
    ``processors.inverse_cdf_sample``, in one fused pass per row. logits [B, V], temperature [B],
    uniform [B] (in [0, 1)), f32. Returns (token [B] int32, log q(token) [B], H(q) [B]).
    ``max_threads``: as in ``matmul``.
    """
    B = logits.shape[0]
    out = (
        jax.ShapeDtypeStruct((B,), jnp.int32),
        jax.ShapeDtypeStruct((B,), jnp.float32),
        jax.ShapeDtypeStruct((B,), jnp.float32),
    )
    return tuple(
        jax.ffi.ffi_call(SAMPLE_TARGET, out)(
            logits.astype(jnp.float32),
            jnp.asarray(temperature, jnp.float32),
            jnp.asarray(uniform, jnp.float32),
            max_threads=np.int64(max_threads),
        )
    )
