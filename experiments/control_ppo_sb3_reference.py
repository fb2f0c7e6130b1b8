"""The reference's own code at our seeds: Stable-Baselines3 PPO with the RL Baselines3 Zoo's tuned
hyper-parameters (``hyperparams/ppo.yml``) on CartPole-v1 and MountainCarContinuous-v0, trained and
evaluated as the Zoo's benchmark does (deterministic policy; VecNormalize statistics frozen and
rewards reported raw), so that the spread over seeds of the reference itself is measured, not only
the Zoo's one published run (https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md).

Not a jaxrl_llm experiment (no ``get_config``): it needs torch and SB3, outside the project's
environment, e.g. in a separate venv:
    python3.11 -m venv /tmp/sb3env && /tmp/sb3env/bin/pip install torch==2.13.0 stable-baselines3 gymnasium
    /tmp/sb3env/bin/python experiments/control_ppo_sb3_reference.py --env mountaincar --seed 0
(SB3 2.9.2, gymnasium 1.4.0, torch 2.13.0+cpu were used for experiments/results/control_ppo.md).
Prints one JSON line: the seed's evaluation return mean/std/min/max and wall time.
"""

import argparse
import json
import time

ZOO = {
    # hyperparams/ppo.yml, "Tuned" entries
    "cartpole": dict(
        env_id="CartPole-v1",
        n_envs=8,
        n_timesteps=100_000,
        normalize=False,
        ppo=dict(
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate="lin_0.001",
            clip_range="lin_0.2",
        ),
    ),
    "mountaincar": dict(
        env_id="MountainCarContinuous-v0",
        n_envs=1,
        n_timesteps=20_000,
        normalize=True,
        ppo=dict(
            batch_size=256,
            n_steps=8,
            gamma=0.9999,
            learning_rate=7.77e-05,
            ent_coef=0.00429,
            clip_range=0.1,
            n_epochs=10,
            gae_lambda=0.9,
            max_grad_norm=5,
            vf_coef=0.19,
            use_sde=True,
            policy_kwargs=dict(log_std_init=-3.29, ortho_init=False),
        ),
    ),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", choices=sorted(ZOO), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=100)
    args = p.parse_args()

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    spec = ZOO[args.env]
    kwargs = dict(spec["ppo"])
    for key in ("learning_rate", "clip_range"):  # the Zoo's "lin_<x>": x * progress_remaining
        if isinstance(kwargs.get(key), str):
            start = float(kwargs[key].split("_")[1])
            kwargs[key] = lambda progress, start=start: progress * start
    env = make_vec_env(spec["env_id"], n_envs=spec["n_envs"], seed=args.seed)
    if spec["normalize"]:
        env = VecNormalize(env, gamma=kwargs["gamma"])  # the Zoo passes the agent's gamma
    model = PPO("MlpPolicy", env, seed=args.seed, device="cpu", **kwargs)
    t0 = time.perf_counter()
    model.learn(total_timesteps=spec["n_timesteps"])
    wall = time.perf_counter() - t0
    eval_env = make_vec_env(spec["env_id"], n_envs=1, seed=args.seed + 10_000)
    if spec["normalize"]:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=kwargs["gamma"])
        eval_env.obs_rms = env.obs_rms
    returns, lengths = evaluate_policy(
        model, eval_env, n_eval_episodes=args.episodes, deterministic=True, return_episode_rewards=True
    )
    out = {
        "env": spec["env_id"],
        "seed": args.seed,
        "num_timesteps": int(model.num_timesteps),
        "episodes": len(returns),
        "return_mean": float(sum(returns) / len(returns)),
        "return_std": float((sum((r - sum(returns) / len(returns)) ** 2 for r in returns) / len(returns)) ** 0.5),
        "return_min": float(min(returns)),
        "return_max": float(max(returns)),
        "length_mean": float(sum(lengths) / len(lengths)),
        "train_wall_s": wall,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
