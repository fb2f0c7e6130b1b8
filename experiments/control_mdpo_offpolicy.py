"""Off-policy MDPO (Tomar et al., arXiv 2005.09814; SAC backbone) on gymnax Pendulum-v1.

The paper's off-policy defaults (lambda 0.2, 1/t_k = 1, pi_k copied every 1000 gradient steps, Adam
3e-4, batch 256, tau 0.005, one gradient step per env step, gamma 0.99) with a shorter warm-up
(1000 random steps instead of 10000), a smaller buffer (1e5) and 64-64 ReLU networks instead of
256-256 (so that 3 seeds fit the shared 2-core CPU), for 1.5e4 env steps (Pendulum episodes are 200
steps; off-policy methods need far fewer steps than PPO there). The on-policy runs use the Zoo's
gamma 0.9; returns are undiscounted either way.

Command (needs ``pip install 'jaxrl_llm[control]'``):
    jaxrl-llm train control_mdpo_offpolicy --set seed=0 --run-dir runs/control_mdpo_offpolicy_s0

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/mdpo.md.
"""

from jaxrl_llm.control import config, mdpo_offpolicy


def get_config() -> config.ControlConfig:
    algo = mdpo_offpolicy.Config(
        num_envs=1,
        num_steps=1000,
        updates_per_iter=1000,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        hidden=(64, 64),
    )
    return config.ControlConfig(
        name="control_mdpo_offpolicy",
        env="gymnax:Pendulum-v1",
        method="mdpo_offpolicy",
        algo=algo,
        iterations=15,
        checkpoint_every=5,
    )
