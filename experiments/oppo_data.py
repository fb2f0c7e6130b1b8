"""Synthesizes the offline dataset of the OPPO comparison (a D4RL-like mix on gymnax Pendulum-v1).

No D4RL/minari data is reachable offline, so the data is made here, with its recipe and seed
written into the file:

1. PPO (``experiments/control_ppo.py``'s settings: 4 envs x 1024 steps per iteration, Zoo
   hyper-parameters, rewards x0.1) trains for ``--ppo-iterations`` iterations from ``--seed``; its
   policy parameters are saved after the iterations listed in ``--stages`` (0 = the random
   initial policy). Each saved stage rolls out ``--episodes-per-stage`` episodes with its
   stochastic policy (Gaussian sample, as PPO collects).
2. Scripted policies, ``--episodes-scripted`` episodes each:
   * ``noisy``: the last stage's mean action plus N(0, 0.6^2) noise on the normalized action;
   * ``decoy``: bang-bang energy pumping, a = sign(theta_dot): the pendulum spins round and never
     balances (a plausible-looking behaviour with a bad return);
   * ``random``: a ~ U[-1, 1].

Every episode is 200 steps (Pendulum's time limit; it never terminates). Actions are stored
normalized to [-1, 1] (clipped), as ``jaxrl_llm.control.envs`` takes them. Preferences are NOT
stored: OPPO's scripted teacher labels segment pairs on the fly from the true rewards
(``jaxrl_llm.control.oppo``).

Command (needs ``pip install 'jaxrl_llm[control]'``; ~4-6 min on the shared 2-core CPU):
    nice -n 10 python experiments/oppo_data.py --out runs/oppo_data/pendulum_mix.npz

The .npz holds ``obs [E, H, O]``, ``actions [E, H, A]``, ``rewards [E, H]``, ``lengths [E]``,
``source [E]`` (index into ``source_names``), ``source_names``, ``returns [E]`` and ``recipe`` (a
JSON string with this script's arguments and the per-source mean returns).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import control_ppo  # noqa: E402

from jaxrl_llm.control import distributions as dist  # noqa: E402
from jaxrl_llm.control import envs, networks, ppo, rollout  # noqa: E402

ENV = "gymnax:Pendulum-v1"
HORIZON = 200


def collect(env, act, key, num_episodes: int) -> dict[str, np.ndarray]:
    """``num_episodes`` full 200-step episodes of ``act(key, obs) -> action`` (normalized, [-1, 1])."""
    k_reset, k_roll = jax.random.split(key)
    obs, state = rollout.reset(env, k_reset, num_episodes)
    traj, _, _ = jax.jit(lambda s, o, k: rollout.collect(env, lambda kk, oo: (act(kk, oo), None), s, o, k, HORIZON))(
        state, obs, k_roll
    )
    return {
        "obs": np.asarray(jnp.swapaxes(traj.obs, 0, 1)),  # [E, H, O]
        "actions": np.asarray(jnp.swapaxes(jnp.clip(traj.action, -1.0, 1.0), 0, 1)),  # [E, H, A]
        "rewards": np.asarray(jnp.swapaxes(traj.reward, 0, 1)),  # [E, H]
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ppo-iterations", type=int, default=25)
    p.add_argument("--stages", default="0,3,6,25", help="PPO iterations after which the policy is saved")
    p.add_argument("--episodes-per-stage", default="40,40,40,20", help="episodes rolled out per stage")
    p.add_argument("--episodes-scripted", type=int, default=40)
    p.add_argument("--noise-std", type=float, default=0.6)
    p.add_argument("--out", default="runs/oppo_data/pendulum_mix.npz")
    args = p.parse_args(argv)
    stages = [int(s) for s in args.stages.split(",")]
    per_stage = [int(s) for s in args.episodes_per_stage.split(",")]
    if len(stages) != len(per_stage) or stages != sorted(stages) or stages[-1] > args.ppo_iterations:
        raise SystemExit(f"--stages {args.stages} / --episodes-per-stage {args.episodes_per_stage} do not match")

    env = envs.make(ENV)
    algo = control_ppo.get_config().algo
    agent = ppo.make(env, algo, args.ppo_iterations)
    policy_def, _ = networks.split(
        networks.GaussianPolicy(env.obs_dim, env.action_dim, algo.hidden, algo.activation, rngs=nnx.Rngs(0))
    )
    key = jax.random.key(args.seed)
    k_init, k_train, k_data = jax.random.split(key, 3)
    state = jax.jit(agent.init)(k_init)
    step = jax.jit(agent.step)
    snapshots, train_returns = {}, []
    t0 = time.time()
    for it in range(args.ppo_iterations + 1):
        if it in stages:
            snapshots[it] = state.params["policy"]
        if it == args.ppo_iterations:
            break
        state, m = step(state, jax.random.fold_in(k_train, it))
        train_returns.append(float(m["episode/return"]))
        print(f"ppo iteration {it + 1}: episode/return {train_returns[-1]:.1f} ({time.time() - t0:.0f} s)", flush=True)

    def stochastic(params):
        def act(k, obs):
            mean, log_std = networks.apply(policy_def, params, obs)
            return dist.gaussian_sample(k, mean, log_std)

        return act

    expert = snapshots[stages[-1]]

    def noisy(k, obs):
        mean, _ = networks.apply(policy_def, expert, obs)
        return mean + args.noise_std * jax.random.normal(k, mean.shape)

    def decoy(k, obs):
        del k
        return jnp.where(obs[:, 2:3] >= 0.0, 1.0, -1.0)  # obs = [cos th, sin th, th_dot]

    def uniform(k, obs):
        return jax.random.uniform(k, (obs.shape[0], env.action_dim), minval=-1.0, maxval=1.0)

    sources = [(f"ppo_iter{s}", stochastic(snapshots[s]), n) for s, n in zip(stages, per_stage)]
    sources += [
        (name, fn, args.episodes_scripted) for name, fn in (("noisy", noisy), ("decoy", decoy), ("random", uniform))
    ]
    parts, names, summary = [], [], {}
    for i, (name, act, n) in enumerate(sources):
        data = collect(env, act, jax.random.fold_in(k_data, i), n)
        data["source"] = np.full((n,), i, np.int32)
        parts.append(data)
        names.append(name)
        ret = data["rewards"].sum(1)
        summary[name] = {"episodes": n, "return_mean": float(ret.mean()), "return_std": float(ret.std())}
        print(f"{name:12s} {n:4d} episodes, return {ret.mean():8.1f} +- {ret.std():6.1f}", flush=True)
    out = {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}
    out["lengths"] = np.full((out["obs"].shape[0],), HORIZON, np.int32)
    out["returns"] = out["rewards"].sum(1)
    out["source_names"] = np.array(names)
    recipe = {
        "env": ENV,
        "args": vars(args),
        "ppo_config": repr(algo),
        "ppo_train_returns": train_returns,
        "sources": summary,
    }
    out["recipe"] = np.array(json.dumps(recipe))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {out['obs'].shape[0]} episodes, {out['obs'].shape[0] * HORIZON} transitions")


if __name__ == "__main__":
    main()
