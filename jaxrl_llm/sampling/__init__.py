"""The jitted sampler: prefill + cached decoding, group / prefix / branch sampling.

See ``sampler.py`` for which log-prob the trainer's importance ratio must use.
"""

from jaxrl_llm.sampling.buckets import bucket_length, pad_prompts
from jaxrl_llm.sampling.sampler import (STOP_LENGTH, STOP_REASONS, STOP_TOKEN, SampleOutput,
                                        SamplingConfig, branch, compile_count, continue_from,
                                        cpu_kernel_applies, sample)

__all__ = ["STOP_LENGTH", "STOP_REASONS", "STOP_TOKEN", "SampleOutput", "SamplingConfig", "branch",
           "bucket_length", "compile_count", "continue_from", "cpu_kernel_applies", "pad_prompts", "sample"]
