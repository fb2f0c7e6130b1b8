"""The jitted sampler: one prefill, then a ``lax.while_loop`` of cached decoding steps.

Shapes: P prompts, G samples per prompt, B = P * G rows (group-major: row ``b`` is sample
``b % G`` of prompt ``b // G``), Sp prompt width, Tp prefix width, T = ``max_new_tokens``,
V vocabulary.

How a call runs (``_generate``, one compiled program per shape/config):

1. Prefill. The context ``[prompt (left-padded) | prefix (right-padded)]`` of the P prompts runs
   through the model once, writing slots ``[0, Sp + Tp)`` of a cache that grows to
   ``Sp + Tp + T - 1`` slots during decoding (``decode.windows``).
   Padding inside the context (the gap after a short prefix) is simply an invalid slot: RoPE
   positions come from the mask, so a row's real tokens keep consecutive positions.
2. Fan-out. The P prefilled caches are repeated G times (``KVCache.take_rows``): the G samples of
   a prompt share its prefill instead of recomputing it.
3. Decode. Token 0 is drawn from the prefill's logits at each row's last real token; step t feeds
   token t - 1 (at slot ``Sp + Tp + t - 1``, position ``context_length + t - 1``) and draws token
   t. The loop exits once every row has emitted a stop token, or after T tokens. For T >= 64 and
   a cache that is not small beside the weights it runs as up to four loops over ever wider
   caches, each step reading only the slots it can use (``decode.windows``).

Log-probabilities (what the trainer's importance ratio must use)
----------------------------------------------------------------
At each step the policy's logits ``z`` give ``pi = softmax(z)``; the sampler draws from
``q = filters(softmax(z / tau))`` (``processors.py``: temperature, then top-k, top-p, min-p).

- ``logprobs`` = ``log q(y_t)``: the distribution actually sampled from.
- ``policy_logprobs`` = ``log pi(y_t)``: the unmodified policy (temperature 1, no filter); this is
  exactly what ``jaxrl_llm.models.completion_logprobs`` recomputes for the same tokens.
- ``entropies`` = ``H(q)``, the entropy of the sampling distribution.

With temperature 1 and no filter, ``q = pi`` and ``logprobs`` equals the trainer's recomputed
log-probs up to float error (ratio 1 on-policy); that is the default configuration. Otherwise the
trainer's ``old_logprobs`` for the PPO ratio ``pi_theta / pi_old`` must be ``policy_logprobs``
(ask for them with ``return_policy_logprobs=True``): numerator and denominator are then the same
function of the weights, so the on-policy ratio is again exactly 1. ``logprobs`` then serves the
behaviour-policy correction ``pi_old(y) / q(y) = exp(policy_logprobs - logprobs)`` (e.g. truncated
importance sampling) for the bias of sampling from ``q`` rather than ``pi``. A trainer that instead
wants to optimize the tempered policy must recompute with its logits divided by ``tau``; with
top-k/p or min-p no trainer recomputation reproduces ``q`` (the filter's support moves with the
weights), so ``logprobs`` must not be used as ``old_logprobs`` there.

Greedy decoding samples from a point mass: ``logprobs`` and ``entropies`` are 0.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxrl_llm import sharding
from jaxrl_llm.models import rope, vision
from jaxrl_llm.models.cache import KV_AXES, VALID_AXES, KVCache
from jaxrl_llm.models.logprobs import positions_from_mask
from jaxrl_llm.sampling import backend as backends
from jaxrl_llm.sampling import decode, processors
from jaxrl_llm.sampling.buckets import bucket_length

# stop_reason codes
STOP_TOKEN = 1  # the row emitted one of ``stop_token_ids`` (kept, with mask 1)
STOP_LENGTH = 2  # the row reached ``max_new_tokens`` without a stop token
STOP_REASONS = {STOP_TOKEN: "stop_token", STOP_LENGTH: "max_new_tokens"}

TemperatureRule = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. Hashable: it is a static argument of the compiled sampler.

    temperature: tau > 0, the logits are divided by it (ignored when greedy or when a
      ``temperature_rule`` is given).
    top_k: keep the k most likely tokens (0 = off).
    top_p: nucleus mass in (0, 1] (1 = off).
    min_p: keep tokens with probability >= min_p * max probability (0 = off).
    greedy: argmax decoding (logprobs and entropies are then 0: a point mass).
    max_new_tokens: T, the number of new tokens per row (the output width).
    stop_token_ids: a row stops after emitting any of these (the stop token has mask 1).
    pad_id: written after a row has stopped.
    return_policy_logprobs: also return log pi(y_t) under the unmodified policy.
    return_entropies: return H(q) per step.
    backend: the decode backend (``backend.py``): "auto" (the first registered optional backend
      that supports the call, is meant for its devices and is built here, else "xla"), "xla" (the
      reference), or another registered name (e.g. "cpu" or "ragged", registered by importing
      ``jaxrl_llm.kernels``).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    greedy: bool = False
    stop_token_ids: tuple[int, ...] = ()
    pad_id: int = 0
    return_policy_logprobs: bool = False
    return_entropies: bool = True
    backend: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(
                f"SamplingConfig.temperature must be > 0 (use greedy=True for argmax), got {self.temperature}"
            )
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError(f"SamplingConfig.min_p must be in [0, 1), got {self.min_p}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"SamplingConfig.backend must be a backend name or 'auto', got {self.backend!r}")


@struct.dataclass
class SampleOutput:
    """What a sampling call returns (rows group-major; W = T for ``sample``, Tp + T otherwise).

    tokens: [B, W] int32. For ``sample``: the T new tokens. For ``continue_from`` / ``branch``:
      each row's prefix (left-aligned, ``prefix_lengths`` tokens) followed by its new tokens.
      Entries after a row's last token are ``pad_id``.
    mask: [B, W] f32, 1 on the tokens this call generated (the stop token included), 0 on
      the prefix and the padding.
    logprobs: [B, W] f32, log q(y_t) under the distribution sampled from; 0 where mask is 0.
    policy_logprobs: [B, W] f32 log pi(y_t) under the unmodified policy, or None if not asked.
    entropies: [B, W] f32 H(q) at each generated token, or None if not asked.
    lengths: [B] int32, number of generated tokens (= mask.sum(-1)).
    prefix_lengths: [B] int32, number of prefix tokens before them (0 for ``sample``).
    stop_reason: [B] int32, ``STOP_TOKEN`` (1) or ``STOP_LENGTH`` (2).
    prompt_tokens, prompt_mask: [B, Sp] int32, the left-padded prompt of each row.
    """

    tokens: jax.Array
    mask: jax.Array
    logprobs: jax.Array
    policy_logprobs: jax.Array | None
    entropies: jax.Array | None
    lengths: jax.Array
    prefix_lengths: jax.Array
    stop_reason: jax.Array
    prompt_tokens: jax.Array
    prompt_mask: jax.Array


_TRACES = {"count": 0}


def compile_count() -> int:
    """How many times the sampler's program has been traced (= compiled) in this process."""
    return _TRACES["count"]


