"""On-policy MDPO: Mirror Descent Policy Optimization.

Tomar, Shani, Efroni, Ghavamzadeh, "Mirror Descent Policy Optimization", ICLR 2022,
arXiv 2005.09814, https://arxiv.org/abs/2005.09814; official code (TF1, stable-baselines):
https://github.com/manantomar/Mirror-Descent-Policy-Optimization (``mdpo_on/mdpo.py``).

Each iteration k (of K) takes m full-batch Adam steps on the same batch, maximizing

    J_k(theta) = (1/n) sum_i r_i A_i  -  (1/t_k) (1/n) sum_i KL(pi_theta(.|s_i) || pi_k(.|s_i)),
    r_i = pi_theta(a_i|s_i) / pi_k(a_i|s_i),      t_k = 1 - k/K  (k = 0, ..., K-1)

(the loss is -J_k). The KL is the analytic diagonal-Gaussian KL, "new || old"; A is GAE(gamma,
lambda) standardized over the batch. The step size t_k anneals from 1 to 1/K, so the proximal
weight 1/t_k grows from 1 to K. The value function then takes ``value_steps`` full-batch Adam
steps on the clipped value loss (as PPO's).

Differs from PPO (``ppo.py``) in:
  1. no ratio clipping: the trust region is the KL proximal term with weight 1/t_k;
  2. m full-batch steps on the same batch (no minibatches, no epochs of shuffles);
  3. t_k is annealed over the run, so the objective depends on the iteration index k;
  4. policy and value have separate optimizers and step counts (lr 3e-4 and 1e-3).
The paper writes t_k = 1 - k/K with k from 0; the code's 1 - (k-1)/K with k from 1 is the same.

Discrete actions: in an env with ``num_actions`` K > 0 the policy is PPO's categorical head
(``ppo.policy_module`` / ``ppo.policy_fns``: the same switch and network), and the proximal term is
the closed-form categorical KL at each batch state, ``KL(pi_theta(.|s) || pi_k(.|s)) = sum_a
pi_theta(a|s) log(pi_theta(a|s) / pi_k(a|s))`` (``categorical_policy_loss``), summed over the K
actions: it is exact and costs one softmax, where a sampled estimate (log pi_theta(a_i|s_i) - log
pi_k(a_i|s_i) at the batch action, which is drawn from pi_k, not pi_theta) would be noisy and, off
pi_theta, biased. The paper and its code are continuous-action only (the Gaussian KL above is also
analytic in the code's on-policy variant); the categorical form is ours. Box-action runs compute
exactly what they did before the categorical head was added.
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
from jaxrl_llm.control import networks, ppo, rollout
from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array

NAME = "mdpo"
PAPER = "Mirror Descent Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2005.09814"


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: int = 16  # N
    num_steps: int = 128  # T; N*T = 2048 samples per batch (the paper's)
    sgd_steps: int = 10  # m, full-batch policy steps per iteration
    lr: float = 3e-4  # policy Adam, constant
    adam_eps: float = 1e-5
    value_lr: float = 1e-3
    value_steps: int = 5
    value_clip: float = 0.2
    gamma: float = 0.99
    gae_lambda: float = 0.95  # lambda
    ent_coef: float = 0.0
    max_grad_norm: float | None = None  # the official code does not clip gradients
    reward_scale: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"


class State(NamedTuple):
    params: Any  # {"policy", "value"}
    policy_opt: Any
    value_opt: Any
    env_state: Any
    obs: Array  # [N, O]
    iteration: Array  # [] i32, k


class Agent(NamedTuple):
    init: Any
    step: Any


def step_size(k: Array, num_iterations: int) -> Array:
    """``t_k = 1 - k / K``, ``k = 0, ..., K-1``."""
    return 1.0 - k.astype(jnp.float32) / num_iterations


def proximal_objective(
    logprobs: Array, kl: Array, entropy: Array, batch: dict, t_k: Array, cfg: Config
) -> tuple[Array, dict]:
    """``-J_k`` above over a (micro-)batch given, per row i, ``logprobs`` = log pi_theta(a_i|s_i),
    ``kl`` = KL(pi_theta(.|s_i) || pi_k(.|s_i)) and ``entropy`` = H[pi_theta(.|s_i)] (all ``[b]``);
    ``batch``: ``old_logprobs``, ``advantages`` ``[b]`` and ``num_samples`` (GLOBAL n)."""
    n = batch["num_samples"]
    ratio = jnp.exp(logprobs - batch["old_logprobs"])  # [b]
    surrogate = jnp.sum(ratio * batch["advantages"]) / n
    kl = jnp.sum(kl) / n
    entropy = jnp.sum(entropy) / n
    total = -(surrogate - kl / t_k) - cfg.ent_coef * entropy
    metrics = {
        "loss/policy": total,
        "surrogate": surrogate,
        "kl": kl,
        "entropy": entropy,
        "ratio/mean": jnp.sum(ratio) / n,
    }
    return total, metrics


def policy_loss(
    logprobs: Array, mean: Array, log_std: Array, batch: dict, t_k: Array, cfg: Config
) -> tuple[Array, dict]:
    """``-J_k`` of a Gaussian policy. ``logprobs`` ``[b]``: log pi_theta(a_i|s_i); ``mean``, ``log_std``
    ``[b, A]``: pi_theta(.|s_i); ``batch``: ``old_logprobs`` ``[b]``, ``old_mean``, ``old_log_std``
    ``[b, A]`` (pi_k), ``advantages`` ``[b]`` and ``num_samples`` (GLOBAL n). The KL is analytic."""
    kl = dist.gaussian_kl(mean, log_std, batch["old_mean"], batch["old_log_std"])
    return proximal_objective(logprobs, kl, dist.gaussian_entropy(log_std), batch, t_k, cfg)


def categorical_policy_loss(logprobs: Array, logits: Array, batch: dict, t_k: Array, cfg: Config) -> tuple[Array, dict]:
    """``-J_k`` of a categorical policy. ``logprobs`` ``[b]``: log pi_theta(a_i|s_i); ``logits`` ``[b, K]``:
    pi_theta(.|s_i); ``batch``: ``old_logprobs`` ``[b]``, ``old_logits`` ``[b, K]`` (pi_k), ``advantages``
    ``[b]``, ``num_samples``. The KL is exact over the K actions: ``sum_a p log(p / q)``."""
    kl = dist.categorical_kl(logits, batch["old_logits"])
    return proximal_objective(logprobs, kl, dist.categorical_entropy(logits), batch, t_k, cfg)


def value_loss(values: Array, batch: dict, cfg: Config) -> tuple[Array, dict]:
    """``(1/n) sum_i (1/2) max((V_i - R_i)^2, (V_old_i + clip(V_i - V_old_i, -c, c) - R_i)^2)``, c = ``value_clip``."""
    n = batch["num_samples"]
    v_clipped = batch["old_values"] + jnp.clip(values - batch["old_values"], -cfg.value_clip, cfg.value_clip)
    loss = jnp.sum(0.5 * jnp.maximum((values - batch["returns"]) ** 2, (v_clipped - batch["returns"]) ** 2)) / n
    return loss, {"loss/value": loss}


def make(env: AutoReset, cfg: Config, num_iterations: int) -> Agent:
    """The on-policy MDPO agent; ``num_iterations`` is K of the step-size schedule. A Gaussian policy,
    or a categorical one in a discrete-action env (``env.num_actions`` > 0)."""
    if num_iterations < 1:
        raise ValueError(f"mdpo: num_iterations must be >= 1 (K of t_k = 1 - k/K), got {num_iterations}")
    batch_size = cfg.num_envs * cfg.num_steps
    discrete = env.num_actions > 0
    pi = ppo.policy_fns(env, cfg)  # PPO's switch: categorical head in a discrete env, else Gaussian
    fam = pi.family
    value_def, _ = networks.split(networks.ValueNet(env.obs_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(0)))
    clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm else []
    policy_tx = optax.chain(*clip, optax.adam(cfg.lr, eps=cfg.adam_eps))
    value_tx = optax.chain(*clip, optax.adam(cfg.value_lr, eps=cfg.adam_eps))

    def init(key: Array) -> State:
        k_pi, k_v, k_env = jax.random.split(key, 3)
        policy = ppo.policy_module(env, cfg, nnx.Rngs(k_pi))
        value = networks.ValueNet(env.obs_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(k_v))
        params = {"policy": networks.split(policy)[1], "value": networks.split(value)[1]}
        obs, env_state = rollout.reset(env, k_env, cfg.num_envs)
        return State(
            params,
            policy_tx.init(params["policy"]),
            value_tx.init(params["value"]),
            env_state,
            obs,
            jnp.zeros((), jnp.int32),
        )

    def old_fields(d) -> dict:
        """pi_k's outputs on the batch, under the keys the losses read."""
        return {"old_logits": d} if discrete else {"old_mean": d[0], "old_log_std": d[1]}

    def old_dist(batch):
        return batch["old_logits"] if discrete else (batch["old_mean"], batch["old_log_std"])

    def pi_loss(policy_params, batch, t_k):
        d = pi.dist(policy_params, batch["obs"])
        logprobs = fam.logprob(d, batch["action"])
        if discrete:
            return categorical_policy_loss(logprobs, d, batch, t_k, cfg)
        return policy_loss(logprobs, d[0], d[1], batch, t_k, cfg)

    def v_loss(value_params, batch):
        return value_loss(networks.apply(value_def, value_params, batch["obs"]), batch, cfg)

    def step(state: State, key: Array) -> tuple[State, dict]:
        def act(k, obs):
            d = pi.dist(state.params["policy"], obs)
            action = fam.sample(k, d)
            return action, {"logprob": fam.logprob(d, action), "dist": d}

        traj, env_state, obs = rollout.collect(env, act, state.env_state, state.obs, key, cfg.num_steps)
        values = networks.apply(value_def, state.params["value"], traj.obs)  # [T, N]
        next_values = networks.apply(value_def, state.params["value"], traj.next_obs)  # [T, N]
        adv, returns = gae_lib.gae(
            traj.reward * cfg.reward_scale, values, next_values, traj.terminated, traj.done, cfg.gamma, cfg.gae_lambda
        )
        batch = {
            "obs": traj.obs.reshape(batch_size, -1),
            "action": traj.action.reshape(batch_size, -1),
            "old_logprobs": traj.extras["logprob"].reshape(-1),
            **old_fields(jax.tree.map(lambda x: x.reshape(batch_size, -1), traj.extras["dist"])),
            "advantages": gae_lib.normalize(adv).reshape(-1),
            "returns": returns.reshape(-1),
            "old_values": values.reshape(-1),
            "num_samples": jnp.float32(batch_size),
        }
        t_k = step_size(state.iteration, num_iterations)

        def pi_update(carry, _):
            params, opt = carry
            grads, m = jax.grad(pi_loss, has_aux=True)(params, batch, t_k)
            updates, opt = policy_tx.update(grads, opt, params)
            m["grad_norm"] = optax.tree.norm(grads)
            return (optax.apply_updates(params, updates), opt), m

        def v_update(carry, _):
            params, opt = carry
            grads, m = jax.grad(v_loss, has_aux=True)(params, batch)
            updates, opt = value_tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), m

        (pi_params, pi_opt), pm = jax.lax.scan(
            pi_update, (state.params["policy"], state.policy_opt), None, cfg.sgd_steps
        )
        (v_params, v_opt), vm = jax.lax.scan(v_update, (state.params["value"], state.value_opt), None, cfg.value_steps)
        # KL(pi_{k+1} || pi_k) after the m steps: the paper's claim is that it shrinks as t_k -> 0
        metrics = {k: jnp.mean(v) for k, v in {**pm, **vm}.items()}
        metrics["kl/final"] = jnp.mean(fam.kl(pi.dist(pi_params, batch["obs"]), old_dist(batch)))
        metrics["loss"] = pm["loss/policy"][-1] + vm["loss/value"][-1]
        metrics["t_k"] = t_k
        metrics.update(rollout.episode_metrics(traj))
        params = {"policy": pi_params, "value": v_params}
        return State(params, pi_opt, v_opt, env_state, obs, state.iteration + 1), metrics

    return Agent(init, step)
