"""Small Flax NNX networks for control: MLP trunks, Gaussian and categorical policies, value and Q functions.

Initialization follows PureJaxRL's continuous-action actor-critic
(https://github.com/luchris429/purejaxrl, ``ppo_continuous_action.py``): orthogonal weights with
gain sqrt(2) in hidden layers, 0.01 on the policy mean, 1.0 on value outputs; zero biases.

Each network is called on a batch of observations ``[..., O]``; a train step holds its
parameters as ``nnx.State`` and runs ``nnx.merge(graphdef, params)(obs)`` (``apply``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_llm.types import Array

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def _linear(din: int, dout: int, gain: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        din, dout, kernel_init=nnx.initializers.orthogonal(gain), bias_init=nnx.initializers.zeros, rngs=rngs
    )


class MLP(nnx.Module):
    """``din -> hidden[0] -> ... -> hidden[-1]`` with the activation after every layer."""

    def __init__(self, din: int, hidden: Sequence[int], activation: str, *, rngs: nnx.Rngs):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {sorted(_ACTIVATIONS)}")
        sizes = [din, *hidden]
        self.layers = nnx.List([_linear(a, b, math.sqrt(2.0), rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = act(layer(x))
        return x


class GaussianPolicy(nnx.Module):
    """``pi(a|s) = N(mu(s), diag(sigma^2))`` with a state-independent learned ``log sigma`` (PPO/TRPO style).
    Returns ``(mean [..., A], log_std [..., A])``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden=(64, 64), activation="tanh", *, rngs: nnx.Rngs):
        self.trunk = MLP(obs_dim, hidden, activation, rngs=rngs)
        self.mean = _linear(hidden[-1], action_dim, 0.01, rngs)
        self.log_std = nnx.Param(jnp.zeros((action_dim,)))

    def __call__(self, obs: Array) -> tuple[Array, Array]:
        mean = self.mean(self.trunk(obs))
        return mean, jnp.broadcast_to(self.log_std[...], mean.shape)


class SDEPolicy(nnx.Module):
    """Generalized state-dependent exploration (gSDE; Raffin, Kober, Stulp, arXiv 2005.05719, as in
    Stable-Baselines3 with ``full_std=True``): the action is ``mu(s) + z(s)^T W`` with ``z(s)`` the
    last hidden layer (features, not trained through the noise) and ``W [H, A]`` an exploration
    matrix with entries ``N(0, exp(log_std)^2)``, drawn at a set frequency; given ``z``, the action is
    ``N(mu(s), diag(z^2 . exp(2 log_std)))``. Returns ``(mean [..., A], z [..., H], log_std [H, A])``."""

    def __init__(
        self, obs_dim: int, action_dim: int, hidden=(64, 64), activation="tanh", log_std_init=0.0, *, rngs: nnx.Rngs
    ):
        self.trunk = MLP(obs_dim, hidden, activation, rngs=rngs)
        self.mean = _linear(hidden[-1], action_dim, 0.01, rngs)
        self.log_std = nnx.Param(jnp.full((hidden[-1], action_dim), log_std_init, jnp.float32))

    def __call__(self, obs: Array) -> tuple[Array, Array, Array]:
        z = self.trunk(obs)
        return self.mean(z), z, self.log_std[...]


def torch_default_init(module: nnx.Module, key: Array) -> nnx.Module:
    """Re-initializes every ``nnx.Linear`` of ``module`` in place as PyTorch's ``nn.Linear`` does
    (kernel and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; SB3's ``ortho_init=False``); returns it."""
    linears = [node for _, node in nnx.iter_graph(module) if isinstance(node, nnx.Linear)]
    for layer, k in zip(linears, jax.random.split(key, max(len(linears), 1))):
        k_w, k_b = jax.random.split(k)
        fan_in = layer.kernel[...].shape[0]
        bound = 1.0 / math.sqrt(fan_in)
        layer.kernel[...] = jax.random.uniform(k_w, layer.kernel[...].shape, minval=-bound, maxval=bound)
        if layer.bias is not None:
            layer.bias[...] = jax.random.uniform(k_b, layer.bias[...].shape, minval=-bound, maxval=bound)
    return module


class CategoricalPolicy(nnx.Module):
    """``pi(a|s) = softmax(logits(s))`` over ``num_actions`` discrete actions (the discrete-action head
    of PureJaxRL's ``ppo.py`` and SB3's ``MlpPolicy``: 0.01 gain on the logits). Returns ``logits [..., K]``."""

    def __init__(self, obs_dim: int, num_actions: int, hidden=(64, 64), activation="tanh", *, rngs: nnx.Rngs):
        self.trunk = MLP(obs_dim, hidden, activation, rngs=rngs)
        self.logits = _linear(hidden[-1], num_actions, 0.01, rngs)

    def __call__(self, obs: Array) -> Array:
        return self.logits(self.trunk(obs))


class TanhGaussianPolicy(nnx.Module):
    """``a = tanh(u)``, ``u ~ N(mu(s), sigma(s)^2)`` with a state-dependent ``log sigma`` clipped to
    ``[-20, 2]`` (SAC, arXiv 1801.01290). Returns ``(mean [..., A], log_std [..., A])`` of ``u``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden=(256, 256), activation="relu", *, rngs: nnx.Rngs):
        self.trunk = MLP(obs_dim, hidden, activation, rngs=rngs)
        self.mean = _linear(hidden[-1], action_dim, 0.01, rngs)
        self.log_std = _linear(hidden[-1], action_dim, 0.01, rngs)

    def __call__(self, obs: Array) -> tuple[Array, Array]:
        h = self.trunk(obs)
        return self.mean(h), jnp.clip(self.log_std(h), LOG_STD_MIN, LOG_STD_MAX)


class ValueNet(nnx.Module):
    """``V(s)``: ``[..., O] -> [...]``."""

    def __init__(self, obs_dim: int, hidden=(64, 64), activation="tanh", *, rngs: nnx.Rngs):
        self.trunk = MLP(obs_dim, hidden, activation, rngs=rngs)
        self.out = _linear(hidden[-1], 1, 1.0, rngs)

    def __call__(self, obs: Array) -> Array:
        return self.out(self.trunk(obs))[..., 0]


class QNet(nnx.Module):
    """``Q(s, a)``: ``([..., O], [..., A]) -> [...]`` on the concatenation ``[s, a]``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden=(256, 256), activation="relu", *, rngs: nnx.Rngs):
        self.trunk = MLP(obs_dim + action_dim, hidden, activation, rngs=rngs)
        self.out = _linear(hidden[-1], 1, 1.0, rngs)

    def __call__(self, obs: Array, action: Array) -> Array:
        return self.out(self.trunk(jnp.concatenate([obs, action], axis=-1)))[..., 0]


class DiscreteQNet(nnx.Module):
    """``Q(s, .)`` over ``num_actions`` discrete actions, one output per action: ``[..., O] -> [..., K]``
    (discrete SAC, Christodoulou, arXiv 1910.07207)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden=(256, 256), activation="relu", *, rngs: nnx.Rngs):
        self.trunk = MLP(obs_dim, hidden, activation, rngs=rngs)
        self.out = _linear(hidden[-1], num_actions, 1.0, rngs)

    def __call__(self, obs: Array) -> Array:
        return self.out(self.trunk(obs))


def split(module: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, params)``: the static structure and the parameter pytree a train state holds."""
    return nnx.split(module)


def apply(graphdef: nnx.GraphDef, params: nnx.State, *args: Array):
    """Runs the network ``graphdef`` with ``params`` (pure: nothing is mutated)."""
    return nnx.merge(graphdef, params)(*args)
