"""Control loop throughput (env steps/s): our jitted PPO / MDPO train steps against a reference PPO
(PureJaxRL's loop, reimplemented in ``benchmarks/purejaxrl_ppo.py``) and against the environment
alone (the ceiling: the same ``lax.scan`` of vectorized env steps with uniform random actions and
no policy, no learning).

Command: python benchmarks/control.py [--env point_mass] [--num-envs 64] [--num-steps 128] [--reps 5]
         [--hidden 64]
Each measurement is one jitted call of one iteration (rollout of num_envs x num_steps, advantages,
4 epochs x 4 minibatches for both PPOs) timed after a warm-up call (compilation excluded). The rows
are timed INTERLEAVED: ``--reps`` rounds, each timing every row once in turn, and each row keeps its
best (and median) round, so a change of machine load hits every row alike (timing one row's reps
after another's on a shared machine once read 0.67x for a loop that is faster than the reference).
Ours and the reference use the same env object, batch, epochs, minibatches and network width
(``--hidden``, two hidden layers each for actor and critic). Prints a table and writes
benchmarks/results/control.json with the machine record (``_machine.machine_info``), the ratio
ours / reference and each row's fraction of env-only. ``gymnax:Pendulum-v1`` needs the ``control``
extra.
"""

import argparse
import functools
import json
import os

import _machine
import _timing
import jax
import jax.numpy as jnp
import purejaxrl_ppo

from jaxrl_llm.control import envs, mdpo, ppo, rollout

OURS = "ppo (ours; 4 epochs x 4 minibatches)"
REFERENCE = "purejaxrl ppo (reference; 4 epochs x 4 minibatches)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="point_mass")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--hidden", type=int, default=64, help="width of both hidden layers, ours and the reference")
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

    calls = {"env_only": functools.partial(jax.jit(env_only), jax.random.key(0))}
    hidden = (args.hidden, args.hidden)
    ref_init, ref_step = purejaxrl_ppo.make(
        env, purejaxrl_ppo.Config(num_envs=n, num_steps=t, update_epochs=4, num_minibatches=4, hidden=args.hidden)
    )
    calls[REFERENCE] = functools.partial(jax.jit(ref_step), jax.jit(ref_init)(jax.random.key(0)))
    agents = {
        OURS: ppo.make(env, ppo.Config(num_envs=n, num_steps=t, update_epochs=4, num_minibatches=4, hidden=hidden), 1),
        "mdpo (10 + 5 full-batch steps)": mdpo.make(env, mdpo.Config(num_envs=n, num_steps=t, hidden=hidden), 100),
    }
    for name, agent in agents.items():
        calls[name] = functools.partial(jax.jit(agent.step), jax.jit(agent.init)(jax.random.key(0)), jax.random.key(1))
    load_before = os.getloadavg()[0]
    rows, medians = _timing.interleaved(calls, args.reps)
    ceiling = steps / rows["env_only"]
    machine = _machine.machine_info()
    result = {
        "env": args.env,
        "num_envs": n,
        "num_steps": t,
        "hidden": hidden,
        "env_steps_per_call": steps,
        "machine": machine,
        "cpu": _machine.legacy_cpu(machine),
        "jax": jax.__version__,
        "loadavg_1min": [load_before, os.getloadavg()[0]],
        "reps": args.reps,
        "timing": "interleaved rounds; best round per row (median in median_seconds)",
        "ours_over_reference": rows[REFERENCE] / rows[OURS],
        "ours_over_reference_median": medians[REFERENCE] / medians[OURS],
        "target_ours_over_reference": 1.0,
        "results": {
            k: {
                "seconds": v,
                "median_seconds": medians[k],
                "env_steps_per_s": steps / v,
                "fraction_of_env_only": (steps / v) / ceiling,
            }
            for k, v in rows.items()
        },
    }
    print(f"{'':52s} {'s/call':>9s} {'env steps/s':>12s} {'of env-only':>11s}")
    for k, r in result["results"].items():
        print(f"{k:52s} {r['seconds']:9.4f} {r['env_steps_per_s']:12.0f} {r['fraction_of_env_only']:11.3f}")
    print(
        f"ours / reference env steps/s: {result['ours_over_reference']:.2f}x best round, "
        f"{result['ours_over_reference_median']:.2f}x median (target >= 1x)"
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
