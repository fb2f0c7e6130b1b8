"""Control loop throughput (env steps/s): our jitted PPO / MDPO train steps against the environment
alone (the ceiling: the same ``lax.scan`` of vectorized env steps with uniform random actions and
no policy, no learning).

Command: python benchmarks/control.py [--env point_mass] [--num-envs 64] [--num-steps 128] [--reps 5]
Each measurement is one jitted call timed after a warm-up call (compilation excluded), best of
``--reps``. Prints a table and writes benchmarks/results/control.json with the CPU model and its
vector extensions. ``gymnax:Pendulum-v1`` needs the ``control`` extra.
"""

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp

from jaxrl_llm.control import envs, mdpo, ppo, rollout


def _cpu() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile"})}


def _best(fn, args, reps: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="point_mass")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "control.json"))
    args = p.parse_args()
    env = envs.make(args.env)
    n, t = args.num_envs, args.num_steps
    steps = n * t

    def env_only(key):
        obs, state = rollout.reset(env, key, n)

        def act(k, obs):
            return jax.random.uniform(k, (obs.shape[0], env.action_dim), minval=-1.0, maxval=1.0), None

        traj, _, _ = rollout.collect(env, act, state, obs, key, t)
        return jnp.sum(traj.reward)

    rows = {"env_only": _best(jax.jit(env_only), (jax.random.key(0),), args.reps)}
    agents = {
        "ppo (4 epochs x 4 minibatches)": ppo.make(
            env, ppo.Config(num_envs=n, num_steps=t, update_epochs=4, num_minibatches=4), 1
        ),
        "mdpo (10 + 5 full-batch steps)": mdpo.make(env, mdpo.Config(num_envs=n, num_steps=t), 100),
    }
    for name, agent in agents.items():
        state = jax.jit(agent.init)(jax.random.key(0))
        rows[name] = _best(jax.jit(agent.step), (state, jax.random.key(1)), args.reps)
    ceiling = steps / rows["env_only"]
    result = {
        "env": args.env,
        "num_envs": n,
        "num_steps": t,
        "env_steps_per_call": steps,
        "cpu": _cpu(),
        "jax": jax.__version__,
        "loadavg_1min": os.getloadavg()[0],
        "results": {
            k: {"seconds": v, "env_steps_per_s": steps / v, "fraction_of_env_only": (steps / v) / ceiling}
            for k, v in rows.items()
        },
    }
    print(f"{'':34s} {'s/call':>9s} {'env steps/s':>12s} {'of env-only':>11s}")
    for k, r in result["results"].items():
        print(f"{k:34s} {r['seconds']:9.4f} {r['env_steps_per_s']:12.0f} {r['fraction_of_env_only']:11.3f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
