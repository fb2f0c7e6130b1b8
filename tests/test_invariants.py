"""The invariant suite: every algorithm in ``jaxrl_llm.algorithms.REGISTRY`` gets every test here.

A new method is covered by being registered. It may expose ``example_extras(key, B, T, G)`` for the
extra rollout/batch keys it needs, ``batch_extras(rollout, cfg)`` for keys computed from the whole
rollout, ``DIFFERENTIABLE_BATCH_KEYS`` for model outputs besides ``logprobs`` (PPO's ``values``),
and ``reinforce_loss`` when its on-policy gradient is not REINFORCE under ``cfg.aggregation``.
The loss batch comes from ``algorithms.make_batch``, the function the trainer uses, as typed
``Rollout`` / ``Batch`` records.

Properties: contract attributes; shapes and finiteness of advantages, loss, metrics, gradient;
jit == eager; values under ``mask == 0`` change neither advantages, loss, metrics nor gradient;
on-policy reduction (ratio 1, no KL: gradient == REINFORCE's with the method's advantages);
partition invariance (4 micro-batches with accumulation, and 8 CPU devices under ``shard_map``
with ``psum``, both equal the whole batch, for loss, metrics and parameter gradient); bf16 inputs
agree with f32 (loss within 2e-2 * max(1, |loss|), gradient within 3e-2 relative norm).
"""

import dataclasses
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxrl_llm import algorithms
from jaxrl_llm.ops import aggregation
from jaxrl_llm.sharding import make_mesh
from jaxrl_llm.types import Batch, Rollout

P, G, T, D = 4, 4, 6, 3  # prompts, group size, completion length, tiny-model features
B = P * G
N_MICRO, N_DEV = 4, 8


def _cases():
    out = []
    for name in sorted(algorithms.REGISTRY):
        cfg = algorithms.REGISTRY[name].Config()
        out.append(pytest.param(name, cfg, id=name))
        if cfg.beta == 0 and "kl_estimator" in {f.name for f in dataclasses.fields(cfg)}:
            out.append(pytest.param(name, dataclasses.replace(cfg, beta=0.05), id=f"{name}-kl"))
    return out


# Default configs, plus beta > 0 for KL-free methods that have a KL option; the KL variants run the
# tests where a second aggregated term can break (masking and partition), to keep the suite fast.
CASES = _cases()
DEFAULTS = [c for c in CASES if not c.id.endswith("-kl")]
NAMES = sorted(algorithms.REGISTRY)


def _diff_keys(algo):
    return algo.differentiable_batch_keys


def make_rollout(algo, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)  # [B, T]
    rewards = np.concatenate(
        [
            np.ones(G),  # all equal: a zero-std group
            [1.0, 0.0, 0.0, 1.0],
            rng.normal(size=G),  # continuous rewards
            [0.0, 0.0, 1.0, 0.0],
        ]
    ).astype(np.float32)
    sampler = (-np.abs(rng.normal(size=(B, T))) - 0.05).astype(np.float32)
    old = (sampler + 0.05 * rng.normal(size=(B, T))).astype(np.float32)
    ref = (old + 0.1 * rng.normal(size=(B, T))).astype(np.float32)
    rollout = {
        "tokens": jnp.asarray(rng.integers(0, 50, size=(B, T)), jnp.int32),
        "mask": jnp.asarray(mask),
        "rewards": jnp.asarray(rewards),
        "group_ids": jnp.repeat(jnp.arange(P, dtype=jnp.int32), G),
        "group_size": G,
        "sampler_logprobs": jnp.asarray(sampler),
        "old_logprobs": jnp.asarray(old),
        "ref_logprobs": jnp.asarray(ref),
        "entropies": jnp.asarray(np.abs(rng.normal(size=(B, T))).astype(np.float32)),
        "lengths": jnp.asarray(lengths, jnp.int32),
    }
    if hasattr(algo.module, "example_extras"):
        rollout.update(algo.module.example_extras(jax.random.key(seed), B, T, G))
    return Rollout.from_mapping(rollout)


def make_batch(algo, cfg, rollout):
    """``algorithms.make_batch`` (the trainer's), without reward shaping: the suite's rewards are
    the method's input as given."""
    batch, _ = algorithms.make_batch(dataclasses.replace(algo, shape_rewards=lambda r, ro, c: r), rollout, cfg)
    assert isinstance(batch, Batch) and float(batch["num_seqs"]) == B
    return batch


