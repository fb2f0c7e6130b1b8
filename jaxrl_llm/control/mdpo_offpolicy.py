"""Off-policy MDPO: mirror descent on a SAC backbone (twin Q, V and target V, a replay buffer).

Tomar, Shani, Efroni, Ghavamzadeh, "Mirror Descent Policy Optimization", ICLR 2022,
arXiv 2005.09814, https://arxiv.org/abs/2005.09814; official code (TF1, stable-baselines):
https://github.com/manantomar/Mirror-Descent-Policy-Optimization (``mdpo_off/mdpo.py``).

On a replay batch of n states, with a = tanh(u), u ~ N(mu_theta(s), sigma_theta(s)) reparameterized,
the policy minimizes

    L_pi = (1/n) sum_i [ (1/t_k) log pi_theta(a_i|s_i) + (lambda - 1/t_k) log pi_k(a_i|s_i) - Q1(s_i, a_i) ]
           + 1e-3 mean(mu^2) + 1e-3 mean(log sigma^2)
         = (1/t_k) KL(pi_theta || pi_k) + E_{a ~ pi_theta}[lambda log pi_k(a|s) - Q1(s, a)]  (+ reg.)

where pi_k is a hard copy of pi_theta refreshed every ``old_policy_every`` gradient steps: the
entropy bonus of SAC is taken at the OLD policy (the linearized soft objective). Critics (SAC v1):

    L_Q = (1/n) sum_i sum_{j=1,2} (1/2) (Q_j(s_i, a_i) - y_i)^2,   y_i = r_i + gamma (1 - d_i) V_targ(s'_i)
    L_V = (1/n) sum_i (1/2) (V(s_i) - v_i)^2,   v_i = min_j Q_j(s_i, a~pi_theta) - lambda log pi_theta(a|s_i)
    V_targ <- tau V + (1 - tau) V_targ after every step.

Differs from SAC (arXiv 1801.01290, v1 with a V network) in:
  1. the policy's entropy term is lambda log pi_k (old policy), not lambda log pi_theta;
  2. a proximal term (1/t_k) KL(pi_theta || pi_k) to the periodically copied old policy;
  3. the policy loss uses Q1, not min(Q1, Q2) (as the official code; the V target uses the min).
The official code keeps 1/t_k constant (``klconst`` = 1.0) off-policy, as here.
With ``klconst = lam`` the old policy cancels out (L_pi = E[lambda log pi_theta - Q1] + reg.): that
is SAC v1's policy loss (with Q1), so the SAC baseline is this file with ``--set algo.klconst=0.2``.

Discrete actions (an env with ``num_actions`` K > 0), in the form of discrete SAC (Christodoulou,
"Soft Actor-Critic for Discrete Action Settings", arXiv 1910.07207): the policy is a categorical
over K actions (``networks.CategoricalPolicy``) and each Q network outputs one value per action
(``networks.DiscreteQNet``), so every expectation over the policy is an exact sum over actions and
nothing is sampled or reparameterized. With p = pi_theta(.|s), p_k = pi_k(.|s):

    L_pi = (1/n) sum_i sum_a p(a) [ (1/t_k) log p(a) + (lambda - 1/t_k) log p_k(a) - Q1(s_i, a) ]
         = (1/t_k) KL(p || p_k) + sum_a p(a) [ lambda log p_k(a) - Q1(s_i, a) ]     (KL exact over actions)
    v_i  = sum_a p(a) [ min_j Q_j(s_i, a) - lambda log p(a) ]                      (the exact soft value)

and L_Q regresses Q_j(s_i, a_i) at the stored action on the same y_i. With ``klconst = lam`` the
policy loss is discrete SAC's, sum_a p (lambda log p - Q1). Differs from Christodoulou's algorithm
in what it keeps from this file (MDPO's SAC v1 backbone): a V network and its Polyak target give
y_i (Christodoulou: target Q networks, y_i = r_i + gamma sum_a p'(a) [min_j Q_targ_j(s'_i, a) -
lambda log p'(a)]), the policy loss uses Q1 (Christodoulou: min(Q1, Q2)), and lambda is fixed (no
automatic entropy tuning). The continuous regularizer on mu and log sigma has no categorical
counterpart and is not applied.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import networks, replay, rollout
from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array

NAME = "mdpo_offpolicy"
PAPER = "Mirror Descent Policy Optimization"
PAPER_URL = "https://arxiv.org/abs/2005.09814"


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: int = 1  # N
    num_steps: int = 1000  # T, env steps per env per iteration
    updates_per_iter: int = 1000  # gradient steps per iteration (1 per env step, the paper's)
    batch_size: int = 256
    buffer_size: int = 1_000_000
    learning_starts: int = 10_000  # env steps of uniform random actions before any update
    lr: float = 3e-4  # Adam, every network
    gamma: float = 0.99
    tau: float = 0.005  # Polyak weight of V_targ
    lam: float = 0.2  # lambda, the entropy weight
    klconst: float = 1.0  # 1/t_k (constant off-policy)
    old_policy_every: int = 1000  # gradient steps between pi_k <- pi_theta
    reg: float = 1e-3  # weight of mean(mu^2) and mean(log sigma^2)
    reward_scale: float = 1.0
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"


class State(NamedTuple):
    params: Any  # {"policy", "old_policy", "q": {"q1", "q2"}, "v", "v_target"}
    opt_state: Any  # {"policy", "q", "v"}
    buffer: replay.Buffer
    env_state: Any
    obs: Array  # [N, O]
    env_steps: Array  # [] i32
    grad_steps: Array  # [] i32


class Agent(NamedTuple):
    init: Any
    step: Any


def policy_loss(
    logprobs: Array, old_logprobs: Array, q: Array, mean: Array, log_std: Array, num_samples: Array, cfg: Config
) -> tuple[Array, dict]:
    """``L_pi`` above. ``logprobs``, ``old_logprobs``, ``q`` ``[b]``: log pi_theta(a_i|s_i), log pi_k(a_i|s_i) and
    Q1(s_i, a_i) of the reparameterized sample a_i; ``mean``, ``log_std`` ``[b, A]``: pi_theta's pre-tanh
    Gaussian; ``num_samples``: the GLOBAL n."""
    n = num_samples
    per_row = cfg.klconst * logprobs + (cfg.lam - cfg.klconst) * old_logprobs - q  # [b]
    # the official code's regularizer is a mean over rows and action dims: a sum over rows / n keeps it additive
    reg = cfg.reg * (jnp.sum(jnp.mean(mean**2, -1)) + jnp.sum(jnp.mean(log_std**2, -1))) / n
    total = jnp.sum(per_row) / n + reg
    metrics = {
        "loss/policy": total,
        "kl": jnp.sum(logprobs - old_logprobs) / n,  # sample estimate of KL(pi_theta || pi_k)
        "entropy": -jnp.sum(logprobs) / n,
        "q/policy": jnp.sum(q) / n,
    }
    return total, metrics


def q_loss(
    q1: Array, q2: Array, rewards: Array, terminated: Array, next_v_target: Array, num_samples: Array, cfg: Config
) -> tuple[Array, dict]:
    """``L_Q`` above; all inputs ``[b]``; ``next_v_target`` = V_targ(s'_i)."""
    y = jax.lax.stop_gradient(rewards + cfg.gamma * (1.0 - terminated) * next_v_target)
    loss = jnp.sum(0.5 * (q1 - y) ** 2 + 0.5 * (q2 - y) ** 2) / num_samples
    return loss, {"loss/q": loss, "q/mean": jnp.sum(q1) / num_samples}


def _v_regression(v: Array, y: Array, num_samples: Array) -> tuple[Array, dict]:
    """``(1/n) sum_i (1/2) (V(s_i) - y_i)^2`` with the target ``y`` held fixed."""
    loss = jnp.sum(0.5 * (v - jax.lax.stop_gradient(y)) ** 2) / num_samples
    return loss, {"loss/value": loss}


def v_loss(
    v: Array, q1_pi: Array, q2_pi: Array, logprobs_pi: Array, num_samples: Array, cfg: Config
) -> tuple[Array, dict]:
    """``L_V`` above; all inputs ``[b]``: V(s_i) and, for a fresh a ~ pi_theta(.|s_i), Q1, Q2 and log pi_theta(a|s_i)."""
    return _v_regression(v, jnp.minimum(q1_pi, q2_pi) - cfg.lam * logprobs_pi, num_samples)


def discrete_policy_loss(
    logits: Array, old_logits: Array, q: Array, num_samples: Array, cfg: Config
) -> tuple[Array, dict]:
    """Discrete ``L_pi`` (module docstring), exact over actions. ``logits``, ``old_logits`` ``[b, K]``:
    pi_theta and pi_k at s_i; ``q`` ``[b, K]``: Q1(s_i, .); ``num_samples``: the GLOBAL n."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    old_logp = jax.nn.log_softmax(old_logits, axis=-1)
    p = jnp.exp(logp)
    n = num_samples
    per_row = jnp.sum(p * (cfg.klconst * logp + (cfg.lam - cfg.klconst) * old_logp - q), axis=-1)  # [b]
    total = jnp.sum(per_row) / n
    metrics = {
        "loss/policy": total,
        "kl": jnp.sum(dist.categorical_kl(logits, old_logits)) / n,  # exact KL(pi_theta || pi_k)
        "entropy": jnp.sum(dist.categorical_entropy(logits)) / n,
        "q/policy": jnp.sum(p * q) / n,
    }
    return total, metrics


def discrete_soft_value(logits: Array, q1: Array, q2: Array, lam: float) -> Array:
    """``sum_a pi(a|s) [min(Q1, Q2)(s, a) - lambda log pi(a|s)]``: ``logits``, ``q1``, ``q2`` ``[b, K]`` -> ``[b]``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.exp(logp) * (jnp.minimum(q1, q2) - lam * logp), axis=-1)


