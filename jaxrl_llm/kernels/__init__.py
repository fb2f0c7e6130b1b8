"""Optional decode backends: hand-written kernels where XLA's own leave speed on the table.

Importing this package registers them with ``jaxrl_llm.sampling.backend`` by name ("cpu":
``cpu_backend``); nothing in ``jaxrl_llm.sampling`` imports it. The caller that builds a sampler
from a config imports it once, and ``SamplingConfig.backend`` ("auto", "xla", "cpu") picks.
"""

from jaxrl_llm.kernels import cpu_backend, cpu_matmul

__all__ = ["cpu_backend", "cpu_matmul"]