def make_params(algo, seed=1, scale=0.3):
    rng = np.random.default_rng(seed)
    keys = ("logprobs",) + _diff_keys(algo)
    return {k: jnp.asarray(scale * rng.normal(size=D).astype(np.float32)) for k in keys}


def make_features(seed=2):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, D)).astype(np.float32))


def model_loss(mod, cfg, params, batch, feats):
    """A tiny linear 'model': logprobs = old_logprobs + feats . theta, and each differentiable
    extra (e.g. values) = batch[key] + feats . phi_key. Returns (loss, metrics)."""
    logprobs = batch["old_logprobs"] + feats @ params["logprobs"]
    b = batch.with_items({k: batch[k] + feats @ params[k] for k in _diff_keys(mod)})
    return mod.loss(logprobs, b, cfg)


def input_grads(mod, cfg, logprobs, batch):
    """(loss, metrics, grads) with grads w.r.t. logprobs and the differentiable batch keys."""

    def f(d):
        b = batch.with_items({k: v for k, v in d.items() if k != "logprobs"})
        return mod.loss(d["logprobs"], b, cfg)

    d = {"logprobs": logprobs, **{k: batch[k] for k in _diff_keys(mod)}}
    (loss, metrics), grads = jax.value_and_grad(f, has_aux=True)(d)
    return loss, metrics, grads


@functools.cache
def jitted_input_grads(name, cfg):
    """One compiled ``input_grads`` per (method, config), shared by the tests (compiles dominate)."""
    mod = algorithms.get(name)
    return jax.jit(lambda lp, b: input_grads(mod, cfg, lp, b))


@functools.cache
def jitted_advantages(name, cfg):
    """Compiled ``advantages`` with the static group size closed over."""
    mod = algorithms.get(name)
    return jax.jit(lambda r: mod.advantages(r, cfg))


def _arrays(rollout):
    return rollout


@functools.cache
def jitted_model_step(name, cfg):
    """One compiled value-and-grad of ``model_loss`` per (method, config)."""
    mod = algorithms.get(name)
    return jax.jit(jax.value_and_grad(lambda p, b, f: model_loss(mod, cfg, p, b, f), has_aux=True))


def _off_policy_logprobs(batch, seed=3):
    rng = np.random.default_rng(seed)
    return batch["old_logprobs"] + jnp.asarray(0.3 * rng.normal(size=(B, T)).astype(np.float32))


def _rows(tree, lo, hi):
    return jax.tree.map(lambda v: v[lo:hi] if v.ndim >= 1 and v.shape[0] == B else v, tree)


def _combine(parts):
    """Combines per-part metric dicts by the contract: sum, except /max and /min keys."""
    out = {}
    for k in parts[0]:
        vals = jnp.stack([p[k] for p in parts])
        out[k] = jnp.max(vals) if k.endswith("/max") else jnp.min(vals) if k.endswith("/min") else jnp.sum(vals)
    return out


def _close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol), a, b)


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_module_contract(name):
    algo = algorithms.get(name)
    assert isinstance(algo, algorithms.Algorithm) and algo.name == name
    mod = algo.module
    assert mod.NAME == name
    assert isinstance(mod.PAPER, str) and mod.PAPER
    assert mod.PAPER_URL.startswith("https://")
    doc = inspect.getdoc(mod) or ""
    assert mod.PAPER_URL in doc, "module docstring must cite the paper's URL"
    if name != "grpo":
        assert "differs from grpo" in doc.lower(), "non-GRPO methods list how they differ from GRPO"
    cfg = mod.Config()
    assert dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen
    assert isinstance(cfg.beta, float)
    hash(cfg)
    for fn in ("advantages", "loss"):
        assert callable(getattr(mod, fn)) and inspect.getdoc(getattr(mod, fn))


def test_registry_get_error_lists_names():
    with pytest.raises(KeyError, match="unknown algorithm 'nope'; known: .*grpo"):
        algorithms.get("nope")


