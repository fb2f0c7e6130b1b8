"""FIND: fine-tuning the initial-noise distribution of a frozen diffusion model.

Chen, Yang, Yang, Chen, He, Wang, Li, "FIND: Fine-tuning Initial Noise Distribution with Policy
Optimization for Diffusion Models" (ACM MM 2024), https://arxiv.org/abs/2407.19453; official code
https://github.com/vpx-ecnu/FIND (``dist_train2.py``). The whole denoising chain is a one-step MDP:
the action is the initial noise ``z = x_T``, drawn from a learnable diagonal Gaussian
``pi_phi = N(mu, diag sigma^2)`` (``mu = 0``, ``sigma = 1`` at start), the frozen model denoises it
(DDIM, ``eta = 1`` in the paper's pipeline) and a reward model scores the result. Minimised:

    log pi(z)  = mean_d log N(z_d; mu_d, sigma_d^2)                  (a MEAN over elements, not a sum)
    rho(z)     = exp(log pi_phi(z) - log pi_anchor(z))               (anchor = the prior N(0, I))
    A          = r - V_psi(mu, sigma)                                (A = r when use_value is off)
    L          = -w_r * (1/B) sum_b A_b * clip(rho(z_b), 1 - eps, 1 + eps)
                 + w_kl * mean_d[(mu_d - 0)^2 + (sigma_d - 1)^2]

with ``w_r = 10``, ``w_kl = 0.01``, ``eps = 0.2``, AdamW lr 1e-3, gradient-norm clip 0.1, and
``sigma`` clamped to ``>= 1e-4`` after each step. The value network ``V_psi`` (an MLP of
``(mu, sigma)``) is fitted to the observed rewards by MSE, 5 AdamW steps (lr 1e-4) per iteration,
before the advantages are formed.

How this differs from PPO (and what a reader of the paper should know):

1. A hard clamp, not PPO's ``min``: the gradient through the ratio is zero once ``rho`` leaves
   ``[1 - eps, 1 + eps]``, whatever the sign of ``A``.
2. The ratio is anchored at the INITIAL policy N(0, I) (the code sets ``old_mean``/``old_std`` once),
   so the clamp is a trust region around the prior, not around the last iterate:
   ``Config.anchor = "prior"``; ``"previous"`` anchors at the sampling policy instead (the paper's
   "historical data" wording).
3. The "KL" term is an L2 pull of ``(mu, sigma)`` towards ``(0, 1)``, not a KL.
4. The released code reads the reward of the oldest replay-buffer entry (``final_reward[0]``) next
   to the newest noise; here every loss term uses the current batch's own rewards (no buffer).
5. ``sigma`` is learned directly (clamped), as in the code, not as a log-std.

The batch normaliser ``B`` (``num_samples``) is passed in, so losses summed over micro-batches equal
the full-batch loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

ANCHORS = ("prior", "previous")

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class Config:
    """FIND's hyper-parameters (paper/code symbols in comments, code defaults)."""

    w_r: float = 10.0  # w_r: weight of the clipped policy-gradient term
    w_kl: float = 0.01  # w_kl: weight of the L2 anchor of (mu, sigma) to (0, 1)
    eps: float = 0.2  # epsilon: the hard clamp [1 - eps, 1 + eps] of the ratio
    anchor: str = "prior"  # "prior" (code: N(0, I) fixed) or "previous" (the sampling policy)
    lr: float = 1e-3  # AdamW lr on (mu, sigma)
    weight_decay: float = 0.01  # torch.optim.AdamW's default, which the code uses
    max_grad_norm: float = 0.1  # gradient-norm clip
    std_min: float = 1e-4  # sigma clamped >= std_min after every step
    use_value: bool = True  # v_flag: A = r - V(mu, sigma), else A = r
    value_lr: float = 1e-4  # AdamW lr of V_psi
    value_steps: int = 5  # V_psi updates per iteration
    value_hidden: int = 256  # V_psi width (3 hidden layers, as in the code)
    reward_filter: bool = False  # reward_filter: clamp rewards at >= 0
    batch_size: int = 64  # noises (= generations) per iteration

    def __post_init__(self):
        if self.anchor not in ANCHORS:
            raise ValueError(f"find.Config.anchor must be one of {ANCHORS}, got {self.anchor!r}")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"find.Config.eps must be in (0, 1), got {self.eps}")
        if self.batch_size < 1 or self.value_steps < 0:
            raise ValueError(
                f"find.Config needs batch_size >= 1 and value_steps >= 0, got {self.batch_size}, {self.value_steps}"
            )


