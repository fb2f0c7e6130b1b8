"""On-policy MDPO (Tomar et al., arXiv 2005.09814) on gymnax Pendulum-v1, against ``control_ppo.py``.

The paper's on-policy defaults (m = 10 full-batch Adam steps per batch at lr 3e-4, t_k = 1 - k/K,
no clipping; value: 5 Adam steps at lr 1e-3 with value clipping 0.2; lambda 0.95) on the PPO
baseline's budget and discount (1e5 env steps, gamma 0.9), with batches of 4 envs x 256 steps
(~100 iterations, so that t_k anneals over a useful number of steps) and rewards scaled by 0.1 as
the PPO baseline's.

Command (needs ``pip install 'jaxrl_llm[control]'``):
    jaxrl-llm train control_mdpo --set seed=0 --run-dir runs/control_mdpo_s0

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/mdpo.md.
"""

from jaxrl_llm.control import config, mdpo


def get_config() -> config.ControlConfig:
    algo = mdpo.Config(
        num_envs=4, num_steps=256, sgd_steps=10, lr=3e-4, value_lr=1e-3, value_steps=5, gamma=0.9, reward_scale=0.1
    )
    return config.ControlConfig(
        name="control_mdpo", env="gymnax:Pendulum-v1", method="mdpo", algo=algo, iterations=98, checkpoint_every=10
    )
