"""Rematerialization of the decoder block by policy name (``ModelConfig.remat``).

Differentiating the decoder keeps, per layer, the block's intermediate values for the backward
pass (its *residuals*): the q/k/v and MLP activations, and with the reference attention
(``attention_impl="xla"``) the f32 scores [B, H, S, S]. A remat policy wraps each block in
``jax.checkpoint``: what the policy does not save is recomputed from the block's input during the
backward pass. Memory goes down, time goes up (the recomputed forward work); the values and
gradients are those of ``"none"`` up to float rounding.

Policies (``POLICIES``), from the most memory to the least:

- ``"none"``: no ``jax.checkpoint``; every residual is stored. The default (fastest).
- ``"dots_saveable"``: saves the output of every matmul, attention's batched ``q @ k`` and
  ``p @ v`` included (``jax.checkpoint_policies.dots_saveable``); recomputes only elementwise work
  (norms, RoPE, softmax, SiLU). Saves little where attention scores dominate.
- ``"dots"``: saves the outputs of the weight matmuls, the ones without batch dimensions (q/k/v/o
  projections, MLP gate/up/down; ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable``);
  recomputes attention and the elementwise work. The [B, H, S, S] scores then live one layer at
  a time; the cost is a second attention forward per layer. A fused attention kernel (cuDNN,
  splash) is not a dot: it reruns too.
- ``"full"``: saves nothing inside the block: only each layer's input [B, S, D] is kept, and the
  backward pass reruns the whole block forward (about a third more FLOPs in the layers).

A policy other than ``"none"`` runs the layers as a rolled ``lax.scan`` (as ``scan_layers=True``
does, ``Decoder.hidden_states``): the loop is what puts each layer's recomputation into the
backward pass, after the gradient of the layer above. In the unrolled program (with
``jax.checkpoint``'s CSE barriers) XLA:CPU scheduled the recomputation beside the forward pass
and nothing was saved: ``tiny`` widths, 8 layers, [4, 512], XLA's temporary buffers for fwd+bwd
598 MB with no remat, 585 / 583 MB unrolled under ``"full"`` / ``"dots"``, 92 / 149 MB rolled
(537 MB rolled without remat).

A call that is not differentiated (sampling, log-probs without a gradient) computes the same
values under every policy: ``jax.checkpoint`` changes only what the backward pass stores.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

POLICIES = ("none", "full", "dots", "dots_saveable")

_SAVEABLE = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
}


def check(policy: str, where: str = "remat") -> None:
    """A ``ValueError`` naming ``where`` unless ``policy`` is one of ``POLICIES``."""
    if policy not in POLICIES:
        raise ValueError(f"{where}={policy!r}; expected one of {', '.join(POLICIES)}")


def wrap(fn: Callable, policy: str) -> Callable:
    """``fn`` (a layer body of a rolled ``lax.scan``) under ``jax.checkpoint`` with the named
    policy; ``fn`` itself for ``"none"``. No CSE barriers: the loop already keeps the backward's
    recomputation apart from the forward's values."""
    check(policy)
    if policy == "none":
        return fn
    return jax.checkpoint(fn, policy=_SAVEABLE[policy], prevent_cse=False)
