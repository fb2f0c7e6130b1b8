"""The TSPO temporal agent and Gumbel-top-k frame-subset sampling.

TSPO (Temporal Sampling Policy Optimization, arXiv 2508.04369, code
https://github.com/Hui-design/TSPO, ``model/temporal_agent.py``) scores each candidate frame
against the question and samples a K-frame subset for a frozen video answerer:

    F_e = MLP(WindowAttn(F_f + PE)) + F_f
    s   = (cos(F_e, t) + cos(F_f, t)) / tau                        # [B, T]
    S   = sort_by_time(top_K(s + Gumbel(0, 1)))                    # [B, K]

``F_f`` [B, T, E] are the frozen frame features, ``t`` [B, E] the frozen question feature. The
attention is local: query frame i sees key frames i - w//2 .. i - w//2 + w - 1 (clipped to the
video), as in the reference ``create_window_mask``; the positional encoding is sinusoidal over
position / T (the reference's ``positional_encoding``). As in the reference, the attention has
q/k/v projections and no output projection, and the residual adds ``F_f`` without the encoding.

Gumbel-top-k draws K frames without replacement from the Plackett-Luce distribution of softmax(s)
(Kool et al. 2019, "Stochastic Beams and Where to Find Them", arXiv 1903.06059). Training uses
either TSPO's product-of-marginals surrogate log pi(j) = log softmax(s)_j (``marginal_logprobs``)
or the exact Plackett-Luce chain rule over the draw order (``plackett_luce_logprobs``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def sinusoidal_encoding(num_frames: int, dim: int) -> jax.Array:
    """[T, E] encoding: sin/cos of (position / T) * 10000^(-2i/E) on even/odd channels."""
    if dim % 2:
        raise ValueError(f"dim={dim} must be even for the sinusoidal encoding")
    position = jnp.arange(num_frames, dtype=jnp.float32)[:, None] / num_frames  # [T, 1]
    freq = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-jnp.log(10000.0) / dim))  # [E/2]
    angle = position * freq[None, :]  # [T, E/2]
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(num_frames, dim)


def window_mask(num_frames: int, window: int) -> jax.Array:
    """[T, T] bool: query i may attend key j iff -window//2 <= j - i <= window - 1 - window//2."""
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")
    offset = jnp.arange(num_frames)[None, :] - jnp.arange(num_frames)[:, None]  # [T, T] j - i
    return (offset >= -(window // 2)) & (offset <= window - 1 - window // 2)


def cosine(a: jax.Array, b: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Cosine similarity of frames ``a`` [B, T, E] with one vector per row ``b`` [B, E] -> [B, T]."""
    dot = jnp.einsum("bte,be->bt", a, b)
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)[:, None]  # [B, T]
    return dot / (norms + eps)


class WindowAttention(nnx.Module):
    """Multi-head self-attention restricted to a local temporal window (no output projection)."""

    def __init__(self, dim: int, num_heads: int, window: int, *, rngs: nnx.Rngs):
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.q = nnx.Linear(dim, dim, rngs=rngs)
        self.k = nnx.Linear(dim, dim, rngs=rngs)
        self.v = nnx.Linear(dim, dim, rngs=rngs)
        self.num_heads = num_heads
        self.window = window

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` [B, T, E] -> [B, T, E]."""
        b, t, e = x.shape
        h = self.num_heads

        def heads(y):
            return y.reshape(b, t, h, e // h).transpose(0, 2, 1, 3)  # [B, H, T, E/H]

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        logits = jnp.einsum("bhid,bhjd->bhij", q, k) / jnp.sqrt(e / h)  # [B, H, T, T]
        logits = jnp.where(window_mask(t, self.window)[None, None], logits, -1e6)
        out = jnp.einsum("bhij,bhjd->bhid", jax.nn.softmax(logits, axis=-1), v)
        return out.transpose(0, 2, 1, 3).reshape(b, t, e)


class TemporalAgent(nnx.Module):
    """The frame scorer s = (cos(F_e, t) + cos(F_f, t)) / tau with F_e as in the module docstring."""

    def __init__(self, dim: int, num_heads: int = 4, window: int = 12, *, rngs: nnx.Rngs):
        self.attn = WindowAttention(dim, num_heads, window, rngs=rngs)
        self.fc1 = nnx.Linear(dim, dim, rngs=rngs)
        self.fc2 = nnx.Linear(dim, dim, rngs=rngs)

    def enhance(self, frames: jax.Array) -> jax.Array:
        """F_e = MLP(WindowAttn(F_f + PE)) + F_f; ``frames`` [B, T, E] -> [B, T, E]."""
        _, t, e = frames.shape
        x = self.attn(frames + sinusoidal_encoding(t, e)[None])
        return self.fc2(nnx.relu(self.fc1(x))) + frames

    def __call__(self, frames: jax.Array, text: jax.Array, tau: jax.Array | float) -> jax.Array:
        """Scores [B, T] for ``frames`` [B, T, E], ``text`` [B, E], temperature ``tau``."""
        return (cosine(self.enhance(frames), text) + cosine(frames, text)) / tau


def gumbel_topk(key: jax.Array, scores: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """K distinct frames from ``scores`` [..., T] via Gumbel-top-k (independent noise per row).

    Returns ``(indices, draw_order)``, both [..., K] int32: ``indices`` sorted by time (what the
    answerer sees), ``draw_order`` by decreasing perturbed score (the Plackett-Luce draw order).
    """
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k={k} must be in [1, T={scores.shape[-1]}]")
    perturbed = scores + jax.random.gumbel(key, scores.shape, scores.dtype)
    _, draw_order = jax.lax.top_k(perturbed, k)
    return jnp.sort(draw_order, axis=-1), draw_order


def topk(scores: jax.Array, k: int) -> jax.Array:
    """Deterministic selection (the noise dropped): the K best frames of [..., T], sorted by time."""
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k={k} must be in [1, T={scores.shape[-1]}]")
    return jnp.sort(jax.lax.top_k(scores, k)[1], axis=-1)


def marginal_logprobs(scores: jax.Array, indices: jax.Array) -> jax.Array:
    """TSPO's surrogate: log softmax(s)_j for each selected j; [..., T], [..., K] -> [..., K]."""
    return jnp.take_along_axis(jax.nn.log_softmax(scores, axis=-1), indices, axis=-1)


def plackett_luce_logprobs(scores: jax.Array, draw_order: jax.Array) -> jax.Array:
    """Exact Plackett-Luce terms log p(j_k | j_1..j_{k-1}) = s_{j_k} - logsumexp(s over the rest).

    ``scores`` [..., T], ``draw_order`` [..., K] -> [..., K]; the terms sum to the log-probability
    of the ordered draw (the option the spec asks beside the marginal surrogate).
    """
    t = scores.shape[-1]
    chosen = jax.nn.one_hot(draw_order, t, dtype=bool)  # [..., K, T]
    before = jnp.cumsum(chosen, axis=-2) - chosen  # [..., K, T] drawn strictly before step k
    masked = jnp.where(before > 0, -jnp.inf, scores[..., None, :])  # [..., K, T]
    picked = jnp.take_along_axis(scores, draw_order, axis=-1)  # [..., K]
    return picked - jax.nn.logsumexp(masked, axis=-1)
