"""Masked-diffusion language models (MDLM / LLaDA style) trained in-repo, and IGPO on them.

- ``model``: a bidirectional transformer with a ``[MASK]`` token (the decoder's blocks, run without
  the causal mask) and the masked-diffusion training objective.
- ``sampler``: jitted iterative unmasking with low-confidence remasking and fixed (inpainted)
  tokens.
- ``data``: the ``suite:partial_sums`` task laid out on a fixed canvas (prompt, then answer).
- ``igpo``: d1-style log-prob estimation under random masks, hint inpainting for all-wrong groups
  and the IGPO loss.

No masked-diffusion weights exist offline, so the model is small and trained here
(``experiments/igpo.py``).
"""
