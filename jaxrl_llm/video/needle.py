"""Synthetic needle-in-a-haystack "videos" for TSPO, a fixed "CLIP" stand-in and a frozen answerer.

The spec's tiny reproduction of TSPO's needle data (arXiv 2508.04369, ``src/open_tspo/tspo.py``):

- a video is T frame vectors of dimension D; the haystack is ``num_scenes`` equal scenes, each
  drawn around one of ``num_clusters`` shared cluster centres (frame = centre + noise);
- a hidden contiguous segment of ``segment_len`` frames carries the answer: its frames are
  needle + answer_scale * code[answer] + noise, with a fresh needle vector per video and one
  fixed code per answer option; ``mask`` [T] marks these frames;
- the question vector is correlated with the segment centre: question = needle + noise;
- optionally ``num_distractors`` further segments look like the question but hold no answer
  (needle + noise, no code): raw question similarity cannot tell them from the true segment,
  only the answer code can (an addition to the spec, off by default);
- "CLIP" is one fixed random projection [D, E] applied to frames and question alike;
- the frozen answerer returns the correct option iff >= ``min_hits`` selected frames lie in the
  segment, and otherwise a uniformly random option (it can still be right by chance).

Videos are generated with NumPy (a pool, sampled from during training); the answerer and the
temporal reward are pure JAX functions used inside the jitted train step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Shape and difficulty of the needle videos (defaults: the spec's T = 64, D = 32, L = 6)."""

    num_frames: int = 64  # T
    dim: int = 32  # D, raw frame dimension
    feature_dim: int = 32  # E, "CLIP" feature dimension
    num_clusters: int = 8
    num_scenes: int = 8
    segment_len: int = 6
    num_options: int = 4
    num_distractors: int = 0
    frame_noise: float = 1.0
    question_noise: float = 1.0
    answer_scale: float = 1.0
    min_hits: int = 2

    def __post_init__(self):
        for name in ("num_frames", "dim", "feature_dim", "num_clusters", "num_scenes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not 1 <= self.segment_len <= self.num_frames:
            raise ValueError(f"segment_len={self.segment_len} must be in [1, num_frames={self.num_frames}]")
        if self.num_options < 2:
            raise ValueError(f"num_options={self.num_options} must be >= 2")
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors={self.num_distractors} must be >= 0")
        if (1 + self.num_distractors) * self.segment_len > self.num_frames:
            raise ValueError(
                f"num_distractors={self.num_distractors}: {1 + self.num_distractors} segments of "
                f"segment_len={self.segment_len} do not fit in num_frames={self.num_frames}"
            )
        if not 1 <= self.min_hits <= self.segment_len:
            raise ValueError(f"min_hits={self.min_hits} must be in [1, segment_len={self.segment_len}]")
        for name in ("frame_noise", "question_noise", "answer_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")


@dataclasses.dataclass(frozen=True)
class World:
    """What all videos share: cluster centres [C, D], answer codes [O, D], projection [D, E]."""

    centres: np.ndarray
    codes: np.ndarray
    projection: np.ndarray

    @classmethod
    def make(cls, seed: int, cfg: Config) -> World:
        """Draw the shared centres, codes and the frozen "CLIP" projection from ``seed``."""
        rng = np.random.default_rng(seed)
        return cls(
            centres=rng.normal(size=(cfg.num_clusters, cfg.dim)).astype(np.float32),
            codes=rng.normal(size=(cfg.num_options, cfg.dim)).astype(np.float32),
            projection=(rng.normal(size=(cfg.dim, cfg.feature_dim)) / np.sqrt(cfg.dim)).astype(np.float32),
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Videos:
    """A batch of B videos, already through the frozen "CLIP" projection (a pytree: jit takes it)."""

    frames: np.ndarray  # [B, T, E] frame features F_f
    question: np.ndarray  # [B, E] question feature t
    mask: np.ndarray  # [B, T] bool, True on the answer segment
    answer: np.ndarray  # [B] int32, the correct option

    def __getitem__(self, idx) -> Videos:
        return Videos(self.frames[idx], self.question[idx], self.mask[idx], self.answer[idx])


def _starts(rng: np.random.Generator, cfg: Config) -> list[int]:
    """Non-overlapping segment starts: the answer segment first, then the distractors."""
    while True:
        starts = rng.integers(0, cfg.num_frames - cfg.segment_len + 1, size=1 + cfg.num_distractors)
        order = np.sort(starts)
        if np.all(np.diff(order) >= cfg.segment_len):
            return [int(s) for s in starts]


def sample(rng: np.random.Generator, num_videos: int, world: World, cfg: Config) -> Videos:
    """``num_videos`` needle videos (see the module docstring); deterministic given ``rng``."""
    if num_videos < 1:
        raise ValueError(f"num_videos={num_videos} must be >= 1")
    t, d, seg = cfg.num_frames, cfg.dim, cfg.segment_len
    scene_of_frame = np.arange(t) * cfg.num_scenes // t  # [T]
    raw = np.empty((num_videos, t, d), np.float32)
    question = np.empty((num_videos, d), np.float32)
    mask = np.zeros((num_videos, t), bool)
    answer = rng.integers(0, cfg.num_options, size=num_videos).astype(np.int32)
    for b in range(num_videos):
        scenes = rng.integers(0, cfg.num_clusters, size=cfg.num_scenes)
        raw[b] = world.centres[scenes[scene_of_frame]]
        needle = rng.normal(size=d)
        starts = _starts(rng, cfg)
        raw[b, starts[0] : starts[0] + seg] = needle + cfg.answer_scale * world.codes[answer[b]]
        mask[b, starts[0] : starts[0] + seg] = True
        for s in starts[1:]:
            raw[b, s : s + seg] = needle
        question[b] = needle + cfg.question_noise * rng.normal(size=d)
    raw += cfg.frame_noise * rng.normal(size=raw.shape).astype(np.float32)
    return Videos(raw @ world.projection, question @ world.projection, mask, answer)


def temporal_reward(indices: jax.Array, mask: jax.Array) -> jax.Array:
    """R_T: the fraction of selected frames inside the segment; [..., K], [..., T] -> [...]."""
    return jnp.take_along_axis(mask, indices, axis=-1).mean(axis=-1, dtype=jnp.float32)


def answerer(
    key: jax.Array, indices: jax.Array, mask: jax.Array, answer: jax.Array, num_options: int, min_hits: int = 2
) -> jax.Array:
    """The frozen answerer's option [...]: ``answer`` iff >= ``min_hits`` of ``indices`` [..., K]
    lie where ``mask`` [..., T] is True, else a uniform random option drawn with ``key``."""
    hits = jnp.take_along_axis(mask, indices, axis=-1).sum(axis=-1)  # [...]
    guess = jax.random.randint(key, hits.shape, 0, num_options)
    return jnp.where(hits >= min_hits, answer, guess)
