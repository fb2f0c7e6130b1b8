"""The objective library: one file per method, a registry of explicit ``Algorithm`` records.

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
* ``advantages(rollout, cfg, state=None) -> (advantages, metrics)``. ``rollout`` is the ``Rollout``
  record of ``jaxrl_llm.types`` (read like a dict) over the WHOLE optimization batch (rows group-major; the group size is
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
* ``ROLLOUT`` (optional, default ``"group"``): the name of the rollout kind that produces the
  method's rows (``jaxrl_llm.rollouts.KINDS``: ``group``, ``single_stream``, ``budgeted``, ...).
  ``ROLLOUTS`` (optional): further kinds whose rows the method also reads; a run picks one with
  ``train.rollout`` (e.g. ``tir_optimal_token_baseline``: ``("episode",)``, multi-turn rows).
* Optional hooks, only where the method has them (the registry reads them ONCE into the method's
  ``Algorithm`` record, with no-op defaults; nothing else looks names up on a module):
    - ``shape_rewards(rewards, rollout, cfg) -> rewards`` (e.g. DAPO overlong shaping), applied
      before ``advantages``.
    - ``filter_groups(rollout, cfg) -> keep [B] bool`` (DAPO dynamic sampling); the ``group``
      rollout kind refills the batch (``rollouts.group.backfill``).
    - ``init_state(cfg) -> state`` and ``update_state(state, rollout, cfg) -> state`` for methods
      that carry state across steps (a pytree of arrays; the trainer checkpoints it and passes it
      to ``advantages``).
    - ``batch_extras(rollout, cfg) -> dict`` of extra ``[B]``/``[B, T]`` arrays the loss needs that
      are computed once on the whole rollout (PPO: ``returns``, ``old_values``); the trainer merges
      them into the batch. A module with ``BATCH_EXTRAS_NEED_STATE = True`` gets the state too,
      ``batch_extras(rollout, cfg, state)`` (PPO's adaptive KL coefficient enters its returns).
    - ``DIFFERENTIABLE_BATCH_KEYS``: batch keys besides ``logprobs`` that are model outputs the loss
      is differentiated through (PPO: ``values``, the critic head's output for ``batch["tokens"]``).
    - ``example_extras(key, batch_size, seq_len, group_size) -> dict``: random arrays for the extra
      rollout/batch keys the method needs, so the invariant suite can build inputs for it.
    - ``KL_IN_OBJECTIVE = True`` (the DPO family): ``beta`` is the scale of the implicit reward
      inside the loss, not the weight of a separable KL term, so the on-policy check keeps it.
    - ``reinforce_loss(logprobs, batch, cfg)``: the REINFORCE surrogate whose gradient the loss must
      equal on-policy (ratio 1, no KL), when it is not
      ``aggregate(-advantages * logprobs, mask, cfg.aggregation, ...)``.
    - ``temperature_from_stats(logits, state, cfg) -> [B]`` (per-row sampling temperature with the
      state as a traced argument) or ``temperature_rule(cfg, state) -> rule`` (static).
    - ``check_config(run_cfg) -> str | None``: why the run config cannot train this method (``None``
      when it can); ``config.validate`` reports it in one line.
    - ``ROLLOUT_EXTRAS``: rollout keys the method asks its kind to build from the reward side;
      ``("answer_ids",)`` (COPO): per-row answer classes within each group, from the task's
      ``answer_fn`` (the answer its reward reads) and ``rewards.extract.answer_classes``. Methods
      never parse completion text themselves. ``("reward_components",)`` (GDPO): the raw reward of
      each reward function ``[B, C]``; ``("sum_pi_squared",)`` (optimal token baseline):
      ``sum_v pi_old(v)^2`` ``[B, T]`` from one forward pass (``rollouts.token_stats``);
      ``("masked_logprobs",)`` (PAPO): on image tasks, the sampled tokens' log-probs with each
      row's pictures corrupted by the method's ``corrupt_images(key, images, G, cfg)`` hook.
    - Rollout-kind hooks, read when the method's kind uses them: ``select_prompts(state, P, key, cfg)`` and
      ``replay_tokens(state, rollout, cfg)`` (``single_stream``), ``group_prompts(prompt, G, cfg)``
      (``budgeted``), ``with_offline_prior(state, rewards [N, cfg.n_offline], cfg)`` (``single_stream``).

The loss batch is built by ONE pure function, ``make_batch(algo, rollout, cfg, state)``, which the
trainer, the invariant suite and the notebooks share.

Adding a method: write ``jaxrl_llm/algorithms/<name>.py`` to this contract, add it to ``_MODULES``
below, and ``tests/test_invariants.py`` runs it through the whole invariant suite (shapes and
finiteness, jit == eager, masked values inert, on-policy reduction to REINFORCE, micro-batch and
8-device partition invariance, bf16 vs f32). Add ``tests/test_algorithms_<name>.py`` with the
paper's hand-computed case, and run ``python -m jaxrl_llm.algorithms`` to regenerate README.md's
algorithm block (``tests/test_readme_table.py`` fails until the README matches).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxrl_llm.algorithms import (
    aepo,
    apo,
    arpo,
    arpo_gui,
    bnpo,
    cispo,
    cispo_seq,
    clip_cov,
    copo,
    dapo,
    dcpo,
    dialtree,
    dpo,
    dppo,
    dr_grpo,
    dro,
    drpo,
    epo,
    epo_strategic,
    gdpo,
    gepo,
    gigpo,
    gmpo,
    gpg,
    grpo,
    gspo,
    gtpo,
    hapo,
    hbpo,
    inpo,
    ipo,
    kl_cov,
    lspo,
    mpo,
    online_dpo,
    opo,
    optimal_token_baseline,
    p3o,
    papo,
    pass_at_k,
    poad,
    ppo,
    refuel,
    reinforce_pp,
    remax,
    riskpo,
    rloo,
    sapo,
    single_stream_spo,
    spo_chain,
    spo_tree,
    tir_optimal_token_baseline,
    tppo,
    urpo,
    vespo,
)
from jaxrl_llm.types import Batch, Metrics, Rollout

_MODULES = (
    grpo,
    dr_grpo,
    dapo,
    gspo,
    ppo,
    rloo,
    reinforce_pp,
    cispo,
    gtpo,
    single_stream_spo,
    hbpo,
    apo,
    dcpo,
    copo,
    riskpo,
    hapo,
    bnpo,
    drpo,
    gigpo,
    epo,
    epo_strategic,
    dpo,
    ipo,
    online_dpo,
    p3o,
    inpo,
    sapo,
    gmpo,
    gpg,
    clip_cov,
    kl_cov,
    dppo,
    opo,
    pass_at_k,
    vespo,
    spo_tree,
    spo_chain,
    tppo,
    cispo_seq,
    remax,
    gdpo,
    optimal_token_baseline,
    tir_optimal_token_baseline,
    dro,
    poad,
    arpo,
    dialtree,
    lspo,
    gepo,
    urpo,
    mpo,
    refuel,
    papo,
    aepo,
    arpo_gui,
)

# Hooks a rollout kind may ask of a method (``Algorithm.hooks``); a new kind adds its names here.
ROLLOUT_HOOKS = (
    "select_prompts",
    "replay_tokens",
    "group_prompts",
    "with_offline_prior",
    "pairing",
    "select_edges",
    "corrupt_images",
)


def _keep_all(rollout: Rollout, cfg: Any) -> np.ndarray:
    return np.ones(int(np.shape(rollout["rewards"])[0]), bool)


def _identity_rewards(rewards: Any, rollout: Rollout, cfg: Any) -> Any:
    return rewards


def _no_state(cfg: Any) -> None:
    return None


def _same_state(state: Any, rollout: Rollout, cfg: Any) -> Any:
    return state


def _no_extras(rollout: Rollout, cfg: Any) -> dict[str, Any]:
    return {}


def _no_check(run_cfg: Any) -> None:
    return None


def _plain_temperature(cfg: Any, state: Any) -> tuple[Any, Any]:
    return None, None


@dataclasses.dataclass(frozen=True)
class _StateTemperature:
    """The sampler rule ``(logits [B, V], step, state) -> temperature [B]`` of a method with a
    ``temperature_from_stats(logits, state, cfg)`` hook. Equal (and equally hashed) for every step
    of a run, while the state travels as the sampler's traced ``temperature_rule_params``: new
    statistics each step reuse the compiled sampling program."""

    fn: Callable
    cfg: Any

    def __call__(self, logits, step, state):
        return self.fn(logits, state, self.cfg)


def _temperature(mod: ModuleType) -> Callable[[Any, Any], tuple[Any, Any]]:
    """``temperature(cfg, state) -> (rule, traced params)`` for RL sampling: ``temperature_from_stats``
    with the state traced when the method has it, else ``temperature_rule(cfg, state)`` (static),
    else ``(None, None)`` (``sampling.temperature``)."""
    from_stats = getattr(mod, "temperature_from_stats", None)
    rule = getattr(mod, "temperature_rule", None)

    def temperature(cfg, state):
        if from_stats is not None and state is not None:
            return _StateTemperature(from_stats, cfg), state
        return (rule(cfg, state) if rule is not None else None), None

    return temperature if (from_stats or rule) else _plain_temperature


@dataclasses.dataclass(frozen=True, eq=False)
class Algorithm:
    """A registered method: its config class, its objective and every hook, with no-op defaults.

    Built once per module by the registry; the trainer and the rollout kinds call these fields.
    ``eq=False``: compared and hashed by identity (one record per method), so a record can be a
    static argument of ``jax.jit``.
    """

    name: str
    module: ModuleType
    Config: type
    advantages: Callable
    loss: Callable
    rollout: str = "group"
    rollouts: tuple[str, ...] = ("group",)  # every kind whose rows the method reads; rollout first
    shape_rewards: Callable = _identity_rewards
    filter_groups: Callable = _keep_all
    init_state: Callable = _no_state
    update_state: Callable = _same_state
    batch_extras: Callable = _no_extras
    batch_extras_need_state: bool = False
    temperature: Callable = _plain_temperature
    check_config: Callable = _no_check
    differentiable_batch_keys: tuple[str, ...] = ()
    rollout_extras: tuple[str, ...] = ()
    hooks: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    has_filter: bool = False
    has_state: bool = False
    paper: str = ""
    paper_url: str = ""

    @property
    def needs_critic(self) -> bool:
        """The loss reads a value head's output (``values``) for the batch's tokens (PPO)."""
        return "values" in self.differentiable_batch_keys

    def uses_reference(self, cfg: Any) -> bool:
        """A nonzero KL weight ``beta``: the trainer keeps a frozen reference model."""
        return float(getattr(cfg, "beta", 0.0) or 0.0) != 0.0


def _record(mod: ModuleType) -> Algorithm:
    """The one place that reads a method module's attributes."""
    hook = lambda name, default: getattr(mod, name, None) or default
    return Algorithm(
        name=mod.NAME,
        module=mod,
        Config=mod.Config,
        advantages=mod.advantages,
        loss=mod.loss,
        rollout=getattr(mod, "ROLLOUT", "group"),
        rollouts=tuple(dict.fromkeys((getattr(mod, "ROLLOUT", "group"), *getattr(mod, "ROLLOUTS", ())))),
        shape_rewards=hook("shape_rewards", _identity_rewards),
        filter_groups=hook("filter_groups", _keep_all),
        init_state=hook("init_state", _no_state),
        update_state=hook("update_state", _same_state),
        batch_extras=hook("batch_extras", _no_extras),
        batch_extras_need_state=bool(getattr(mod, "BATCH_EXTRAS_NEED_STATE", False)),
        temperature=_temperature(mod),
        check_config=hook("check_config", _no_check),
        differentiable_batch_keys=tuple(getattr(mod, "DIFFERENTIABLE_BATCH_KEYS", ())),
        rollout_extras=tuple(getattr(mod, "ROLLOUT_EXTRAS", ())),
        hooks={name: getattr(mod, name) for name in ROLLOUT_HOOKS if hasattr(mod, name)},
        has_filter=hasattr(mod, "filter_groups"),
        has_state=hasattr(mod, "update_state"),
        paper=mod.PAPER,
        paper_url=mod.PAPER_URL,
    )


