"""PPO-clip on the control loop, the baseline MDPO is measured against.

Schulman et al., "Proximal Policy Optimization Algorithms", arXiv 1707.06347,
https://arxiv.org/abs/1707.06347; the loop follows PureJaxRL's ``ppo_continuous_action.py``
(Lu et al., "Discovered Policy Optimisation", arXiv 2210.05639, https://github.com/luchris429/purejaxrl):
separate 64-64 tanh actor and critic, a state-independent log-std, one Adam with global-norm
clipping, clipped value loss. Its brax defaults (2048 envs x 10 steps, 4 epochs x 32 minibatches,
lr 3e-4) are sized for an accelerator; ``Config``'s defaults are a small CPU batch, and
``experiments/control_ppo.py`` sets Pendulum's. Minimized per minibatch of n samples:

    r_i = exp(log pi_theta(a_i|s_i) - log pi_old(a_i|s_i))
    L_clip = -(1/n) sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)
    L_V    = (1/n) sum_i (1/2) max((V_i - R_i)^2, (V_old_i + clip(V_i - V_old_i, -eps, eps) - R_i)^2)
    L      = L_clip + c_V L_V - c_H (1/n) sum_i H[pi_theta(.|s_i)]

Differs from PureJaxRL's loop in:
  1. advantages are standardized once over the whole rollout batch (a global normalizer), not per
     minibatch;
  2. a truncated episode (time limit) bootstraps from its last observation's value; PureJaxRL
     treats every ``done`` as terminal;
  3. no observation/reward normalization wrappers; ``reward_scale`` multiplies rewards instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import gae as gae_lib
from jaxrl_llm.control import networks, rollout
from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array

NAME = "ppo"
PAPER = "Proximal Policy Optimization Algorithms"
PAPER_URL = "https://arxiv.org/abs/1707.06347"


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: int = 16  # N, vectorized envs
    num_steps: int = 128  # T, steps per env per iteration (batch N*T)
    update_epochs: int = 10
    num_minibatches: int = 8
    lr: float = 3e-4
    adam_eps: float = 1e-5
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95  # lambda
    clip_eps: float = 0.2  # epsilon, for the ratio and the value
    vf_coef: float = 0.5  # c_V
    ent_coef: float = 0.0  # c_H
    reward_scale: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"


class State(NamedTuple):
    params: Any  # {"policy": nnx.State, "value": nnx.State}
    opt_state: Any
    env_state: Any
    obs: Array  # [N, O]
    iteration: Array  # [] i32


class Agent(NamedTuple):
    """``init(key) -> State``; ``step(state, key) -> (state, metrics)`` (pure, jit it)."""

    init: Any
    step: Any


def loss(logprobs: Array, entropy: Array, values: Array, batch: dict, cfg: Config) -> tuple[Array, dict]:
    """The PPO objective above over a (micro-)batch. ``logprobs``, ``entropy``, ``values``: ``[b]``, the
    current networks' outputs for ``batch``'s rows; ``batch``: ``old_logprobs``, ``advantages``,
    ``returns``, ``old_values`` ``[b]`` and ``num_samples``, the GLOBAL row count n of the minibatch,
    so that the losses of parts sum to the whole's."""
    n = batch["num_samples"]
    adv = batch["advantages"]
    log_ratio = logprobs - batch["old_logprobs"]  # [b]
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
    policy_loss = -jnp.sum(jnp.minimum(ratio * adv, clipped * adv)) / n
    v_clipped = batch["old_values"] + jnp.clip(values - batch["old_values"], -cfg.clip_eps, cfg.clip_eps)
    value_loss = jnp.sum(0.5 * jnp.maximum((values - batch["returns"]) ** 2, (v_clipped - batch["returns"]) ** 2)) / n
    ent = jnp.sum(entropy) / n
    total = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
    metrics = {
        "loss": total,
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "entropy": ent,
        "clip_frac": jnp.sum(jnp.abs(ratio - 1.0) > cfg.clip_eps) / n,
        "kl": jnp.sum((ratio - 1.0) - log_ratio) / n,  # k3 estimate of KL(old || new)
    }
    return total, metrics