def log_prob(z: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """``mean_d log N(z_d; mean_d, std_d^2)`` [B] for noises ``z`` [B, D] and ``mean``/``std`` [D]
    (FIND's per-sample log-probability: a mean over elements)."""
    return jnp.mean(-0.5 * ((z - mean) / std) ** 2 - jnp.log(std) - 0.5 * _LOG_2PI, axis=-1)


def policy_loss(
    params: dict[str, jax.Array],
    z: jax.Array,
    anchor_logprobs: jax.Array,
    advantages: jax.Array,
    num_samples: jax.Array | float,
    cfg: Config,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``-w_r * sum_b A_b clip(rho_b, 1-eps, 1+eps) / num_samples`` (a sum over THIS batch divided by
    the global sample count). ``params = {"mean": [D], "std": [D]}``, ``z`` [B, D] (constants: the
    sampled noises), ``anchor_logprobs`` [B] (``log pi_anchor(z)``), ``advantages`` [B]."""
    logprobs = log_prob(z, params["mean"], params["std"])  # [B]
    ratio = jnp.exp(logprobs - anchor_logprobs)  # [B]
    clipped = jnp.clip(ratio, 1.0 - cfg.eps, 1.0 + cfg.eps)  # [B]; hard clamp: no gradient outside
    loss = -cfg.w_r * jnp.sum(advantages * clipped) / num_samples
    outside = (ratio < 1.0 - cfg.eps) | (ratio > 1.0 + cfg.eps)  # [B]
    metrics = {
        "clip_frac": jnp.sum(outside) / num_samples,
        "ratio/mean": jnp.sum(ratio) / num_samples,
    }
    return loss, metrics


def anchor_penalty(params: dict[str, jax.Array], cfg: Config) -> jax.Array:
    """``w_kl * mean_d[mu_d^2 + (sigma_d - 1)^2]``: the code's L2 pull towards the prior (its "KL")."""
    return cfg.w_kl * jnp.mean(params["mean"] ** 2 + (params["std"] - 1.0) ** 2)


def loss(
    params: dict[str, jax.Array],
    z: jax.Array,
    anchor_logprobs: jax.Array,
    advantages: jax.Array,
    num_samples: jax.Array | float,
    cfg: Config,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """FIND's full objective ``L`` (module docstring) on one batch that holds all ``num_samples``
    rows. Under micro-batching, sum ``policy_loss`` over the parts and add ``anchor_penalty`` once."""
    pg, metrics = policy_loss(params, z, anchor_logprobs, advantages, num_samples, cfg)
    penalty = anchor_penalty(params, cfg)
    return pg + penalty, {"loss": pg + penalty, "loss/policy": pg, "kl": penalty, **metrics}


class ValueNet(nnx.Module):
    """``V_psi(mu, sigma, c)``: an MLP ``[mu, sigma, c] -> 256 -> 256 -> 256 -> 1`` (ReLU), as in the
    code; ``c`` is an optional context vector (the paper's text embedding; here a one-hot target)."""

    def __init__(self, in_dim: int, hidden: int, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(d, hidden, rngs=rngs) for d in (in_dim, hidden, hidden)])
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return self.out(x)[..., 0]


def value_loss(
    value_state: nnx.State,
    graphdef: nnx.GraphDef,
    features: jax.Array,
    rewards: jax.Array,
    num_samples: jax.Array | float,
) -> jax.Array:
    """``sum_b (V_psi(features) - r_b)^2 / num_samples`` for ``rewards`` [B] (``features`` [F] is the
    same ``(mu, sigma, c)`` for every row: the value is a baseline of the policy, not of a sample)."""
    v = nnx.merge(graphdef, value_state)(features[None])[0]  # []
    return jnp.sum((v - rewards) ** 2) / num_samples


class FindState(NamedTuple):
    """Everything a FIND run carries (a pytree: checkpoint it whole)."""

    params: dict[str, jax.Array]  # {"mean": [D], "std": [D]}
    opt_state: optax.OptState
    value_state: nnx.State
    value_opt_state: optax.OptState
    step: jax.Array  # [] int32


def value_features(params: dict[str, jax.Array], context: jax.Array) -> jax.Array:
    """The value network's input ``[mu, sigma, c]`` [2D + C]."""
    return jnp.concatenate([params["mean"], params["std"], context])


def make(
    cfg: Config,
    dim: int,
    generate: Callable[[jax.Array, jax.Array], jax.Array],
    reward_fn: Callable[[jax.Array], jax.Array],
    context: jax.Array | None = None,
) -> tuple[Callable[[jax.Array], FindState], Callable[[FindState, jax.Array], tuple[FindState, dict]]]:
    """``(init, step)`` for a FIND run over noises of size ``dim``.

    ``generate(z [B, dim], key) -> x_0`` runs the frozen model's chain; ``reward_fn(x_0) -> r [B]``.
    ``step(state, key)`` is one iteration (pure; jit it): sample ``z ~ N(mu, sigma^2)``, generate,
    score, fit ``V_psi`` for ``value_steps`` steps, form ``A = r - V_psi(mu, sigma, c)``, take one
    clipped AdamW step on ``L``, clamp ``sigma >= std_min``."""
    context = jnp.zeros((0,), jnp.float32) if context is None else jnp.asarray(context, jnp.float32)
    opt = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adamw(cfg.lr, weight_decay=cfg.weight_decay))
    value_opt = optax.adamw(cfg.value_lr)
    graphdef = nnx.graphdef(ValueNet(2 * dim + context.shape[0], cfg.value_hidden, nnx.Rngs(0)))
    B = cfg.batch_size

    def init(key: jax.Array) -> FindState:
        params = {"mean": jnp.zeros((dim,), jnp.float32), "std": jnp.ones((dim,), jnp.float32)}
        value_state = nnx.state(ValueNet(2 * dim + context.shape[0], cfg.value_hidden, nnx.Rngs(key)))
        return FindState(params, opt.init(params), value_state, value_opt.init(value_state), jnp.zeros((), jnp.int32))

    def step(state: FindState, key: jax.Array) -> tuple[FindState, dict[str, jax.Array]]:
        k_z, k_gen = jax.random.split(key)
        params = state.params
        z = params["mean"] + params["std"] * jax.random.normal(k_z, (B, dim))  # [B, D]
        z = jax.lax.stop_gradient(z)
        rewards = reward_fn(generate(z, k_gen))  # [B]
        if cfg.reward_filter:
            rewards = jnp.maximum(rewards, 0.0)
        features = value_features(params, context)  # [2D + C]

        def value_update(carry, _):
            v_state, v_opt = carry
            v_loss, grads = jax.value_and_grad(value_loss)(v_state, graphdef, features, rewards, B)
            updates, v_opt = value_opt.update(grads, v_opt, v_state)
            return (optax.apply_updates(v_state, updates), v_opt), v_loss

        (value_state, value_opt_state), v_losses = jax.lax.scan(
            value_update, (state.value_state, state.value_opt_state), None, length=cfg.value_steps
        )
        baseline = nnx.merge(graphdef, value_state)(features[None])[0]  # []
        advantages = rewards - baseline if cfg.use_value else rewards  # [B]
        if cfg.anchor == "prior":
            anchor_logprobs = log_prob(z, jnp.zeros((dim,)), jnp.ones((dim,)))  # [B]
        else:
            anchor_logprobs = log_prob(z, params["mean"], params["std"])  # [B]
        (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(
            params, z, jax.lax.stop_gradient(anchor_logprobs), jax.lax.stop_gradient(advantages), B, cfg
        )
        updates, opt_state = opt.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
        params = {"mean": params["mean"], "std": jnp.maximum(params["std"], cfg.std_min)}
        metrics = {
            **metrics,
            "reward/mean": jnp.mean(rewards),
            "value": baseline,
            "value/loss": v_losses[-1] if cfg.value_steps else jnp.zeros(()),
            "grad_norm": optax.tree.norm(grads),
            "mean/norm": jnp.linalg.norm(params["mean"]),
            "std/mean": jnp.mean(params["std"]),
        }
        return FindState(params, opt_state, value_state, value_opt_state, state.step + 1), metrics

    return init, step
