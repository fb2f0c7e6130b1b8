"""Beyond LLMs: policy optimization on JAX control suites, in the PureJaxRL manner.

The whole train step of a method is one pure function ``step(state, key) -> (state, metrics)``:
a ``lax.scan`` of vectorized environment steps (``rollout``), advantages (``gae``), and the
updates, all jitted together; losses are pure functions over arrays with global normalizers, as
in ``jaxrl_llm.algorithms``; the train state (networks, optimizer states, env states, a replay
buffer) is one pytree that Orbax checkpoints for exact resume (``train``).

Modules:
  envs           the functional env protocol with auto-reset; ``PointMass`` (pure JAX); gymnax and
                 brax adapters behind ``pip install 'jaxrl_llm[control]'``
  networks       NNX Gaussian / tanh-Gaussian / gSDE / categorical policies, value and Q networks
  distributions  log-densities, entropies and KLs of those policies
  gae            GAE over time-major rollouts with terminations and truncations
  rollout        ``collect``: the scan over vectorized envs
  replay         a jittable ring buffer
  ppo            PPO-clip (the baseline; also the SB3 / RL Zoo options: discrete actions, gSDE,
                 VecNormalize-style normalization, annealing)
  evaluate       deterministic-policy returns of a PPO / MDPO run's checkpoint (the RL Zoo's protocol)
  mdpo           on-policy MDPO (KL-proximal, annealed t_k, no clipping; Gaussian or categorical)
  mdpo_offpolicy off-policy MDPO (SAC backbone with the old policy's entropy; discrete-SAC form
                 for discrete actions)
  stl            STL specs (reach-avoid, sequenced, always-avoid), robustness (closed form and
                 stljax, ``pip install 'jaxrl_llm[stl]'``), time allocations of their subgoals
  integrator_env ``stl_integrator``: a 2-D single integrator whose task is an STL spec
  tgpo           TGPO: time-conditioned PPO with critic-guided Metropolis-Hastings over allocations
  config, train  ``ControlConfig`` and the loop behind ``jaxrl-llm train <control experiment>``

Each method module has ``NAME``, ``PAPER``, ``PAPER_URL``, a frozen ``Config``, its losses and
``make(env, cfg, num_iterations) -> Agent(init, step)``.
"""
