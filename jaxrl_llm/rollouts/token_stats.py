"""Per-token statistics of the sampling policy's full softmax that a method asks its rollout for.

``sum_pi_squared`` ``[B, T]``: ``sum_v pi(v | x, o_<t)^2`` at every completion position, under the
live (= old) params and the UNTEMPERED softmax (the distribution of ``old_logprobs``). The optimal
token baseline (``algorithms/optimal_token_baseline.py``) builds its per-token weight
``||grad_logits log pi(o_t)||^2 = 1 - 2 pi(o_t) + sum_v pi(v)^2`` from it. verl computes the same
tensor in its actor's log-prob pass (``calculate_sum_pi_squared``;
``verl/utils/torch_functional.py: calculate_sum_pi_squared_from_logits``):

    sum_v pi_v^2 = exp(logsumexp(2 z) - 2 logsumexp(z))        (z: the logits, in f32)

One forward pass over ``[prompt | completion]`` (in chunks of ``train.micro_batch_size`` rows, as
the trainer's log-prob passes), the unembedding in chunks of positions (the run's
``model.logprob_chunk_size``) so the ``[B, T, V]`` logits are never held at once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm.models.logprobs import positions_from_mask


def sum_pi_squared_from_logits(logits: jax.Array) -> jax.Array:
    """``sum_v softmax(z)_v^2 = exp(logsumexp(2 z) - 2 logsumexp(z))`` over the last axis, f32."""
    z = logits.astype(jnp.float32)
    return jnp.exp(jax.nn.logsumexp(2.0 * z, axis=-1) - 2.0 * jax.nn.logsumexp(z, axis=-1))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _sum_pi_squared(graphdef, params, tokens, attention_mask, num_completion: int, chunk: int):
    model = nnx.merge(graphdef, params)
    B, S = tokens.shape
    T = num_completion
    hidden, _ = model.hidden_states(tokens, positions_from_mask(attention_mask), attention_mask)
    hidden = hidden[:, S - T - 1 : S - 1]  # [B, T, D] the states that predict the completion
    n = -(-T // chunk)
    hidden = jnp.pad(hidden, ((0, 0), (0, n * chunk - T), (0, 0))).reshape(B, n, chunk, -1).swapaxes(0, 1)
    out = jax.lax.map(lambda h: sum_pi_squared_from_logits(model.unembed(h)), hidden)  # [n, B, chunk]
    return out.swapaxes(0, 1).reshape(B, -1)[:, :T]


def sum_pi_squared(policy, prompt_tokens: np.ndarray, prompt_mask: np.ndarray, tokens: np.ndarray, mask: np.ndarray):
    """``sum_v pi_old(v)^2`` ``[B, T]`` host f32 at each completion position (0 where ``mask`` is 0),
    under ``policy.params`` (a ``jaxrl_llm.policy.Policy``), in chunks of ``train.micro_batch_size``
    rows (``Policy.by_row_chunks``)."""
    full = np.concatenate([prompt_tokens, tokens], axis=1)
    attention = np.concatenate([np.asarray(prompt_mask, np.float32), np.asarray(mask, np.float32)], axis=1)
    T = tokens.shape[1]
    chunk = min(policy.cfg.model.logprob_chunk_size or T, T)
    fn = lambda tok, att: _sum_pi_squared(policy.graphdef, policy.params, tok, att, T, chunk)
    out = policy.by_row_chunks(fn, full, attention)
    return np.where(np.asarray(mask) != 0, np.asarray(out, np.float32), 0.0).astype(np.float32)
