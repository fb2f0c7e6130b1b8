"""ARPO (GUI): Agentic Replay Policy Optimization, GRPO on whole GUI episodes with a per-task replay
buffer of successes.

Citation: Fanbin Lu, Zhisheng Zhong, Shu Liu, Chi-Wing Fu, Jiaya Jia, "ARPO: End-to-End Policy
Optimization for GUI Agents with Experience Replay", 2025, https://arxiv.org/abs/2505.16282; code
https://github.com/dvlab-research/ARPO (EasyR1 fork: ``verl/trainer/replay_buffer.py``, the replay
step of ``verl/trainer/ray_trainer.py``). Not to be confused with the tool-use ARPO (``arpo.py``).

Rows: one per episode (rollout kind ``replay_episode``, which wraps ``episode``); the G episodes
of a group play one task (one environment seed). Per row the environment's evaluator gives
``eval_i`` in [0, 1] (``extras["eval"]``: the episode's success) and the format reward
``format_i`` (``extras["format"]``: -1 when an action could not be parsed, which also ended the
episode, else 0).

    replay (the kind, before the advantage; state = per-task FIFO buffers of capacity C = 8):
      if replay and std(eval_g) < 0.05 and mean(eval_g) < 0.2 and buffer[task_g] is not empty:
          row 1 of group g  <-  a trajectory drawn uniformly (with replacement) from buffer[task_g]
    R_i   = eval_i + 0.5 * format_i                                              (shape_rewards)
    A_i   = (R_i - mean_g R) / (std_g(R; ddof = 1) + 1e-6)                        (GRPO)
    J     = token_mean_{i,t} min(rho_{i,t} A_i, clip(rho_{i,t}, 1 - eps_low, 1 + eps_high) A_i)
    rho   = pi_theta / pi_old, pi_old recomputed with the current policy for EVERY row (a replayed
            row starts at ratio 1: no importance weight towards the policy that sampled it)
    after the update (update_state): every ORIGINAL episode of the step with eval > 0.1 is pushed
            to its task's buffer (FIFO: the oldest of a full buffer goes first)

Differs from GRPO in:
  1. Rows are whole multi-turn episodes; the loss covers only the policy's tokens (``loss_mask``).
  2. The reward is ``eval + 0.5 * format`` (format -1 for an unparsable action).
  3. Experience replay: a group whose evaluations all fail gets one buffered success of its task in
     place of its first row, so the group has a nonzero advantage spread (the paper's fix for
     all-failure groups on long, sparse-reward GUI tasks).
  4. Clip-higher (``eps_high = 0.3``), token-mean aggregation, no KL (EasyR1 / the OSWorld run).

Implementation notes (code vs. paper, exposed as config where it matters):
  * The trigger reads ``eval`` only, not the format reward: ``std_max = 0.05``, ``mean_max = 0.2``
    (the code's thresholds; the std is the population std, ``np.std``).
  * The buffer is fixed-shape arrays in the algorithm state (``ops.replay``: ``num_tasks`` slots x
    ``capacity`` episodes x ``episode_tokens`` tokens), so it is checkpointed and a resumed run
    continues with the same buffers. Training tasks are the ``num_tasks`` environment seeds
    ``[0, num_tasks)`` (a fixed task set, as ARPO's 128 OSWorld tasks); held-out tasks are other
    seeds. ARPO's task filter (tasks the base agent solves sometimes) is not applied.
  * A replaced row's original episode is not pushed (its eval is < 0.2 by the trigger; with a 0/1
    evaluator it is a failure and would not be pushed anyway).
  * ``replay = False`` turns the method into GRPO on the same rows: the no-replay baseline.
  * Screenshots (an environment with pictures, e.g. ``combination_lock`` with ``screen="image"``):
    a buffered episode keeps its pictures and their slots in its completion (``episode_images``
    = ``env.max_turns`` pictures of ``image_shape``), so a replayed row is scored with the screens
    it was played with.

Defaults (``examples/osworld_full_arpo.sh``): ``eps_low = 0.2``, ``eps_high = 0.3``, ``beta = 0``
(disable_kl), ``capacity = 8``, token-mean; G = 8, lr 1e-6 and one epoch are trainer settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxrl_llm.algorithms import grpo
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import replay
from jaxrl_llm.types import Array, Batch, Metrics, Rollout

NAME = "arpo_gui"
PAPER = "ARPO: End-to-End Policy Optimization for GUI Agents with Experience Replay"
PAPER_URL = "https://arxiv.org/abs/2505.16282"
ROLLOUT = "replay_episode"


@dataclasses.dataclass(frozen=True)
class Config:
    eps_low: float = 0.2  # epsilon_low (clip_ratio_low)
    eps_high: float = 0.3  # epsilon_high (clip_ratio_high)
    beta: float = 0.0  # KL weight (disable_kl in the OSWorld run; the base config has 0.01 low_var_kl)
    kl_estimator: str = "k3"
    aggregation: str = "token_mean"  # EasyR1 token-mean
    std_ddof: int = 1  # torch.std of the group
    std_eps: float = 1e-6
    format_coef: float = 0.5  # R = eval + format_coef * format
    replay: bool = True  # False: GRPO on the same rows (the baseline)
    capacity: int = 8  # episodes per task buffer (FIFO)
    num_tasks: int = 16  # training tasks: environment seeds [0, num_tasks), one buffer each
    episode_tokens: int = 512  # T of a buffered episode; must equal env.max_episode_tokens
    success_threshold: float = 0.1  # an original episode with eval > this is pushed
    std_max: float = 0.05  # all-failure trigger: std(eval_g) < std_max ...
    mean_max: float = 0.2  # ... and mean(eval_g) < mean_max
    eval_every: int = 0  # held-out episodes every this many RL steps (0 = never); replay_episode
    eval_locks: int = 32  # held-out tasks (seeds EVAL_SEED_BASE + j)
    eval_samples: int = 2  # sampled episodes per held-out task (temperature sampling.temperature)
    episode_images: int = 0  # pictures per buffered episode (image screens: env.max_turns); 0 = text
    image_shape: tuple[int, int, int] = (16, 16, 1)  # [H, W, C] of a picture (the vision encoder's)

    def __post_init__(self):
        if self.eps_low <= 0 or self.eps_high <= 0:
            raise ValueError(f"arpo_gui.Config: eps_low and eps_high must be > 0, got {self.eps_low}, {self.eps_high}")
        for name in ("capacity", "num_tasks", "episode_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"arpo_gui.Config: {name} must be >= 1, got {getattr(self, name)}")
        if self.episode_images < 0 or len(self.image_shape) != 3:
            raise ValueError(
                f"arpo_gui.Config: episode_images >= 0 and image_shape [H, W, C] needed, got "
                f"{self.episode_images}, {self.image_shape}"
            )
        if self.eval_every < 0 or self.eval_locks < 0 or self.eval_samples < 1:
            raise ValueError(
                "arpo_gui.Config: eval_every >= 0, eval_locks >= 0 and eval_samples >= 1 needed, got "
                f"{self.eval_every}, {self.eval_locks}, {self.eval_samples}"
            )


def check_config(run_cfg: Any) -> str | None:
    """Episode rows in groups of >= 2, a buffer as wide as the episodes, synchronous on-policy steps."""
    a, t = run_cfg.algo, run_cfg.train
    if run_cfg.env.rows != "episode":
        return f"arpo_gui needs env.rows='episode' (one row per episode), got {run_cfg.env.rows!r}"
    if a.episode_tokens != run_cfg.env.max_episode_tokens:
        return (
            f"algo.episode_tokens={a.episode_tokens} must equal env.max_episode_tokens={run_cfg.env.max_episode_tokens}"
        )
    if a.episode_images and a.episode_images != run_cfg.env.max_turns:
        return f"algo.episode_images={a.episode_images} must equal env.max_turns={run_cfg.env.max_turns} (or be 0)"
    if t.group_size < 2:
        return "arpo_gui compares the episodes of a group: train.group_size must be >= 2"
    if t.prompts_per_step > a.num_tasks:
        return f"train.prompts_per_step={t.prompts_per_step} > algo.num_tasks={a.num_tasks} (distinct tasks a step)"
    if t.staleness > 0 or run_cfg.mesh.sampler_devices > 0:
        return "arpo_gui updates its buffers every step: train.staleness and mesh.sampler_devices must be 0"
    if t.rollout_correction != "off":
        return "arpo_gui trains replayed episodes with no importance weight: train.rollout_correction must be 'off'"
    return None


def init_state(cfg: Config) -> dict[str, Any]:
    """Empty buffers (``ops.replay``): per task, ``capacity`` episodes of ``episode_tokens`` tokens
    (``tokens``, ``mask``, ``loss_mask``, ``step_ids``) with ``eval``, ``format``, ``num_steps``,
    ``lengths`` (and, with ``episode_images``, ``images`` [N, H, W, C] and the completion's
    ``image_mask`` [T]); and ``step``, the number of updates so far."""
    T = cfg.episode_tokens
    fields = {
        "tokens": ((T,), jnp.int32),
        "mask": ((T,), jnp.float32),
        "loss_mask": ((T,), jnp.float32),
        "step_ids": ((T,), jnp.int32),
        "eval": ((), jnp.float32),
        "format": ((), jnp.float32),
        "num_steps": ((), jnp.int32),
        "lengths": ((), jnp.int32),
    }
    if cfg.episode_images:
        fields["images"] = ((cfg.episode_images, *cfg.image_shape), jnp.float32)
        fields["image_mask"] = ((T,), jnp.float32)
    return {"buffer": replay.init(cfg.num_tasks, cfg.capacity, fields), "step": jnp.zeros((), jnp.int32)}


def update_state(state: dict[str, Any], batch: Batch, cfg: Config) -> dict[str, Any]:
    """Pushes the step's ORIGINAL successes (``eval > success_threshold``, rows not replaced) to
    their tasks' buffers, in row order. Reads the batch's ``episode_mask`` (the rows' attention
    mask; the batch's ``mask`` is the loss mask) and ``task_ids`` / ``eval`` / ``format`` /
    ``replaced`` (``replay_episode``)."""
    ev = jnp.asarray(batch["eval"], jnp.float32)  # [B]
    keep = (ev > cfg.success_threshold) & (jnp.asarray(batch["replaced"]) == 0)  # [B]
    rows = {
        "tokens": batch["tokens"],
        "mask": batch["episode_mask"],
        "loss_mask": batch["mask"],
        "step_ids": batch["step_ids"],
        "eval": ev,
        "format": batch["format"],
        "num_steps": batch["num_steps"],
        "lengths": batch["lengths"],
    }
    if cfg.episode_images:  # the completion's slots; the prompt's are the group's
        rows["images"] = batch["images"]
        rows["image_mask"] = jnp.asarray(batch["image_mask"])[:, -cfg.episode_tokens :]
    buffer = replay.push(state["buffer"], batch["task_ids"], rows, keep)
    return {"buffer": buffer, "step": state["step"] + 1}


def shape_rewards(rewards: Array, rollout: Rollout, cfg: Config) -> Array:
    """``R = eval + format_coef * format`` [B] (rows without ``eval`` keep their rewards)."""
    if "eval" not in rollout or "format" not in rollout:
        return rewards
    return jnp.asarray(rollout["eval"], jnp.float32) + cfg.format_coef * jnp.asarray(rollout["format"], jnp.float32)


def advantages(rollout: Rollout, cfg: Config, state: Any = None) -> tuple[Array, Metrics]:
    """GRPO: ``A_i = (R_i - mean_g R) / (std_g(R; ddof) + eps)`` over each group of G rows: ``[B]``."""
    return adv_ops.group_normalized_outcome(rollout, cfg.std_ddof, cfg.std_eps)


def loss(logprobs: Array, batch: Batch, cfg: Config) -> tuple[Array, Metrics]:
    """The clipped surrogate (clip-higher), token-mean over the policy's tokens, ``beta`` * KL:
    GRPO's objective with these settings (``grpo.clipped_loss``)."""
    return grpo.clipped_loss(
        logprobs, batch, cfg.eps_low, cfg.eps_high, cfg.beta, cfg.kl_estimator, cfg.aggregation, where=NAME
    )