@pytest.mark.parametrize("name,cfg", DEFAULTS)
def test_shapes_and_finiteness(name, cfg):
    mod = algorithms.get(name)
    rollout = make_rollout(mod)
    adv, adv_metrics = jitted_advantages(name, cfg)(_arrays(rollout))
    assert adv.shape in ((B,), (B, T)) and adv.dtype == jnp.float32
    assert np.all(np.isfinite(adv))
    assert {"adv/mean", "adv/std"} <= set(adv_metrics)
    for k, v in adv_metrics.items():
        assert jnp.shape(v) == () and np.isfinite(v), k
    batch = make_batch(mod, cfg, rollout)
    loss, metrics, grads = jitted_input_grads(name, cfg)(_off_policy_logprobs(batch), batch)
    assert loss.shape == () and loss.dtype == jnp.float32 and np.isfinite(loss)
    assert {"loss", "loss/policy", "clip_frac", "ratio/mean"} <= set(metrics)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    if cfg.beta > 0 and "kl_estimator" in {f.name for f in dataclasses.fields(cfg)}:
        assert "kl" in metrics, "a KL term in the loss must be logged as 'kl'"
    for k, v in metrics.items():
        assert jnp.shape(v) == () and np.isfinite(v), k
    for k, g in grads.items():
        assert g.shape == (B, T) and np.all(np.isfinite(g)), k
    assert np.any(grads["logprobs"] != 0)


