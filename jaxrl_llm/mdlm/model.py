"""A small masked-diffusion LM: a bidirectional transformer with a ``[MASK]`` token.

The network is the project's decoder (``jaxrl_llm.models.decoder.Decoder``: RMSNorm, GQA attention
with RoPE, SwiGLU MLP, stacked layers) run WITHOUT the causal mask: every position attends to every
position (``Decoder.hidden_states`` with one attention block, ``block_ids = 1``). The parameters are
an ordinary ``Decoder``'s, so sharding rules, Orbax checkpoints and safetensors I/O apply unchanged. The ``[MASK]`` logit is forced to ``-inf`` (MDLM's SUBS
parameterization: a denoiser never predicts the mask).

Training objective (masked diffusion, continuous time, absorbing state), per example ``x_0`` with
answer positions ``i`` (the prompt is never masked):

    t ~ U(t_min, 1],   x_t^i = [MASK] with probability t (independently), else x_0^i
    L = E_t [ (1/t) * sum_i 1[x_t^i = MASK] * (-log p_theta(x_0^i | x_t)) ] / N

``N`` is the number of answer tokens of the whole optimization batch (a global normalizer, passed
in, so splitting a batch into micro-batches does not change the gradient). This is the negative
ELBO of the absorbing-state diffusion (an upper bound on ``-log p(x_0)``).

References: Sahoo et al., "Simple and Effective Masked Diffusion Language Models" (MDLM),
https://arxiv.org/abs/2406.07524, code https://github.com/kuleshov-group/mdlm (Eq. 10-11);
Nie et al., "Large Language Diffusion Models" (LLaDA), https://arxiv.org/abs/2502.09992, code
https://github.com/ML-GSAI/LLaDA (Eq. 3-5, the SFT loss with the prompt left unmasked).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder
from jaxrl_llm.types import Array


@dataclasses.dataclass(frozen=True)
class MDLMConfig:
    """A masked-diffusion LM: the decoder's hyper-parameters plus the mask token id."""

    vocab_size: int = 104  # >= mask_id + 1; the synthetic tokenizer has 101 ids, [MASK] is 101
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 4
    mask_id: int = 101
    rope_theta: float = 10_000.0

    def __post_init__(self):
        if not 0 <= self.mask_id < self.vocab_size:
            raise ValueError(f"MDLMConfig: mask_id={self.mask_id} must lie in [0, vocab_size={self.vocab_size})")

    def decoder_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            rope_theta=self.rope_theta,
            tie_word_embeddings=True,
        )


class MaskedDiffusionLM(nnx.Module):
    """``tokens [B, S] -> logits [B, S, V]`` with full (non-causal) attention. See module docstring."""

    def __init__(self, cfg: MDLMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.decoder = Decoder(cfg.decoder_config(), rngs=rngs)

    def __call__(self, tokens: Array) -> Array:
        dec = self.decoder
        B, S = tokens.shape
        positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
        everything = jnp.ones((B, S), jnp.int32)  # one block: every query sees every key
        x, _ = dec.hidden_states(tokens, positions, block_ids=everything)
        logits = dec.unembed(x)  # [B, S, V] f32
        return logits.at[..., self.cfg.mask_id].set(-jnp.inf)


def forward_noise(key: Array, tokens: Array, maskable: Array, mask_id: int, t_min: float = 1e-3):
    """Masks each ``maskable`` token of row ``b`` with probability ``t_b ~ U(t_min, 1]``.

    ``tokens`` [B, S] int, ``maskable`` [B, S] bool. Returns ``(noisy [B, S], masked [B, S] bool,
    t [B])``.
    """
    k_t, k_m = jax.random.split(key)
    B, S = tokens.shape
    t = t_min + (1.0 - t_min) * (1.0 - jax.random.uniform(k_t, (B,)))  # (t_min, 1]
    masked = maskable & (jax.random.uniform(k_m, (B, S)) < t[:, None])
    return jnp.where(masked, mask_id, tokens), masked, t


def token_logprobs(logits: Array, targets: Array) -> Array:
    """``log softmax(logits)[targets]``: ``[B, S, V], [B, S] -> [B, S]`` (f32)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def diffusion_loss(logits: Array, targets: Array, masked: Array, t: Array, num_tokens: Array | float) -> Array:
    """The masked-diffusion loss ``sum_{b,i} masked_{b,i} * (-log p(x_0^{b,i})) / t_b / num_tokens``.

    Args:
      logits: [B, S, V] predictions from the noisy input.
      targets: [B, S] clean tokens ``x_0``.
      masked: [B, S] bool, the positions that were masked (only answer positions).
      t: [B] the masking probability of each row.
      num_tokens: the number of answer tokens of the whole optimization batch (global normalizer).
    """
    # A masked position's logit row never has -inf at the target (only [MASK] is -inf, never a
    # target), so where() keeps -inf * 0 = nan out of unmasked rows.
    nll = -token_logprobs(logits, targets)  # [B, S]
    per_token = jnp.where(masked, nll / t[:, None], 0.0)
    return jnp.sum(per_token) / num_tokens


def split(model: MaskedDiffusionLM):
    """``(graphdef, params)`` for the jitted functions of this package."""
    return nnx.split(model)


def apply(graphdef, params, tokens: Array) -> Array:
    """Logits of the model ``nnx.merge(graphdef, params)`` on ``tokens`` (a pure function)."""
    return nnx.merge(graphdef, params)(tokens)
