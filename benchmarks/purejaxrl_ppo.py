"""A reimplementation of PureJaxRL's continuous-action PPO loop, the reference of benchmarks/control.py.

Follows ``purejaxrl/ppo_continuous_action.py`` of https://github.com/luchris429/purejaxrl (Lu et al.,
"Discovered Policy Optimisation", arXiv 2210.05639), written anew here (not copied) so that the
speed comparison runs in the same process, on the same environment object and machine:

* one ``flax.linen`` actor-critic module, two separate 256-256 tanh trunks (``hidden`` may change
  the width; the benchmark sets both loops to the same one), orthogonal init (sqrt 2 hidden, 0.01
  policy mean, 1.0 value), a state-independent ``log_std``; one parameter tree and one
  ``optax.chain(clip_by_global_norm(0.5), adam(lr, eps=1e-5))``;
* ``_update_step``: a ``lax.scan`` of ``num_steps`` vectorized env steps (the policy samples,
  ``log_prob`` and the value are stored per step), GAE by a reverse ``lax.scan`` (``unroll=16``)
  in which every ``done`` is terminal, then ``update_epochs`` epochs of a shuffled
  ``num_minibatches``-way split, each minibatch a clipped-ratio surrogate with advantages
  standardized per minibatch, a clipped value loss (x0.5, ``vf_coef``) and an entropy bonus;
* what PureJaxRL's wrappers do that this does not: observation/reward normalization
  (``NORMALIZE_ENV``) is off; ``ClipAction`` and ``LogWrapper`` are the env's own (ours clips the
  normalized action and keeps episode totals); no learning-rate annealing (``ANNEAL_LR=False``, as
  its brax default).

``make(env, cfg) -> (init(key) -> runner_state, update_step(runner_state) -> (runner_state, metrics))``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: int = 64
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 256
    activation: str = "tanh"


class ActorCritic(nn.Module):
    action_dim: int
    hidden: int = 256
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        act = nn.relu if self.activation == "relu" else nn.tanh
        dense = lambda n, g: nn.Dense(n, kernel_init=nn.initializers.orthogonal(g), bias_init=nn.initializers.zeros)  # noqa: E731
        a = act(dense(self.hidden, math.sqrt(2))(x))
        a = act(dense(self.hidden, math.sqrt(2))(a))
        mean = dense(self.action_dim, 0.01)(a)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        c = act(dense(self.hidden, math.sqrt(2))(x))
        c = act(dense(self.hidden, math.sqrt(2))(c))
        value = dense(1, 1.0)(c)
        return mean, log_std, jnp.squeeze(value, axis=-1)


def _log_prob(x, mean, log_std):
    """Diagonal Gaussian log-density summed over the action axis (distrax ``MultivariateNormalDiag``)."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def _entropy(log_std, batch_shape: Sequence[int]):
    ent = jnp.sum(log_std + 0.5 * (1.0 + math.log(2 * math.pi)))
    return jnp.broadcast_to(ent, tuple(batch_shape))


class Transition(NamedTuple):
    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    obs: jax.Array


def make(env: Any, cfg: Config):
    """The reference loop on an env with the ``jaxrl_llm.control.envs`` protocol (``reset(key)``,
    ``step(key, state, action)``, vmapped here as PureJaxRL's ``VecEnv``)."""
    network = ActorCritic(env.action_dim, cfg.hidden, cfg.activation)
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr, eps=1e-5))
    batch_size = cfg.num_envs * cfg.num_steps
    if batch_size % cfg.num_minibatches:
        raise ValueError(f"num_envs*num_steps={batch_size} is not divisible by num_minibatches={cfg.num_minibatches}")
    reset = jax.vmap(env.reset)
    step = jax.vmap(env.step)

    def init(key):
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = network.init(k_net, jnp.zeros((env.obs_dim,)))
        obs, env_state = reset(jax.random.split(k_env, cfg.num_envs))
        return (params, tx.init(params), env_state, obs, k_run)

    def update_step(runner_state):
        params, opt_state, env_state, last_obs, rng = runner_state

        def env_step(carry, _):
            env_state, last_obs, rng = carry
            rng, k_act, k_step = jax.random.split(rng, 3)
            mean, log_std, value = network.apply(params, last_obs)
            action = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
            log_prob = _log_prob(action, mean, log_std)
            obs, env_state, reward, done, _ = step(jax.random.split(k_step, cfg.num_envs), env_state, action)
            return (env_state, obs, rng), Transition(done, action, value, reward, log_prob, last_obs)

        (env_state, last_obs, rng), traj = jax.lax.scan(env_step, (env_state, last_obs, rng), None, cfg.num_steps)
        _, _, last_val = network.apply(params, last_obs)

        def gae_step(carry, tr):
            gae, next_value = carry
            not_done = 1.0 - tr.done.astype(jnp.float32)
            delta = tr.reward + cfg.gamma * next_value * not_done - tr.value
            gae = delta + cfg.gamma * cfg.gae_lambda * not_done * gae
            return (gae, tr.value), gae

        _, advantages = jax.lax.scan(gae_step, (jnp.zeros_like(last_val), last_val), traj, reverse=True, unroll=16)
        targets = advantages + traj.value

        def loss_fn(params, tr, gae, targets):
            mean, log_std, value = network.apply(params, tr.obs)
            log_prob = _log_prob(tr.action, mean, log_std)
            v_clipped = tr.value + jnp.clip(value - tr.value, -cfg.clip_eps, cfg.clip_eps)
            value_loss = 0.5 * jnp.maximum(jnp.square(value - targets), jnp.square(v_clipped - targets)).mean()
            ratio = jnp.exp(log_prob - tr.log_prob)
            gae = (gae - gae.mean()) / (gae.std() + 1e-8)
            actor = -jnp.minimum(ratio * gae, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * gae).mean()
            entropy = _entropy(log_std, value.shape).mean()
            return actor + cfg.vf_coef * value_loss - cfg.ent_coef * entropy

        def epoch(carry, _):
            params, opt_state, rng = carry
            rng, k_perm = jax.random.split(rng)
            batch = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), (traj, advantages, targets))
            perm = jax.random.permutation(k_perm, batch_size)
            mbs = jax.tree.map(
                lambda x: jnp.take(x, perm, axis=0).reshape((cfg.num_minibatches, -1) + x.shape[1:]), batch
            )

            def minibatch(carry, mb):
                params, opt_state = carry
                loss, grads = jax.value_and_grad(loss_fn)(params, *mb)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            (params, opt_state), losses = jax.lax.scan(minibatch, (params, opt_state), mbs)
            return (params, opt_state, rng), losses

        (params, opt_state, rng), losses = jax.lax.scan(epoch, (params, opt_state, rng), None, cfg.update_epochs)
        return (params, opt_state, env_state, last_obs, rng), {"loss": jnp.mean(losses)}

    return init, update_step