@pytest.mark.parametrize("name,cfg", DEFAULTS)
def test_jit_equals_eager(name, cfg):
    mod = algorithms.get(name)
    rollout = make_rollout(mod)
    _close(jitted_advantages(name, cfg)(_arrays(rollout)), mod.advantages(rollout, cfg))
    batch = make_batch(mod, cfg, rollout)
    lp = _off_policy_logprobs(batch)
    _close(jitted_input_grads(name, cfg)(lp, batch), input_grads(mod, cfg, lp, batch), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name,cfg", CASES)
def test_masked_values_are_inert(name, cfg):
    mod = algorithms.get(name)
    rollout = make_rollout(mod)
    pad = rollout["mask"] == 0
    assert np.any(pad)
    rng = np.random.default_rng(7)

    def garble(tree):
        out = {}
        for k, v in tree.items():
            if k in ("mask", "loss_mask") or getattr(v, "shape", None) != (B, T):
                continue
            junk = (
                jnp.asarray(rng.normal(size=(B, T)) * 30, v.dtype)
                if jnp.issubdtype(v.dtype, jnp.floating)
                else jnp.asarray(rng.integers(0, 99, size=(B, T)), v.dtype)
            )
            out[k] = jnp.where(pad, junk, v)
        return tree.with_items(out)

    adv, _ = jitted_advantages(name, cfg)(_arrays(rollout))
    adv_g, _ = jitted_advantages(name, cfg)(_arrays(garble(rollout)))
    keep = rollout["mask"] != 0 if adv.ndim == 2 else np.ones(B, bool)
    np.testing.assert_allclose(np.asarray(adv_g)[keep], np.asarray(adv)[keep], rtol=1e-5, atol=1e-6)

    batch = make_batch(mod, cfg, rollout)
    lp = _off_policy_logprobs(batch)
    fn = jitted_input_grads(name, cfg)
    loss, metrics, grads = fn(lp, batch)
    gb = garble(batch.with_items(logprobs=lp))
    loss_g, metrics_g, grads_g = fn(gb["logprobs"], gb.without("logprobs"))
    _close((loss_g, metrics_g, grads_g), (loss, metrics, grads), rtol=1e-5, atol=1e-6)
    for k, g in grads.items():
        assert np.all(np.asarray(g)[pad] == 0), f"gradient leaks into masked {k}"


@pytest.mark.parametrize("name", NAMES)
def test_on_policy_gradient_is_reinforce(name):
    mod = algorithms.get(name)
    # ``KL_IN_OBJECTIVE`` (the DPO family): beta scales the loss itself, not a separable KL term; kept.
    cfg = mod.Config() if getattr(mod.module, "KL_IN_OBJECTIVE", False) else dataclasses.replace(mod.Config(), beta=0.0)
    rollout = make_rollout(mod)
    batch = make_batch(mod, cfg, rollout)
    lp = batch["old_logprobs"]  # ratio exactly 1
    _, _, grads = jitted_input_grads(name, cfg)(lp, batch)
    if hasattr(mod.module, "reinforce_loss"):
        ref_fn = lambda x: mod.module.reinforce_loss(x, batch, cfg)
    else:
        mask = batch["mask"]
        adv = batch["advantages"] if batch["advantages"].ndim == 2 else batch["advantages"][:, None]
        ref_fn = lambda x: aggregation.aggregate(
            -adv * x, mask, cfg.aggregation, batch["num_tokens"], batch["num_seqs"], getattr(cfg, "norm_const", None)
        )
    ref = jax.grad(ref_fn)(lp)
    np.testing.assert_allclose(grads["logprobs"], ref, rtol=1e-5, atol=1e-7)
    assert np.any(np.asarray(ref) != 0)


@pytest.mark.parametrize("name,cfg", CASES)
def test_micro_batch_accumulation_equals_full_batch(name, cfg):
    mod = algorithms.get(name)
    batch = make_batch(mod, cfg, make_rollout(mod))
    params, feats = make_params(mod), make_features()
    step = jitted_model_step(name, cfg)
    (loss, metrics), grads = step(params, batch, feats)
    size = B // N_MICRO
    parts = [
        step(params, _rows(batch, i * size, (i + 1) * size), feats[i * size : (i + 1) * size]) for i in range(N_MICRO)
    ]
    acc_loss = sum(p[0][0] for p in parts)
    acc_grads = jax.tree.map(lambda *g: sum(g), *[p[1] for p in parts])
    _close(acc_loss, loss, rtol=1e-5, atol=1e-6)
    _close(acc_grads, grads, rtol=1e-4, atol=1e-6)
    _close(_combine([p[0][1] for p in parts]), metrics, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,cfg", DEFAULTS)
def test_device_partition_equals_full_batch(name, cfg):
    assert len(jax.devices()) == N_DEV
    mod = algorithms.get(name)
    batch = make_batch(mod, cfg, make_rollout(mod))
    params, feats = make_params(mod), make_features()
    mesh = make_mesh({"data": N_DEV})
    vg = jax.value_and_grad(lambda p, b, f: model_loss(mod, cfg, p, b, f), has_aux=True)

    def shard_step(p, b, f):
        (loss, metrics), grads = vg(p, b, f)
        metrics = {
            k: jax.lax.pmax(v, "data")
            if k.endswith("/max")
            else jax.lax.pmin(v, "data")
            if k.endswith("/min")
            else jax.lax.psum(v, "data")
            for k, v in metrics.items()
        }
        # params are replicated (unvarying over "data"), so shard_map's transpose already psums
        # their gradient across devices: the returned grads are the global sum.
        return jax.lax.psum(loss, "data"), metrics, grads

    row = PartitionSpec("data")
    batch_spec = jax.tree.map(lambda v: row if v.ndim >= 1 else PartitionSpec(), batch)
    sharded = jax.jit(
        jax.shard_map(shard_step, mesh=mesh, in_specs=(PartitionSpec(), batch_spec, row), out_specs=PartitionSpec())
    )
    loss_d, metrics_d, grads_d = sharded(params, batch, feats)
    (loss, metrics), grads = jitted_model_step(name, cfg)(params, batch, feats)
    _close(loss_d, loss, rtol=1e-5, atol=1e-6)
    _close(grads_d, grads, rtol=1e-4, atol=1e-6)
    _close(metrics_d, metrics, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,cfg", DEFAULTS)
def test_bf16_inputs_agree_with_f32(name, cfg):
    mod = algorithms.get(name)
    batch = make_batch(mod, cfg, make_rollout(mod))
    keep_f32 = {"num_tokens", "num_seqs"}
    to_bf16 = lambda b: b.with_items(
        {
            k: v.astype(jnp.bfloat16)
            for k, v in b.items()
            if k not in keep_f32 and k != "group_size" and jnp.issubdtype(v.dtype, jnp.floating)
        }
    )
    lp = _off_policy_logprobs(batch)
    fn = jitted_input_grads(name, cfg)
    loss = fn(lp, batch)[0]
    loss16 = fn(lp.astype(jnp.bfloat16), to_bf16(batch))[0]
    assert loss16.dtype == jnp.float32
    assert abs(float(loss16) - float(loss)) <= 2e-2 * max(1.0, abs(float(loss))), (float(loss16), float(loss))
    # Gradients on-policy: a clip boundary can sit inside bf16's rounding, and then no tolerance holds.
    on = batch.with_items(old_logprobs=batch["old_logprobs"].astype(jnp.bfloat16).astype(jnp.float32))
    _, _, g = fn(on["old_logprobs"], on)
    on16 = to_bf16(on)
    _, _, g16 = fn(on16["old_logprobs"], on16)
    for k in g:
        err = float(jnp.linalg.norm(g16[k].astype(jnp.float32) - g[k])) / max(float(jnp.linalg.norm(g[k])), 1e-12)
        assert err <= 3e-2, (k, err)
