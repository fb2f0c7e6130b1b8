"""Hugging Face checkpoints in and out: ``config.json`` + safetensors <-> ``Decoder``.

Layout mapping (HF ``nn.Linear`` stores ``weight`` as [out, in]; we store [in, out] with the head
axes split out so the sharding rules can name them):

  model.embed_tokens.weight            [V, D]       -> embed          [V, D]
  model.layers.{i}.self_attn.q_proj.weight [H*Dh, D] -> layers.wq[i]  [D, H, Dh]
  ...k_proj / v_proj.weight            [K*Dh, D]    -> wk / wv[i]     [D, K, Dh]
  ...o_proj.weight                     [D, H*Dh]    -> wo[i]          [H, Dh, D]
  ...q_proj / k_proj / v_proj.bias     [H*Dh]/[K*Dh]-> bq / bk / bv[i] [H, Dh] / [K, Dh]   (Qwen2)
  ...q_norm / k_norm.weight            [Dh]         -> q_norm / k_norm[i]                  (Qwen3)
  ...mlp.gate_proj / up_proj.weight    [F, D]       -> w_gate / w_up[i] [D, F]
  ...mlp.down_proj.weight              [D, F]       -> w_down[i]      [F, D]
  ...input_layernorm / post_attention_layernorm.weight [D] -> attn_norm / mlp_norm[i]
  model.norm.weight                    [D]          -> final_norm
  lm_head.weight                       [V, D]       -> lm_head        [D, V]   (absent when tied)

Loading builds the model abstractly (no random init), reads each tensor from a memory map, checks
its shape, and places it directly on its shard when a mesh is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from flax import nnx
from jax.experimental import multihost_utils

from jaxrl_llm import sharding
from jaxrl_llm.models import rope, safetensors_io
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder

# model_type -> HF class name of the causal-LM head model.
HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

_LAYER_TENSORS = {
    "attn_norm": "input_layernorm.weight",
    "mlp_norm": "post_attention_layernorm.weight",
    "wq": "self_attn.q_proj.weight",
    "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight",
    "wo": "self_attn.o_proj.weight",
    "bq": "self_attn.q_proj.bias",
    "bk": "self_attn.k_proj.bias",
    "bv": "self_attn.v_proj.bias",
    "q_norm": "self_attn.q_norm.weight",
    "k_norm": "self_attn.k_norm.weight",
    "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight",
    "w_down": "mlp.down_proj.weight",
}
# Number of leading (input-side) axes of our per-layer matrix; the rest are output axes.
_IN_AXES = {"wq": 1, "wk": 1, "wv": 1, "wo": 2, "w_gate": 1, "w_up": 1, "w_down": 1}


class CheckpointError(ValueError):
    """A checkpoint that does not match what the config says (missing/unexpected/misshapen tensor)."""


# ---------------------------------------------------------------------------------- config
def config_from_hf(hf, *, dtype=None) -> ModelConfig:
    """``ModelConfig`` from a ``transformers`` config (or its dict), rejecting what we cannot run.

    Every setting that changes the computation is either carried over (rope scaling as a
    hashable ``rope.RopeScaling``, a list of eos ids as a tuple) or rejected here with one line
    naming the field and its value: another activation, MLP / o_proj biases, sliding-window
    layers, rope types whose frequencies depend on the sequence length.
    ``dtype`` (None: the checkpoint's ``dtype``, else float32) sets both storage and compute dtype.
    """
    get = hf.get if isinstance(hf, dict) else (lambda k, d=None: getattr(hf, k, d))
    model_type = get("model_type")
    if model_type not in HF_ARCHITECTURES:
        raise ValueError(
            f"unknown architecture: model_type={model_type!r} (architectures="
            f"{get('architectures')}); supported: {sorted(HF_ARCHITECTURES)}"
        )
    if get("hidden_act", "silu") != "silu":
        raise NotImplementedError(f"hidden_act={get('hidden_act')!r} is not supported: only silu (SwiGLU)")
    if get("mlp_bias", False):
        raise NotImplementedError(f"mlp_bias={get('mlp_bias')!r} is not supported (no MLP biases)")
    if model_type != "qwen2" and get("attention_bias", False):
        raise NotImplementedError(
            f"attention_bias={get('attention_bias')!r} for {model_type} (a bias on o_proj too) is not supported"
        )
    num_layers = get("num_hidden_layers")
    layer_types = get("layer_types")
    if layer_types is None and get("use_sliding_window", False):  # a raw dict: derive as transformers does
        first = get("max_window_layers", 0) or 0
        layer_types = ["full_attention" if i < first else "sliding_attention" for i in range(num_layers)]
    other = sorted({t for t in layer_types or () if t != "full_attention"})
    if other:
        raise NotImplementedError(
            f"layer_types={list(layer_types)} (sliding_window={get('sliding_window')}): "
            f"only full_attention layers are supported, not {other}"
        )
    rope_params = dict(get("rope_parameters") or get("rope_scaling") or {})
    theta = float(rope_params.pop("rope_theta", None) or get("rope_theta", 10_000.0))
    max_positions = get("max_position_embeddings", 4096)
    scaling = rope.RopeScaling.from_hf(rope_params, max_position_embeddings=max_positions)
    num_heads = get("num_attention_heads")
    head_dim = get("head_dim") or get("hidden_size") // num_heads
    if dtype is None:
        dtype = get("dtype") or get("torch_dtype") or "float32"
        dtype = str(dtype).removeprefix("torch.")
    dtype = jnp.dtype(dtype).name
    return ModelConfig(
        vocab_size=get("vocab_size"),
        hidden_size=get("hidden_size"),
        intermediate_size=get("intermediate_size"),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=get("num_key_value_heads") or num_heads,
        head_dim=head_dim,
        architecture=model_type,
        rope_theta=theta,
        rope_scaling=scaling,
        rms_norm_eps=float(get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(get("tie_word_embeddings", False)),
        attention_bias=model_type == "qwen2",
        qk_norm=model_type == "qwen3",
        max_position_embeddings=max_positions,
        dtype=dtype,
        param_dtype=dtype,
        bos_token_id=get("bos_token_id"),
        eos_token_id=get("eos_token_id"),
        pad_token_id=get("pad_token_id"),
    )


def config_to_hf(cfg: ModelConfig):
    """The ``transformers`` config (LlamaConfig / Qwen2Config / Qwen3Config) describing ``cfg``."""
    arch = cfg.architecture
    if cfg.attention_bias != (arch == "qwen2") or cfg.qk_norm != (arch == "qwen3"):
        raise ValueError(
            f"{arch} checkpoints cannot express attention_bias={cfg.attention_bias}, qk_norm={cfg.qk_norm}"
        )
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}[
        arch
    ]
    scaling = {"rope_type": "default"} if cfg.rope_scaling is None else cfg.rope_scaling.to_hf()
    rope_parameters = {**scaling, "rope_theta": cfg.rope_theta}
    eos = list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id
    hf = cls(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters=rope_parameters,
        tie_word_embeddings=cfg.tie_word_embeddings,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=eos,
        pad_token_id=cfg.pad_token_id,
        hidden_act="silu",
    )
    hf.architectures = [HF_ARCHITECTURES[arch]]
    hf.dtype = cfg.param_dtype
    return hf


# ------------------------------------------------------------------------- tensor layout
def hf_tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name a checkpoint of ``cfg`` holds, with its HF shape."""
    abstract = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    return {hf_name: hf_shape for hf_name, _, _, hf_shape in _layout(abstract)}


def _layout(model) -> Iterator[tuple[str, str, int | None, tuple[int, ...]]]:
    """(HF name, our variable name, layer index or None, HF shape) for every checkpoint tensor."""
    V, D = model.embed.shape
    yield "model.embed_tokens.weight", "embed", None, (V, D)
    yield "model.norm.weight", "final_norm", None, (D,)
    if not model.cfg.tie_word_embeddings:
        yield "lm_head.weight", "lm_head", None, (V, D)
    for name, var in model.layers.items():
        s = var.shape[1:]
        if name in _IN_AXES:
            n = _IN_AXES[name]
            hf_shape = (int(np.prod(s[n:])), int(np.prod(s[:n])))
        else:
            hf_shape = (int(np.prod(s)),)
        for i in range(var.shape[0]):
            yield f"model.layers.{i}.{_LAYER_TENSORS[name]}", name, i, hf_shape


def _to_ours(name: str, x: np.ndarray, our_shape: tuple[int, ...]) -> np.ndarray:
    if name == "lm_head" or name in _IN_AXES:
        return x.T.reshape(our_shape)
    return x.reshape(our_shape)


def _to_hf(name: str, x: np.ndarray, hf_shape: tuple[int, ...]) -> np.ndarray:
    if name == "lm_head":
        return x.T
    if name in _IN_AXES:
        return x.reshape(hf_shape[::-1]).T
    return x.reshape(hf_shape)


# --------------------------------------------------------------------------------- loading
def params_from_tensors(
    cfg: ModelConfig, get_tensor: Callable[[str], np.ndarray], names, *, mesh=None, source: str = "checkpoint"
) -> Decoder:
    """Builds a ``Decoder`` of ``cfg`` from HF-named tensors.

    Args:
      get_tensor: HF name -> array (any float dtype; cast to ``cfg.param_dtype``).
      names: every tensor name available (to report missing and unexpected ones).
      mesh: place each parameter on its shard (``sharding.divisible_sharding``) instead of the
        default device; only the slices each device holds are copied to it.
      source: where the tensors come from, for error messages.
    """
    model = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    layout = list(_layout(model))
    expected = {hf_name for hf_name, *_ in layout}
    names = set(names)
    # Tied checkpoints sometimes still store lm_head.weight (a copy of the embedding); ignore it.
    unexpected = names - expected - ({"lm_head.weight"} if cfg.tie_word_embeddings else set())
    unexpected = {n for n in unexpected if not n.endswith("rotary_emb.inv_freq")}
    if expected - names:
        raise CheckpointError(
            f"{source}: missing tensors {sorted(expected - names)[:8]}{' ...' if len(expected - names) > 8 else ''}"
        )
    if unexpected:
        raise CheckpointError(
            f"{source}: unexpected tensors {sorted(unexpected)[:8]} for a "
            f"{cfg.architecture} config (wrong architecture or config?)"
        )
    pdt = cfg.storage_dtype
    by_var: dict[str, list] = {}
    for hf_name, var_name, layer, hf_shape in layout:
        by_var.setdefault(var_name, []).append((hf_name, layer, hf_shape))
    for var_name, entries in by_var.items():
        var = getattr(model, var_name) if var_name in ("embed", "final_norm", "lm_head") else model.layers[var_name]
        shape = tuple(var.shape)
        host = np.empty(shape, pdt)
        for hf_name, layer, hf_shape in entries:
            x = get_tensor(hf_name)
            if tuple(x.shape) != hf_shape:
                raise CheckpointError(
                    f"{source}: tensor {hf_name!r} has shape {tuple(x.shape)}, expected {hf_shape} from the config"
                )
            ours = _to_ours(var_name, x, shape if layer is None else shape[1:])
            if layer is None:
                host[...] = ours
            else:
                host[layer] = ours
        var.set_value(_place(host, var.logical_axes, mesh))
    return model


def _place(host: np.ndarray, logical_axes, mesh):
    if mesh is None:
        return jnp.asarray(host)
    spec = sharding.divisible_sharding(mesh, logical_axes, host.shape)
    return jax.make_array_from_callback(host.shape, spec, lambda idx: host[idx])


def _open_weights(path: str) -> tuple[Callable[[str], np.ndarray], list[str]]:
    index = os.path.join(path, INDEX_FILE)
    single = os.path.join(path, SINGLE_FILE)
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = {fn: safetensors_io.SafetensorsFile(os.path.join(path, fn)) for fn in sorted(set(weight_map.values()))}
        for name, fn in weight_map.items():
            if name not in files[fn]:
                raise CheckpointError(f"{INDEX_FILE} maps {name!r} to {fn}, which does not contain it")
        return (lambda name: files[weight_map[name]][name]), list(weight_map)
    if os.path.isfile(single):
        f = safetensors_io.SafetensorsFile(single)
        return f.__getitem__, f.keys()
    raise FileNotFoundError(f"no weights in {path}: expected {SINGLE_FILE} or {INDEX_FILE}")


def load_pretrained(path, *, dtype=None, mesh=None):
    """Loads a local Hugging Face checkpoint directory. Returns ``(model, tokenizer or None)``.

    Reads ``config.json`` (``transformers`` parses it, so defaults and rope settings follow the
    library), the weights from ``model.safetensors`` or a sharded ``model.safetensors.index.json``,
    and the tokenizer + chat template with ``transformers.AutoTokenizer`` when the directory has
    tokenizer files.

    Args:
      path: the directory.
      dtype: storage and compute dtype (``"float32"``, ``"bfloat16"``); default: the checkpoint's.
      mesh: if given, every parameter is placed on its shard per ``jaxrl_llm.sharding.RULES``.
    """
    path = os.fspath(path)
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"no config.json in {path}")
    with open(config_file) as f:
        raw = json.load(f)
    if raw.get("model_type") not in HF_ARCHITECTURES:  # before transformers, whose error is vaguer
        config_from_hf(raw)
    cfg = config_from_hf(transformers.AutoConfig.from_pretrained(path), dtype=dtype)
    get_tensor, names = _open_weights(path)
    model = params_from_tensors(cfg, get_tensor, names, mesh=mesh, source=path)
    return model, load_tokenizer(path)