def make(env: AutoReset, cfg: Config, num_iterations: int) -> Agent:
    """The PPO agent on ``env`` (``num_iterations`` is unused: a constant learning rate)."""
    del num_iterations
    batch_size = cfg.num_envs * cfg.num_steps
    if batch_size % cfg.num_minibatches:
        raise ValueError(
            f"ppo: num_envs*num_steps={batch_size} is not divisible by num_minibatches={cfg.num_minibatches}"
        )
    rngs = nnx.Rngs(0)
    policy_def, _ = networks.split(
        networks.GaussianPolicy(env.obs_dim, env.action_dim, cfg.hidden, cfg.activation, rngs=rngs)
    )
    value_def, _ = networks.split(networks.ValueNet(env.obs_dim, cfg.hidden, cfg.activation, rngs=rngs))
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr, eps=cfg.adam_eps))

    def init(key: Array) -> State:
        k_pi, k_v, k_env = jax.random.split(key, 3)
        params = {
            "policy": networks.split(
                networks.GaussianPolicy(env.obs_dim, env.action_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(k_pi))
            )[1],
            "value": networks.split(networks.ValueNet(env.obs_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(k_v)))[1],
        }
        obs, env_state = rollout.reset(env, k_env, cfg.num_envs)
        return State(params, tx.init(params), env_state, obs, jnp.zeros((), jnp.int32))

    def outputs(params, obs, action):
        mean, log_std = networks.apply(policy_def, params["policy"], obs)
        values = networks.apply(value_def, params["value"], obs)
        return dist.gaussian_logprob(action, mean, log_std), dist.gaussian_entropy(log_std), values

    def minibatch_loss(params, mb):
        logprobs, entropy, values = outputs(params, mb["obs"], mb["action"])
        return loss(logprobs, entropy, values, mb, cfg)

    def step(state: State, key: Array) -> tuple[State, dict]:
        k_roll, k_perm = jax.random.split(key)

        def act(k, obs):
            mean, log_std = networks.apply(policy_def, state.params["policy"], obs)
            action = dist.gaussian_sample(k, mean, log_std)
            return action, {"logprob": dist.gaussian_logprob(action, mean, log_std)}

        traj, env_state, obs = rollout.collect(env, act, state.env_state, state.obs, k_roll, cfg.num_steps)
        values = networks.apply(value_def, state.params["value"], traj.obs)  # [T, N]
        next_values = networks.apply(value_def, state.params["value"], traj.next_obs)  # [T, N]
        rewards = traj.reward * cfg.reward_scale
        adv, returns = gae_lib.gae(rewards, values, next_values, traj.terminated, traj.done, cfg.gamma, cfg.gae_lambda)
        flat = {
            "obs": traj.obs.reshape(batch_size, -1),
            "action": traj.action.reshape(batch_size, -1),
            "old_logprobs": traj.extras["logprob"].reshape(-1),
            "advantages": gae_lib.normalize(adv).reshape(-1),
            "returns": returns.reshape(-1),
            "old_values": values.reshape(-1),
        }
        mb_size = batch_size // cfg.num_minibatches

        def epoch(carry, k):
            params, opt_state = carry
            perm = jax.random.permutation(k, batch_size)
            mbs = jax.tree.map(lambda x: x[perm].reshape(cfg.num_minibatches, mb_size, *x.shape[1:]), flat)

            def update(carry, mb):
                params, opt_state = carry
                mb = {**mb, "num_samples": jnp.float32(mb_size)}
                grads, m = jax.grad(minibatch_loss, has_aux=True)(params, mb)
                updates, opt_state = tx.update(grads, opt_state, params)
                m["grad_norm"] = optax.tree.norm(grads)
                return (optax.apply_updates(params, updates), opt_state), m

            return jax.lax.scan(update, (params, opt_state), mbs)

        (params, opt_state), m = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_perm, cfg.update_epochs)
        )
        metrics = {k: jnp.mean(v) for k, v in m.items()}
        metrics.update(rollout.episode_metrics(traj))
        metrics["adv/mean_raw"] = jnp.mean(adv)
        new = State(params, opt_state, env_state, obs, state.iteration + 1)
        return new, metrics

    return Agent(init, step)
