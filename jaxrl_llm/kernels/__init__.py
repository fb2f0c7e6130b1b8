"""Optional decode backends: hand-written kernels where XLA's own leave speed on the table.

Importing this package registers them with ``jaxrl_llm.sampling.backend`` by name ("cpu":
``cpu_backend``; "ragged": ``ragged_attention``, a decode attention that reads only each row's
own KV blocks, for GPUs and TPUs); nothing in ``jaxrl_llm.sampling`` imports it. The caller that
builds a sampler from a config imports it once, and ``SamplingConfig.backend`` ("auto", "xla",
"cpu", "ragged") picks.
"""

from jaxrl_llm.kernels import cpu_backend, cpu_matmul, ragged_attention

__all__ = ["cpu_backend", "cpu_matmul", "ragged_attention"]