def _constrain(x, mesh, logical_axes):
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, sharding.divisible_sharding(mesh, logical_axes, x.shape))


def _constrain_cache(cache: KVCache, mesh) -> KVCache:
    return KVCache(
        k=_constrain(cache.k, mesh, KV_AXES),
        v=_constrain(cache.v, mesh, KV_AXES),
        valid=_constrain(cache.valid, mesh, VALID_AXES),
        index=cache.index,
    )


def _constrain_decode_cache(cache: decode.DecodeCache, mesh) -> decode.DecodeCache:
    kv = lambda xs, axes: tuple(_constrain(x, mesh, axes) for x in xs)
    return decode.DecodeCache(
        k=kv(cache.k, decode.DECODE_K_AXES),
        v=kv(cache.v, decode.DECODE_V_AXES),
        valid=_constrain(cache.valid, mesh, VALID_AXES),
        index=cache.index,
    )


def _choose(logits, step, uniform, cfg: SamplingConfig, temperature_rule, backend: backends.Xla, rule_params=None):
    """One step's token [B] and its log q, log pi and H(q) ([B] f32 each; None where not asked).

    Without a top-k/top-p/min-p filter the backend draws (``Backend.draw``); a filtered draw is
    the reference's ``processors`` path on every backend."""
    policy_logp = None
    if cfg.greedy:
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        logq_tok = jnp.zeros(token.shape, jnp.float32)
        entropy = jnp.zeros(token.shape, jnp.float32) if cfg.return_entropies else None
    else:
        if temperature_rule is None:
            temperature = jnp.full(logits.shape[:1], cfg.temperature, jnp.float32)
        else:
            args = (logits, step) if rule_params is None else (logits, step, rule_params)
            temperature = jnp.asarray(temperature_rule(*args), jnp.float32)
            temperature = jnp.broadcast_to(temperature, logits.shape[:1])
        if cfg.top_k == 0 and cfg.top_p >= 1.0 and cfg.min_p <= 0.0:
            token, logq_tok, entropy = backend.draw(logits, temperature, uniform, cfg.return_entropies)
        else:
            z = processors.filtered_logits(logits, temperature, top_k=cfg.top_k, top_p=cfg.top_p, min_p=cfg.min_p)
            token, logq_tok, entropy = processors.draw(z, uniform, cfg.return_entropies)
    if cfg.return_policy_logprobs:
        picked = jnp.take_along_axis(logits, token[:, None], axis=-1)[:, 0]
        policy_logp = picked - jax.nn.logsumexp(logits, axis=-1)
    return token, logq_tok, policy_logp, entropy


