"""GTPO: conflict tokens, entropy gate, state and loss, pinned by the spec's hand-computed case and
a loop-by-loop NumPy port of the definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.algorithms import gtpo

SPEC_IDS = np.array([[5, 7, 9, 2], [5, 7, 3, 2], [5, 8, 9, 2], [5, 7, 9, 2]])
SPEC_ADV = np.array([1.0, -1.0, -1.0, 0.0])


def ref_conflict(ids, mask, adv, g, w, mode):
    """Direct, loop-based reading of the definition."""
    b, t = ids.shape
    lam = np.ones((b, t))
    conf = np.zeros((b, t), bool)
    lengths = mask.sum(1).astype(int)
    for p0 in range(0, b, g):
        rows = range(p0, p0 + g)
        pos = [j for j in rows if adv[j] > 0]
        neg = [j for j in rows if adv[j] < 0]

        def shared_fwd(i, s):
            tok = ids[i, s]
            hit = lambda js: any(s < lengths[j] and ids[j, s] == tok for j in js)
            return hit(pos) and hit(neg)

        def shared_bwd(i, k):
            tok = ids[i, lengths[i] - 1 - k]
            hit = lambda js: any(k < lengths[j] and ids[j, lengths[j] - 1 - k] == tok for j in js)
            return hit(pos) and hit(neg)

        for i in rows:
            if adv[i] == 0:
                continue
            wt = w if adv[i] > 0 else 0.0
            if mode == "any_position":
                for s in range(lengths[i]):
                    if shared_fwd(i, s):
                        conf[i, s] = True
                        lam[i, s] = wt
                continue
            fwd = np.zeros(t, bool)
            for s in range(lengths[i]):
                if not shared_fwd(i, s):
                    break
                fwd[s] = True
            bwd = np.zeros(t, bool)
            for k in range(lengths[i]):
                if not shared_bwd(i, k):
                    break
                bwd[lengths[i] - 1 - k] = True
            conf[i] = fwd | bwd
            lam[i] = np.where(fwd, wt, 1.0) * np.where(bwd, wt, 1.0)
    lam = lam * mask
    return lam, conf, np.maximum(conf.sum(1), 1)


def test_spec_case_prefix_suffix_runs():
    lam, conf, n = gtpo.conflict_weights(jnp.asarray(SPEC_IDS), jnp.ones((4, 4)), jnp.asarray(SPEC_ADV), 4, 2.0)
    np.testing.assert_array_equal(lam, [[4, 4, 4, 4], [0, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(n, [4, 3, 3, 1])
    np.testing.assert_array_equal(conf[3], [False] * 4)


def test_spec_case_any_position():
    lam, _, n = gtpo.conflict_weights(
        jnp.asarray(SPEC_IDS), jnp.ones((4, 4)), jnp.asarray(SPEC_ADV), 4, 2.0, mode="any_position"
    )
    np.testing.assert_array_equal(lam, [[2, 2, 2, 2], [0, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(n, [4, 3, 3, 1])


def test_backward_run_right_aligns_by_own_length():
    # Row 0 (+) ends "... 3 9", row 1 (-) ends "3 9" one token earlier (then padding): the shared
    # suffix is found only after right-aligning each row by its own length.
    ids = jnp.array([[1, 2, 3, 9], [5, 3, 9, 0]])
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]], jnp.float32)
    lam, conf, n = gtpo.conflict_weights(ids, mask, jnp.array([1.0, -1.0]), 2, 2.0)
    np.testing.assert_array_equal(lam, [[1, 1, 2, 2], [1, 0, 0, 0]])
    np.testing.assert_array_equal(conf, [[0, 0, 1, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(n, [2, 2])


@pytest.mark.parametrize("mode", gtpo.CONFLICT_MODES[:2])
def test_conflict_matches_loop_reference(mode):
    rng = np.random.default_rng(0)
    g, p, t = 4, 6, 7
    ids = rng.integers(0, 3, size=(p * g, t))
    lengths = rng.integers(1, t + 1, size=p * g)
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    ids = np.where(mask > 0, ids, 99)  # padding id that never matches a real token
    adv = rng.choice([-1.0, 0.0, 1.0], size=p * g)
    want = ref_conflict(ids, mask, adv, g, 2.0, mode)
    fn = jax.jit(gtpo.conflict_weights, static_argnums=(3, 4, 5))
    got = fn(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(adv), g, 2.0, mode)
    np.testing.assert_allclose(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_entropy_gate_spec_values():
    # Spec: <H> = 0.8 gives A_hat = 0; <H> = 0.5 with A = 1 gives 0.95 (gamma 0.1, tau 0.7, code gate).
    h = jnp.array([0.8, 0.5])
    delta = gtpo.entropy_gate(h, 0.7, None)
    np.testing.assert_allclose(delta * (jnp.array([1.0, 1.0]) - 0.1 * h), [0.0, 0.95], rtol=1e-6)
    # Paper gate: the filter is off when the initial model's entropy is above tau.
    np.testing.assert_array_equal(gtpo.entropy_gate(h, 0.7, 0.9), [1.0, 1.0])
    np.testing.assert_array_equal(gtpo.entropy_gate(h, 0.7, 0.6), [0.0, 1.0])


def _rollout(entropy_rows):
    ent = np.repeat(np.asarray(entropy_rows, np.float32)[:, None], 4, axis=1)
    return {
        "tokens": jnp.asarray(SPEC_IDS),
        "mask": jnp.ones((4, 4)),
        "rewards": jnp.array([1.0, 0.0, 0.0, 0.25]),  # mean 0.3125
        "entropies": jnp.asarray(ent),
        "group_size": 4,
    }


def test_advantages_end_to_end_code_gate():
    cfg = gtpo.Config(entropy_gate="code", conflict_norm=True)
    ro = _rollout([0.5, 0.5, 0.9, 0.5])
    adv, metrics = gtpo.advantages(ro, cfg)
    base = np.array([1.0, 0.0, 0.0, 0.25]) - 0.3125  # signs: +, -, -, - (row 3 is now negative)
    lam, _, n = ref_conflict(SPEC_IDS, np.ones((4, 4)), base, 4, 2.0, "prefix_suffix_runs")
    delta = np.array([1.0, 1.0, 0.0, 1.0])
    shaped = delta * (base - 0.1 * np.array([0.5, 0.5, 0.9, 0.5]))
    np.testing.assert_allclose(adv, shaped[:, None] * lam / n[:, None], rtol=1e-6)
    assert float(metrics["gtpo/frac_entropy_filtered"]) == pytest.approx(0.25)
    assert float(metrics["frac_zero_std_groups"]) == 0.0


def test_paper_gate_state_measures_h_ini_once():
    cfg = gtpo.Config()  # paper gate, h_ini measured from the first batch
    state = gtpo.init_state(cfg)
    assert np.isnan(state["h_ini"])
    ro = _rollout([0.9, 0.9, 0.9, 0.9])  # initial entropy 0.9 > tau: the filter stays off
    adv, m = gtpo.advantages(ro, cfg, state)
    assert float(m["gtpo/frac_entropy_filtered"]) == 0.0
    assert float(m["gtpo/h_ini"]) == pytest.approx(0.9)
    state = gtpo.update_state(state, ro, cfg)
    assert float(state["h_ini"]) == pytest.approx(0.9)
    state = gtpo.update_state(state, _rollout([0.1] * 4), cfg)
    assert float(state["h_ini"]) == pytest.approx(0.9)  # measured once, kept
    # A low initial entropy turns the filter on.
    low = gtpo.update_state(gtpo.init_state(cfg), _rollout([0.5] * 4), cfg)
    _, m = gtpo.advantages(_rollout([0.9, 0.5, 0.5, 0.5]), cfg, low)
    assert float(m["gtpo/frac_entropy_filtered"]) == pytest.approx(0.25)
    # A configured h_ini is the state from the start.
    assert float(gtpo.init_state(gtpo.Config(h_ini=0.3))["h_ini"]) == pytest.approx(0.3)


def test_inactive_completions_get_entropy_shift():
    # Spec ambiguity (d): an A = 0 completion is shifted to -gamma <H>.
    ro = _rollout([0.5] * 4)
    ro["rewards"] = jnp.ones(4)
    adv, _ = gtpo.advantages(ro, gtpo.Config(entropy_gate="code"))
    np.testing.assert_allclose(adv, -0.05 * np.ones((4, 4)), rtol=1e-6)


@pytest.mark.parametrize("aggregation", gtpo.AGG_MODES)
@pytest.mark.parametrize("ratio", gtpo.RATIOS)
def test_loss_value_and_gradient(aggregation, ratio):
    rng = np.random.default_rng(1)
    b, t = 4, 5
    lengths = np.array([5, 3, 4, 1])
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    adv = rng.normal(size=(b, t)).astype(np.float32) * mask
    lp = np.log(rng.uniform(0.1, 0.9, size=(b, t))).astype(np.float32)
    batch = {
        "old_logprobs": jnp.asarray(lp),
        "advantages": jnp.asarray(adv),
        "mask": jnp.asarray(mask),
        "num_tokens": jnp.float32(mask.sum()),
        "num_seqs": jnp.float32(b),
    }
    cfg = gtpo.Config(aggregation=aggregation, ratio=ratio)
    val, metrics = jax.jit(gtpo.loss, static_argnums=2)(jnp.asarray(lp), batch, cfg)
    per_seq = -(adv * mask).sum(1) / lengths  # ratio value 1 on-policy
    want = per_seq.sum() / (b if aggregation == "seq_mean_token_mean" else 1.0)
    np.testing.assert_allclose(val, want, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss/policy"], want, rtol=1e-5)
    grad = jax.grad(lambda x: gtpo.loss(x, batch, cfg)[0])(jnp.asarray(lp))
    want_g = -adv / lengths[:, None] / (b if aggregation == "seq_mean_token_mean" else 1.0)
    np.testing.assert_allclose(grad, want_g * mask, rtol=1e-5, atol=1e-7)


def test_loss_with_kl_and_missing_ref():
    mask = jnp.ones((2, 3))
    batch = {
        "old_logprobs": jnp.zeros((2, 3)) - 1.0,
        "advantages": jnp.zeros(2),
        "mask": mask,
        "num_tokens": 6.0,
        "num_seqs": 2.0,
    }
    cfg = gtpo.Config(beta=0.5)
    with pytest.raises(KeyError, match="ref_logprobs"):
        gtpo.loss(jnp.zeros((2, 3)) - 1.0, batch, cfg)
    batch["ref_logprobs"] = jnp.zeros((2, 3)) - 1.5
    val, m = gtpo.loss(jnp.zeros((2, 3)) - 1.0, batch, cfg)
    k3 = np.exp(-0.5) - 1 + 0.5
    np.testing.assert_allclose(m["kl"], k3, rtol=1e-6)
    np.testing.assert_allclose(val, 0.5 * k3, rtol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="conflict_mode"):
        gtpo.Config(conflict_mode="prefix")
    with pytest.raises(ValueError, match="aggregation"):
        gtpo.Config(aggregation="token_mean")
    ro = _rollout([0.5] * 4)
    del ro["entropies"]
    with pytest.raises(KeyError, match="entropies"):
        gtpo.advantages(ro, gtpo.Config())
    with pytest.raises(ValueError, match="whole groups"):
        gtpo.conflict_weights(jnp.zeros((3, 2), jnp.int32), jnp.ones((3, 2)), jnp.zeros(3), 2)


def test_grpo_settings_reproduce_grpo():
    # No conflict weighting, gamma = 0, no entropy filter, z-scored advantages: the on-policy gradient is GRPO's
    # (beta = 0). The GTPO experiment's baseline runs exactly this.
    from jaxrl_llm.algorithms import grpo

    rng = np.random.default_rng(5)
    g, p, t = 4, 3, 5
    b = g * p
    mask = (np.arange(t)[None] < rng.integers(1, t + 1, size=b)[:, None]).astype(np.float32)
    ro = {
        "tokens": jnp.asarray(rng.integers(0, 3, size=(b, t))),
        "mask": jnp.asarray(mask),
        "rewards": jnp.asarray(rng.integers(0, 2, size=b).astype(np.float32)),
        "entropies": jnp.asarray(rng.uniform(0, 3, size=(b, t)).astype(np.float32)),
        "group_size": g,
    }
    cfg = gtpo.Config(conflict_mode="none", gamma=0.0, tau_h=float("inf"), entropy_gate="code", std_normalize=True)
    gcfg = grpo.Config(beta=0.0)
    old = jnp.asarray(np.log(rng.uniform(0.1, 0.9, size=(b, t))).astype(np.float32))
    common = {"old_logprobs": old, "mask": ro["mask"], "num_tokens": jnp.sum(ro["mask"]), "num_seqs": jnp.float32(b)}
    a_gtpo, _ = gtpo.advantages(ro, cfg)
    a_grpo, _ = grpo.advantages(ro, gcfg)
    grad_gtpo = jax.grad(lambda x: gtpo.loss(x, {**common, "advantages": a_gtpo}, cfg)[0])(old)
    grad_grpo = jax.grad(lambda x: grpo.loss(x, {**common, "advantages": a_grpo}, gcfg)[0])(old)
    np.testing.assert_allclose(grad_gtpo, grad_grpo, rtol=1e-5, atol=1e-7)
