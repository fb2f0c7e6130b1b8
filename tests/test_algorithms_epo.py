"""EPO (entropy-regularized, multi-turn; https://arxiv.org/abs/2509.22576): the paper's
hand-computed corridor case, the per-turn-then-per-trajectory entropy average, the
historical-entropy state (all steps / a window), the code-compat penalty without gradient,
micro-batch additivity of the corridor term, and the trainer passing differentiable
full-vocabulary entropies to the loss."""

import dataclasses
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms, models, train
from jaxrl_llm import config as C
from jaxrl_llm import policy as policy_lib
from jaxrl_llm import state as state_lib
from jaxrl_llm.algorithms import epo
from jaxrl_llm.types import Batch


def one_turn_batch(ent, anchor, weight, step_ids=None):
    """B = 1 row of ``len(ent)`` policy tokens, advantage 0 and ratio 1 (so ``L_MT = 0``)."""
    T = len(ent)
    return Batch.from_mapping(
        {
            "tokens": jnp.zeros((1, T), jnp.int32),
            "mask": jnp.ones((1, T)),
            "old_logprobs": jnp.full((1, T), -1.0),
            "advantages": jnp.zeros((1,)),
            "num_tokens": jnp.float32(T),
            "num_seqs": jnp.float32(1),
            "entropies": jnp.asarray([ent], jnp.float32),
            "step_ids": jnp.zeros((1, T), jnp.int32) if step_ids is None else jnp.asarray([step_ids], jnp.int32),
            "step_rewards": jnp.zeros((1, 2)),
            "entropy_anchor": jnp.asarray([anchor], jnp.float32),
            "smooth_weight": jnp.asarray([weight], jnp.float32),
        }
    )


def entropy_grad(cfg, batch):
    f = lambda e: epo.loss(batch["old_logprobs"], batch.with_items(entropies=e), cfg)[0]
    return jax.grad(f)(batch["entropies"])


def test_paper_unit_case_corridor_loss_and_gradient():
    # spec: H = [0.3, 1.0, 2.0], H_W = 1, kappa = (0.5, 1.5), alpha = 0.1 -> P = [0.2, 0, 0.5],
    # L_smooth = 0.023333, L_H = 1.1; beta at k = k_mid (gamma = 1) = 1.367879; lambda = 0.001:
    # loss without L_MT = -0.001 * (1.1 - 1.367879 * 0.023333) = -0.00106808
    cfg = epo.Config(lam=0.001, alpha=0.1, kappa_l=0.5, kappa_r=1.5, total_steps=120, gamma_decay=1.0)
    state = {"k": jnp.int32(60), "sum": jnp.float32(60.0), "recent": jnp.zeros((1,))}  # H_W = 60 / 60
    rollout = {"rewards": jnp.zeros((1,))}
    extras = epo.batch_extras(rollout, cfg, state)
    assert float(extras["entropy_anchor"][0]) == 1.0
    np.testing.assert_allclose(float(extras["smooth_weight"][0]), 1.367879, atol=1e-6)
    np.testing.assert_allclose(float(epo.phase_weight(120, cfg)), 1.135335, atol=1e-6)
    assert float(epo.phase_weight(0, cfg)) == 2.0
    batch = one_turn_batch([0.3, 1.0, 2.0], 1.0, float(extras["smooth_weight"][0]))
    loss, m = jax.jit(lambda lp, b: epo.loss(lp, b, cfg))(batch["old_logprobs"], batch)
    np.testing.assert_allclose(float(loss), -0.00106808, rtol=1e-5)
    np.testing.assert_allclose(float(m["loss/entropy"]), -0.001 * 1.1, rtol=1e-6)
    np.testing.assert_allclose(float(m["loss/smooth"]), 0.001 * 1.367879 * 0.1 * 0.7 / 3, rtol=1e-5)
    np.testing.assert_allclose(float(m["entropy/in_corridor"]), 1 / 3, rtol=1e-6)
    # dL/dH = -lambda/|tau| + lambda beta_k alpha/|tau| * (-1, 0, +1)
    lam, bk, a = 0.001, 1.367879, 0.1
    want = [-lam / 3 - lam * bk * a / 3, -lam / 3, -lam / 3 + lam * bk * a / 3]
    np.testing.assert_allclose(entropy_grad(cfg, batch)[0], want, rtol=1e-5)


def test_no_history_no_smoothing_and_code_mode_has_no_gradient():
    cfg = epo.Config(lam=0.01, alpha=0.1, kappa_l=0.5, kappa_r=1.5)
    extras = epo.batch_extras({"rewards": jnp.zeros((3,))}, cfg, epo.init_state(cfg))
    assert extras["smooth_weight"].shape == (3,) and float(jnp.max(extras["smooth_weight"])) == 0.0
    batch = one_turn_batch([0.3, 1.0, 2.0], 1.0, 1.5)
    code = dataclasses.replace(cfg, smooth="code")
    loss, m = epo.loss(batch["old_logprobs"], batch, code)
    # the code's penalty: alpha on each of the 2 tokens outside the corridor, a constant
    np.testing.assert_allclose(float(m["loss/smooth"]), 0.01 * 1.5 * 0.1 * 2 / 3, rtol=1e-5)
    np.testing.assert_allclose(entropy_grad(code, batch)[0], [-0.01 / 3] * 3, rtol=1e-6)  # only the bonus


