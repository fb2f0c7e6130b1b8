"""A Decision Transformer and OPPO's hindsight encoder in Flax NNX, and their jitted evaluation rollout.

Decision Transformer (Chen et al., "Decision Transformer: Reinforcement Learning via Sequence
Modeling", arXiv 2106.01345, https://github.com/kzl/decision-transformer): a causal GPT-2-style
transformer over the interleaved tokens ``(c_1, s_1, a_1, c_2, s_2, a_2, ...)`` of a window of K
steps, where ``c_t`` is the conditioning (the return-to-go R_t in DT; OPPO's context z, the same
vector at every step, in OPPO); each modality has its own linear embedding, a learned timestep
embedding is added to all three tokens of a step, and the action ``a_t`` is predicted from the
output at the state token ``s_t`` (``tanh`` head), so it sees ``c_<=t, s_<=t, a_<t``.

OPPO's hindsight encoder E (Kang et al., "Beyond Reward: Offline Preference-guided Policy
Optimization", ICML 2023, arXiv 2305.16217, https://github.com/bkkgbkjb/OPPO): a bidirectional
transformer over ``(s_1, a_1, ..., s_K, a_K)`` of a segment; the outputs of the valid tokens are
summed and mapped linearly to ``z in R^{z_dim}``.

Blocks are pre-LayerNorm (GPT-2): ``x += MHA(LN(x)); x += MLP(LN(x))``, MLP width 4x, GELU.
Differs from the reference models in: no dropout (the reference uses 0.1); the final LayerNorm of
GPT-2 is kept, and the encoder uses the same pre-LN block as the decoder (the reference's is BERT's
post-LN).

Shapes: B windows, K steps, O observation, A action, C conditioning size.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array


class Block(nnx.Module):
    """One pre-LN transformer block: ``x + MHA(LN(x), mask)`` then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
        self.fc = nnx.Linear(dim, 4 * dim, rngs=rngs)
        self.proj = nnx.Linear(4 * dim, dim, rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.proj(jax.nn.gelu(self.fc(self.ln2(x))))


class Transformer(nnx.Module):
    """``layers`` blocks and a final LayerNorm over ``[B, L, dim]`` tokens; ``valid [B, L]`` masks
    padding keys, and ``causal`` adds the lower-triangular mask."""

    def __init__(self, dim: int, layers: int, heads: int, causal: bool, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([Block(dim, heads, rngs=rngs) for _ in range(layers)])
        self.ln_f = nnx.LayerNorm(dim, rngs=rngs)
        self.causal = causal

    def __call__(self, x: Array, valid: Array) -> Array:
        length = x.shape[1]
        mask = jnp.broadcast_to(valid[:, None, None, :], (x.shape[0], 1, length, length))  # [B, 1, L, L]
        if self.causal:
            mask = mask & jnp.tril(jnp.ones((1, 1, length, length), bool))
        # A padding query row with every key masked gets a uniform softmax (finite, unused).
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)


def _interleave(*tokens: Array) -> Array:
    """``[B, K, D]`` x n -> ``[B, n K, D]`` ordered ``(t_1^1, ..., t_1^n, t_2^1, ...)``."""
    b, k, d = tokens[0].shape
    return jnp.stack(tokens, axis=2).reshape(b, len(tokens) * k, d)


class DecisionTransformer(nnx.Module):
    """``pi(a_t | c_<=t, s_<=t, a_<t)``: ``(states [B,K,O], actions [B,K,A], cond [B,K,C],
    timesteps [B,K] i32, mask [B,K] bool) -> predicted actions [B,K,A]`` in ``(-1, 1)``."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        cond_dim: int,
        dim: int = 128,
        layers: int = 3,
        heads: int = 1,
        max_ep_len: int = 1000,
        *,
        rngs: nnx.Rngs,
    ):
        self.embed_cond = nnx.Linear(cond_dim, dim, rngs=rngs)
        self.embed_state = nnx.Linear(obs_dim, dim, rngs=rngs)
        self.embed_action = nnx.Linear(action_dim, dim, rngs=rngs)
        self.embed_time = nnx.Embed(max_ep_len, dim, rngs=rngs)
        self.embed_ln = nnx.LayerNorm(dim, rngs=rngs)
        self.transformer = Transformer(dim, layers, heads, causal=True, rngs=rngs)
        self.predict_action = nnx.Linear(dim, action_dim, rngs=rngs)

    def __call__(self, states: Array, actions: Array, cond: Array, timesteps: Array, mask: Array) -> Array:
        time = self.embed_time(timesteps)  # [B, K, D]
        x = _interleave(
            self.embed_cond(cond) + time, self.embed_state(states) + time, self.embed_action(actions) + time
        )
        valid = jnp.repeat(mask, 3, axis=1)  # [B, 3K]
        h = self.transformer(self.embed_ln(x), valid)
        h_state = h.reshape(states.shape[0], states.shape[1], 3, -1)[:, :, 1]  # [B, K, D]
        return jnp.tanh(self.predict_action(h_state))


class HindsightEncoder(nnx.Module):
    """OPPO's ``E_psi``: ``(states [B,K,O], actions [B,K,A], timesteps [B,K], mask [B,K]) -> z [B, z_dim]``."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        z_dim: int = 8,
        dim: int = 128,
        layers: int = 3,
        heads: int = 1,
        max_ep_len: int = 1000,
        *,
        rngs: nnx.Rngs,
    ):
        self.embed_state = nnx.Linear(obs_dim, dim, rngs=rngs)
        self.embed_action = nnx.Linear(action_dim, dim, rngs=rngs)
        self.embed_time = nnx.Embed(max_ep_len, dim, rngs=rngs)
        self.embed_ln = nnx.LayerNorm(dim, rngs=rngs)
        self.transformer = Transformer(dim, layers, heads, causal=False, rngs=rngs)
        self.to_z = nnx.Linear(dim, z_dim, rngs=rngs)

    def __call__(self, states: Array, actions: Array, timesteps: Array, mask: Array) -> Array:
        time = self.embed_time(timesteps)
        x = _interleave(self.embed_state(states) + time, self.embed_action(actions) + time)
        valid = jnp.repeat(mask, 2, axis=1)  # [B, 2K]
        h = self.transformer(self.embed_ln(x), valid)  # [B, 2K, D]
        return self.to_z(jnp.sum(h * valid[..., None], axis=1))


