"""TGPO: temporal grounded policy optimization for STL tasks, on the control loop.

Meng, Chen, Fan, "TGPO: Temporal Grounded Policy Optimization for Signal Temporal Logic Tasks",
arXiv 2510.00225, https://arxiv.org/abs/2510.00225; official code (announced, not yet released):
https://github.com/mengyuest/TGPO. The paper's equations were not available when this file was
written: the structure below follows the abstract (decompose the STL spec into timed subgoals and
invariants; a high level proposes time allocations; a time-conditioned low-level policy trained
with dense stage-wise rewards by PPO; critic-guided Metropolis-Hastings over allocations; at
inference, the allocation with the highest critic value), and the exact reward, MH target and
proposal below are a clearly labelled RECONSTRUCTION (their weights, temperature and step size are
``Config`` fields). The default is the paper's TGPO* (MH-guided allocations); ``mh_warmup`` longer
than the run gives its plain TGPO (uniform allocations throughout).

The spec ``phi = AND_k F_[a_k,b_k] (x in R_k) AND AND_j G (x not in O_j)`` (``control/stl.py``) is
grounded by an allocation ``t_{1:K}``, ``a_k <= t_k <= b_k``, ``t_1 < ... < t_K``. Stage at step t:
``k(t) = #{k : t_k <= t}`` (subgoal k is active on the steps t < t_k that lead up to its deadline).

1. Time-conditioned policy ``pi(a | s_hat)`` and critic ``V(s_hat)`` on the augmented state
   ``s_hat_t = [x_t, t/H, onehot(k(t)), t_{1:K}/H, c_{k(t)} - x_t, (t_{k(t)} - t)/H]`` (``augment``):
   the current subgoal and the time left to reach it are inputs.
2. Dense stage-wise reward of the step ``x_t -> x_{t+1}`` (``stage_reward``), with ``k = k(t)``,
   ``d_k(x) = |x - c_k|``, ``m_k(x) = r_k - |x - c_k|`` (likewise ``m_{O_j}`` for obstacle j, > 0
   inside), ``delta = dt v_max`` the largest step:

       r_t = w_prog (d_k(x_t) - d_k(x_{t+1})) / delta                      progress (k < K)
           + w_reach 1[t + 1 = t_k] (1[m_k(x_{t+1}) >= 0] + min(m_k(x_{t+1}), 0))   deadline of g_k
           - w_avoid sum_j (1[m_{O_j}(x_{t+1}) >= 0] + max(m_{O_j}(x_{t+1}), 0))  invariants
           + w_rob 1[t + 1 = H] rho(phi, x_{0:H})                          the spec's robustness

3. Critic-guided Metropolis-Hastings over ``t_{1:K}`` (one chain per env, ``mh_steps`` transitions
   per iteration after ``mh_warmup`` iterations of uniform allocations), target and acceptance

       p(t_{1:K} | x_0) ~ exp(V(s_hat_0(x_0, t_{1:K})) / T) 1[t_{1:K} ordered, in windows]
       alpha = min(1, exp((V(s_hat_0; t') - V(s_hat_0; t)) / T)) 1[t' ordered]

   with the symmetric proposal ``t'_k = reflect_[a_k,b_k](t_k + round(sigma eps_k))``,
   ``eps_k ~ N(0, 1)`` (reflection at the window edges keeps it symmetric, so alpha is exact MH).
4. The update is PPO-clip (``control/ppo.py``'s ``loss``) on GAE advantages of the dense reward.
5. Inference (``evaluate``): ``eval_candidates`` uniform allocations per start state, the one with
   the highest ``V(s_hat_0)`` is rolled out with the mean action; the STL satisfaction rate is the
   fraction of episodes with ``rho(phi, x_{0:H}) > 0``.

Differs from the paper (as far as the abstract says) in: (1) the reward weights and form above are
our reconstruction; (2) one MH chain per parallel env, re-scored on that episode's ``x_0``;
(3) every episode lasts exactly H steps and one iteration is one episode per env
(``num_steps == H``), so an allocation holds for a whole rollout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_llm import errors
from jaxrl_llm.control import distributions as dist
from jaxrl_llm.control import gae as gae_lib
from jaxrl_llm.control import integrator_env, networks, ppo, rollout, stl
from jaxrl_llm.control.envs import AutoReset
from jaxrl_llm.types import Array

NAME = "tgpo"
PAPER = "TGPO: Temporal Grounded Policy Optimization for Signal Temporal Logic Tasks"
PAPER_URL = "https://arxiv.org/abs/2510.00225"


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: int = 16  # N, parallel episodes (and MH chains)
    num_steps: int = 100  # must equal the spec's horizon H: one episode per env per iteration
    update_epochs: int = 4
    num_minibatches: int = 8
    lr: float = 3e-4
    adam_eps: float = 1e-5
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95  # lambda
    clip_eps: float = 0.2  # epsilon, for the ratio and the value
    vf_coef: float = 0.5  # c_V
    ent_coef: float = 0.0  # c_H
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    w_prog: float = 0.1  # reconstruction: weight of the progress term
    w_reach: float = 1.0  # reconstruction: weight of the subgoal-deadline term
    w_avoid: float = 1.0  # reconstruction: weight of the invariant penalty
    w_rob: float = 1.0  # reconstruction: weight of the terminal robustness
    mh_warmup: int = 10  # iterations of uniform allocations before the MH chains take over
    mh_steps: int = 4  # MH transitions per chain per iteration
    mh_sigma: float = 5.0  # sigma, proposal std in steps
    mh_temperature: float = 0.1  # T of the target exp(V / T)
    eval_candidates: int = 16  # allocations scored by the critic per start state at inference


class State(NamedTuple):
    params: Any  # {"policy": nnx.State, "value": nnx.State}
    opt_state: Any
    alloc: Array  # [N, K] i32, the MH chains' current allocations
    iteration: Array  # [] i32


class Agent(NamedTuple):
    """``init(key) -> State``; ``step(state, key) -> (state, metrics)``;
    ``evaluate(state, key, num_episodes, deterministic=True) -> metrics`` (all pure; jit them)."""

    init: Any
    step: Any
    evaluate: Any


def aug_dim(spec: stl.Spec) -> int:
    """Size of ``augment``'s output: ``2 + 1 + (K + 1) + K + 2 + 1``."""
    return 2 * spec.num_subgoals + 7


