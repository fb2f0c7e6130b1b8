"""Model configuration for the Llama / Qwen2 / Qwen3 decoder family.

A ``ModelConfig`` is frozen and hashable: it sits in the (static) graph definition of an NNX
model, which ``jax.jit`` hashes, so every field is a scalar, a string, a tuple or a frozen
dataclass (``rope.RopeScaling``), never a dict or a list.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping

import jax.numpy as jnp

from jaxrl_llm.models import attention, remat, rope

ARCHITECTURES = ("llama", "qwen2", "qwen3")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a decoder-only transformer (names follow Hugging Face configs).

    ``architecture`` picks the family's fixed choices: ``qwen2`` has q/k/v biases, ``qwen3`` has
    RMSNorm on q and k per head; ``llama`` has neither (unless ``attention_bias`` is set, as some
    Llama-architecture checkpoints do).

    ``attention_impl`` picks how attention runs (``attention.IMPLEMENTATIONS``; ``"auto"`` is
    cuDNN on a GPU, splash on a TPU, the reference ``"xla"`` on a CPU): an execution choice, not
    part of the architecture (checkpoints neither store nor read it). So are the memory and
    compile controls:

    - ``remat``: what the backward pass keeps of each decoder block (``remat.POLICIES``, see
      ``jaxrl_llm.models.remat``): ``"none"`` (everything; the default), ``"dots_saveable"``,
      ``"dots"``, ``"full"`` (only the layer's input): less memory for recomputation time. A
      policy other than ``"none"`` also rolls the layer loop (as ``scan_layers``).
    - ``scan_layers``: run the layers of an uncached call (training, log-probs) as a rolled
      ``lax.scan``, one compiled layer body, instead of unrolling it L times (the default): compile
      time then stays flat in depth; the step runs somewhat slower (the loop-carried layout; on
      XLA:CPU ~11% at SmolLM2-135M, ``Decoder.hidden_states``). Cached calls always loop.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    architecture: str = "llama"
    rope_theta: float = 10_000.0
    rope_scaling: rope.RopeScaling | None = None  # a HF rope_parameters dict is converted
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 4096
    dtype: str = "float32"  # compute dtype of activations and matmuls
    param_dtype: str = "float32"  # storage dtype of the parameters
    attention_impl: str = "auto"  # attention.IMPLEMENTATIONS
    remat: str = "none"  # remat.POLICIES
    scan_layers: bool = False  # uncached calls: rolled scan over layers (True) or fully unrolled
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if isinstance(self.rope_scaling, Mapping):
            object.__setattr__(
                self,
                "rope_scaling",
                rope.RopeScaling.from_hf(
                    self.rope_scaling, max_position_embeddings=self.max_position_embeddings, where="rope_scaling"
                ),
            )
        elif self.rope_scaling is not None and not isinstance(self.rope_scaling, rope.RopeScaling):
            raise ValueError(f"rope_scaling={self.rope_scaling!r}; expected None, a rope.RopeScaling or a dict")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            object.__setattr__(self, name, _token_ids(name, getattr(self, name)))
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; supported: {ARCHITECTURES}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"{name}={getattr(self, name)!r}; expected float32, bfloat16 or float16")
        attention.check(self.attention_impl, "attention_impl")
        remat.check(self.remat, "remat")
        if not isinstance(self.scan_layers, bool):
            raise ValueError(f"scan_layers={self.scan_layers!r}; expected True or False")
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError("hidden_size must be divisible by num_heads when head_dim is not given")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        for f in dataclasses.fields(self):
            try:
                hash(getattr(self, f.name))
            except TypeError:
                raise ValueError(
                    f"ModelConfig.{f.name}={getattr(self, f.name)!r} is not hashable "
                    f"(the config is a static argument under jax.jit)"
                ) from None

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def storage_dtype(self):
        return jnp.dtype(self.param_dtype)

    @property
    def layers_rolled(self) -> bool:
        """Whether an uncached call runs the layers as a rolled loop: ``scan_layers``, or any remat
        policy (which needs the loop, ``jaxrl_llm.models.remat``). Cached calls always do."""
        return self.scan_layers or self.remat != "none"

    @property
    def has_qkv_bias(self) -> bool:
        return self.attention_bias or self.architecture == "qwen2"

    @property
    def has_qk_norm(self) -> bool:
        return self.qk_norm or self.architecture == "qwen3"

    @property
    def num_params(self) -> int:
        d, f, h, kv, hd, v = (
            self.hidden_size,
            self.intermediate_size,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.vocab_size,
        )
        attn = d * h * hd + 2 * d * kv * hd + h * hd * d
        if self.has_qkv_bias:
            attn += h * hd + 2 * kv * hd
        if self.has_qk_norm:
            attn += 2 * hd
        layer = attn + 3 * d * f + 2 * d
        return self.num_layers * layer + v * d + d + (0 if self.tie_word_embeddings else v * d)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _token_ids(name: str, ids):
    """None, an int, or (``eos_token_id`` only, as HF lists several) a tuple of ints."""
    try:
        if ids is None:
            return None
        if name == "eos_token_id" and isinstance(ids, (list, tuple)):
            return tuple(operator.index(i) for i in ids)
        return operator.index(ids)
    except TypeError:
        kinds = "an int, a list of ints or None" if name == "eos_token_id" else "an int or None"
        raise ValueError(f"{name}={ids!r}; expected {kinds}") from None
