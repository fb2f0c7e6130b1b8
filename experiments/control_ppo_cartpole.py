"""PPO-clip (arXiv 1707.06347) on gymnax CartPole-v1 at the RL Baselines3 Zoo's tuned setting.

Reference: the RL Baselines3 Zoo PPO agent for CartPole-v1 scores 500.000 +/- 0.000 (mean and std of
the episode return over 300 evaluation episodes, 150,000 steps, of the deterministic policy trained
for 1e5 steps; one training run): https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md
(row ``ppo | CartPole-v1``; the agent is https://huggingface.co/sb3/ppo-CartPole-v1). Its
hyper-parameters (``hyperparams/ppo.yml`` of the Zoo, "Tuned"): 8 envs x 32 steps, batch 256
(one minibatch), 20 epochs, gamma 0.98, GAE lambda 0.8, ent_coef 0, learning rate ``lin_0.001`` and
clip range ``lin_0.2`` (both decay linearly to 0 over the run), 1e5 env steps; SB3 defaults for the
rest: 64-64 tanh actor and critic (separate), orthogonal init, Adam eps 1e-5, vf_coef 0.5 on the
plain MSE, no value clipping, max_grad_norm 0.5, advantages normalized per minibatch (here the
minibatch is the whole rollout, so this is our global normalization), no observation/reward
normalization. Here: ``vf_coef=1.0`` with ``clip_value_loss=False`` is SB3's 0.5 x MSE;
``anneal_lr`` / ``anneal_clip`` multiply by ``1 - (k+1)/K`` in iteration k of K = 391
(SB3: ``1 - 256 (k+1) / 1e5``; 391 x 256 = 100,096 steps, as SB3 also stops at the first rollout past
1e5). gymnax's CartPole-v1 is gym's (same dynamics, thresholds, +1 per step, 500-step limit).

Commands (needs ``pip install 'jaxrl_llm[control]'``):
    jaxrl-llm train control_ppo_cartpole --set seed=0 --run-dir runs/control_ppo_cartpole_s0
    python -m jaxrl_llm.control.evaluate control_ppo_cartpole --run-dir runs/control_ppo_cartpole_s0 \\
        --set seed=0 --episodes 300

Hardware: the project's shared 2-core CPU. Time and result: experiments/results/control_ppo.md.
"""

from jaxrl_llm.control import config, ppo


def get_config() -> config.ControlConfig:
    algo = ppo.Config(
        num_envs=8,
        num_steps=32,
        update_epochs=20,
        num_minibatches=1,
        lr=1e-3,
        anneal_lr=True,
        gamma=0.98,
        gae_lambda=0.8,
        clip_eps=0.2,
        anneal_clip=True,
        clip_value_loss=False,
        vf_coef=1.0,
        ent_coef=0.0,
        max_grad_norm=0.5,
    )
    return config.ControlConfig(
        name="control_ppo_cartpole",
        env="gymnax:CartPole-v1",
        env_kwargs={"discrete_actions": True},
        method="ppo",
        algo=algo,
        iterations=391,
        log_every=1,
        checkpoint_every=100,
    )
