"""A value head for methods with a critic (PPO; T-PPO, POAD and others build on it).

``V(s_t)`` for completion position ``t`` is read where the policy reads the logits of token
``y_t``: at the hidden state of the position before it (the state after ``x, y_<t``), as in
TRL/OpenRLHF PPO:

    V[b, t] = w . h[b, S - T + t - 1] + c        (h: the trunk's final-normed hidden states [B, S, D])

Two layouts (``train.critic``):

* ``"separate"`` (default): the critic is its own copy of the policy's trunk, initialised from the
  policy's parameters at RL start (Huang et al., "The N+ Implementation Details of RLHF with PPO",
  arXiv 2403.17031, initialise the value model from the policy/reward model), plus the linear head.
  Its parameters are ``{"trunk": <Decoder state>, "head": {"w": [D], "b": []}}``.
* ``"shared"``: only the head ``{"head": ...}``; values are read from the POLICY's trunk, so the
  value loss also shapes the policy's representation (one model, as in early RLHF PPO setups).

The head starts at zero (``V = 0``), so the first advantages are the whitened returns. Parameters
carry logical axes (``embed`` for ``w``) and are sharded by ``jaxrl_llm.sharding.RULES`` like the
policy's; they are checkpointed with the run and ``save`` writes them as safetensors.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from jaxrl_llm.models.logprobs import positions_from_mask

LAYOUTS = ("separate", "shared")


class ValueHead(nnx.Module):
    """``v = w . h + b`` over the last hidden dimension; zero-initialised."""

    def __init__(self, hidden_size: int):
        self.w = nnx.Param(jnp.zeros((hidden_size,), jnp.float32), logical_axes=("embed",))
        self.b = nnx.Param(jnp.zeros((), jnp.float32), logical_axes=())

    def __call__(self, hidden: jax.Array) -> jax.Array:
        return jnp.einsum("...d,d->...", hidden.astype(jnp.float32), self.w[...].astype(jnp.float32)) + self.b[...]


def init_head(hidden_size: int) -> nnx.State:
    """The zero head's parameter state ``{"w": [D], "b": []}``."""
    return nnx.state(ValueHead(hidden_size))


def completion_values(
    trunk: nnx.Module, head_state: nnx.State, tokens: jax.Array, attention_mask: jax.Array, num_completion: int
) -> jax.Array:
    """Values ``[B, T]`` f32 of the last ``T = num_completion`` positions of ``tokens`` [B, S]
    (prompt left-padded, completion right-padded; ``attention_mask`` 1 on real tokens), read from
    ``trunk`` (a ``Decoder``) with the head ``head_state``."""
    S, T = tokens.shape[1], num_completion
    hidden, _ = trunk.hidden_states(tokens, positions_from_mask(attention_mask), attention_mask)
    w, b = head_state["w"][...], head_state["b"][...]
    return jnp.einsum("btd,d->bt", hidden[:, S - T - 1 : S - 1].astype(jnp.float32), w.astype(jnp.float32)) + b


def create(layout: str, policy_params: Any) -> dict[str, Any]:
    """Critic parameters for ``layout``: ``{"trunk": copy of policy_params, "head": zeros}``
    (separate) or ``{"head": zeros}`` (shared). The trunk is a device COPY (the policy's buffers
    are donated to every update)."""
    if layout not in LAYOUTS:
        raise ValueError(f"critic layout must be one of {LAYOUTS}, got {layout!r}")
    hidden = int(policy_params["embed"][...].shape[-1])
    out: dict[str, Any] = {"head": init_head(hidden)}
    if layout == "separate":
        out["trunk"] = jax.tree.map(jnp.copy, policy_params)
    return out


def values(
    layout: str,
    policy_graphdef: Any,
    policy_params: Any,
    critic_params: dict[str, Any],
    tokens: jax.Array,
    attention_mask: jax.Array,
    num_completion: int,
) -> jax.Array:
    """``V`` ``[B, T]`` for a batch: from the critic's own trunk (separate) or the policy's (shared)."""
    trunk_params = critic_params["trunk"] if layout == "separate" else policy_params
    trunk = nnx.merge(policy_graphdef, trunk_params)
    return completion_values(trunk, critic_params["head"], tokens, attention_mask, num_completion)


def save(critic_params: dict[str, Any], out_dir: str | pathlib.Path, layout: str) -> pathlib.Path:
    """Writes the critic as ``critic.safetensors`` (flattened names, e.g. ``head.w``,
    ``trunk.layers.w_gate``) and ``critic.json`` (its layout) in ``out_dir``; returns the file."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(critic_params)[0]:
        name = ".".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))
        flat[name] = np.ascontiguousarray(np.asarray(jax.device_get(leaf), np.float32))
    path = out_dir / "critic.safetensors"
    save_file(flat, str(path))
    (out_dir / "critic.json").write_text(json.dumps({"layout": layout, "tensors": sorted(flat)}, indent=2))
    return path