def _generate_impl(
    graphdef,
    state,
    prompt_tokens,
    prompt_mask,
    prefix_tokens,
    prefix_mask,
    key,
    cfg: SamplingConfig,
    num_samples: int,
    temperature_rule,
    mesh,
    backend: backends.Xla,
    rule_params=None,
    images=None,
    image_mask=None,
):
    _TRACES["count"] += 1
    model = nnx.merge(graphdef, state)
    P, Sp = prompt_tokens.shape
    Tp = prefix_tokens.shape[1]
    G, T = num_samples, cfg.max_new_tokens
    B = P * G
    batch_seq = ("batch", "cache_seq")

    # ---- prefill the P contexts once
    context = jnp.concatenate([prompt_tokens, prefix_tokens], axis=1)  # [P, S0]
    context_mask = jnp.concatenate([prompt_mask, prefix_mask], axis=1).astype(jnp.bool_)
    context = _constrain(context, mesh, batch_seq)
    context_mask = _constrain(context_mask, mesh, batch_seq)
    S0 = Sp + Tp
    plan = decode.windows(model.cfg, B, S0, T)
    cache = _constrain_cache(model.init_cache(P, plan[0][1]), mesh)
    image_kwargs = {} if images is None else {"images": images}  # a VLM's prompt images enter the prefill only
    if image_mask is not None:
        image_kwargs["image_mask"] = _constrain(image_mask, mesh, batch_seq)
    hidden, cache = model.hidden_states(context, positions_from_mask(context_mask), context_mask, cache, **image_kwargs)
    last = S0 - 1 - jnp.argmax(context_mask[:, ::-1], axis=-1)  # [P]
    hidden_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)  # [P, 1, D]
    logits = model.unembed(hidden_last)[:, 0]  # [P, V]
    context_length = jnp.sum(context_mask, axis=-1, dtype=jnp.int32)  # [P]

    # ---- the G samples of a prompt share its prefill
    rows = jnp.repeat(jnp.arange(P), G)  # [B]
    cache = _constrain_decode_cache(decode.DecodeCache.from_cache(cache).take_rows(rows), mesh)
    weights = backend.prepare(model)
    logits = _constrain(logits[rows], mesh, ("batch", "vocab"))
    context_length = context_length[rows]

    stop_ids = jnp.asarray(cfg.stop_token_ids, jnp.int32)
    pad = jnp.int32(cfg.pad_id)

    # Step t's uniforms are uniform(fold_in(key, t)), drawn for all T steps before the loop:
    # inside its body threefry ran as two nested while loops at every step (~3% of a tiny step).
    uniforms = jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(key, t), (B,), jnp.float32))(
        jnp.arange(T)
    )  # [T, B]

    def choose(logits, t):
        return _choose(logits, t, uniforms[t], cfg, temperature_rule, backend, rule_params)

    def record(carry, t, logits):
        done, lengths, stopped, bufs = carry
        token, logq, policy_logp, entropy = choose(logits, t)
        alive = ~done
        token = jnp.where(alive, token, pad)
        is_stop = alive & jnp.isin(token, stop_ids) if cfg.stop_token_ids else jnp.zeros_like(alive)
        values = {"tokens": token, "logprobs": logq, "policy_logprobs": policy_logp, "entropies": entropy}
        bufs = {name: buf.at[:, t].set(jnp.where(alive, values[name], buf[:, t])) for name, buf in bufs.items()}
        return (done | is_stop, lengths + alive.astype(jnp.int32), stopped | is_stop, bufs), token

    def empty(dtype, fill=0):
        return _constrain(jnp.full((B, T), fill, dtype), mesh, ("batch", None))

    bufs = {"tokens": empty(jnp.int32, cfg.pad_id), "logprobs": empty(jnp.float32)}
    if cfg.return_policy_logprobs:
        bufs["policy_logprobs"] = empty(jnp.float32)
    if cfg.return_entropies:
        bufs["entropies"] = empty(jnp.float32)
    no = jnp.zeros((B,), jnp.bool_)
    carry, token = record((no, jnp.zeros((B,), jnp.int32), no, bufs), 0, logits)

    def cond(t_end, state):
        t, _, _, carry = state
        return (t < t_end) & ~jnp.all(carry[0])

    # cos/sin of every position a step can reach, computed once: inside the step XLA fused them
    # into each layer's rotation, which then evaluated them anew per layer and head.
    mcfg = model.cfg
    cos_table, sin_table = (
        c[0] for c in rope.cos_sin(jnp.arange(S0 + T)[None], mcfg.head_dim, mcfg.rope_theta, mcfg.rope_scaling)
    )

    def body(state):
        t, cache, token, carry = state
        positions = (context_length + t - 1)[:, None]
        cos_sin = (jnp.take(cos_table, positions, axis=0), jnp.take(sin_table, positions, axis=0))
        logits, cache = decode.decode_step(
            model, backend, weights, token[:, None], positions, jnp.ones((B, 1), jnp.bool_), cache, cos_sin=cos_sin
        )
        carry, token = record(carry, t, logits[:, 0])
        return t + 1, cache, token, carry

    state = (jnp.int32(1), cache, token, carry)
    for t_end, slots in plan:
        t, cache, token, carry = state
        cache = _constrain_decode_cache(cache.grow(slots), mesh)
        state = jax.lax.while_loop(functools.partial(cond, t_end), body, (t, cache, token, carry))
    _, _, _, carry = state
    _, lengths, stopped, bufs = carry
    stop_reason = jnp.where(stopped, STOP_TOKEN, STOP_LENGTH).astype(jnp.int32)

    # ---- lay out [prefix (compacted) | new tokens | pad] per row
    prefix_lengths = jnp.sum(prefix_mask, axis=-1, dtype=jnp.int32)[rows]  # [B]
    W = Tp + T
    col = jnp.arange(W)[None, :]
    new_idx = col - prefix_lengths[:, None]
    is_new = (new_idx >= 0) & (new_idx < lengths[:, None])
    gather_new = lambda buf: jnp.take_along_axis(buf, jnp.clip(new_idx, 0, T - 1), axis=1)
    if Tp:
        # compact each row's prefix: its real tokens, in order, to the left
        order = jnp.argsort(~prefix_mask.astype(jnp.bool_), axis=-1, stable=True)
        compact = jnp.take_along_axis(prefix_tokens, order, axis=-1)[rows]  # [B, Tp]
        in_prefix = col < prefix_lengths[:, None]
        prefix_part = jnp.take_along_axis(compact, jnp.clip(col, 0, Tp - 1), axis=1)
        tokens = jnp.where(in_prefix, prefix_part, jnp.where(is_new, gather_new(bufs["tokens"]), pad))
    else:
        tokens = jnp.where(is_new, bufs["tokens"], pad)

    def place(name):
        if name not in bufs:
            return None
        return jnp.where(is_new, gather_new(bufs[name]) if Tp else bufs[name], 0.0)

    return SampleOutput(
        tokens=tokens.astype(jnp.int32),
        mask=is_new.astype(jnp.float32),
        logprobs=place("logprobs"),
        policy_logprobs=place("policy_logprobs"),
        entropies=place("entropies"),
        lengths=lengths,
        prefix_lengths=prefix_lengths,
        stop_reason=stop_reason,
        prompt_tokens=prompt_tokens[rows],
        prompt_mask=prompt_mask[rows].astype(jnp.int32),
    )