def stage(t: Array, alloc: Array) -> Array:
    """``k(t) = #{k : t_k <= t}``: ``t [...]``, ``alloc [..., K]`` -> ``[...]`` i32 in ``[0, K]``."""
    shape = jnp.broadcast_shapes(t.shape, alloc.shape[:-1])
    alloc = jnp.broadcast_to(alloc, (*shape, alloc.shape[-1]))
    return jnp.sum(alloc <= jnp.broadcast_to(t, shape)[..., None], axis=-1).astype(jnp.int32)


def _active(spec: stl.Spec, k: Array, alloc: Array) -> tuple[Array, Array, Array, Array]:
    """Centre ``[..., 2]``, radius, deadline ``t_k`` and ``k < K`` of the active subgoal (zeros once done)."""
    num = spec.num_subgoals
    if num == 0:
        zeros = jnp.zeros(k.shape, jnp.float32)
        return jnp.zeros((*k.shape, 2), jnp.float32), zeros, k * 0, jnp.zeros(k.shape, bool)
    alloc = jnp.broadcast_to(alloc, (*k.shape, num))
    active = k < num
    idx = jnp.minimum(k, num - 1)
    center = jnp.where(active[..., None], spec.centers()[idx], 0.0)
    radius = jnp.where(active, spec.radii()[idx], 0.0)
    deadline = jnp.where(active, jnp.take_along_axis(alloc, idx[..., None], axis=-1)[..., 0], 0)
    return center, radius, deadline, active


def augment(pos: Array, t: Array, alloc: Array, spec: stl.Spec) -> Array:
    """The time-conditioned input ``s_hat`` (module docstring, 1): ``pos [..., 2]``, ``t [...]`` int,
    ``alloc [..., K]`` -> ``[..., 2K + 7]``. Once every subgoal is done the subgoal offset and time
    left are 0."""
    horizon = spec.horizon
    shape = jnp.broadcast_shapes(pos.shape[:-1], t.shape, alloc.shape[:-1])
    pos = jnp.broadcast_to(pos, (*shape, 2))
    t = jnp.broadcast_to(t, shape)
    alloc = jnp.broadcast_to(alloc, (*shape, spec.num_subgoals))
    k = stage(t, alloc)
    center, _, deadline, active = _active(spec, k, alloc)
    onehot = jax.nn.one_hot(k, spec.num_subgoals + 1)
    offset = jnp.where(active[..., None], center - pos, 0.0)
    left = jnp.where(active, (deadline - t) / horizon, 0.0)
    t_norm = t / horizon
    features = [pos, t_norm[..., None], onehot, alloc / horizon, offset, left[..., None]]
    return jnp.concatenate(features, axis=-1).astype(jnp.float32)


