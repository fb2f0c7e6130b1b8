"""The model zoo: a Flax NNX decoder for the Llama / Qwen2 / Qwen3 families, its KV cache,
completion log-probs, Hugging Face checkpoint I/O, built-in offline models and tokenizers.

  load_pretrained(path, *, dtype=None, mesh=None) -> (model, tokenizer | None)
  save_pretrained(model, path, tokenizer=None)
  get_model(name, *, dtype=None, seed=0, mesh=None) -> (model, tokenizer);  list_models()
  vision_models(): the built-in vision-language models (``models.vision``)
  get_tokenizer("synthetic" | model name | directory)
  param_shardings(model, mesh), shard_model(model, mesh), cache_shardings(cache, mesh)
"""

from jaxrl_llm.models import vision
from jaxrl_llm.models.cache import KVCache
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder
from jaxrl_llm.models.hf_io import CheckpointError, load_pretrained, save_pretrained
from jaxrl_llm.models.logprobs import completion_logprobs, positions_from_mask
from jaxrl_llm.models.partition import cache_shardings, param_shardings, shard_model
from jaxrl_llm.models.zoo import get_model, get_tokenizer, list_models, vision_models

__all__ = [
    "CheckpointError",
    "Decoder",
    "KVCache",
    "ModelConfig",
    "cache_shardings",
    "completion_logprobs",
    "get_model",
    "get_tokenizer",
    "list_models",
    "load_pretrained",
    "param_shardings",
    "positions_from_mask",
    "save_pretrained",
    "shard_model",
    "vision",
    "vision_models",
]