_generate = jax.jit(
    _generate_impl, static_argnums=(0,), static_argnames=("cfg", "num_samples", "temperature_rule", "mesh", "backend")
)


# ----------------------------------------------------------------------------- validation
def _check_2d(name, x, dtype_kind="iu"):
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, length], got shape {a.shape}")
    if a.dtype.kind not in dtype_kind + "b":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a


def _check_tokens(name, tokens, mask_name, mask, vocab_size):
    t = _check_2d(name, tokens)
    m = _check_2d(mask_name, mask)
    if t.shape != m.shape:
        raise ValueError(f"{name} has shape {t.shape} but {mask_name} has shape {m.shape}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"{mask_name} must hold only 0 and 1")
    real = m.astype(bool)
    bad = real & ((t < 0) | (t >= vocab_size))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{r}, {c}] = {t[r, c]} is outside the vocabulary [0, {vocab_size})")
    return t, m


def _check_cfg(cfg: SamplingConfig, vocab_size: int):
    if not isinstance(cfg, SamplingConfig):
        raise TypeError(f"cfg must be a SamplingConfig, got {type(cfg).__name__}")
    bad = [t for t in cfg.stop_token_ids if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"stop_token_ids {bad} are outside the vocabulary [0, {vocab_size})")


def _pad_width(a, width, left: bool, fill):
    extra = width - a.shape[1]
    if extra == 0:
        return a
    spec = ((0, 0), (extra, 0)) if left else ((0, 0), (0, extra))
    return np.pad(a, spec, constant_values=fill)