def discrete_v_loss(
    v: Array, logits: Array, q1: Array, q2: Array, num_samples: Array, cfg: Config
) -> tuple[Array, dict]:
    """Discrete ``L_V``: ``v`` ``[b]`` = V(s_i) regressed on the exact soft value of pi_theta under
    ``q1``, ``q2`` ``[b, K]`` (``discrete_soft_value``); ``logits`` ``[b, K]``: pi_theta(.|s_i)."""
    return _v_regression(v, discrete_soft_value(logits, q1, q2, cfg.lam), num_samples)


def make(env: AutoReset, cfg: Config, num_iterations: int) -> Agent:
    """The off-policy MDPO agent (``num_iterations`` is unused: 1/t_k is constant); discrete SAC's
    form in a discrete-action env (``env.num_actions`` > 0)."""
    del num_iterations
    o, a, k_act = env.obs_dim, env.action_dim, env.num_actions
    discrete = k_act > 0
    h, act_name = cfg.hidden, cfg.activation

    def policy_net(rngs):
        if discrete:
            return networks.CategoricalPolicy(o, k_act, h, act_name, rngs=rngs)
        return networks.TanhGaussianPolicy(o, a, h, act_name, rngs=rngs)

    def q_net(rngs):
        return (
            networks.DiscreteQNet(o, k_act, h, act_name, rngs=rngs)
            if discrete
            else networks.QNet(o, a, h, act_name, rngs=rngs)
        )

    rngs = nnx.Rngs(0)
    pi_def, _ = networks.split(policy_net(rngs))
    q_def, _ = networks.split(q_net(rngs))
    v_def, _ = networks.split(networks.ValueNet(o, h, act_name, rngs=rngs))
    tx = optax.adam(cfg.lr)
    n = jnp.float32(cfg.batch_size)
    item = {
        "obs": jnp.zeros((o,)),
        "action": jnp.zeros((a,), jnp.int32) if discrete else jnp.zeros((a,)),
        "reward": jnp.zeros(()),
        "terminated": jnp.zeros(()),
        "next_obs": jnp.zeros((o,)),
    }

    def init(key: Array) -> State:
        k_pi, k_q1, k_q2, k_v, k_env = jax.random.split(key, 5)
        policy = networks.split(policy_net(nnx.Rngs(k_pi)))[1]
        q = {"q1": networks.split(q_net(nnx.Rngs(k_q1)))[1], "q2": networks.split(q_net(nnx.Rngs(k_q2)))[1]}
        v = networks.split(networks.ValueNet(o, h, act_name, rngs=nnx.Rngs(k_v)))[1]
        params = {"policy": policy, "old_policy": policy, "q": q, "v": v, "v_target": v}
        opt = {"policy": tx.init(policy), "q": tx.init(q), "v": tx.init(v)}
        obs, env_state = rollout.reset(env, k_env, cfg.num_envs)
        zero = jnp.zeros((), jnp.int32)
        return State(params, opt, replay.init(item, cfg.buffer_size), env_state, obs, zero, zero)

    def q_taken(qp, obs, action):
        """Q(s_i, a_i) ``[b]`` at the stored actions."""
        if discrete:
            q_all = networks.apply(q_def, qp, obs)  # [b, K]
            return jnp.take_along_axis(q_all, action.astype(jnp.int32), axis=-1)[..., 0]
        return networks.apply(q_def, qp, obs, action)

    def grad_step(params, opt, batch, key):
        obs = batch["obs"]

        def critic_q(qp):
            next_v = networks.apply(v_def, params["v_target"], batch["next_obs"])
            q1 = q_taken(qp["q1"], obs, batch["action"])
            q2 = q_taken(qp["q2"], obs, batch["action"])
            return q_loss(q1, q2, batch["reward"] * cfg.reward_scale, batch["terminated"], next_v, n, cfg)

        if discrete:  # exact expectations over the K actions: no sample

            def critic_v(vp):
                logits = networks.apply(pi_def, params["policy"], obs)
                q1 = networks.apply(q_def, params["q"]["q1"], obs)
                q2 = networks.apply(q_def, params["q"]["q2"], obs)
                return discrete_v_loss(networks.apply(v_def, vp, obs), logits, q1, q2, n, cfg)

            def actor(pp):
                logits = networks.apply(pi_def, pp, obs)
                old_logits = networks.apply(pi_def, params["old_policy"], obs)
                q1 = networks.apply(q_def, params["q"]["q1"], obs)
                return discrete_policy_loss(logits, old_logits, q1, n, cfg)

        else:

            def sample_pi(pp):
                mean, log_std = networks.apply(pi_def, pp, obs)
                action, u, logp = dist.tanh_gaussian_sample(key, mean, log_std)
                return mean, log_std, action, u, logp

            def critic_v(vp):
                _, _, action, _, logp = sample_pi(params["policy"])
                q1 = networks.apply(q_def, params["q"]["q1"], obs, action)
                q2 = networks.apply(q_def, params["q"]["q2"], obs, action)
                return v_loss(networks.apply(v_def, vp, obs), q1, q2, logp, n, cfg)

            def actor(pp):
                mean, log_std, action, u, logp = sample_pi(pp)
                old_mean, old_log_std = networks.apply(pi_def, params["old_policy"], obs)
                old_logp = dist.tanh_gaussian_logprob(u, old_mean, old_log_std)
                q1 = networks.apply(q_def, params["q"]["q1"], obs, action)
                return policy_loss(logp, old_logp, q1, mean, log_std, n, cfg)

        g_q, mq = jax.grad(critic_q, has_aux=True)(params["q"])
        g_v, mv = jax.grad(critic_v, has_aux=True)(params["v"])
        g_pi, mp = jax.grad(actor, has_aux=True)(params["policy"])
        new_params, new_opt = dict(params), dict(opt)
        for name, g in (("q", g_q), ("v", g_v), ("policy", g_pi)):
            updates, new_opt[name] = tx.update(g, opt[name], params[name])
            new_params[name] = optax.apply_updates(params[name], updates)
        new_params["v_target"] = optax.incremental_update(new_params["v"], params["v_target"], cfg.tau)
        metrics = {**mq, **mv, **mp, "loss": mq["loss/q"] + mv["loss/value"] + mp["loss/policy"]}
        return new_params, new_opt, metrics

    def updates(state: State, key: Array):
        def one(carry, k):
            params, opt, grad_steps = carry
            k_sample, k_pi = jax.random.split(k)
            batch = replay.sample(state.buffer, k_sample, cfg.batch_size)
            params, opt, m = grad_step(params, opt, batch, k_pi)
            grad_steps = grad_steps + 1
            copy = grad_steps % cfg.old_policy_every == 0
            params["old_policy"] = jax.tree.map(
                lambda new, old: jnp.where(copy, new, old), params["policy"], params["old_policy"]
            )
            return (params, opt, grad_steps), m

        (params, opt, grad_steps), m = jax.lax.scan(
            one, (state.params, state.opt_state, state.grad_steps), jax.random.split(key, cfg.updates_per_iter)
        )
        return params, opt, grad_steps, {k: jnp.mean(v) for k, v in m.items()}

    def step(state: State, key: Array) -> tuple[State, dict]:
        k_roll, k_upd = jax.random.split(key)
        learning = state.env_steps >= cfg.learning_starts

        def act(k, obs):
            k_pi, k_rand = jax.random.split(k)
            if discrete:
                logits = networks.apply(pi_def, state.params["policy"], obs)
                action = dist.categorical_sample(k_pi, logits)[..., None]  # [N, 1]
                uniform = jax.random.randint(k_rand, action.shape, 0, k_act, jnp.int32)
            else:
                mean, log_std = networks.apply(pi_def, state.params["policy"], obs)
                action, _, _ = dist.tanh_gaussian_sample(k_pi, mean, log_std)
                uniform = jax.random.uniform(k_rand, action.shape, minval=-1.0, maxval=1.0)
            return jnp.where(learning, action, uniform), None

        traj, env_state, obs = rollout.collect(env, act, state.env_state, state.obs, k_roll, cfg.num_steps)
        items = {
            "obs": traj.obs,
            "action": traj.action,
            "reward": traj.reward,
            "terminated": traj.terminated.astype(jnp.float32),
            "next_obs": traj.next_obs,
        }
        items = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), items)
        buffer = replay.add(state.buffer, items)
        env_steps = state.env_steps + cfg.num_envs * cfg.num_steps
        state = state._replace(buffer=buffer, env_state=env_state, obs=obs, env_steps=env_steps)
        metric_shapes = jax.eval_shape(lambda: updates(state, k_upd)[3])

        def skip(state, key):
            return (
                state.params,
                state.opt_state,
                state.grad_steps,
                jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes),
            )

        params, opt, grad_steps, metrics = jax.lax.cond(env_steps >= cfg.learning_starts, updates, skip, state, k_upd)
        metrics = {**metrics, **rollout.episode_metrics(traj), "env_steps": env_steps.astype(jnp.float32)}
        return state._replace(params=params, opt_state=opt, grad_steps=grad_steps), metrics

    return Agent(init, step)
