"""A small DDPM with a DDIM sampler, trained in-repo (no diffusion weights exist offline).

Forward process (Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models",
https://arxiv.org/abs/2006.11239, code https://github.com/hojonathanho/diffusion), with
``abar_t = prod_{s<=t} (1 - beta_s)``, ``t = 0..N-1``:

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,      eps ~ N(0, I)

The denoiser ``eps_theta(x_t, t)`` is trained with the "simple" loss ``E ||eps - eps_theta(x_t, t)||^2``
(mean over elements), ``t`` uniform.

Sampling with DDIM (Song, Meng, Ermon, "Denoising Diffusion Implicit Models",
https://arxiv.org/abs/2010.02502, code https://github.com/ermongroup/ddim) over a decreasing
sub-sequence ``tau_S > ... > tau_1`` of the training steps, ``t -> p`` (``abar_p = 1`` after the last):

    x0_hat  = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)
    sigma_t = eta * sqrt((1 - abar_p) / (1 - abar_t)) * sqrt(1 - abar_t / abar_p)
    x_p     = sqrt(abar_p) x0_hat + sqrt(1 - abar_p - sigma_t^2) eps_theta + sigma_t z,   z ~ N(0, I)

``eta = 0`` is the deterministic (probability-flow-like) sampler: ``x_0`` is a fixed function of the
initial noise ``x_T``; ``eta = 1`` is DDPM-like ancestral sampling (what FIND's Stable Diffusion
pipeline runs). The denoisers are MLPs with a sinusoidal time embedding: one for 2-D points, a
wider one for flattened 8x8 digits. Frozen weights are cached as safetensors with the model's
config in the file's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxrl_llm import errors

SCHEDULES = ("linear", "cosine")

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x [B, D], t [B] int) -> eps_hat [B, D]


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    """A denoiser and its noise schedule."""

    dim: int = 2  # D: data dimension (2 for points, 64 for 8x8 digits)
    hidden: int = 128  # MLP width
    depth: int = 3  # hidden layers
    time_embed: int = 32  # sinusoidal time-embedding size
    num_steps: int = 100  # N: training diffusion steps
    schedule: str = "linear"  # "linear" (beta 1e-4 -> 0.02 rescaled to N steps) or "cosine"


def alphas_bar(num_steps: int, schedule: str = "linear") -> jax.Array:
    """``abar_t`` [N] f32 for ``t = 0..N-1``.

    linear: ``beta_t`` linear from ``1e-4 * 1000/N`` to ``0.02 * 1000/N`` (Ho et al.'s 1000-step
    schedule rescaled to N steps); cosine: ``abar_t = f(t+1)/f(0)``, ``f(t) = cos^2((t/N + s)/(1+s) pi/2)``,
    ``s = 0.008``, betas clipped at 0.999 (Nichol & Dhariwal, arXiv 2102.09672). With few steps the
    cosine schedule's clipped last step leaves ``abar_{N-1}`` ~ 1e-7, which makes the deterministic
    sampler's first ``x0_hat`` blow up: linear is the default here."""
    if num_steps < 1:
        raise ValueError(f"ddpm num_steps must be >= 1, got {num_steps}")
    if schedule == "linear":
        scale = 1000.0 / num_steps
        betas = np.linspace(1e-4 * scale, 0.02 * scale, num_steps, dtype=np.float64)
    elif schedule == "cosine":
        s = 0.008
        f = np.cos((np.arange(num_steps + 1, dtype=np.float64) / num_steps + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    else:
        raise ValueError(f"ddpm schedule must be one of {SCHEDULES}, got {schedule!r}")
    return jnp.asarray(np.cumprod(1.0 - betas), jnp.float32)


def q_sample(x0: jax.Array, t: jax.Array, noise: jax.Array, abar: jax.Array) -> jax.Array:
    """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` for ``x0``/``noise`` [B, D], ``t`` [B] int."""
    a = abar[t][:, None]  # [B, 1]
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def time_embedding(t: jax.Array, num_steps: int, size: int) -> jax.Array:
    """Sinusoidal embedding [B, size] of ``t / N`` (frequencies 1 .. 1000, geometric)."""
    half = size // 2
    freqs = jnp.exp(jnp.linspace(0.0, math.log(1000.0), half))  # [half]
    arg = (t.astype(jnp.float32) / num_steps)[:, None] * freqs[None, :] * 2.0 * math.pi  # [B, half]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class MLPDenoiser(nnx.Module):
    """``eps_theta(x, t)``: an MLP over ``[x, emb(t)]`` with SiLU; the time embedding is also added
    into every hidden layer (a cheap FiLM-free conditioning that trains fast on CPU)."""

    def __init__(self, cfg: DDPMConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.inp = nnx.Linear(cfg.dim + cfg.time_embed, cfg.hidden, rngs=rngs)
        self.temb = nnx.List([nnx.Linear(cfg.time_embed, cfg.hidden, rngs=rngs) for _ in range(cfg.depth)])
        self.hidden = nnx.List([nnx.Linear(cfg.hidden, cfg.hidden, rngs=rngs) for _ in range(cfg.depth)])
        self.out = nnx.Linear(cfg.hidden, cfg.dim, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        emb = time_embedding(t, self.cfg.num_steps, self.cfg.time_embed)  # [B, E]
        h = nnx.silu(self.inp(jnp.concatenate([x, emb], axis=-1)))  # [B, H]
        for lin, tl in zip(self.hidden, self.temb, strict=True):
            h = h + nnx.silu(lin(h) + tl(emb))
        return self.out(h)  # [B, D]


def denoising_loss(model: MLPDenoiser, x0: jax.Array, key: jax.Array, abar: jax.Array) -> jax.Array:
    """The simple DDPM loss ``mean_{b,d} (eps - eps_theta(x_t, t))^2`` with ``t ~ U{0..N-1}``."""
    kt, ke = jax.random.split(key)
    t = jax.random.randint(kt, (x0.shape[0],), 0, abar.shape[0])  # [B]
    noise = jax.random.normal(ke, x0.shape)  # [B, D]
    return jnp.mean((noise - model(q_sample(x0, t, noise, abar), t)) ** 2)


def train_ddpm(
    cfg: DDPMConfig,
    data: np.ndarray,
    *,
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
) -> tuple[MLPDenoiser, list[float]]:
    """Train a denoiser on ``data`` [n, D] with AdamW (cosine-decayed lr) and return it with the
    loss every 100 steps."""
    data = np.asarray(data, np.float32)
    if data.ndim != 2 or data.shape[1] != cfg.dim:
        raise ValueError(f"train_ddpm data must be [n, {cfg.dim}], got shape {data.shape}")
    model = MLPDenoiser(cfg, nnx.Rngs(seed))
    opt = nnx.Optimizer(model, optax.adamw(optax.cosine_decay_schedule(lr, steps, 0.05)), wrt=nnx.Param)
    abar = alphas_bar(cfg.num_steps, cfg.schedule)
    x = jnp.asarray(data)

    @nnx.jit
    def step(model, opt, key):
        kb, kl = jax.random.split(key)
        idx = jax.random.randint(kb, (batch_size,), 0, x.shape[0])
        loss, grads = nnx.value_and_grad(denoising_loss)(model, x[idx], kl, abar)
        opt.update(model, grads)
        return loss

    key = jax.random.key(seed + 1)
    losses = []
    for i in range(steps):
        key, sub = jax.random.split(key)
        loss = step(model, opt, sub)
        if i % 100 == 0 or i == steps - 1:
            losses.append(float(loss))
    return model, losses


def ddim_timesteps(num_steps: int, sample_steps: int) -> jax.Array:
    """The decreasing sub-sequence ``tau`` [S] of ``0..N-1`` used by the sampler (evenly spaced,
    ending at ``t = 0``)."""
    if not 1 <= sample_steps <= num_steps:
        raise ValueError(f"ddim sample_steps must be in [1, {num_steps}], got {sample_steps}")
    return jnp.asarray(np.linspace(num_steps - 1, 0, sample_steps).round().astype(np.int32))


def ddim_step_mean(
    eps_fn: EpsFn, x: jax.Array, t: jax.Array, a_t: jax.Array, a_p: jax.Array, sigma: jax.Array, clip_x0: float | None
) -> jax.Array:
    """The mean of one DDIM step ``x_t -> x_p`` [B, D]: ``sqrt(a_p) x0_hat + sqrt(1 - a_p - sigma^2) eps``.
    With ``clip_x0 = c``, ``x0_hat`` is clipped to ``[-c, c]`` and ``eps`` re-derived from it (DDPM's
    ``clip_denoised`` for data in [-1, 1]; without it the deterministic sampler's first steps, where
    ``abar_t`` ~ 1e-5, amplify the denoiser's error by ``1 / sqrt(abar_t)``)."""
    eps = eps_fn(x, jnp.full((x.shape[0],), t))  # [B, D]
    x0_hat = (x - jnp.sqrt(1.0 - a_t) * eps) / jnp.sqrt(a_t)
    if clip_x0 is not None:
        x0_hat = jnp.clip(x0_hat, -clip_x0, clip_x0)
        eps = (x - jnp.sqrt(a_t) * x0_hat) / jnp.sqrt(1.0 - a_t)
    return jnp.sqrt(a_p) * x0_hat + jnp.sqrt(jnp.maximum(1.0 - a_p - sigma**2, 0.0)) * eps


def ddim_sigmas(abar: jax.Array, timesteps: jax.Array, eta: float) -> tuple[jax.Array, jax.Array]:
    """``(abar_prev [S], sigma [S])`` for the steps of ``timesteps`` (``abar_prev = 1`` after the last)."""
    abar_t = abar[timesteps]
    abar_prev = jnp.concatenate([abar[timesteps[1:]], jnp.ones((1,), abar.dtype)])  # [S]
    sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar_t)) * jnp.sqrt(1.0 - abar_t / abar_prev)  # [S]
    return abar_prev, sigma


def ddim_sample(
    eps_fn: EpsFn,
    x_T: jax.Array,
    abar: jax.Array,
    timesteps: jax.Array,
    *,
    eta: float = 0.0,
    key: jax.Array | None = None,
    clip_x0: float | None = None,
) -> jax.Array:
    """Run DDIM from ``x_T`` [B, D] down the decreasing ``timesteps`` [S] (see the module docstring);
    returns ``x_0`` [B, D]. ``eta = 0`` is deterministic; ``eta > 0`` needs ``key``. ``clip_x0``: see
    ``ddim_step_mean``."""
    if eta > 0 and key is None:
        raise ValueError(f"ddim_sample with eta={eta} > 0 needs a PRNG key")
    if key is None:
        key = jax.random.key(0)  # unused when eta == 0: sigma is 0
    abar_prev, sigma = ddim_sigmas(abar, timesteps, eta)
    keys = jax.random.split(key, timesteps.shape[0])

    def body(x, inp):
        t, a_p, s, k = inp
        mean = ddim_step_mean(eps_fn, x, t, abar[t], a_p, s, clip_x0)
        return mean + s * jax.random.normal(k, x.shape), None

    x0, _ = jax.lax.scan(body, x_T, (timesteps, abar_prev, sigma, keys))
    return x0


def eps_fn_of(graphdef: nnx.GraphDef, state: nnx.State) -> EpsFn:
    """A pure ``(x, t) -> eps`` closure of a split denoiser (usable inside ``jax.jit``)."""

    def eps_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x, t)

    return eps_fn


def _flat_key(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def save(model: MLPDenoiser, path: str | pathlib.Path) -> None:
    """Write the denoiser's parameters as safetensors, its ``DDPMConfig`` in the metadata."""
    state = nnx.state(model, nnx.Param)
    flat = {_flat_key(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(state)}
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(path), metadata={"ddpm_config": json.dumps(dataclasses.asdict(model.cfg))})


def load(path: str | pathlib.Path) -> MLPDenoiser:
    """Rebuild a denoiser written by ``save``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.UserError(f"ddpm checkpoint {path} does not exist")
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    meta = header.get("__metadata__", {})
    if "ddpm_config" not in meta:
        raise errors.UserError(f"ddpm checkpoint {path} has no ddpm_config metadata (not written by ddpm.save)")
    model = MLPDenoiser(DDPMConfig(**json.loads(meta["ddpm_config"])), nnx.Rngs(0))
    tensors = load_file(str(path))
    state = nnx.state(model, nnx.Param)

    def pick(p, v):
        k = _flat_key(p)
        if k not in tensors or tensors[k].shape != v.shape:
            raise errors.UserError(f"ddpm checkpoint {path}: parameter {k} missing or of the wrong shape")
        return jnp.asarray(tensors[k])

    nnx.update(model, jax.tree_util.tree_map_with_path(pick, state))
    return model


def load_or_train(path: str | pathlib.Path, cfg: DDPMConfig, data: np.ndarray, **train_kwargs) -> MLPDenoiser:
    """The cached frozen denoiser at ``path``: loaded if the file exists with the same config,
    otherwise trained with ``train_ddpm`` and saved there."""
    path = pathlib.Path(path)
    if path.is_file():
        model = load(path)
        if model.cfg == cfg:
            return model
    model, _ = train_ddpm(cfg, data, **train_kwargs)
    save(model, path)
    return model