def _place(mesh, arrays):
    if mesh is None:
        return [jnp.asarray(a) for a in arrays]
    return [jax.device_put(a, sharding.divisible_sharding(mesh, ("batch", None), a.shape)) for a in arrays]


def _run(
    model,
    prompt,
    prompt_mask,
    prefix,
    prefix_mask,
    key,
    cfg,
    num_samples,
    temperature_rule,
    mesh,
    rule_params=None,
    images=None,
    image_mask=None,
):
    graphdef, state = nnx.split(model)
    backend = backends.resolve(cfg.backend, model.cfg, mesh, prompt.shape[0] * int(num_samples))
    prompt, prompt_mask, prefix, prefix_mask = _place(mesh, [prompt, prompt_mask, prefix, prefix_mask])
    if images is not None:
        images = (
            jnp.asarray(images)
            if mesh is None
            else jax.device_put(images, sharding.divisible_sharding(mesh, ("batch",), images.shape))
        )
    if image_mask is not None:
        (image_mask,) = _place(mesh, [image_mask])
    return _generate(
        graphdef,
        state,
        prompt,
        prompt_mask,
        prefix,
        prefix_mask,
        key,
        cfg=cfg,
        num_samples=int(num_samples),
        temperature_rule=temperature_rule,
        mesh=mesh,
        backend=backend,
        rule_params=rule_params,
        images=images,
        image_mask=image_mask,
    )


def resolve_backend(model, cfg: SamplingConfig, rows: int, mesh=None) -> backends.Xla:
    """The decode backend a call with ``cfg`` of ``rows`` rows (P * G) on ``mesh`` runs on
    (``backend.resolve``); ``.name`` names it."""
    return backends.resolve(cfg.backend, model.cfg, mesh, rows)


def _check_left_padded(mask, name):
    # left padding: once a row's tokens start they continue to the last column
    started = np.cumsum(mask, axis=1) > 0
    holes = started & (mask == 0)
    if holes.any():
        r = int(np.argwhere(holes)[0][0])
        raise ValueError(f"{name} row {r} is not left-padded (a 0 follows a 1): {mask[r].tolist()}")


