"""The model zoo: a Flax NNX decoder for the Llama / Qwen2 / Qwen3 families, its KV cache,
completion log-probs, and Hugging Face checkpoint I/O."""

from jaxrl_llm.models.cache import KVCache
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder
from jaxrl_llm.models.hf_io import CheckpointError, load_pretrained, save_pretrained
from jaxrl_llm.models.logprobs import completion_logprobs, positions_from_mask

__all__ = ["CheckpointError", "Decoder", "KVCache", "ModelConfig", "completion_logprobs",
           "load_pretrained", "positions_from_mask", "save_pretrained"]
