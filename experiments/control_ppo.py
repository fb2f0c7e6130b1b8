"""PPO-clip (arXiv 1707.06347) on gymnax Pendulum-v1, the baseline of the MDPO comparison.

Hyper-parameters of the RL Baselines3 Zoo PPO for Pendulum-v1 (4 envs x 1024 steps, 10 epochs of
minibatches of 64, gamma 0.9, lambda 0.95, lr 1e-3, clip 0.2, 1e5 env steps), whose published agent
scores -227.99 +/- 144.65 (model card of https://huggingface.co/ernestumorga/ppo-Pendulum-v1, which
lists these hyper-parameters); settings of the Zoo not listed there (observation/reward
normalization, exploration) are not reproduced; rewards are scaled by 0.1 instead of normalized
(without it the value loss dominates the jointly clipped gradient and PPO stalls near -780). The same budget and gamma are used by
``control_mdpo.py``.

Command (needs ``pip install 'jaxrl_llm[control]'``):
    jaxrl-llm train control_ppo --set seed=0 --run-dir runs/control_ppo_s0

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/mdpo.md (training
episodes) and experiments/results/control_ppo.md (deterministic evaluation, as the Zoo's).
"""

from jaxrl_llm.control import config, ppo


def get_config() -> config.ControlConfig:
    algo = ppo.Config(
        num_envs=4,
        num_steps=1024,
        update_epochs=10,
        num_minibatches=64,
        lr=1e-3,
        gamma=0.9,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.0,
        max_grad_norm=0.5,
        reward_scale=0.1,
    )
    return config.ControlConfig(
        name="control_ppo", env="gymnax:Pendulum-v1", method="ppo", algo=algo, iterations=25, checkpoint_every=5
    )