# ----------------------------------------------------------------------------- public API
def sample(
    model,
    prompt_tokens,
    prompt_mask,
    key,
    cfg: SamplingConfig,
    num_samples: int = 1,
    temperature_rule: TemperatureRule | None = None,
    mesh=None,
    temperature_rule_params: Any = None,
    images=None,
    image_mask=None,
) -> SampleOutput:
    """Samples ``num_samples`` completions of each prompt.

    Args:
      model: a ``jaxrl_llm.models.Decoder``.
      prompt_tokens: [P, Sp] int32, left-padded. Sp is padded further on the left to
        ``bucket_length(Sp)`` so that prompt widths compile a bounded number of times.
      prompt_mask: [P, Sp], 1 on real tokens; every row needs at least one.
      key: a ``jax.random`` key; the same key (and shapes, config) gives the same samples.
      cfg: a ``SamplingConfig``.
      num_samples: G, samples per prompt; the prompt's prefill is shared by its G samples.
      temperature_rule: optional ``rule(logits [B, V] f32, step [] int32) -> temperature [B]``,
        evaluated on the unmodified policy logits at each step; replaces ``cfg.temperature``.
        It is a static argument: pass the same function object to reuse the compiled program.
      mesh: optional ``jax.sharding.Mesh`` (``jaxrl_llm.sharding.make_mesh``): rows are sharded
        over ("data", "fsdp") and the KV cache by ``jaxrl_llm.sharding.RULES``. The model should
        already be placed on the mesh.
      temperature_rule_params: optional pytree of arrays, passed TRACED as the rule's third
        argument, ``rule(logits, step, params)``: statistics that change every call (e.g. HAPO's
        entropy statistics) reuse one compiled program as long as their shapes and dtypes stay.
      images: optional [P, N, H, W, C] for a ``models.vision.VisionLanguageModel``: each prompt's
        N images, whose ``N * n_patches`` placeholder ids it holds (checked here). They enter the
        prefill as soft tokens; the G samples share that prefill and decoding is unchanged.
      image_mask: optional [P, Sp], 1 on the image slots (``models.vision``): then images may be
        padded (a row marks the slots of the images it uses, whole images, at most N) and a
        placeholder id it does not mark, e.g. one sampled in an earlier turn, is an ordinary token.

    Returns:
      ``SampleOutput`` with B = P * G rows (row b = sample b % G of prompt b // G) and T new tokens.
    """
    vocab = model.cfg.vocab_size
    _check_cfg(cfg, vocab)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    prompt, mask = _check_tokens("prompt_tokens", prompt_tokens, "prompt_mask", prompt_mask, vocab)
    if not mask.any(axis=1).all():
        raise ValueError(f"prompt rows {np.flatnonzero(~mask.any(axis=1))[:8].tolist()} have no real token")
    _check_left_padded(mask, "prompt_mask")
    width = bucket_length(prompt.shape[1])
    prompt = _pad_width(prompt, width, True, cfg.pad_id)
    mask = _pad_width(mask, width, True, 0)
    if images is not None:
        vcfg = getattr(model, "vision_cfg", None)
        if vcfg is None:
            raise ValueError(f"sample: images given but {type(model).__name__} has no vision encoder")
        images = vision.check_images(images, vcfg)
        if images.shape[0] != prompt.shape[0]:
            raise ValueError(f"sample: images has {images.shape[0]} rows but prompt_tokens has {prompt.shape[0]}")
        if image_mask is None:
            vision.check_placeholders(np.where(mask.astype(bool), prompt, -1), images.shape[1], vcfg)
        else:
            image_mask = np.asarray(image_mask).astype(bool)
            if image_mask.shape != np.shape(prompt_tokens):
                raise ValueError(f"sample: image_mask {image_mask.shape} != prompt_tokens {np.shape(prompt_tokens)}")
            image_mask = _pad_width(image_mask, width, True, False) & mask.astype(bool)
            image_mask = vision.check_image_mask(prompt, image_mask, images.shape[1], vcfg)
    elif image_mask is not None and np.asarray(image_mask).any():
        raise ValueError("sample: image_mask marks image slots but no images were given")
    else:
        image_mask = None
    empty = np.zeros((prompt.shape[0], 0), np.int32)
    return _run(
        model,
        prompt,
        mask,
        empty,
        empty,
        key,
        cfg,
        num_samples,
        temperature_rule,
        mesh,
        temperature_rule_params,
        images,
        image_mask,
    )


