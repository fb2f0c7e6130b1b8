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

Options for matching Stable-Baselines3's PPO (the RL Baselines3 Zoo references): ``anneal_lr`` and
``anneal_clip`` multiply the learning rate and the ratio clip by ``1 - (k + 1) / K`` in iteration k
of K (the Zoo's ``lin_<value>`` schedules, whose progress is taken after each rollout);
``clip_value_loss=False`` drops the value clipping (SB3's ``clip_range_vf=None``; SB3's value loss is
the plain MSE, so ``vf_coef`` 1.0 here is its 0.5). In an env with ``num_actions`` K > 0 (a discrete
action space) the policy is a categorical over K actions (``networks.CategoricalPolicy``) instead of
the Gaussian; ``deterministic_action`` is then its argmax (the Gaussian's: its mean). ``sde`` swaps
the Gaussian for gSDE exploration (``networks.SDEPolicy``; SB3's ``use_sde`` with
``sde_sample_freq=-1``: each env's exploration matrix is drawn once per rollout); ``ortho_init=False``
gives every layer PyTorch's default init; ``normalize_obs`` / ``normalize_reward`` are SB3's
``VecNormalize`` (running mean/var of observations, rewards divided by the running std of a discounted
return with discount ``norm_gamma``, both clipped to +-10), updated at every env step as there; the
statistics live in ``State.norm`` and evaluation normalizes with them frozen.
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
    anneal_lr: bool = False  # lr * (1 - (k + 1) / K) in iteration k of K
    anneal_clip: bool = False  # clip_eps * (1 - (k + 1) / K)
    clip_value_loss: bool = True  # False: L_V = (1/n) sum_i (1/2) (V_i - R_i)^2
    sde: bool = False  # gSDE exploration (Box actions): an exploration matrix per env, drawn per rollout
    log_std_init: float = 0.0  # initial log-std of the gSDE exploration matrix's entries
    ortho_init: bool = True  # False: PyTorch's default nn.Linear init (SB3's ortho_init=False)
    normalize_obs: bool = False  # VecNormalize: (obs - mean) / sqrt(var + 1e-8), clipped to +-10
    normalize_reward: bool = False  # VecNormalize: r / sqrt(var(running return) + 1e-8), clipped to +-10
    norm_gamma: float = 0.99  # discount of that running return (the SB3 Zoo sets the agent's gamma)


class State(NamedTuple):
    params: Any  # {"policy": nnx.State, "value": nnx.State}
    opt_state: Any
    env_state: Any
    obs: Array  # [N, O]
    iteration: Array  # [] i32
    norm: Any = None  # running normalization statistics (``init_norm``) when normalize_obs/reward


class RunningMeanStd(NamedTuple):
    """SB3's ``RunningMeanStd``: mean and (population) variance of everything seen, merged batch by
    batch (Chan et al.'s parallel update; ``count`` starts at 1e-4 as there)."""

    mean: Array
    var: Array
    count: Array  # [] f32


def rms_init(shape: tuple[int, ...]) -> RunningMeanStd:
    return RunningMeanStd(jnp.zeros(shape), jnp.ones(shape), jnp.float32(1e-4))


def rms_update(rms: RunningMeanStd, x: Array) -> RunningMeanStd:
    """Merges the batch ``x [B, *shape]`` into ``rms``."""
    b_mean, b_var, b_count = jnp.mean(x, axis=0), jnp.var(x, axis=0), jnp.float32(x.shape[0])
    delta = b_mean - rms.mean
    total = rms.count + b_count
    m2 = rms.var * rms.count + b_var * b_count + delta**2 * rms.count * b_count / total
    return RunningMeanStd(rms.mean + delta * b_count / total, m2 / total, total)


def init_norm(cfg: Config, obs: Array) -> dict | None:
    """The normalizers' state after the first observations ``obs [N, O]`` (VecNormalize updates its
    observation statistics on reset too); None when neither normalization is on."""
    if not (cfg.normalize_obs or cfg.normalize_reward):
        return None
    return {
        "obs": rms_update(rms_init(obs.shape[1:]), obs) if cfg.normalize_obs else rms_init(obs.shape[1:]),
        "ret": rms_init(()),
        "returns": jnp.zeros(obs.shape[:1]),  # [N] running discounted return of each env
    }


def normalize_obs(cfg: Config, norm: dict | None, obs: Array) -> Array:
    """``obs`` as the policy and value nets see it (unchanged unless ``cfg.normalize_obs``)."""
    if not cfg.normalize_obs or norm is None:
        return obs
    mean = jnp.broadcast_to(norm["obs"].mean, obs.shape)
    var = jnp.broadcast_to(norm["obs"].var, obs.shape)
    return jnp.clip((obs - mean) / jnp.sqrt(var + 1e-8), -10.0, 10.0)


class Agent(NamedTuple):
    """``init(key) -> State``; ``step(state, key) -> (state, metrics)`` (pure, jit it)."""

    init: Any
    step: Any


def loss(
    logprobs: Array, entropy: Array, values: Array, batch: dict, cfg: Config, clip_eps: Array | float | None = None
) -> tuple[Array, dict]:
    """The PPO objective above over a (micro-)batch. ``logprobs``, ``entropy``, ``values``: ``[b]``, the
    current networks' outputs for ``batch``'s rows; ``batch``: ``old_logprobs``, ``advantages``,
    ``returns``, ``old_values`` ``[b]`` and ``num_samples``, the GLOBAL row count n of the minibatch,
    so that the losses of parts sum to the whole's. ``clip_eps``: this iteration's epsilon (annealed),
    ``cfg.clip_eps`` when None."""
    eps = cfg.clip_eps if clip_eps is None else clip_eps
    n = batch["num_samples"]
    adv = batch["advantages"]
    log_ratio = logprobs - batch["old_logprobs"]  # [b]
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - eps, 1.0 + eps)
    policy_loss = -jnp.sum(jnp.minimum(ratio * adv, clipped * adv)) / n
    v_err = (values - batch["returns"]) ** 2
    if getattr(cfg, "clip_value_loss", True):  # tgpo passes its own Config
        v_clipped = batch["old_values"] + jnp.clip(values - batch["old_values"], -eps, eps)
        v_err = jnp.maximum(v_err, (v_clipped - batch["returns"]) ** 2)
    value_loss = jnp.sum(0.5 * v_err) / n
    ent = jnp.sum(entropy) / n
    total = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
    metrics = {
        "loss": total,
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "entropy": ent,
        "clip_frac": jnp.sum(jnp.abs(ratio - 1.0) > eps) / n,
        "kl": jnp.sum((ratio - 1.0) - log_ratio) / n,  # k3 estimate of KL(old || new)
    }
    return total, metrics


def policy_module(env: AutoReset, cfg: Any, rngs: nnx.Rngs) -> nnx.Module:
    """The policy network of ``cfg`` on ``env``: categorical in a discrete-action env, else gSDE (``cfg.sde``) or Gaussian.
    ``cfg`` is any method's Config with ``hidden`` and ``activation`` (MDPO's has no ``sde``: Gaussian)."""
    if env.num_actions:
        return networks.CategoricalPolicy(env.obs_dim, env.num_actions, cfg.hidden, cfg.activation, rngs=rngs)
    if getattr(cfg, "sde", False):
        return networks.SDEPolicy(env.obs_dim, env.action_dim, cfg.hidden, cfg.activation, cfg.log_std_init, rngs=rngs)
    return networks.GaussianPolicy(env.obs_dim, env.action_dim, cfg.hidden, cfg.activation, rngs=rngs)


class PolicyFns(NamedTuple):
    """Pure functions of the policy parameters (``State.params["policy"]``); ``obs [..., O]``."""

    sample: Any  # (params, key, obs) -> (action [..., A], logprob [...])
    logprob_entropy: Any  # (params, obs, action [..., A]) -> (logprob [...], entropy [...])
    deterministic_action: Any  # (params, obs) -> action [..., A]: the mean, or the argmax
    sde_matrix: Any = None  # gSDE only: (params, key, n) -> exploration matrices [n, H, A]
    sde_sample: Any = None  # gSDE only: (params, matrix [N, H, A], obs [N, O]) -> (action, logprob)
    dist: Any = None  # not gSDE: (params, obs) -> the network's output d ((mean, log_std) or logits)
    family: Any = None  # not gSDE: the ``distributions.Family`` of d (GAUSSIAN or CATEGORICAL)


def policy_fns(env: AutoReset, cfg: Any) -> PolicyFns:
    """The policy of ``cfg`` on ``env`` as pure functions (used by ``make``, by MDPO and by evaluation)."""
    policy_def, _ = networks.split(policy_module(env, cfg, nnx.Rngs(0)))
    if not env.num_actions and getattr(cfg, "sde", False):

        def features(params, obs):
            mean, z, log_std = networks.apply(policy_def, params, obs)
            z = jax.lax.stop_gradient(z)  # SB3's learn_features=False
            return mean, z, log_std, dist.sde_log_std(z, log_std)

        def sde_matrix(params, key, n):
            log_std = params["log_std"][...]
            return jnp.exp(log_std)[None] * jax.random.normal(key, (n, *log_std.shape))

        def sde_sample(params, matrix, obs):
            mean, z, _, std_log = features(params, obs)
            action = mean + dist.sde_noise(z, matrix)
            return action, dist.gaussian_logprob(action, mean, std_log)

        def sample(params, key, obs):  # a fresh matrix for every row (sample frequency 1)
            return sde_sample(params, sde_matrix(params, key, obs.shape[0]), obs)

        def logprob_entropy(params, obs, action):
            mean, _, _, std_log = features(params, obs)
            return dist.gaussian_logprob(action, mean, std_log), dist.gaussian_entropy(std_log)

        def deterministic_action(params, obs):
            return networks.apply(policy_def, params, obs)[0]

        return PolicyFns(sample, logprob_entropy, deterministic_action, sde_matrix, sde_sample)

    fam = dist.family(env.num_actions)  # categorical in a discrete-action env, else Gaussian

    def dist_of(params, obs):
        return networks.apply(policy_def, params, obs)

    def sample(params, key, obs):
        d = dist_of(params, obs)
        action = fam.sample(key, d)
        return action, fam.logprob(d, action)

    def logprob_entropy(params, obs, action):
        d = dist_of(params, obs)
        return fam.logprob(d, action), fam.entropy(d)

    def deterministic_action(params, obs):
        return fam.mode(dist_of(params, obs))

    return PolicyFns(sample, logprob_entropy, deterministic_action, dist=dist_of, family=fam)


def make(env: AutoReset, cfg: Config, num_iterations: int) -> Agent:
    """The PPO agent on ``env``; ``num_iterations`` K sets the annealing of ``anneal_lr`` / ``anneal_clip``
    (otherwise unused: a constant learning rate)."""
    batch_size = cfg.num_envs * cfg.num_steps
    if batch_size % cfg.num_minibatches:
        raise ValueError(
            f"ppo: num_envs*num_steps={batch_size} is not divisible by num_minibatches={cfg.num_minibatches}"
        )
    updates_per_iter = cfg.update_epochs * cfg.num_minibatches

    def remaining(k):
        """``1 - (k + 1) / K`` (>= 0) in iteration ``k``: SB3's progress_remaining after the rollout."""
        return jnp.maximum(1.0 - (k + 1.0) / num_iterations, 0.0)

    pi = policy_fns(env, cfg)
    value_def, _ = networks.split(networks.ValueNet(env.obs_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(0)))
    lr = (lambda count: cfg.lr * remaining(count // updates_per_iter)) if cfg.anneal_lr else cfg.lr
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr, eps=cfg.adam_eps))

    def init(key: Array) -> State:
        k_pi, k_v, k_env = jax.random.split(key, 3)
        policy = policy_module(env, cfg, nnx.Rngs(k_pi))
        value = networks.ValueNet(env.obs_dim, cfg.hidden, cfg.activation, rngs=nnx.Rngs(k_v))
        if not cfg.ortho_init:
            policy = networks.torch_default_init(policy, jax.random.fold_in(k_pi, 1))
            value = networks.torch_default_init(value, jax.random.fold_in(k_v, 1))
        params = {"policy": networks.split(policy)[1], "value": networks.split(value)[1]}
        obs, env_state = rollout.reset(env, k_env, cfg.num_envs)
        norm = init_norm(cfg, obs)
        return State(params, tx.init(params), env_state, obs, jnp.zeros((), jnp.int32), norm)

    def collect_normalized(act, env_state, obs, norm, key):
        """``rollout.collect`` with VecNormalize in the loop: the transitions hold normalized
        observations (``next_obs`` normalized with the statistics after the step, as VecNormalize
        does ``terminal_observation``) and normalized rewards; episode returns stay raw."""
        step_envs = jax.vmap(env.step)

        def one(carry, key_t):
            env_state, obs, norm = carry
            nobs = normalize_obs(cfg, norm, obs)
            key_act, key_env = jax.random.split(key_t)
            action, extras = act(key_act, nobs)
            next_obs, env_state, reward, done, info = step_envs(
                jax.random.split(key_env, cfg.num_envs), env_state, action
            )
            if cfg.normalize_obs:
                norm = {**norm, "obs": rms_update(norm["obs"], next_obs)}
            if cfg.normalize_reward:
                returns = norm["returns"] * cfg.norm_gamma + reward
                ret = rms_update(norm["ret"], returns)
                reward = jnp.clip(reward / jnp.sqrt(ret.var + 1e-8), -10.0, 10.0)
                norm = {**norm, "ret": ret, "returns": jnp.where(done, 0.0, returns)}
            tr = rollout.Transition(
                nobs,
                action,
                reward,
                done,
                info["terminated"],
                normalize_obs(cfg, norm, info["final_obs"]),
                info["episode_return"],
                info["episode_length"],
                extras,
            )
            return (env_state, next_obs, norm), tr

        (env_state, obs, norm), traj = jax.lax.scan(one, (env_state, obs, norm), jax.random.split(key, cfg.num_steps))
        return traj, env_state, obs, norm

    def outputs(params, obs, action):
        logprobs, entropy = pi.logprob_entropy(params["policy"], obs, action)
        return logprobs, entropy, networks.apply(value_def, params["value"], obs)

    def step(state: State, key: Array) -> tuple[State, dict]:
        k_roll, k_perm = jax.random.split(key)
        k_roll, k_noise = jax.random.split(k_roll) if cfg.sde else (k_roll, None)
        clip_eps = cfg.clip_eps * remaining(state.iteration) if cfg.anneal_clip else cfg.clip_eps

        def minibatch_loss(params, mb):
            logprobs, entropy, values = outputs(params, mb["obs"], mb["action"])
            return loss(logprobs, entropy, values, mb, cfg, clip_eps)

        if cfg.sde:  # one exploration matrix per env for the whole rollout
            matrix = pi.sde_matrix(state.params["policy"], k_noise, cfg.num_envs)

            def act(k, obs):
                action, logprob = pi.sde_sample(state.params["policy"], matrix, obs)
                return action, {"logprob": logprob}

        else:

            def act(k, obs):
                action, logprob = pi.sample(state.params["policy"], k, obs)
                return action, {"logprob": logprob}

        if state.norm is not None:
            traj, env_state, obs, norm = collect_normalized(act, state.env_state, state.obs, state.norm, k_roll)
        else:
            traj, env_state, obs = rollout.collect(env, act, state.env_state, state.obs, k_roll, cfg.num_steps)
            norm = None
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
        new = State(params, opt_state, env_state, obs, state.iteration + 1, norm)
        return new, metrics

    return Agent(init, step)