def evaluate(
    env: AutoReset,
    policy: Any,
    cond0: Array,
    key: Array,
    num_episodes: int,
    horizon: int,
    context: int,
    return_scale: float | None = None,
) -> dict[str, Array]:
    """Rolls ``policy`` (a ``DecisionTransformer``, or anything with its call signature) out in ``env``
    for ``num_episodes`` episodes of at most ``horizon`` steps, acting on the last ``context`` steps.

    ``cond0 [C]`` is the first step's conditioning. With ``return_scale=None`` it is held fixed for
    the whole episode (OPPO's ``z*``); otherwise it is a scaled return-to-go that each reward
    decrements, ``c_{t+1} = c_t - r_t / return_scale`` (DT's evaluation). Actions are the policy's
    mean (deterministic, as DT and OPPO evaluate). Jittable (``env``, ``num_episodes``, ``horizon``,
    ``context`` static); returns ``{"return": [N], "length": [N]}``, each episode's total reward
    until its first ``done``.
    """
    n, k = num_episodes, context
    obs_dim, act_dim, cond_dim = env.obs_dim, env.action_dim, cond0.shape[-1]
    k_reset, k_run = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, n))
    pad = k - 1  # buffers are left-padded so that the window ending at step t is [t, t + k)
    buf = {
        "states": jnp.zeros((n, horizon + pad, obs_dim)),
        "actions": jnp.zeros((n, horizon + pad, act_dim)),
        "cond": jnp.zeros((n, horizon + pad, cond_dim)),
    }
    positions = jnp.arange(k)

    def one(carry, inp):
        buf, env_state, obs, cond, alive, ret, length = carry
        t, key_t = inp
        buf = {
            **buf,
            "states": buf["states"].at[:, t + pad].set(obs),
            "cond": buf["cond"].at[:, t + pad].set(cond),
        }
        window = {name: jax.lax.dynamic_slice_in_dim(x, t, k, axis=1) for name, x in buf.items()}
        step_ids = t - pad + positions  # [K] episode step of each window slot, < 0 = padding
        mask = jnp.broadcast_to(step_ids >= 0, (n, k))
        timesteps = jnp.broadcast_to(jnp.maximum(step_ids, 0), (n, k))
        action = policy(window["states"], window["actions"], window["cond"], timesteps, mask)[:, -1]  # [N, A]
        buf = {**buf, "actions": buf["actions"].at[:, t + pad].set(action)}
        obs, env_state, reward, done, _ = jax.vmap(env.step)(jax.random.split(key_t, n), env_state, action)
        ret = ret + jnp.where(alive, reward, 0.0)
        length = length + alive.astype(jnp.int32)
        if return_scale is not None:
            cond = cond - (reward / return_scale)[:, None]
        return (buf, env_state, obs, cond, alive & ~done, ret, length), None

    cond = jnp.broadcast_to(cond0, (n, cond_dim)).astype(jnp.float32)
    init = (buf, env_state, obs, cond, jnp.ones((n,), bool), jnp.zeros((n,)), jnp.zeros((n,), jnp.int32))
    steps = (jnp.arange(horizon), jax.random.split(k_run, horizon))
    (_, _, _, _, _, ret, length), _ = jax.lax.scan(one, init, steps)
    return {"return": ret, "length": length}