def continue_from(
    model,
    prompt_tokens,
    prompt_mask,
    prefix_tokens,
    prefix_mask,
    key,
    cfg: SamplingConfig,
    num_samples: int = 1,
    temperature_rule: TemperatureRule | None = None,
    mesh=None,
) -> SampleOutput:
    """Continues per-row prefixes: ``prompt + prefix`` is the context, new tokens follow.

    Serves dataset resets to a prefix of a reference answer (DR-PO), partial hints (IGPO) and
    multi-turn continuation (the prefix holds the earlier turns and the environment's or tool's
    output; the caller keeps its own mask/log-probs for the earlier model turns). Prefixes are
    prefilled once and shared by the G samples of a row.

    Args:
      prompt_tokens, prompt_mask: [P, Sp] left-padded prompts (as in ``sample``).
      prefix_tokens, prefix_mask: [P, Tp] per-row prefixes; the real tokens (mask 1) are taken
        in order, so right padding is the natural layout; a row may have none. Tp is padded to
        ``bucket_length(Tp)``.
      key, cfg, num_samples, temperature_rule, mesh: as in ``sample``.

    Returns:
      ``SampleOutput`` of width W = bucket_length(Tp) + T: each row's prefix, then its new tokens
      (mask 1 on the new tokens only, ``prefix_lengths`` gives the split). Concatenated after
      ``prompt_tokens`` this is the [prompt | completion] layout that
      ``jaxrl_llm.models.completion_logprobs`` scores.
    """
    vocab = model.cfg.vocab_size
    _check_cfg(cfg, vocab)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    prompt, pmask = _check_tokens("prompt_tokens", prompt_tokens, "prompt_mask", prompt_mask, vocab)
    prefix, xmask = _check_tokens("prefix_tokens", prefix_tokens, "prefix_mask", prefix_mask, vocab)
    if prompt.shape[0] != prefix.shape[0]:
        raise ValueError(f"prompt_tokens has {prompt.shape[0]} rows but prefix_tokens has {prefix.shape[0]}")
    _check_left_padded(pmask, "prompt_mask")
    empty_rows = ~(pmask.any(axis=1) | xmask.any(axis=1))
    if empty_rows.any():
        raise ValueError(f"rows {np.flatnonzero(empty_rows)[:8].tolist()} have neither prompt nor prefix tokens")
    width = bucket_length(prompt.shape[1])
    prompt, pmask = _pad_width(prompt, width, True, cfg.pad_id), _pad_width(pmask, width, True, 0)
    pwidth = bucket_length(prefix.shape[1])
    prefix, xmask = _pad_width(prefix, pwidth, False, cfg.pad_id), _pad_width(xmask, pwidth, False, 0)
    return _run(model, prompt, pmask, prefix, xmask, key, cfg, num_samples, temperature_rule, mesh)


def branch(
    model,
    out: SampleOutput,
    rows,
    at,
    key,
    cfg: SamplingConfig,
    num_branches: int = 1,
    temperature_rule: TemperatureRule | None = None,
    mesh=None,
) -> SampleOutput:
    """Branches ``num_branches`` (K) continuations from chosen positions of existing samples.

    Branch n keeps the prompt of row ``rows[n]`` of ``out`` and the first ``at[n]`` tokens of its
    completion (``out.tokens[rows[n], :at[n]]``, prefix included for ``continue_from`` outputs),
    and samples K new continuations after them: the segment/tree rollouts of SPO-tree, ARPO and
    DialTree (apply ``branch`` again to its output for deeper trees). The kept prefix is
    prefilled once per branch point and shared by its K continuations.

    Args:
      out: a ``SampleOutput`` from ``sample`` / ``continue_from`` / ``branch``.
      rows: [N] ints, rows of ``out`` to branch from.
      at: [N] ints, tokens of that row's completion to keep, in [0, prefix_length + length].
      key, cfg, temperature_rule, mesh: as in ``sample``.
      num_branches: K continuations per branch point.

    Returns:
      ``SampleOutput`` with N * K rows (row m = branch m % K of point m // K), laid out as by
      ``continue_from``: the kept tokens (``prefix_lengths`` = at), then the new ones.
    """
    rows = np.asarray(rows, np.int64).reshape(-1)
    at = np.asarray(at, np.int64).reshape(-1)
    if rows.shape != at.shape:
        raise ValueError(f"branch: rows has {rows.size} entries but at has {at.size}")
    total = np.asarray(out.prefix_lengths) + np.asarray(out.lengths)
    num_rows = total.shape[0]
    if ((rows < 0) | (rows >= num_rows)).any():
        raise ValueError(f"branch: rows {rows.tolist()} must lie in [0, {num_rows})")
    over = (at < 0) | (at > total[rows])
    if over.any():
        n = int(np.flatnonzero(over)[0])
        raise ValueError(f"branch: at[{n}] = {at[n]} but row {rows[n]} has {total[rows[n]]} completion tokens")
    prefix = np.asarray(out.tokens)[rows]
    prefix_mask = (np.arange(prefix.shape[1])[None, :] < at[:, None]).astype(np.int32)
    return continue_from(
        model,
        np.asarray(out.prompt_tokens)[rows],
        np.asarray(out.prompt_mask)[rows],
        prefix,
        prefix_mask,
        key,
        cfg,
        num_samples=num_branches,
        temperature_rule=temperature_rule,
        mesh=mesh,
    )
