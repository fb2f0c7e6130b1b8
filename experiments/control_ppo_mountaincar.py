"""PPO-clip (arXiv 1707.06347) on gymnax MountainCarContinuous-v0 at the RL Baselines3 Zoo's tuned setting.

Reference: the RL Baselines3 Zoo PPO agent for MountainCarContinuous-v0 scores 88.343 +/- 2.572
(mean and std of the episode return over 633 evaluation episodes, 150,000 steps, of the deterministic
policy trained for 20,000 steps; one training run):
https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md (row ``ppo |
MountainCarContinuous-v0``; the agent is https://huggingface.co/sb3/ppo-MountainCarContinuous-v0).
Its hyper-parameters (``hyperparams/ppo.yml`` of the Zoo, "Tuned"): 1 env x 8 steps (SB3 cuts the
batch_size of 256 to the 8-step rollout: one minibatch), 10 epochs, gamma 0.9999, GAE lambda 0.9,
lr 7.77e-5, clip 0.1, ent_coef 0.00429, vf_coef 0.19 (on the plain MSE), max_grad_norm 5, gSDE
exploration (``use_sde``, the exploration matrix redrawn at each rollout) with ``log_std_init``
-3.29, ``ortho_init=False`` (PyTorch's default init), ``normalize: true`` (VecNormalize of
observations and rewards, with the agent's gamma), 20,000 env steps. SB3 defaults for the rest:
64-64 tanh actor and critic, Adam eps 1e-5, no value clipping, advantages normalized over the
(8-sample) minibatch. Here ``vf_coef=0.38`` with ``clip_value_loss=False`` is SB3's 0.19 x MSE.
gymnax's MountainCarContinuous-v0 is gym's (+100 at the goal, -0.1 a^2, 999-step limit) except for a
gymnax 1.0.1 bug at the left wall, which ``envs.GymMountainCarContinuous`` corrects (gym's step).
Known differences from SB3: the advantages are standardized with the population std (SB3: torch's
unbiased std, 7% smaller for 8 samples); JAX/XLA instead of PyTorch float rounding.

Commands (needs ``pip install 'jaxrl_llm[control]'``):
    jaxrl-llm train control_ppo_mountaincar --set seed=0 --run-dir runs/control_ppo_mountaincar_s0
    python -m jaxrl_llm.control.evaluate control_ppo_mountaincar --run-dir runs/control_ppo_mountaincar_s0 \\
        --set seed=0 --episodes 100

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/control_ppo.md.
"""

from jaxrl_llm.control import config, ppo


def get_config() -> config.ControlConfig:
    algo = ppo.Config(
        num_envs=1,
        num_steps=8,
        update_epochs=10,
        num_minibatches=1,
        lr=7.77e-5,
        gamma=0.9999,
        gae_lambda=0.9,
        clip_eps=0.1,
        clip_value_loss=False,
        vf_coef=0.38,
        ent_coef=0.00429,
        max_grad_norm=5.0,
        sde=True,
        log_std_init=-3.29,
        ortho_init=False,
        normalize_obs=True,
        normalize_reward=True,
        norm_gamma=0.9999,
    )
    return config.ControlConfig(
        name="control_ppo_mountaincar",
        env="gymnax:MountainCarContinuous-v0",
        method="ppo",
        algo=algo,
        iterations=2500,
        log_every=1,
        checkpoint_every=500,
    )
