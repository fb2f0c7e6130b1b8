"""The state of a run that moves, and its checkpoint layout.

One Orbax checkpoint holds the pytree ``{"params", "critic", "opt_state", "algo_state",
"ref_params", "rng"}`` and the JSON metadata ``{"step", "phase", "data", "eval_history",
"counters", "config"}``. The layout depends on the phase it was saved in: SFT checkpoints carry the
SFT optimizer state over the policy and no RL pieces; RL checkpoints carry the RL optimizer state
over the trainable parameters (the policy, plus the critic for methods with one: then the
trainable pytree is ``{"policy": params, "critic": critic}``), the algorithm state, and the frozen
reference parameters when the KL weight is nonzero. ``restore_target`` rebuilds that layout from
the metadata, so the trainer and ``evaluate.load_policy`` restore the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_llm import config as config_lib
from jaxrl_llm.config import Config
from jaxrl_llm.models import critic as critic_lib
from jaxrl_llm.update import make_optimizer


def optimizers(cfg: Config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(SFT optimizer: cosine AdamW over ``sft.steps``; RL optimizer over every RL update)."""
    o, t, s = cfg.optim, cfg.train, cfg.sft
    sft_tx = make_optimizer(
        s.learning_rate,
        s.steps,
        s.warmup_steps,
        "cosine",
        0.1,
        weight_decay=s.weight_decay,
        max_grad_norm=o.max_grad_norm,
    )
    rl_tx = make_optimizer(
        o.learning_rate,
        t.steps * t.num_iterations * t.num_minibatches,
        o.warmup_steps,
        o.schedule,
        o.min_lr_ratio,
        o.b1,
        o.b2,
        o.eps,
        o.weight_decay,
        o.max_grad_norm,
    )
    return sft_tx, rl_tx


def trainable(params: Any, critic: Any) -> Any:
    """What the optimizer updates: the policy's params, with the critic beside them when there is one."""
    return params if critic is None else {"policy": params, "critic": critic}


def split(tree: Any, critic: Any) -> tuple[Any, Any]:
    """Inverse of ``trainable``: ``(params, critic)``."""
    return (tree, None) if critic is None else (tree["policy"], tree["critic"])


def host_local(tree: Any) -> Any:
    """Single-device arrays (algorithm state, RNG) as NumPy: Orbax writes NumPy leaves from the
    primary process, whereas a single-device jax.Array cannot be saved by a multi-process run."""

    def one(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) == 1:
            return np.asarray(x)
        return x

    return jax.tree.map(one, tree)


def to_python(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: to_python(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_python(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    return x


@dataclasses.dataclass
class RunState:
    """What a run carries from step to step (the policy's live params live on ``Policy``)."""

    opt_state: Any = None
    algo_state: Any = None
    ref_params: Any = None
    critic: Any = None
    key: Any = None
    step: int = 0  # global step: SFT steps first, then RL steps
    phase: str = "rl"
    eval_history: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    counters: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"nonfinite_skipped": 0, "reward_failures": 0, "compiles_after_warmup": 0}
    )

    def algo_arrays(self) -> Any:
        """The algorithm state as jax arrays (a restored checkpoint holds NumPy leaves, which lack
        the ``.at`` updates the hooks use)."""
        return None if self.algo_state is None else jax.tree.map(jnp.asarray, self.algo_state)

    def tree(self, params: Any) -> dict[str, Any]:
        return {
            "params": params,
            "critic": self.critic,
            "opt_state": self.opt_state,
            "algo_state": host_local(self.algo_state),
            "ref_params": self.ref_params,
            "rng": np.asarray(jax.random.key_data(self.key)),
        }

    def meta(self, data_state: Any, cfg: Config) -> dict[str, Any]:
        return {
            "step": self.step,
            "phase": self.phase,
            "data": to_python(data_state),
            "eval_history": self.eval_history,
            "counters": self.counters,
            "config": config_lib.to_dict(cfg),
        }

    def load(self, tree: Mapping[str, Any], meta: Mapping[str, Any]) -> Any:
        """Takes the restored pieces; returns the restored policy params."""
        self.step, self.phase = int(meta["step"]), meta["phase"]
        self.opt_state, self.algo_state = tree["opt_state"], tree["algo_state"]
        self.ref_params, self.critic = tree["ref_params"], tree["critic"]
        self.key = jax.random.wrap_key_data(np.asarray(tree["rng"]))
        self.eval_history = dict(meta.get("eval_history", {}))
        self.counters.update(meta.get("counters", {}))
        return tree["params"]


def restore_target(
    meta: Mapping[str, Any], cfg: Config, algo: Any, params: Any, init_opt_state: Any, init_critic: Any, key: Any
) -> dict[str, Any]:
    """The pytree layout a checkpoint with ``meta`` holds (it depends on the phase it was saved in).

    ``init_opt_state(phase, critic) -> opt_state`` builds a fresh optimizer state of that phase's
    layout; ``init_critic(params) -> critic`` the critic's (for methods with one)."""
    rl = meta["phase"] == "rl"
    critic = init_critic(params) if rl and algo.needs_critic else None
    return {
        "params": params,
        "critic": critic,
        "opt_state": init_opt_state(meta["phase"], critic),
        "algo_state": host_local(algo.init_state(cfg.algo)) if rl else None,
        "ref_params": params if rl and algo.uses_reference(cfg.algo) else None,
        "rng": np.asarray(jax.random.key_data(key)),
    }


def new_critic(cfg: Config, params: Any, shardings: Any) -> Any:
    """The critic at RL start (``train.critic`` layout), placed like the policy's params."""
    critic = critic_lib.create(cfg.train.critic, params)
    return jax.device_put(critic, shardings(critic))
