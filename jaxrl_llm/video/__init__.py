"""Beyond LLMs: TSPO, policy optimization of a temporal frame selector for a frozen video answerer.

``selector``: the temporal agent (window attention over frame features, cosine scores against the
question) and Gumbel-top-k subset sampling; ``needle``: synthetic needle-in-a-haystack "videos",
the fixed-projection "CLIP" stand-in and the frozen programmatic answerer; ``tspo``: the GRPO
advantages, the TSPO loss, the temperature schedule and a jitted train step.
"""

from jaxrl_llm.video import needle, selector, tspo

__all__ = ["needle", "selector", "tspo"]
