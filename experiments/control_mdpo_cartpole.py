"""On-policy MDPO (Tomar et al., arXiv 2005.09814) on gymnax CartPole-v1, against ``control_ppo_cartpole.py``.

The policy is categorical (PPO's discrete head, ``ppo.policy_module``) and the proximal term is the
closed-form categorical KL(pi_theta || pi_k) at each batch state (``mdpo.categorical_policy_loss``).

Shared with the PPO baseline (the RL Baselines3 Zoo's tuned CartPole setting): the env
(gymnax CartPole-v1, discrete actions, raw +1 rewards), the rollout (8 envs x 32 steps = 256
samples per iteration), the budget (391 iterations = 100,096 env steps), the discount (gamma 0.98),
the 64-64 tanh actor and critic (separate) with orthogonal init, Adam eps 1e-5, ent_coef 0, no
observation/reward normalization. MDPO's own (the paper's on-policy defaults): m = 10 full-batch
policy Adam steps per iteration at a constant lr 3e-4 (PPO: 20 epochs of one 256-sample minibatch at
lr 1e-3 annealed to 0), no ratio clipping but the KL term with weight 1/t_k, t_k = 1 - k/391 (PPO:
clip 0.2 annealed to 0), GAE lambda 0.95 (PPO: 0.8), the value net on its own Adam (5 steps at lr
1e-3, value clipping 0.2; PPO: in the same 20 steps, vf 0.5 x MSE, no value clipping), no gradient
clipping (PPO: global norm 0.5).

Commands (needs ``pip install 'jaxrl_llm[control]'``):
    jaxrl-llm train control_mdpo_cartpole --set seed=0 --run-dir runs/control_mdpo_cartpole_s0
    python -m jaxrl_llm.control.evaluate control_mdpo_cartpole --run-dir runs/control_mdpo_cartpole_s0 \\
        --set seed=0 --episodes 300

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/mdpo.md.
"""

from jaxrl_llm.control import config, mdpo


def get_config() -> config.ControlConfig:
    algo = mdpo.Config(
        num_envs=8,
        num_steps=32,
        sgd_steps=10,
        lr=3e-4,
        value_lr=1e-3,
        value_steps=5,
        value_clip=0.2,
        gamma=0.98,
        gae_lambda=0.95,
        ent_coef=0.0,
        max_grad_norm=None,
    )
    return config.ControlConfig(
        name="control_mdpo_cartpole",
        env="gymnax:CartPole-v1",
        env_kwargs={"discrete_actions": True},
        method="mdpo",
        algo=algo,
        iterations=391,
        log_every=1,
        checkpoint_every=100,
    )
