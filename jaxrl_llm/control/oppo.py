"""OPPO: offline preference-guided policy optimization, and its baseline, a return-conditioned DT.

Kang, Shi, Liu, He, Wang, "Beyond Reward: Offline Preference-guided Policy Optimization", ICML 2023,
arXiv 2305.16217, https://arxiv.org/abs/2305.16217; official code https://github.com/bkkgbkjb/OPPO
(the scripted-teacher trainer ``oppo/scripted/gym/decision_transformer/training/pdt_trainer.py`` is
the reference for the losses below).

OPPO learns no reward. A hindsight encoder E maps a segment tau of K (s, a) pairs to a context
z = E(tau) in R^8; a Decision Transformer pi(a_t | s_<=t, a_<t, z) imitates the data conditioned on
its own segment's z; a learnable "optimal context" z* is pulled towards the embeddings of preferred
segments. Each step draws two segment batches tau1, tau2 (B each); the scripted teacher prefers
tau1_i over tau2_i when its true reward summed over ``foresee`` steps from the segment's start is
larger (ties dropped; optional Gaussian label noise). With P the labelled pairs, z+ / z- the
embeddings of the preferred / other segment of a pair and d(x, y) = ||x - y + eps||_2 (torch's
``pairwise_distance``, eps = 1e-6):

    L_HIM  = MSE(pi(s, a_<t, E(tau1)), a) + MSE(pi(s, a_<t, E(tau2)), a)       (masked token mean)
    L_pref = (1/|P|) sum_{i in P} max(d(sg[z*], z+_i) - d(sg[z*], z-_i) + margin, 0)
    L_norm = (1/B) sum_i (||E(tau1_i)|| - 1)^2 + (1/B) sum_i (||E(tau2_i)|| - 1)^2
    update 1 (E and pi):  minimize L_HIM + alpha L_pref + gamma L_norm   (alpha = gamma = 0.1;
                          gradients norm-clipped to 0.25 per network)
    update 2 (z* only):   minimize L_pref with z* free and E detached (re-encoded after update 1)

Deployment rolls out pi(. | ., z*) with z* fixed for the whole episode.

The baseline (``conditioning="return"``) is the Decision Transformer of Chen et al., arXiv
2106.01345 (https://github.com/kzl/decision-transformer) on the same data: the conditioning token
is the scaled return-to-go R_t / ``return_scale``, the loss is L_HIM alone, and evaluation starts
from a target return (default: the best episode return of the data) decremented by each reward.

Differs from the reference trainer in:
  1. no dropout in the transformers (the reference's is 0.1), and the encoder is pre-LN like the
     decoder (the reference's is BERT, post-LN) -- see ``decision_transformer``;
  2. the label window ``foresee`` counts from each segment's start (the reference reads the
     return-to-go at the segment's last step); the comparison on Pendulum sets it to K because
     a 200-step window from late segment starts is cut by the 200-step episodes;
  3. the normalizers of L_pref and L_norm / L_HIM are passed in (``num_pairs``, ``num``,
     ``num_tokens``), so a loss summed over parts of a batch equals the whole's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_llm.control import decision_transformer as dt
from jaxrl_llm.control import networks
from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array

NAME = "oppo"
PAPER = "Beyond Reward: Offline Preference-guided Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2305.16217"
CONDITIONINGS = ("preference", "return")


@dataclasses.dataclass(frozen=True)
class Config:
    conditioning: str = "preference"  # "preference" = OPPO (z from E, z* at test); "return" = the DT baseline
    context: int = 20  # K, steps per segment / DT window
    z_dim: int = 8  # dimension of z and z*
    dim: int = 128  # transformer width (embed)
    layers: int = 3
    heads: int = 1
    batch_size: int = 64  # B, segments per batch (two batches per step)
    lr: float = 1e-4  # decoder and encoder AdamW
    weight_decay: float = 1e-4
    warmup_steps: int = 10_000  # linear warm-up of the decoder's lr
    z_star_lr: float = 1e-3  # w_lr, AdamW on z*
    z_star_init_scale: float = 2.0  # z* ~ 2 N(0, I)
    max_grad_norm: float = 0.25  # per network
    pref_coef: float = 0.1  # alpha
    norm_coef: float = 0.1  # gamma
    margin: float = 1.0  # triplet margin
    foresee: int = 200  # steps of true reward the scripted teacher sums from a segment's start
    label_noise: float = 0.0  # std of Gaussian noise on the teacher's window sums
    return_scale: float = 1000.0  # R_t / return_scale is the DT baseline's conditioning token
    target_return: float | None = None  # the DT baseline's evaluation target; None = best data return
    max_ep_len: int = 1000  # size of the timestep embedding


class Dataset(NamedTuple):
    """Episodes padded to a common length H (arrays on device)."""

    obs: Array  # [E, H, O]
    actions: Array  # [E, H, A] normalized to [-1, 1]
    rewards: Array  # [E, H]
    lengths: Array  # [E] i32


class State(NamedTuple):
    params: Any  # {"decoder": nnx.State, "encoder": nnx.State | None, "z_star": [Z] | None}
    opt_state: Any  # {"decoder", "encoder", "z_star"}
    step: Array  # [] i32


class Agent(NamedTuple):
    """``init(key) -> State``; ``step(state, key) -> (state, metrics)``; ``evaluate(state, key) ->
    metrics`` (pure; jit them)."""

    init: Any
    step: Any
    evaluate: Any


def pairwise_distance(x: Array, y: Array, eps: float = 1e-6) -> Array:
    """``||x - y + eps||_2`` over the last axis (torch's ``pairwise_distance``): ``[..., Z] -> [...]``."""
    return jnp.sqrt(jnp.sum((x - y + eps) ** 2, axis=-1))


def preference_loss(
    z_star: Array, z_pos: Array, z_neg: Array, weights: Array, num_pairs: Array, margin: float = 1.0
) -> tuple[Array, Array]:
    """OPPO's triplet loss ``L_pref`` (sum over pairs / ``num_pairs``) and the triplet accuracy.

    ``z_star [Z]`` the anchor (stop its gradient at the call site when only E should move);
    ``z_pos``, ``z_neg [P, Z]`` the preferred / other segment's embedding of each pair; ``weights [P]``
    1 for labelled pairs, 0 for dropped ties; ``num_pairs`` the GLOBAL count of labelled pairs
    (torch's ``mean`` reduction over them). Accuracy: share of labelled pairs with
    ``d(z*, z+) < d(z*, z-)``.
    """
    anchor = jnp.broadcast_to(z_star, z_pos.shape)  # [P, Z]
    d_pos = pairwise_distance(anchor, z_pos)  # [P]
    d_neg = pairwise_distance(anchor, z_neg)  # [P]
    safe = jnp.maximum(num_pairs, 1.0)
    loss = jnp.sum(weights * jax.nn.relu(d_pos - d_neg + margin)) / safe
    accuracy = jnp.sum(weights * (d_pos < d_neg)) / safe
    return loss, accuracy


def norm_penalty(z: Array, num: Array) -> Array:
    """``(1/num) sum_i (||z_i||_2 - 1)^2`` over ``z [B, Z]`` (the scripted trainer's two-sided MSE form)."""
    return jnp.sum((jnp.linalg.norm(z, axis=-1) - 1.0) ** 2) / num


def bc_loss(pred_actions: Array, actions: Array, mask: Array, num_tokens: Array) -> Array:
    """``L_HIM`` of one batch: squared action error averaged over action dims, summed over valid
    steps, divided by the GLOBAL valid-step count. ``pred_actions``, ``actions [B, K, A]``, ``mask [B, K]``."""
    per_step = jnp.mean((pred_actions - actions) ** 2, axis=-1)  # [B, K]
    return jnp.sum(per_step * mask) / num_tokens


def scripted_labels(window_return_1: Array, window_return_2: Array) -> tuple[Array, Array]:
    """The scripted teacher: ``(first_preferred [B] bool, labelled [B] f32)``; a pair is labelled when
    its two window sums differ (strict, margin 0), and then the larger one is preferred."""
    first = window_return_1 > window_return_2
    second = window_return_2 > window_return_1
    return first, (first | second).astype(jnp.float32)


def load_dataset(path: str) -> tuple[Dataset, dict[str, np.ndarray]]:
    """``(Dataset, raw arrays)`` of an .npz written by ``experiments/oppo_data.py`` (``obs``,
    ``actions``, ``rewards``, ``lengths``); raises ``ValueError`` naming a missing or misshapen array."""
    with np.load(path) as f:
        raw = {k: f[k] for k in f.files}
    for key, ndim in (("obs", 3), ("actions", 3), ("rewards", 2), ("lengths", 1)):
        if key not in raw:
            raise ValueError(f"{path}: no array {key!r} (has {sorted(raw)})")
        if raw[key].ndim != ndim:
            raise ValueError(f"{path}: {key} has shape {raw[key].shape}, expected {ndim} dims")
    e, h = raw["rewards"].shape
    if raw["obs"].shape[:2] != (e, h) or raw["actions"].shape[:2] != (e, h) or raw["lengths"].shape != (e,):
        raise ValueError(f"{path}: obs/actions/rewards/lengths disagree on [episodes, horizon] = {(e, h)}")
    data = Dataset(
        jnp.asarray(raw["obs"], jnp.float32),
        jnp.asarray(raw["actions"], jnp.float32),
        jnp.asarray(raw["rewards"], jnp.float32),
        jnp.asarray(raw["lengths"], jnp.int32),
    )
    return data, raw


def _check(cfg: Config, data: Dataset) -> None:
    if cfg.conditioning not in CONDITIONINGS:
        raise ValueError(f"oppo: conditioning={cfg.conditioning!r}, expected one of {CONDITIONINGS}")
    horizon = data.rewards.shape[1]
    if cfg.context > horizon:
        raise ValueError(f"oppo: context={cfg.context} exceeds the dataset's horizon {horizon}")
    if horizon > cfg.max_ep_len:
        raise ValueError(f"oppo: the dataset's horizon {horizon} exceeds max_ep_len={cfg.max_ep_len}")
    if cfg.dim % cfg.heads:
        raise ValueError(f"oppo: dim={cfg.dim} is not divisible by heads={cfg.heads}")


def make(env: AutoReset, data: Dataset, cfg: Config, eval_episodes: int = 10) -> Agent:
    """OPPO (or the return-conditioned DT) on ``data``, evaluated by rolling out in ``env``."""
    _check(cfg, data)
    preference = cfg.conditioning == "preference"
    num_episodes, horizon = data.rewards.shape
    k = cfg.context
    obs_dim, act_dim = data.obs.shape[-1], data.actions.shape[-1]
    cond_dim = cfg.z_dim if preference else 1
    valid = jnp.arange(horizon)[None, :] < data.lengths[:, None]  # [E, H]
    rewards = data.rewards * valid
    csum = jnp.concatenate([jnp.zeros((num_episodes, 1)), jnp.cumsum(rewards, axis=1)], axis=1)  # [E, H+1]
    rtg = csum[:, -1:] - csum[:, :-1]  # [E, H] return-to-go from t
    episode_returns = csum[:, -1]
    target_return = float(jnp.max(episode_returns)) if cfg.target_return is None else cfg.target_return

    def decoder_fn(rngs):
        return dt.DecisionTransformer(
            obs_dim, act_dim, cond_dim, cfg.dim, cfg.layers, cfg.heads, cfg.max_ep_len, rngs=rngs
        )

    def encoder_fn(rngs):
        return dt.HindsightEncoder(
            obs_dim, act_dim, cfg.z_dim, cfg.dim, cfg.layers, cfg.heads, cfg.max_ep_len, rngs=rngs
        )

    decoder_def, _ = nnx.split(decoder_fn(nnx.Rngs(0)))
    encoder_def, _ = nnx.split(encoder_fn(nnx.Rngs(0)))
    schedule = optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1))
    tx = {
        "decoder": optax.chain(
            optax.clip_by_global_norm(cfg.max_grad_norm), optax.adamw(schedule, weight_decay=cfg.weight_decay)
        ),
        "encoder": optax.chain(
            optax.clip_by_global_norm(cfg.max_grad_norm), optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)
        ),
        "z_star": optax.adamw(cfg.z_star_lr, weight_decay=cfg.weight_decay),
    }

    def init(key: Array) -> State:
        k_dec, k_enc, k_z = jax.random.split(key, 3)
        params = {"decoder": nnx.split(decoder_fn(nnx.Rngs(k_dec)))[1], "encoder": None, "z_star": None}
        if preference:
            params["encoder"] = nnx.split(encoder_fn(nnx.Rngs(k_enc)))[1]
            params["z_star"] = cfg.z_star_init_scale * jax.random.normal(k_z, (cfg.z_dim,))
        opt_state = {name: tx[name].init(p) if p is not None else None for name, p in params.items()}
        return State(params, opt_state, jnp.zeros((), jnp.int32))

    def sample(key: Array) -> dict[str, Array]:
        """B segments of K steps: uniform episode, uniform start in [0, length - K]."""
        k_ep, k_start, k_noise = jax.random.split(key, 3)
        ep = jax.random.randint(k_ep, (cfg.batch_size,), 0, num_episodes)  # [B]
        max_start = jnp.maximum(data.lengths[ep] - k, 0)
        start = jax.random.randint(k_start, (cfg.batch_size,), 0, max_start + 1)  # [B]
        idx = start[:, None] + jnp.arange(k)[None, :]  # [B, K]

        def take(x):
            return x[ep[:, None], idx]

        end = jnp.minimum(start + cfg.foresee, data.lengths[ep])
        window_return = csum[ep, end] - csum[ep, start]  # [B]
        window_return = window_return + cfg.label_noise * jax.random.normal(k_noise, window_return.shape)
        return {
            "states": take(data.obs),  # [B, K, O]
            "actions": take(data.actions),  # [B, K, A]
            "rtg": take(rtg)[..., None] / cfg.return_scale,  # [B, K, 1]
            "timesteps": idx,  # [B, K]
            "mask": take(valid),  # [B, K]
            "window_return": window_return,  # [B]
        }

    def encode(enc_params, seg):
        return networks.apply(encoder_def, enc_params, seg["states"], seg["actions"], seg["timesteps"], seg["mask"])

    def imitation(dec_params, seg, cond):
        pred = networks.apply(
            decoder_def, dec_params, seg["states"], seg["actions"], cond, seg["timesteps"], seg["mask"]
        )
        return bc_loss(pred, seg["actions"], seg["mask"], jnp.maximum(jnp.sum(seg["mask"]), 1.0))

    def pairs(z1, z2, seg1, seg2):
        first, labelled = scripted_labels(seg1["window_return"], seg2["window_return"])
        z_pos = jnp.where(first[:, None], z1, z2)  # [B, Z]
        z_neg = jnp.where(first[:, None], z2, z1)
        return z_pos, z_neg, labelled, jnp.sum(labelled)

    def oppo_loss(nets, z_star, seg1, seg2):
        z1, z2 = encode(nets["encoder"], seg1), encode(nets["encoder"], seg2)  # [B, Z]
        l_him = imitation(nets["decoder"], seg1, jnp.broadcast_to(z1[:, None], (*seg1["mask"].shape, cfg.z_dim)))
        l_him += imitation(nets["decoder"], seg2, jnp.broadcast_to(z2[:, None], (*seg2["mask"].shape, cfg.z_dim)))
        z_pos, z_neg, labelled, num_pairs = pairs(z1, z2, seg1, seg2)
        l_pref, acc = preference_loss(jax.lax.stop_gradient(z_star), z_pos, z_neg, labelled, num_pairs, cfg.margin)
        n = jnp.float32(cfg.batch_size)
        l_norm = norm_penalty(z1, n) + norm_penalty(z2, n)
        total = l_him + cfg.pref_coef * l_pref + cfg.norm_coef * l_norm
        metrics = {
            "loss": total,
            "loss/bc": l_him,
            "loss/pref": l_pref,
            "loss/norm": l_norm,
            "triplet_acc": acc,
            "labelled_frac": num_pairs / cfg.batch_size,
            "z/norm": jnp.mean(jnp.linalg.norm(jnp.concatenate([z1, z2]), axis=-1)),
        }
        return total, metrics

    def dt_loss(nets, seg1, seg2):
        l_him = imitation(nets["decoder"], seg1, seg1["rtg"]) + imitation(nets["decoder"], seg2, seg2["rtg"])
        return l_him, {"loss": l_him, "loss/bc": l_him}

    def apply_update(name, grads, params, opt_state):
        updates, new_opt = tx[name].update(grads, opt_state[name], params[name])
        return optax.apply_updates(params[name], updates), new_opt

    def step(state: State, key: Array) -> tuple[State, dict]:
        k1, k2 = jax.random.split(key)
        seg1, seg2 = sample(k1), sample(k2)
        params, opt_state = dict(state.params), dict(state.opt_state)
        if preference:
            nets = {"decoder": params["decoder"], "encoder": params["encoder"]}
            grads, metrics = jax.grad(oppo_loss, has_aux=True)(nets, params["z_star"], seg1, seg2)
            for name in ("decoder", "encoder"):
                params[name], opt_state[name] = apply_update(name, grads[name], params, opt_state)
                metrics[f"grad_norm/{name}"] = optax.tree.norm(grads[name])
            z1 = jax.lax.stop_gradient(encode(params["encoder"], seg1))
            z2 = jax.lax.stop_gradient(encode(params["encoder"], seg2))
            z_pos, z_neg, labelled, num_pairs = pairs(z1, z2, seg1, seg2)

            def z_loss(z_star):
                return preference_loss(z_star, z_pos, z_neg, labelled, num_pairs, cfg.margin)[0]

            params["z_star"], opt_state["z_star"] = apply_update(
                "z_star", jax.grad(z_loss)(params["z_star"]), params, opt_state
            )
            metrics["z_star/norm"] = jnp.linalg.norm(params["z_star"])
        else:
            grads, metrics = jax.grad(dt_loss, has_aux=True)({"decoder": params["decoder"]}, seg1, seg2)
            params["decoder"], opt_state["decoder"] = apply_update("decoder", grads["decoder"], params, opt_state)
            metrics["grad_norm/decoder"] = optax.tree.norm(grads["decoder"])
        return State(params, opt_state, state.step + 1), metrics

    def evaluate(state: State, key: Array) -> dict[str, Array]:
        policy = nnx.merge(decoder_def, state.params["decoder"])
        if preference:
            cond0, scale = state.params["z_star"], None
        else:
            cond0, scale = jnp.full((1,), target_return / cfg.return_scale), cfg.return_scale
        out = dt.evaluate(env, policy, cond0, key, eval_episodes, horizon, k, return_scale=scale)
        return {"eval/return": jnp.mean(out["return"]), "eval/return_std": jnp.std(out["return"])}

    return Agent(init, step, evaluate)
