"""The objective library: one file per method, a plain dict registry.

The algorithm-module contract (the trainer and the invariant suite code against it)
===================================================================================

Each ``jaxrl_llm/algorithms/<name>.py`` has:

* A module docstring: citation (title, authors, arXiv link), the objective written out, a numbered
  "differs from GRPO in ..." list (non-GRPO methods), the defaults and why.
* Constants ``NAME`` (the registry key), ``PAPER`` (title), ``PAPER_URL``.
* ``@dataclasses.dataclass(frozen=True) class Config``: fields named after the paper's symbols with
  the paper's defaults (common names: ``eps_low``, ``eps_high``, ``beta``, ``kl_estimator``,
  ``std_ddof``, ``std_eps``, ``aggregation``). ``beta`` always exists: the KL weight; 0 means the
  trainer need not compute ``ref_logprobs``. Configs are hashable (static under ``jax.jit``).
* ``advantages(rollout, cfg, state=None) -> (advantages, metrics)``. ``rollout`` is the dict of
  ``jaxrl_llm.types`` over the WHOLE optimization batch (rows group-major; the group size is
  ``rollout["group_size"]``, a Python int, or inferred from concrete ``group_ids``). Returns
  ``[B]`` or ``[B, T]`` advantages and metrics (``adv/mean``, ``adv/std``, ``adv/max``, ``adv/min``,
  ``frac_zero_std_groups`` where groups exist). Pure jnp, jittable with ``group_size`` static.
  Methods whose advantages use a KL-in-reward (``ppo``, ``rloo``, ``reinforce_pp``) read
  ``rollout["old_logprobs"]`` (falling back to ``sampler_logprobs``) and ``rollout["ref_logprobs"]``
  when ``beta > 0``: the trainer computes those before calling ``advantages``.
* ``loss(logprobs, batch, cfg) -> (loss, metrics)``. ``logprobs`` ``[B, T]`` are the current
  policy's log-probs of ``batch["tokens"]`` (any float dtype; losses compute in f32). ``batch``
  holds ``old_logprobs``, ``ref_logprobs`` (when ``beta > 0``), ``advantages``, ``mask``, the
  GLOBAL ``num_tokens`` and ``num_seqs``, optional ``is_weights`` ``[B, T]`` (rollout-mismatch
  weights from ``ops.rollout_correction``, multiplied into the policy term), optional
  ``entropies`` (logged as ``entropy``), plus method extras. The loss is MINIMIZED.

  THE PARTITION CONTRACT: evaluated on a micro-batch (or one device's shard) the loss returns that
  part's share of the full-batch loss, because every normalizer comes from the batch's global
  ``num_tokens`` / ``num_seqs`` / a constant, never from the local mask. Hence the sum over
  micro-batches of losses and of gradients equals the full-batch loss and gradient. Metrics obey
  the same rule: they are additive across parts, except keys ending in ``/max`` or ``/min``, which
  combine by max / min. Shared keys: ``loss``, ``loss/policy``, ``loss/kl``, ``kl``, ``clip_frac``,
  ``clip_frac/low``, ``clip_frac/high``, ``ratio/mean``, ``ratio/max``, ``ratio/min``, ``entropy``.
* Optional hooks, only where the method has them:
    - ``shape_rewards(rewards, rollout, cfg) -> rewards`` (e.g. DAPO overlong shaping), applied
      before ``advantages``.
    - ``filter_groups(rollout, cfg) -> keep [B] bool`` (DAPO dynamic sampling), with a pure
      static-shape backfill helper in the same module.
    - ``init_state(cfg) -> state`` and ``update_state(state, rollout, cfg) -> state`` for methods
      that carry state across steps (a pytree of arrays; the trainer checkpoints it and passes it
      to ``advantages``).
    - ``batch_extras(rollout, cfg) -> dict`` of extra ``[B]``/``[B, T]`` arrays the loss needs that
      are computed once on the whole rollout (PPO: ``returns``, ``old_values``); the trainer merges
      them into the batch.
    - ``DIFFERENTIABLE_BATCH_KEYS``: batch keys besides ``logprobs`` that are model outputs the loss
      is differentiated through (PPO: ``values``, the critic head's output for ``batch["tokens"]``).
    - ``example_extras(key, batch_size, seq_len, group_size) -> dict``: random arrays for the extra
      rollout/batch keys the method needs, so the invariant suite can build inputs for it.
    - ``reinforce_loss(logprobs, batch, cfg)``: the REINFORCE surrogate whose gradient the loss must
      equal on-policy (ratio 1, no KL), when it is not
      ``aggregate(-advantages * logprobs, mask, cfg.aggregation, ...)``.

Adding a method: write ``jaxrl_llm/algorithms/<name>.py`` to this contract, add it to ``REGISTRY``
below, and ``tests/test_invariants.py`` runs it through the whole invariant suite (shapes and
finiteness, jit == eager, masked values inert, on-policy reduction to REINFORCE, micro-batch and
8-device partition invariance, bf16 vs f32). Add ``tests/test_algorithms_<name>.py`` with the
paper's hand-computed case, and run ``python -m jaxrl_llm.algorithms`` to regenerate README.md's
algorithm block (``tests/test_readme_table.py`` fails until the README matches).
"""

from __future__ import annotations

from types import ModuleType

from jaxrl_llm.algorithms import cispo, dapo, dr_grpo, grpo, gspo, gtpo, ppo, reinforce_pp, rloo
from jaxrl_llm.algorithms import apo, hbpo, single_stream_spo
from jaxrl_llm.algorithms import bnpo, dcpo
from jaxrl_llm.algorithms import copo, hapo, riskpo

REGISTRY: dict[str, ModuleType] = {
    mod.NAME: mod for mod in (grpo, dr_grpo, dapo, gspo, ppo, rloo, reinforce_pp, cispo, gtpo, single_stream_spo, hbpo, apo, dcpo, copo, riskpo, hapo, bnpo)
}


def get(name: str) -> ModuleType:
    """The algorithm module registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {sorted(REGISTRY)}") from None


def markdown_table() -> str:
    """The README's algorithm table (method, file, paper), one row per registered module, by name."""
    rows = ["| method | file | paper |", "|---|---|---|"]
    for name in sorted(REGISTRY):
        mod = REGISTRY[name]
        path = mod.__name__.replace(".", "/") + ".py"
        rows.append(f"| `{name}` | [`{path}`]({path}) | [{mod.PAPER}]({mod.PAPER_URL}) |")
    return "\n".join(rows) + "\n"
