"""Off-policy MDPO (Tomar et al., arXiv 2005.09814) and SAC on gymnax CartPole-v1, in the discrete form
of SAC (Christodoulou, arXiv 1910.07207): a categorical policy, Q networks with one output per action,
exact expectations over the 2 actions (``mdpo_offpolicy`` module docstring).

The settings of ``control_mdpo_offpolicy.py`` (Pendulum): the paper's off-policy defaults (lambda 0.2,
1/t_k = 1, pi_k copied every 1000 gradient steps, Adam 3e-4, batch 256, one gradient step per env
step, gamma 0.99) with 1000 random warm-up steps, a 1e5 buffer and 64-64 ReLU networks, raw +1
rewards, for 5e4 env steps (50 iterations of 1000), with ONE change: the Polyak weight of V_targ is
tau = 0.05 instead of the paper's 0.005. With 0.005, SAC (seed 0, 3e4 steps) plateaued at episodes
of 200-300 steps whatever else was tried (lambda 0.05, lr 1e-3, gamma 0.98, 256-256 networks, 5e4
steps): every evaluation episode ended with the cart out of bounds, a failure 200+ steps ahead
that the slowly moving target (time constant 1/tau = 200 updates per backup) had not propagated;
with 0.05 it reached 500 from 2.4e4 steps. Those runs: experiments/results/mdpo.md.

Commands (needs ``pip install 'jaxrl_llm[control]'``; SAC: the same file with the old policy cancelled):
    jaxrl-llm train control_mdpo_offpolicy_cartpole --set seed=0 --run-dir runs/control_mdpo_offpolicy_cartpole_s0
    jaxrl-llm train control_mdpo_offpolicy_cartpole --set seed=0 --set algo.klconst=0.2 \\
        --run-dir runs/control_sac_cartpole_s0
    python -m jaxrl_llm.control.evaluate control_mdpo_offpolicy_cartpole \\
        --run-dir runs/control_mdpo_offpolicy_cartpole_s0 --set seed=0 --episodes 300

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
        tau=0.05,
        lam=0.2,
        klconst=1.0,
        old_policy_every=1000,
        hidden=(64, 64),
    )
    return config.ControlConfig(
        name="control_mdpo_offpolicy_cartpole",
        env="gymnax:CartPole-v1",
        env_kwargs={"discrete_actions": True},
        method="mdpo_offpolicy",
        algo=algo,
        iterations=50,
        checkpoint_every=10,
    )