def stage_reward(
    pos: Array, next_pos: Array, t: Array, alloc: Array, spec: stl.Spec, cfg: Config, max_step: float
) -> Array:
    """The dense terms of ``r_t`` (module docstring, 2; the terminal robustness is added by the caller):
    ``pos``, ``next_pos [..., 2]`` (``x_t``, ``x_{t+1}``), ``t [...]`` int, ``alloc [..., K]`` -> ``[...]``."""
    k = stage(t, alloc)
    center, radius, deadline, active = _active(spec, k, alloc)
    d_now = jnp.linalg.norm(pos - center, axis=-1)
    d_next = jnp.linalg.norm(next_pos - center, axis=-1)
    progress = jnp.where(active, (d_now - d_next) / max_step, 0.0)
    margin = radius - d_next  # m_k(x_{t+1})
    at_deadline = active & (t + 1 == deadline)
    reach = jnp.where(at_deadline, (margin >= 0).astype(jnp.float32) + jnp.minimum(margin, 0.0), 0.0)
    violation = jnp.zeros(t.shape, jnp.float32)
    for o in spec.avoid:
        depth = o.margin(next_pos)  # > 0 inside the obstacle
        violation = violation + (depth >= 0).astype(jnp.float32) + jnp.maximum(depth, 0.0)
    return cfg.w_prog * progress + cfg.w_reach * reach - cfg.w_avoid * violation


def mh_accept_prob(v_cur: Array, v_prop: Array, temperature: float) -> Array:
    """``min(1, exp((V(t') - V(t)) / T))``: MH acceptance for the target ``exp(V / T)`` and a symmetric proposal."""
    return jnp.minimum(1.0, jnp.exp((v_prop - v_cur) / temperature))


def reflect(t: Array, lo: Array, hi: Array) -> Array:
    """Folds integers into the ``n = hi - lo + 1`` cells of ``[lo, hi]`` by mirroring at the cell
    boundaries ``lo - 1/2`` and ``hi + 1/2`` (``lo - 1 -> lo``, ``hi + 2 -> hi - 1``, period ``2n``).
    Every cell then has two preimage families, ``t' + 2nm`` and ``2n - 1 - t' + 2nm`` (shifted by
    ``lo``), so ``t -> reflect(t + delta)`` with a symmetric ``delta`` is a symmetric kernel; folding
    about the edge cells themselves (``lo - 1 -> lo + 1``) would not be, and would bias MH away
    from the window's edges."""
    n = hi - lo + 1
    y = jnp.mod(t - lo, 2 * n)
    return lo + jnp.where(y < n, y, 2 * n - 1 - y)


def mh_propose(key: Array, alloc: Array, spec: stl.Spec, sigma: float) -> Array:
    """``t'_k = reflect(t_k + round(sigma eps_k))``, ``eps ~ N(0, I)``; ``alloc [..., K]`` int -> same."""
    lo, hi = (jnp.broadcast_to(w, alloc.shape) for w in spec.windows())
    step = jnp.round(sigma * jax.random.normal(key, alloc.shape)).astype(jnp.int32)
    return reflect(alloc + step, lo, hi)


def mh_step(
    key: Array, alloc: Array, value_fn: Callable[[Array], Array], spec: stl.Spec, sigma: float, temperature: float
) -> tuple[Array, Array]:
    """One MH transition of every chain: ``alloc [..., K]`` (ordered, in windows) -> ``(alloc', accepted [...])``.
    ``value_fn(alloc [..., K]) -> [...]`` is the critic at the start state; proposals that break the
    order have target 0 and are rejected."""
    k_prop, k_u = jax.random.split(key)
    prop = mh_propose(k_prop, alloc, spec, sigma)
    prob = mh_accept_prob(value_fn(alloc), value_fn(prop), temperature)
    prob = jnp.where(stl.ordered_in_windows(prop, spec), prob, 0.0)
    accepted = jax.random.uniform(k_u, prob.shape) < prob
    return jnp.where(accepted[..., None], prop, alloc), accepted