def load_tokenizer(path):
    """``transformers.AutoTokenizer`` from ``path``, or None when it has no tokenizer files."""
    if not any(os.path.isfile(os.path.join(path, f)) for f in _TOKENIZER_FILES):
        return None
    return transformers.AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------- saving
def _host(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def hf_tensors(model: Decoder, dtype=None) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, array) for every checkpoint tensor of ``model``, in ``dtype`` (default: storage)."""
    cache: dict[str, np.ndarray] = {}
    for hf_name, var_name, layer, hf_shape in _layout(model):
        if var_name not in cache:
            var = getattr(model, var_name) if layer is None else model.layers[var_name]
            x = _host(var[...])
            cache[var_name] = x if dtype is None else x.astype(jnp.dtype(dtype))
        x = cache[var_name] if layer is None else cache[var_name][layer]
        yield hf_name, _to_hf(var_name, x, hf_shape)


def save_pretrained(model: Decoder, path, tokenizer=None, *, max_shard_size: int = 5 * 2**30, dtype=None) -> None:
    """Writes a standard HF checkpoint that ``transformers`` (and vLLM / SGLang) load.

    Files: ``config.json`` (architectures, model_type, rope_parameters, tie flag, dtype),
    ``generation_config.json``, weights as ``model.safetensors`` or, above ``max_shard_size``
    bytes, ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``, and the
    tokenizer's files when one is given. ``dtype`` converts the stored weights (default: as held).
    In a multi-process run every process must call this (parameters are gathered); process 0 writes.
    """
    cfg = model.cfg if dtype is None else model.cfg.replace(param_dtype=jnp.dtype(dtype).name)
    tensors = list(hf_tensors(model, dtype))
    if jax.process_index() != 0:
        return
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    config_to_hf(cfg).save_pretrained(path)
    eos = list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id
    transformers.GenerationConfig(
        bos_token_id=cfg.bos_token_id, eos_token_id=eos, pad_token_id=cfg.pad_token_id
    ).save_pretrained(path)
    shards: list[list[tuple[str, np.ndarray]]] = [[]]
    size = 0
    for name, x in tensors:
        if shards[-1] and size + x.nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append((name, x))
        size += x.nbytes
    for stale in (SINGLE_FILE, INDEX_FILE):
        if os.path.exists(os.path.join(path, stale)):
            os.remove(os.path.join(path, stale))
    if len(shards) == 1:
        safetensors_io.write(os.path.join(path, SINGLE_FILE), shards[0], {"format": "pt"})
    else:
        weight_map = {}
        for k, shard in enumerate(shards, 1):
            fn = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            safetensors_io.write(os.path.join(path, fn), shard, {"format": "pt"})
            weight_map.update({name: fn for name, _ in shard})
        with open(os.path.join(path, INDEX_FILE), "w") as f:
            json.dump(
                {"metadata": {"total_size": sum(x.nbytes for _, x in tensors)}, "weight_map": weight_map}, f, indent=2
            )
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
