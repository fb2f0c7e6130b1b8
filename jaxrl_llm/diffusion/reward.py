"""Reward models for FIND on the in-repo diffusion models, and the data they are built on.

* 2-D: the data is a ring of ``K`` Gaussians; the "prompt" picks a target mode ``m_c`` and the
  reward of a generated point is ``r(x) = exp(-||x - m_c||^2 / w^2)`` (the tiny reproduction of
  FIND: Chen et al., "FIND: Fine-tuning Initial Noise Distribution with Policy Optimization for
  Diffusion Models", https://arxiv.org/abs/2407.19453, code https://github.com/vpx-ecnu/FIND).
* Digits: scikit-learn's 8x8 ``load_digits`` (scaled to [-1, 1]); a small MLP classifier trained
  in-repo stands in for the paper's ImageReward; the reward of an image is the classifier's
  probability (or log-probability) of a target class.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_llm import errors

try:  # optional extra (jaxrl-llm[diffusion]); the 2-D path runs without it
    from sklearn.datasets import load_digits
except ImportError:
    load_digits = None


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
    """The ``K`` mode centres [K, 2] on a circle, mode ``k`` at angle ``2 pi k / K``."""
    ang = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return (radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)).astype(np.float32)


def ring_data(n: int, *, num_modes: int = 8, radius: float = 2.0, std: float = 0.1, seed: int = 0) -> np.ndarray:
    """``n`` points [n, 2] from the equal mixture of ``N(m_k, std^2 I)`` over ``ring_centers``."""
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, num_modes, n)
    return ring_centers(num_modes, radius)[modes] + std * rng.standard_normal((n, 2)).astype(np.float32)


def mode_reward(x: jax.Array, center: jax.Array, width: float = 1.0) -> jax.Array:
    """``r = exp(-||x - m_c||^2 / w^2)`` [B] for points ``x`` [B, 2] and a centre ``m_c`` [2]."""
    return jnp.exp(-jnp.sum((x - center) ** 2, axis=-1) / width**2)


def nearest_mode(x: jax.Array, centers: jax.Array) -> jax.Array:
    """Index [B] of the closest centre to each point (for class-entropy diversity)."""
    return jnp.argmin(jnp.sum((x[:, None, :] - centers[None]) ** 2, axis=-1), axis=-1)


def digits_data(seed: int = 0, test_frac: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from ``sklearn.datasets.load_digits``: images
    flattened to [n, 64] and scaled from 0..16 to [-1, 1]; a seeded random split."""
    if load_digits is None:
        raise errors.UserError("the digits data needs scikit-learn: pip install 'jaxrl-llm[diffusion]'")
    d = load_digits()
    x = (d.data.astype(np.float32) / 8.0) - 1.0
    y = d.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_frac * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    dim: int = 64
    hidden: int = 128
    num_classes: int = 10


class DigitClassifier(nnx.Module):
    """``logits = MLP(x)`` for flattened 8x8 digits; 2 hidden layers, SiLU."""

    def __init__(self, cfg: ClassifierConfig, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(cfg.dim, cfg.hidden, rngs=rngs)
        self.l2 = nnx.Linear(cfg.hidden, cfg.hidden, rngs=rngs)
        self.l3 = nnx.Linear(cfg.hidden, cfg.num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.l3(nnx.silu(self.l2(nnx.silu(self.l1(x)))))  # [B, C]


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    *,
    cfg: ClassifierConfig = ClassifierConfig(),
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 2e-3,
    noise_std: float = 0.1,
    seed: int = 0,
) -> DigitClassifier:
    """Cross-entropy training with AdamW; Gaussian input noise (``noise_std``) makes the classifier
    less brittle on generated images that sit slightly off the data manifold."""
    model = DigitClassifier(cfg, nnx.Rngs(seed))
    opt = nnx.Optimizer(model, optax.adamw(lr, weight_decay=1e-4), wrt=nnx.Param)
    xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)

    def loss_fn(model, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

    @nnx.jit
    def step(model, opt, key):
        kb, kn = jax.random.split(key)
        idx = jax.random.randint(kb, (batch_size,), 0, xs.shape[0])
        xb = xs[idx] + noise_std * jax.random.normal(kn, (batch_size, xs.shape[1]))
        grads = nnx.grad(loss_fn)(model, xb, ys[idx])
        opt.update(model, grads)

    key = jax.random.key(seed + 7)
    for _ in range(steps):
        key, sub = jax.random.split(key)
        step(model, opt, sub)
    return model


def accuracy(model: DigitClassifier, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float(jnp.mean(jnp.argmax(model(jnp.asarray(x)), axis=-1) == jnp.asarray(y)))


def class_reward(logits: jax.Array, target: int, kind: str = "prob") -> jax.Array:
    """Reward [B] from classifier logits [B, C]: ``p(target | x)`` (``kind="prob"``) or
    ``log p(target | x)`` (``kind="logprob"``)."""
    logp = jax.nn.log_softmax(logits, axis=-1)[:, target]
    if kind == "prob":
        return jnp.exp(logp)
    if kind == "logprob":
        return logp
    raise ValueError(f"class_reward kind must be 'prob' or 'logprob', got {kind!r}")
