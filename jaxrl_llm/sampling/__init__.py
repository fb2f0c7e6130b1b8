"""The jitted sampler: prefill + cached decoding, group / prefix / branch sampling, over a
decode backend (``backend.py``: XLA's ops by default; optional ones register by name).

See ``sampler.py`` for which log-prob the trainer's importance ratio must use. ``cached.py`` keeps
rows' KV caches alive between calls (``prefill`` / ``extend`` / ``fork`` / ``decode`` of a
``Session``): tree branches and multi-turn appends start from the parent's cache.
"""

from jaxrl_llm.sampling import backend, cached
from jaxrl_llm.sampling.buckets import bucket_length, pad_prompts
from jaxrl_llm.sampling.sampler import (
    STOP_LENGTH,
    STOP_REASONS,
    STOP_TOKEN,
    SampleOutput,
    SamplingConfig,
    branch,
    compile_count,
    continue_from,
    resolve_backend,
    sample,
)

__all__ = [
    "STOP_LENGTH",
    "STOP_REASONS",
    "STOP_TOKEN",
    "SampleOutput",
    "SamplingConfig",
    "backend",
    "branch",
    "cached",
    "bucket_length",
    "compile_count",
    "continue_from",
    "pad_prompts",
    "resolve_backend",
    "sample",
]
