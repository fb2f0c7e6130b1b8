"""A cache-carrying sampler: sessions that are prefilled once, extended, forked and decoded.

``sampler.sample`` / ``continue_from`` / ``branch`` each start from tokens: a branch point's kept
prefix is prefilled again for every call. Tree rollouts (SPO-tree, ARPO, DialTree), cutpoint
continuations (SPO-chain) and multi-turn episodes instead need to keep a row's KV cache alive
between calls. A ``Session`` is that state, a pytree:

- ``cache``: the rows' keys and values in the decode layout (``decode.DecodeCache``: per-layer
  k [B*K, Dh, Smax], v [B*K, Smax, Dh], slot validity [B, Smax], the shared write index);
- ``lengths`` [B] int32: real tokens each row holds (the RoPE position of its next token);
- ``logits`` [B, V] f32: the policy's logits after each row's last real token (what the next
  token is drawn from).

Operations (each one compiled program per shape/config; B rows, S new tokens, T sampled tokens):

- ``prefill(model, tokens, mask) -> Session``: the rows' contexts written into a fresh cache.
- ``extend(model, session, tokens, mask) -> Session``: ONLY the new tokens run through the model,
  attending to the cache (an observation or a tool result appended to a multi-turn episode; a
  forced prefix). Every row's real new tokens are taken in order, whatever the padding.
- ``truncate(session, keep) -> Session``: rows cut back to their first ``keep`` tokens (cutpoints).
- ``fork(session, rows, k) -> Session``: rows ``rows`` repeated ``k`` times each; the children
  start from copies of the parents' cache rows, nothing is recomputed.
- ``decode(model, session, key, cfg) -> (Decoded, Session)``: samples up to
  ``cfg.max_new_tokens`` tokens per row from the session's logits and FEEDS each sampled token,
  so the returned session holds every sampled token and the logits after the last one: forking it
  continues exactly where each row stopped (a tree's next level), extending it appends to it.

The cache's slot index is shared by all rows and only moves forward: a row's real tokens need
not sit in contiguous slots (``valid`` marks them; positions come from ``lengths``). Capacities
and widths are rounded up to ``buckets.bucket_length`` (powers of two), so a run compiles a
bounded number of programs. The draw is the reference sampler's: step t's uniforms are
``uniform(fold_in(key, t), (B,))`` and the token is drawn by ``sampler._choose`` (temperature,
top-k/p, min-p, a temperature rule), so ``decode(prefill(prompts))`` gives the tokens
``sampler.sample`` gives with the same key, and the log-probs mean what they mean there
(``logprobs`` = log q of the sampled distribution, ``policy_logprobs`` = log pi, what
``models.completion_logprobs`` recomputes).

``decode(..., top_logprobs=k)`` also returns, per sampled step, the k most likely tokens of the
unmodified policy pi and their log-probs (an entropy proxy over k tokens, e.g. ARPO's).

The decode loop runs on the backend ``cfg.backend`` resolves to (``backend.py``; ``"auto"`` picks
the CPU kernels where they are built, the ragged decode attention on GPUs and TPUs, else XLA; both
registered by importing ``jaxrl_llm.kernels``); ``prefill`` / ``extend`` run multi-token steps on
the XLA reference (their work is matrix products over S tokens). Single device only (no mesh).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxrl_llm.models import rope
from jaxrl_llm.sampling import backend as backends
from jaxrl_llm.sampling import decode as decoding
from jaxrl_llm.sampling.buckets import bucket_length
from jaxrl_llm.sampling.sampler import STOP_LENGTH, STOP_TOKEN, SamplingConfig, TemperatureRule, _check_cfg, _choose

STOP_NONE = 0  # a row that was not active in a ``decode`` call (sampled nothing)


@struct.dataclass
class Session:
    """A batch of rows with live KV caches (module docstring). cache: ``decode.DecodeCache``;
    lengths: [B] int32 real tokens per row; logits: [B, V] f32 next-token logits per row."""

    cache: decoding.DecodeCache
    lengths: jax.Array
    logits: jax.Array

    @property
    def num_rows(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def capacity(self) -> int:
        """Cache slots allocated per row (static)."""
        return int(self.cache.valid.shape[1])


@struct.dataclass
class Decoded:
    """What ``decode`` sampled (B rows, T = ``cfg.max_new_tokens`` columns, k = ``top_logprobs``).

    tokens: [B, T] int32 new tokens (``pad_id`` after a row's last one).
    mask: [B, T] f32, 1 on the sampled tokens (the stop token included).
    logprobs: [B, T] f32 log q(y_t), the distribution sampled from (0 off the mask).
    policy_logprobs: [B, T] f32 log pi(y_t) of the unmodified policy, or None if not asked.
    entropies: [B, T] f32 H(q), or None if not asked.
    lengths: [B] int32 tokens sampled per row.
    stop_reason: [B] int32 ``STOP_TOKEN`` (1), ``STOP_LENGTH`` (2), or ``STOP_NONE`` (0) for rows
      that were not active.
    top_ids, top_logprobs: [B, T, k] int32 / f32, the k most likely tokens under pi at each step
      and their log pi (0 off the mask), or None when k = 0.
    """

    tokens: jax.Array
    mask: jax.Array
    logprobs: jax.Array
    policy_logprobs: jax.Array | None
    entropies: jax.Array | None
    lengths: jax.Array
    stop_reason: jax.Array
    top_ids: jax.Array | None
    top_logprobs: jax.Array | None


_TRACES = {"count": 0}


def compile_count() -> int:
    """How many times a program of this module has been traced (= compiled) in this process."""
    return _TRACES["count"]


def _grow(cache: decoding.DecodeCache, capacity: int) -> decoding.DecodeCache:
    return cache if cache.valid.shape[1] >= capacity else cache.grow(capacity)


def _cos_sin(model, capacity: int):
    # a row's position never exceeds the slot it is written to, so `capacity` positions suffice
    cfg = model.cfg
    return tuple(c[0] for c in rope.cos_sin(jnp.arange(capacity)[None], cfg.head_dim, cfg.rope_theta, cfg.rope_scaling))


# ----------------------------------------------------------------------------- compiled programs
@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("capacity",))
def _extend(graphdef, state, session: Session, tokens, mask, *, capacity: int) -> Session:
    _TRACES["count"] += 1
    model = nnx.merge(graphdef, state)
    backend = backends.Xla()
    S = tokens.shape[1]
    mask = mask.astype(jnp.bool_)
    cache = _grow(session.cache, capacity)
    positions = session.lengths[:, None] + jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1  # [B, S]
    count = jnp.sum(mask, axis=1, dtype=jnp.int32)  # [B]
    last = (S - 1 - jnp.argmax(mask[:, ::-1], axis=1)).astype(jnp.int32)  # [B] last real column
    logits, cache = decoding.decode_step(
        model, backend, backend.prepare(model), tokens, jnp.maximum(positions, 0), mask, cache, last=last
    )
    logits = jnp.where((count > 0)[:, None], logits[:, 0].astype(jnp.float32), session.logits)
    return Session(cache=cache, lengths=session.lengths + count, logits=logits)


@jax.jit
def _fork(session: Session, rows) -> Session:
    _TRACES["count"] += 1
    return Session(cache=session.cache.take_rows(rows), lengths=session.lengths[rows], logits=session.logits[rows])


def _decode_impl(
    graphdef,
    state,
    session: Session,
    key,
    active,
    budget,
    rule_params,
    *,
    cfg: SamplingConfig,
    capacity: int,
    top_logprobs: int,
    temperature_rule,
    backend: backends.Xla,
):
    _TRACES["count"] += 1
    model = nnx.merge(graphdef, state)
    B, T = session.lengths.shape[0], cfg.max_new_tokens
    cache = _grow(session.cache, capacity)
    weights = backend.prepare(model)
    cos_table, sin_table = _cos_sin(model, capacity)
    stop_ids = jnp.asarray(cfg.stop_token_ids, jnp.int32)
    pad = jnp.int32(cfg.pad_id)
    uniforms = jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(key, t), (B,), jnp.float32))(
        jnp.arange(T)
    )  # [T, B]

    bufs = {"tokens": jnp.full((B, T), cfg.pad_id, jnp.int32), "logprobs": jnp.zeros((B, T), jnp.float32)}
    if cfg.return_policy_logprobs:
        bufs["policy_logprobs"] = jnp.zeros((B, T), jnp.float32)
    if cfg.return_entropies:
        bufs["entropies"] = jnp.zeros((B, T), jnp.float32)
    if top_logprobs:
        bufs["top_ids"] = jnp.zeros((B, T, top_logprobs), jnp.int32)
        bufs["top_logprobs"] = jnp.zeros((B, T, top_logprobs), jnp.float32)

    def cond(carry):
        t, _, _, done, _, _, _ = carry
        return (t < T) & ~jnp.all(done)

    def body(carry):
        t, cache, logits, done, lengths, stopped, bufs = carry
        alive = ~done
        token, logq, policy_logp, entropy = _choose(logits, t, uniforms[t], cfg, temperature_rule, backend, rule_params)
        token = jnp.where(alive, token, pad)
        values = {"tokens": token, "logprobs": logq, "policy_logprobs": policy_logp, "entropies": entropy}
        if top_logprobs:
            top_lp, top_id = jax.lax.top_k(jax.nn.log_softmax(logits, axis=-1), top_logprobs)
            values["top_ids"], values["top_logprobs"] = top_id.astype(jnp.int32), top_lp
        keep = lambda v, old: jnp.where(alive.reshape((B,) + (1,) * (old.ndim - 2)), v, old[:, t])
        bufs = {name: buf.at[:, t].set(keep(values[name], buf)) for name, buf in bufs.items()}
        is_stop = alive & jnp.isin(token, stop_ids) if cfg.stop_token_ids else jnp.zeros_like(alive)
        spent = lengths + alive.astype(jnp.int32) >= budget  # a row's own cap (STOP_LENGTH)
        # feed the token: its keys/values join the cache, its logits are the row's next ones
        positions = (session.lengths + lengths)[:, None]  # [B, 1]
        cos_sin = (jnp.take(cos_table, positions, axis=0), jnp.take(sin_table, positions, axis=0))
        new_logits, cache = decoding.decode_step(
            model, backend, weights, token[:, None], positions, alive[:, None], cache, cos_sin=cos_sin
        )
        logits = jnp.where(alive[:, None], new_logits[:, 0].astype(jnp.float32), logits)
        return t + 1, cache, logits, done | is_stop | spent, lengths + alive.astype(jnp.int32), stopped | is_stop, bufs

    active = active.astype(jnp.bool_)
    zeros = jnp.zeros((B,), jnp.int32)
    init = (jnp.int32(0), cache, session.logits, ~active, zeros, jnp.zeros((B,), jnp.bool_), bufs)
    _, cache, logits, _, lengths, stopped, bufs = jax.lax.while_loop(cond, body, init)
    mask = jnp.arange(T)[None, :] < lengths[:, None]  # [B, T]
    stop_reason = jnp.where(stopped, STOP_TOKEN, jnp.where(active, STOP_LENGTH, STOP_NONE)).astype(jnp.int32)
    out = Decoded(
        tokens=jnp.where(mask, bufs["tokens"], pad),
        mask=mask.astype(jnp.float32),
        logprobs=jnp.where(mask, bufs["logprobs"], 0.0),
        policy_logprobs=jnp.where(mask, bufs["policy_logprobs"], 0.0) if "policy_logprobs" in bufs else None,
        entropies=jnp.where(mask, bufs["entropies"], 0.0) if "entropies" in bufs else None,
        lengths=lengths,
        stop_reason=stop_reason,
        top_ids=bufs.get("top_ids"),
        top_logprobs=jnp.where(mask[..., None], bufs["top_logprobs"], 0.0) if top_logprobs else None,
    )
    return out, Session(cache=cache, lengths=session.lengths + lengths, logits=logits)


_decode = jax.jit(
    _decode_impl,
    static_argnums=(0,),
    static_argnames=("cfg", "capacity", "top_logprobs", "temperature_rule", "backend"),
)


# ----------------------------------------------------------------------------- public API
def _check_rows(name: str, tokens, mask, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    t, m = np.asarray(tokens), np.asarray(mask)
    if t.ndim != 2 or t.shape != m.shape:
        raise ValueError(f"{name}: tokens and mask must both be [rows, length], got {t.shape} and {m.shape}")
    if t.dtype.kind not in "iub":
        raise ValueError(f"{name}: tokens must hold integers, got dtype {t.dtype}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"{name}: mask must hold only 0 and 1")
    bad = m.astype(bool) & ((t < 0) | (t >= vocab_size))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name}: tokens[{r}, {c}] = {t[r, c]} is outside the vocabulary [0, {vocab_size})")
    return t.astype(np.int32), m.astype(np.int32)


def _widen(t: np.ndarray, m: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    extra = width - t.shape[1]
    return np.pad(t, ((0, 0), (0, extra))), np.pad(m, ((0, 0), (0, extra)))


def _index(session: Session) -> int:
    return int(jax.device_get(session.cache.index))


def empty(model, rows: int, capacity: int = 0) -> Session:
    """A session of ``rows`` rows holding no tokens (``capacity`` slots, grown on demand)."""
    cfg = model.cfg
    dtype = jnp.dtype(cfg.compute_dtype)
    K, Dh, L = cfg.num_kv_heads, cfg.head_dim, cfg.num_layers
    cache = decoding.DecodeCache(
        k=tuple(jnp.zeros((rows * K, Dh, capacity), dtype) for _ in range(L)),
        v=tuple(jnp.zeros((rows * K, capacity, Dh), dtype) for _ in range(L)),
        valid=jnp.zeros((rows, capacity), jnp.bool_),
        index=jnp.zeros((), jnp.int32),
    )
    return Session(
        cache=cache, lengths=jnp.zeros((rows,), jnp.int32), logits=jnp.zeros((rows, cfg.vocab_size), jnp.float32)
    )


def extend(model, session: Session, tokens, mask) -> Session:
    """``session`` with each row's real new tokens appended (only they run through the model).

    Args:
      model: the ``Decoder`` the session was built with.
      session: B rows.
      tokens, mask: [B, S]; a row's real tokens (mask 1) are taken in order, any padding; a row
        may have none (it keeps its logits). S is padded to ``bucket_length(S)``.

    Returns:
      The session with ``lengths`` grown by each row's count and ``logits`` after its last token.
    """
    t, m = _check_rows("extend", tokens, mask, model.cfg.vocab_size)
    if t.shape[0] != session.num_rows:
        raise ValueError(f"extend: tokens have {t.shape[0]} rows but the session has {session.num_rows}")
    t, m = _widen(t, m, bucket_length(t.shape[1]))
    capacity = max(session.capacity, bucket_length(_index(session) + t.shape[1]))
    graphdef, state = nnx.split(model)
    return _extend(graphdef, state, session, jnp.asarray(t), jnp.asarray(m), capacity=capacity)


def prefill(model, tokens, mask) -> Session:
    """A new session holding ``tokens`` [B, S] (mask [B, S]; left-padded prompts or any padding:
    each row's real tokens in order); every row needs at least one real token."""
    t, m = _check_rows("prefill", tokens, mask, model.cfg.vocab_size)
    if not m.any(axis=1).all():
        raise ValueError(f"prefill: rows {np.flatnonzero(~m.any(axis=1))[:8].tolist()} have no real token")
    return extend(model, empty(model, t.shape[0]), t, m)


@jax.jit
def _truncate(session: Session, keep) -> Session:
    _TRACES["count"] += 1
    valid = session.cache.valid & (jnp.cumsum(session.cache.valid, axis=1) <= keep[:, None])
    return session.replace(cache=session.cache.replace(valid=valid), lengths=keep)


def truncate(session: Session, keep) -> Session:
    """Each row cut back to its first ``keep`` [B] real tokens (``0 <= keep <= lengths``): later
    slots become invalid, their keys/values are never read again. The rows' ``logits`` are still
    those after the dropped tokens: ``extend`` by at least one token before ``decode`` (a cutpoint
    continuation re-feeds the token at the cut: one step, not a prefill of the prefix)."""
    keep = np.asarray(keep, np.int64).reshape(-1)
    lengths = np.asarray(jax.device_get(session.lengths))
    if keep.shape != lengths.shape or (keep < 0).any() or (keep > lengths).any():
        raise ValueError(f"truncate: keep must be [{lengths.size}] ints in [0, lengths], got {keep.tolist()[:8]}")
    return _truncate(session, jnp.asarray(keep, jnp.int32))


def fork(session: Session, rows, k: int = 1) -> Session:
    """Rows ``rows`` [N] of ``session``, each repeated ``k`` times (row ``n * k + j`` is copy j of
    ``rows[n]``): children that continue from their parent's cache."""
    rows = np.asarray(rows, np.int64).reshape(-1)
    if k < 1:
        raise ValueError(f"fork: k must be >= 1, got {k}")
    if rows.size and (rows.min() < 0 or rows.max() >= session.num_rows):
        raise ValueError(f"fork: rows must lie in [0, {session.num_rows}), got {rows.tolist()[:8]}")
    return _fork(session, jnp.asarray(np.repeat(rows, k), jnp.int32))


def decode(
    model,
    session: Session,
    key,
    cfg: SamplingConfig,
    active=None,
    max_tokens=None,
    top_logprobs: int = 0,
    temperature_rule: TemperatureRule | None = None,
    temperature_rule_params: Any = None,
) -> tuple[Decoded, Session]:
    """Samples up to ``cfg.max_new_tokens`` tokens per row and feeds them (module docstring).

    Args:
      model: the ``Decoder`` the session was built with.
      session: B rows (each must hold at least one token).
      key: a ``jax.random`` key; step t draws with ``uniform(fold_in(key, t), (B,))``.
      cfg: a ``SamplingConfig`` (its ``max_new_tokens``, stops, filters, backend).
      active: optional [B] bool; inactive rows sample nothing (``stop_reason`` 0) and keep their
        session rows unchanged (static shapes when some rows of a level are finished).
      max_tokens: optional [B] ints in [1, cfg.max_new_tokens], a per-row cap (a continuation
        that must fit a total budget); rows reaching it stop with ``STOP_LENGTH``.
      top_logprobs: k > 0 also returns the k most likely tokens of pi at each step.
      temperature_rule, temperature_rule_params: as in ``sampler.sample``.

    Returns:
      ``(Decoded, session)``: the new tokens, and the session holding them.
    """
    _check_cfg(cfg, model.cfg.vocab_size)
    if top_logprobs < 0 or top_logprobs > model.cfg.vocab_size:
        raise ValueError(f"decode: top_logprobs must be in [0, {model.cfg.vocab_size}], got {top_logprobs}")
    B = session.num_rows
    active = np.ones(B, bool) if active is None else np.asarray(active, bool).reshape(-1)
    if active.shape != (B,):
        raise ValueError(f"decode: active has {active.shape[0]} entries but the session has {B} rows")
    T = cfg.max_new_tokens
    budget = np.full(B, T, np.int32) if max_tokens is None else np.asarray(max_tokens, np.int64).reshape(-1)
    if budget.shape != (B,) or budget.min(initial=1) < 1 or budget.max(initial=1) > T:
        raise ValueError(f"decode: max_tokens must be [{B}] ints in [1, {T}], got {budget.tolist()[:8]}")
    capacity = max(session.capacity, bucket_length(_index(session) + T))
    backend = backends.resolve(cfg.backend, model.cfg, None, B)
    graphdef, state = nnx.split(model)
    return _decode(
        graphdef,
        state,
        session,
        key,
        jnp.asarray(active),
        jnp.asarray(budget, jnp.int32),
        temperature_rule_params,
        cfg=cfg,
        capacity=capacity,
        top_logprobs=int(top_logprobs),
        temperature_rule=temperature_rule,
        backend=backend,
    )
