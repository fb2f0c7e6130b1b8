"""Beyond LLMs: policy optimization of a frozen diffusion model's initial noise (FIND).

``ddpm``: a small DDPM/DDIM trained in-repo (2-D mixtures, 8x8 digits), cached as safetensors;
``reward``: the reward models (a 2-D mode reward, a digit classifier); ``find``: the FIND objective
and its jittable train step.
"""

from jaxrl_llm.diffusion import ddpm, find, reward

__all__ = ["ddpm", "find", "reward"]
