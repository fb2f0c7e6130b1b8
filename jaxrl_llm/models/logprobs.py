"""Per-token log-probabilities (and entropies) of the completion part of sequences.

Layout: ``tokens`` [B, S] = [prompt (left-padded) | completion (right-padded)], the completion
being the last T positions. The log-prob of completion token t is read from the logits at
position ``S - T + t - 1``. The unembedding and log-softmax run over chunks of positions under
``jax.checkpoint`` so that neither the forward nor the backward pass holds the full [B, T, V]
logits at once (the price: the backward pass recomputes each chunk's logits, one extra
[B, T, D] x [D, V] matmul). ``chunk_size=None`` skips chunking and recomputation when [B, T, V]
f32 logits fit in memory. Everything after the hidden states is f32.

Shared prompts (``group_size=G > 1``): GRPO-style batches hold each prompt G times, group-major.
The prompt part then runs once per group through the KV-cache path and the G completions attend
to copies of its cache (``KVCache.take_rows``); gradients flow back into the prompt through the
cached keys and values. The result equals the unshared computation up to float rounding, at
``P*Sp + B*T`` instead of ``B*(Sp+T)`` token positions (P = B/G prompts of Sp tokens): with
35-token prompts, 4 new tokens and G = 8, about a fifth of the work.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
    """RoPE positions [B, S] for left-padded rows: 0 at the first real token, counting up."""
    mask = attention_mask.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)


def _chunk_stats(unembed, hidden, targets, return_entropy):
    logits = unembed(hidden)  # [B, C, V] f32
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logp = picked - lse
    if not return_entropy:
        return logp, jnp.zeros_like(logp)
    probs = jnp.exp(logits - lse[..., None])
    entropy = lse - jnp.sum(probs * logits, axis=-1)
    return logp, entropy


def _image_kwargs(images, image_mask=None) -> dict:
    """``images=`` (and ``image_mask=``) for a vision-language model's forward; nothing for a
    text-only call."""
    if images is None:
        return {}
    return {"images": images} if image_mask is None else {"images": images, "image_mask": image_mask}


def _shared_prompt_hidden(
    model, tokens, attention_mask, num_completion: int, group_size: int, images=None, image_mask=None
):
    """Hidden states [B, T, D] that predict the last T tokens, each group's prompt run once.

    Rows ``g*G .. g*G+G-1`` must share their first ``S - T`` columns (tokens and mask) and the
    images those show. With ``image_mask``, images may also sit in the completions (episode rows):
    the soft inputs of whole rows are built once and split between the two calls.
    """
    B, S = tokens.shape
    T, G = num_completion, group_size
    if B % G:
        raise ValueError(f"completion_logprobs: {B} rows are not whole groups of group_size={G}")
    Sp, P = S - T, B // G
    prompt, prompt_mask = tokens[::G, :Sp], attention_mask[::G, :Sp]
    positions = positions_from_mask(attention_mask)  # the positions the unshared pass would use
    cache = model.init_cache(P, S)
    if image_mask is not None and images is not None:
        embeds, embeds_mask, blocks = model.image_inputs(tokens, images, attention_mask, image_mask)  # [B, S, ..]
        soft = lambda rows, cols: {
            "inputs_embeds": embeds[rows, cols],
            "embeds_mask": embeds_mask[rows, cols],
            "block_ids": None if blocks is None else blocks[rows, cols],
        }
        prompt_kwargs, completion_kwargs = (
            soft(slice(None, None, G), slice(None, Sp)),
            soft(slice(None), slice(Sp, None)),
        )
    else:
        prompt_kwargs, completion_kwargs = _image_kwargs(None if images is None else images[::G]), {}
    prompt_hidden, cache = model.hidden_states(prompt, positions[::G, :Sp], prompt_mask, cache, **prompt_kwargs)
    cache = cache.take_rows(jnp.repeat(jnp.arange(P), G))
    completion_hidden, _ = model.hidden_states(
        tokens[:, Sp:], positions[:, Sp:], attention_mask[:, Sp:], cache, **completion_kwargs
    )
    last_prompt = jnp.repeat(prompt_hidden[:, -1:], G, axis=0)  # predicts the first completion token
    return jnp.concatenate([last_prompt, completion_hidden[:, :-1]], axis=1)


def completion_logprobs(
    model,
    tokens,
    attention_mask,
    num_completion: int,
    *,
    return_entropy: bool = False,
    chunk_size: int | None = 128,
    group_size: int = 1,
    images=None,
    image_mask=None,
):
    """Log-probs [B, T] f32 (and entropies [B, T] f32 if asked) of the last T tokens.

    Args:
      model: a ``Decoder``.
      tokens: [B, S] int32, prompt left-padded then completion right-padded.
      attention_mask: [B, S], 1 on real tokens (prompt and completion), 0 on padding.
      num_completion: T, the number of trailing positions to score.
      return_entropy: also return the entropy of the full softmax at each scored position.
      chunk_size: positions per unembedding chunk (bounds memory at [B, chunk, V]); None: one
        pass over all T positions, logits kept for the backward pass (faster, [B, T, V] memory).
      group_size: G > 1 when rows come in group-major groups of G sharing the same prompt part
        (the first S - T columns, tokens and mask): each prompt is then computed once (see the
        module docstring). The caller guarantees the sharing.
      images: optional [B, N, H, W, C] for a ``models.vision.VisionLanguageModel``: the images
        whose placeholders the prompt part holds (shared by a group's rows when ``group_size`` > 1).
      image_mask: optional [B, S], 1 on the image slots (``models.vision``: images anywhere in the
        row, e.g. one per observation of an episode; other placeholder ids stay ordinary tokens).
        Without it the first ``N * n_patches`` placeholders of a row are the slots.
    """
    B, S = tokens.shape
    T = num_completion
    if group_size > 1:
        hidden = _shared_prompt_hidden(model, tokens, attention_mask, T, group_size, images, image_mask)
    else:
        positions = positions_from_mask(attention_mask)
        hidden, _ = model.hidden_states(tokens, positions, attention_mask, **_image_kwargs(images, image_mask))
        hidden = hidden[:, S - T - 1 : S - 1]  # [B, T, D] predicts tokens[:, S-T:]
    targets = tokens[:, S - T :]
    if chunk_size is None:
        logp, ent = _chunk_stats(model.unembed, hidden, targets, return_entropy)
        return (logp, ent) if return_entropy else logp
    chunk = min(chunk_size, T)
    n_chunks = -(-T // chunk)
    pad = n_chunks * chunk - T
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
    hidden = hidden.reshape(B, n_chunks, chunk, -1).swapaxes(0, 1)
    targets = targets.reshape(B, n_chunks, chunk).swapaxes(0, 1)
    stats = jax.checkpoint(lambda h, t: _chunk_stats(model.unembed, h, t, return_entropy))
    logp, ent = jax.lax.map(lambda ht: stats(*ht), (hidden, targets))
    logp = logp.swapaxes(0, 1).reshape(B, -1)[:, :T]
    ent = ent.swapaxes(0, 1).reshape(B, -1)[:, :T]
    return (logp, ent) if return_entropy else logp