REGISTRY: dict[str, Algorithm] = {mod.NAME: _record(mod) for mod in _MODULES}


def get(name: str) -> Algorithm:
    """The ``Algorithm`` record registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {sorted(REGISTRY)}") from None


def make_batch(
    algo: Algorithm, rollout: Rollout | Mapping[str, Any], cfg: Any, state: Any = None
) -> tuple[Batch, Metrics]:
    """The loss batch of a rollout: pure, jittable with ``algo``, ``cfg`` static.

    Steps: ``rewards <- shape_rewards(rewards)``; ``advantages, metrics = advantages(rollout, cfg,
    state)``; the method's ``batch_extras``; ``mask <- loss_mask`` (the tokens the policy chose;
    the rollout's ``mask`` when no ``loss_mask`` is set; the batch keeps no separate
    ``loss_mask``); the GLOBAL normalizers
    ``num_tokens = max(sum(mask), 1)`` (1 only when nothing counts, so the loss is 0, not NaN) and
    ``num_seqs = B``. ``rollout`` needs ``old_logprobs`` (and ``ref_logprobs`` when ``beta > 0``)
    already. Returns ``(batch, advantage metrics)``; ``frac_zero_std_groups`` is dropped when rows
    are not grouped (``group_size == 1``), where it would always read 1.
    """
    if not isinstance(rollout, Rollout):
        rollout = Rollout.from_mapping(rollout)
    if "rewards" in rollout:
        rollout = rollout.with_items(
            rewards=jnp.asarray(algo.shape_rewards(rollout["rewards"], rollout, cfg), jnp.float32)
        )
    adv, metrics = algo.advantages(rollout, cfg, state)
    extras = algo.batch_extras(rollout, cfg, state) if algo.batch_extras_need_state else algo.batch_extras(rollout, cfg)
    loss_mask = rollout.loss_mask if rollout.loss_mask is not None else rollout.mask
    fields = {name: getattr(rollout, name) for name in Rollout.field_names()}
    batch = Batch(**fields).with_items(
        {
            **rollout.extras,
            **extras,
            "mask": loss_mask,
            "loss_mask": None,
            "advantages": jnp.asarray(adv, jnp.float32),
            "num_tokens": jnp.maximum(jnp.sum(jnp.asarray(loss_mask, jnp.float32)), 1.0),
            "num_seqs": jnp.float32(np.shape(loss_mask)[0]),
        }
    )
    if rollout.group_size == 1:
        metrics = {k: v for k, v in metrics.items() if k != "frac_zero_std_groups"}
    return batch, dict(metrics)


def markdown_table() -> str:
    """The README's algorithm table (method, file, paper), one row per registered method, by name."""
    rows = ["| method | file | paper |", "|---|---|---|"]
    for name in sorted(REGISTRY):
        algo = REGISTRY[name]
        path = algo.module.__name__.replace(".", "/") + ".py"
        rows.append(f"| `{name}` | [`{path}`]({path}) | [{algo.paper}]({algo.paper_url}) |")
    return "\n".join(rows) + "\n"
