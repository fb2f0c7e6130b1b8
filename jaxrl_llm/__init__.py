"""jaxrl_llm: JAX-native policy optimization for language models."""

__version__ = "0.1.0"