def episode_robustness(
    env: AutoReset, act: Callable[[Array, Array], tuple[Array, Any]], key: Array, num_episodes: int
) -> tuple[Array, Array]:
    """Rolls ``num_episodes`` fresh episodes of the STL env with ``act`` and returns
    ``(rho [num_episodes], positions [H+1, num_episodes, 2])``; ``rho`` by the env's backend."""
    base = env.base
    k_reset, k_roll = jax.random.split(key)
    obs0, env_state = rollout.reset(env, k_reset, num_episodes)
    traj, _, _ = rollout.collect(env, act, env_state, obs0, k_roll, base.horizon)
    positions = jnp.concatenate([obs0[None, :, :2], traj.next_obs[..., :2]], axis=0)  # [H+1, N, 2]
    return base.robustness(jnp.swapaxes(positions, 0, 1)), positions


def make(env: AutoReset, cfg: Config, num_iterations: int) -> Agent:
    """The TGPO agent on an ``stl_integrator`` env (``num_iterations`` is unused: a constant learning rate)."""
    del num_iterations
    base = env.base
    if not isinstance(base, integrator_env.SingleIntegrator):
        raise errors.UserError(f"tgpo needs env='stl_integrator' (an STL task), got env {env.name!r}")
    spec = base.stl_spec
    horizon, n = spec.horizon, cfg.num_envs
    if cfg.num_steps != horizon:
        raise errors.UserError(
            f"tgpo: algo.num_steps={cfg.num_steps} must equal the horizon {horizon} of spec {spec.name!r}"
        )
    batch_size = n * horizon
    if batch_size % cfg.num_minibatches:
        raise errors.UserError(
            f"tgpo: num_envs*num_steps={batch_size} is not divisible by num_minibatches={cfg.num_minibatches}"
        )
    obs_dim = aug_dim(spec)

    def nets(key):
        k_pi, k_v = jax.random.split(key)
        pi = networks.GaussianPolicy(obs_dim, 2, cfg.hidden, cfg.activation, rngs=nnx.Rngs(k_pi))
        v = networks.ValueNet(obs_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(k_v))
        return networks.split(pi), networks.split(v)

    (policy_def, _), (value_def, _) = nets(jax.random.key(0))
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr, eps=cfg.adam_eps))

    def init(key: Array) -> State:
        k_nets, k_alloc = jax.random.split(key)
        (_, pi), (_, v) = nets(k_nets)
        params = {"policy": pi, "value": v}
        alloc = stl.uniform_allocation(k_alloc, spec, (n,))
        return State(params, tx.init(params), alloc, jnp.zeros((), jnp.int32))

    def start_value(params, x0, alloc):
        """``V(s_hat_0(x0, alloc))``: ``x0 [..., 2]``, ``alloc [..., K]`` -> ``[...]``."""
        t0 = jnp.zeros(alloc.shape[:-1], jnp.int32)
        return networks.apply(value_def, params["value"], augment(x0, t0, alloc, spec))

    def policy_act(params, alloc, deterministic):
        def act(k, obs):
            t = jnp.round(obs[:, 2] * horizon).astype(jnp.int32)
            s_hat = augment(obs[:, :2], t, alloc, spec)  # [N, 2K+7]
            mean, log_std = networks.apply(policy_def, params["policy"], s_hat)
            action = mean if deterministic else dist.gaussian_sample(k, mean, log_std)
            return action, {"logprob": dist.gaussian_logprob(action, mean, log_std), "s_hat": s_hat}

        return act

    def minibatch_loss(params, mb):
        mean, log_std = networks.apply(policy_def, params["policy"], mb["s_hat"])
        values = networks.apply(value_def, params["value"], mb["s_hat"])
        logprobs = dist.gaussian_logprob(mb["action"], mean, log_std)
        return ppo.loss(logprobs, dist.gaussian_entropy(log_std), values, mb, cfg)

    def step(state: State, key: Array) -> tuple[State, dict]:
        k_reset, k_unif, k_mh, k_roll, k_perm = jax.random.split(key, 5)
        obs0, env_state = rollout.reset(env, k_reset, n)
        x0 = obs0[:, :2]  # [N, 2]

        def chain(alloc, k):
            return mh_step(k, alloc, lambda a: start_value(state.params, x0, a), spec, cfg.mh_sigma, cfg.mh_temperature)

        mh_alloc, accepted = jax.lax.scan(chain, state.alloc, jax.random.split(k_mh, cfg.mh_steps))
        use_mh = state.iteration >= cfg.mh_warmup
        alloc = jnp.where(use_mh, mh_alloc, stl.uniform_allocation(k_unif, spec, (n,)))  # [N, K]

        act = policy_act(state.params, alloc, deterministic=False)
        traj, _, _ = rollout.collect(env, act, env_state, obs0, k_roll, horizon)
        positions = jnp.concatenate([x0[None], traj.next_obs[..., :2]], axis=0)  # [H+1, N, 2]
        t = jnp.broadcast_to(jnp.arange(horizon, dtype=jnp.int32)[:, None], (horizon, n))  # [H, N]
        rho = base.robustness(jnp.swapaxes(positions, 0, 1))  # [N]
        rewards = stage_reward(positions[:-1], positions[1:], t, alloc[None], spec, cfg, base.max_step)  # [H, N]
        rewards = rewards.at[-1].add(cfg.w_rob * rho)
        next_s_hat = augment(positions[1:], t + 1, jnp.broadcast_to(alloc, (horizon, *alloc.shape)), spec)
        values = networks.apply(value_def, state.params["value"], traj.extras["s_hat"])  # [H, N]
        next_values = networks.apply(value_def, state.params["value"], next_s_hat)  # [H, N]
        adv, returns = gae_lib.gae(rewards, values, next_values, traj.terminated, traj.done, cfg.gamma, cfg.gae_lambda)
        flat = {
            "s_hat": traj.extras["s_hat"].reshape(batch_size, -1),
            "action": traj.action.reshape(batch_size, -1),
            "old_logprobs": traj.extras["logprob"].reshape(-1),
            "advantages": gae_lib.normalize(adv).reshape(-1),
            "returns": returns.reshape(-1),
            "old_values": values.reshape(-1),
        }
        mb_size = batch_size // cfg.num_minibatches

        def epoch(carry, k):
            perm = jax.random.permutation(k, batch_size)
            mbs = jax.tree.map(lambda x: x[perm].reshape(cfg.num_minibatches, mb_size, *x.shape[1:]), flat)

            def update(carry, mb):
                params, opt_state = carry
                mb = {**mb, "num_samples": jnp.float32(mb_size)}
                grads, m = jax.grad(minibatch_loss, has_aux=True)(params, mb)
                updates, opt_state = tx.update(grads, opt_state, params)
                m["grad_norm"] = optax.tree.norm(grads)
                return (optax.apply_updates(params, updates), opt_state), m

            return jax.lax.scan(update, carry, mbs)

        (params, opt_state), m = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_perm, cfg.update_epochs)
        )
        metrics = {k: jnp.mean(v) for k, v in m.items()}
        metrics.update(rollout.episode_metrics(traj))
        episode_return = jnp.sum(rewards, axis=0)  # [N]
        metrics["episode/return"] = jnp.mean(episode_return)
        metrics["reward/mean"] = jnp.mean(rewards)
        metrics["stl/robustness"] = jnp.mean(rho)
        metrics["stl/satisfaction"] = jnp.mean(rho > 0)
        metrics["mh/accept_rate"] = jnp.where(use_mh, jnp.mean(accepted), jnp.nan)
        metrics["alloc/feasible_frac"] = jnp.mean(stl.feasible(alloc, spec, x0, base.max_step))
        for k in range(spec.num_subgoals):
            metrics[f"alloc/t{k + 1}"] = jnp.mean(alloc[:, k].astype(jnp.float32))
        return State(params, opt_state, alloc, state.iteration + 1), metrics

    def evaluate(state: State, key: Array, num_episodes: int, deterministic: bool = True) -> dict:
        """Critic-selected allocation (best of ``eval_candidates`` by ``V(s_hat_0)``), mean actions (or
        sampled ones with ``deterministic=False``). The episodes start where ``episode_robustness(env, act, key, num_episodes)`` starts them, so any
        policy scored with the same key sees the same start states."""
        obs0, _ = rollout.reset(env, jax.random.split(key)[0], num_episodes)  # episode_robustness's reset
        cands = stl.uniform_allocation(jax.random.fold_in(key, 1), spec, (num_episodes, cfg.eval_candidates))
        scores = start_value(state.params, obs0[:, None, :2], cands)  # [M, C]
        alloc = jnp.take_along_axis(cands, jnp.argmax(scores, axis=-1)[:, None, None], axis=1)[:, 0]  # [M, K]
        act = policy_act(state.params, alloc, deterministic)
        rho, positions = episode_robustness(env, act, key, num_episodes)
        return {
            "stl/satisfaction": jnp.mean(rho > 0),
            "stl/robustness": jnp.mean(rho),
            "alloc/feasible_frac": jnp.mean(stl.feasible(alloc, spec, positions[0], base.max_step)),
        }

    return Agent(init, step, evaluate)