def test_entropy_is_averaged_per_turn_then_per_trajectory():
    # turn 0: H = [1, 3] (mean 2); turn 1: H = [5] -> L_H = (2 + 5) / 2 = 3.5, not the token mean 3
    cfg = epo.Config(lam=1.0)
    batch = one_turn_batch([1.0, 3.0, 5.0], 1.0, 0.0, step_ids=[0, 0, 1])
    _, m = epo.loss(batch["old_logprobs"], batch, cfg)
    np.testing.assert_allclose(float(m["loss/entropy"]), -3.5, rtol=1e-6)
    np.testing.assert_allclose(float(m["entropy"]), 3.0, rtol=1e-6)  # the shared metric: token mean


def test_history_state_mean_of_all_steps_or_a_window():
    rows = lambda h: {"mask": jnp.asarray([[1.0, 1.0, 0.0]]), "entropies": jnp.asarray([[h, h, 99.0]])}
    for window, want in ((0, 2.0), (2, 2.5)):
        cfg = epo.Config(window=window)
        st = epo.init_state(cfg)
        assert float(epo.historical_entropy(st, cfg)) == 0.0
        update = jax.jit(lambda s, r, c=cfg: epo.update_state(s, r, c))
        for h in (1.0, 2.0, 3.0):  # masked entropies (99) do not count
            st = update(st, rows(h))
        assert int(st["k"]) == 3
        assert math.isclose(float(epo.historical_entropy(st, cfg)), want, rel_tol=1e-6)


def test_corridor_term_is_additive_over_micro_batches():
    cfg = epo.Config(lam=0.1, alpha=0.2, kappa_l=0.8, kappa_r=1.2)
    rng = np.random.default_rng(0)
    B, T = 4, 6
    mask = (np.arange(T)[None] < rng.integers(1, T + 1, size=(B, 1))).astype(np.float32)
    batch = Batch.from_mapping(
        {
            "tokens": jnp.zeros((B, T), jnp.int32),
            "mask": jnp.asarray(mask),
            "old_logprobs": jnp.asarray(-np.abs(rng.normal(size=(B, T))), jnp.float32),
            "advantages": jnp.asarray(rng.normal(size=B), jnp.float32),
            "num_tokens": jnp.float32(mask.sum()),
            "num_seqs": jnp.float32(B),
            "entropies": jnp.asarray(np.abs(rng.normal(1.0, 0.5, size=(B, T))), jnp.float32),
            "step_ids": jnp.asarray(rng.integers(0, 3, size=(B, T)), jnp.int32),
            "step_rewards": jnp.zeros((B, 3)),
            "entropy_anchor": jnp.ones((B,)),
            "smooth_weight": jnp.full((B,), 1.5),
        }
    )
    lp = batch["old_logprobs"] + 0.1

    @jax.jit
    def loss_and_grad(b, lp_rows):
        f = lambda lp_, e: epo.loss(lp_, b.with_items(entropies=e), cfg)[0]
        return jax.value_and_grad(f, argnums=(0, 1))(lp_rows, b["entropies"])

    loss, (g_lp, g_e) = loss_and_grad(batch, lp)
    rows = (slice(0, 2), slice(2, 4))
    parts = [loss_and_grad(jax.tree.map(lambda x, s=s: x[s] if jnp.ndim(x) else x, batch), lp[s]) for s in rows]
    np.testing.assert_allclose(float(sum(p[0] for p in parts)), float(loss), rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([p[1][1] for p in parts]), g_e, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.concatenate([p[1][0] for p in parts]), g_lp, rtol=1e-5, atol=1e-8)


def test_bad_config_is_one_line_error():
    base = ["model.name=tiny", "algorithm=epo", "train.group_size=2"]
    with pytest.raises(C.ConfigError, match="algo.smooth must be one of"):
        C.apply_overrides(C.default_config(), base + ["algo.smooth=bogus"])
    with pytest.raises(C.ConfigError, match="EPO needs env.rows='episode'"):
        C.apply_overrides(C.default_config(), base + ["env.rows=step"])


def test_trainer_differentiates_full_vocabulary_entropies():
    """The trainer's loss replaces the rollout's (sampler) entropies by the policy's own, from the
    logits, with gradient: NaN entropies in the batch do not reach the loss."""
    cfg = C.resolve_algo(C.apply_overrides(C.default_config(), ["model.name=tiny", "algorithm=epo"]))
    p = policy_lib.Policy.create(cfg)
    trainer_view = types.SimpleNamespace(policy=p, algo=algorithms.get("epo"), cfg=cfg)  # what rl_loss reads
    B, Sp, T = 2, 3, 4
    tokens = jnp.asarray(np.random.default_rng(0).integers(3, 40, size=(B, Sp + T)), jnp.int32)
    attention = jnp.ones((B, Sp + T), jnp.float32)
    batch = one_turn_batch([0.0] * T, 1.0, 1.5)
    batch = jax.tree.map(lambda x: jnp.concatenate([x, x]) if jnp.ndim(x) else x, batch)
    batch = batch.with_items(
        entropies=jnp.full((B, T), jnp.nan), num_seqs=jnp.float32(B), num_tokens=jnp.float32(B * T)
    )
    fn = train.Trainer.rl_loss(trainer_view, T, 1)
    grad_fn = jax.jit(jax.value_and_grad(fn, has_aux=True))
    (loss, metrics), grads = grad_fn(
        state_lib.trainable(p.params, None), {"tokens": tokens, "attention_mask": attention}, batch
    )
    _, want = models.completion_logprobs(p.model(p.params), tokens, attention, T, return_entropy=True)
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(metrics["entropy"]), float(jnp.mean(want)), rtol=1e-5)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert algorithms.get("epo").differentiable_batch_keys == ("entropies",)
