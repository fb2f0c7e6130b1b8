"""IGPO on a masked-diffusion LM (jaxrl_llm/mdlm/igpo.py): the hand-computed cases, invariants and
a one-step smoke test on a tiny random model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrl_llm.mdlm import igpo, sampler
from jaxrl_llm.mdlm import model as mdlm


def test_replacement_hand_case_and_advantages():
    # G = 8, all originals wrong; the inpainted samples 2 and 5 are correct (reward 3.0).
    G, L = 8, 3
    tokens = jnp.zeros((G, L), jnp.int32)
    inp_tokens = jnp.arange(G)[:, None] * jnp.ones((1, L), jnp.int32) + 10
    inp_ok = jnp.zeros(G, bool).at[jnp.array([2, 5])].set(True)
    inp_mask = jnp.zeros((G, L), bool).at[:, 1].set(True)
    out_tok, rewards, correct, mask, replaced = igpo.replace_with_inpainted(
        tokens, jnp.zeros(G), jnp.zeros(G, bool), inp_tokens, 3.0 * inp_ok, inp_ok, inp_mask, G, 4
    )
    np.testing.assert_array_equal(np.asarray(out_tok[:, 0]), [12, 15, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(replaced), [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(mask[:, 1]), [1, 1, 0, 0, 0, 0, 0, 0])
    assert not bool(jnp.any(mask[:, [0, 2]]))
    np.testing.assert_array_equal(np.asarray(correct), [1, 1, 0, 0, 0, 0, 0, 0])
    adv = igpo.advantages(rewards, G)
    np.testing.assert_allclose(np.asarray(adv), [2.25, 2.25] + [-0.75] * 6, rtol=1e-6)


def test_replacement_caps_and_leaves_groups_with_a_correct_sample():
    G = 4
    correct = jnp.array([0, 0, 0, 0, 0, 1, 0, 0], bool)  # group 0 all wrong, group 1 not
    inp_ok = jnp.ones(2 * G, bool)
    tokens = jnp.zeros((2 * G, 1), jnp.int32)
    inp = jnp.arange(2 * G)[:, None] + 100
    out_tok, _, _, _, replaced = igpo.replace_with_inpainted(
        tokens, correct.astype(jnp.float32), correct, inp, inp_ok.astype(jnp.float32), inp_ok,
        jnp.ones((2 * G, 1), bool), G, 2,
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(replaced), [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(out_tok[:, 0]), [100, 101, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(igpo.all_wrong_groups(correct, G)), [True, False])


def test_entropy_filter_hand_case():
    # 10 masked hint positions with entropies 0.1..1.0 keep the 2 highest; 3 masked generated
    # positions are all kept; one unmasked generated position stays out.
    L = 14
    inpaint = jnp.array([True] * 10 + [False] * 4)[None]
    masked = jnp.array([True] * 13 + [False])[None]
    ent = jnp.concatenate([jnp.linspace(0.1, 1.0, 10), jnp.array([0.0, 0.0, 0.0, 5.0])])[None]
    F = igpo.entropy_filter(masked, inpaint, ent, 0.2)
    np.testing.assert_array_equal(np.asarray(F[0]), [0] * 8 + [1, 1] + [1, 1, 1, 0])
    # Fewer than 5 masked hints still keep one (the highest); no hint masked keeps none.
    few = igpo.entropy_filter(masked.at[:, :7].set(False), inpaint, ent, 0.2)
    np.testing.assert_array_equal(np.asarray(few[0, :10]), [0] * 9 + [1])
    assert L == F.shape[1]


def _loss_case(seed=0, B=6, L=5):
    rng = np.random.default_rng(seed)
    lp = jnp.asarray(np.log(rng.uniform(0.05, 1.0, (B, L))), jnp.float32)
    batch = {
        "old_logprobs": lp + jnp.asarray(rng.normal(0, 0.1, (B, L)), jnp.float32),
        "ref_logprobs": lp + jnp.asarray(rng.normal(0, 0.2, (B, L)), jnp.float32),
        "advantages": jnp.asarray(rng.normal(size=B), jnp.float32),
        "mask": jnp.asarray(rng.random((B, L)) < 0.6),
        "canvas_mask": jnp.ones((B, L), bool),
    }
    batch["num_tokens"] = jnp.sum(batch["mask"])
    return lp, batch


def test_sequence_ratio_averages_the_whole_canvas():
    # Row 0: log-ratio 0.3 at a NON-loss position only; the canvas mean is 0.3 / 3 = 0.1.
    lp = jnp.zeros((2, 3))
    batch = {
        "old_logprobs": jnp.array([[0.0, 0.0, -0.3], [0.0, 0.0, 0.0]]),
        "advantages": jnp.array([1.0, -1.0]),
        "mask": jnp.array([[1, 1, 0], [1, 0, 0]], bool),
        "canvas_mask": jnp.ones((2, 3), bool),
        "num_tokens": 3.0,
    }
    cfg = igpo.Config(eps=10.0, beta=0.0)
    got, _ = igpo.loss(lp, batch, cfg)
    s0 = np.exp(0.1)
    np.testing.assert_allclose(float(got), -(2 * s0 * 1.0 + 1 * 1.0 * -1.0) / 3, rtol=1e-6)
    # Clipping at eps = 0.05 caps the positive-advantage row at 1.05.
    got, m = igpo.loss(lp, batch, igpo.Config(eps=0.05, beta=0.0))
    np.testing.assert_allclose(float(got), -(2 * 1.05 - 1.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_frac"]), 2 / 3, rtol=1e-6)


@pytest.mark.parametrize("ratio", ["sequence", "token"])
def test_loss_jit_equals_eager_and_is_partition_invariant(ratio):
    cfg = igpo.Config(ratio=ratio)
    lp, batch = _loss_case()
    eager, _ = igpo.loss(lp, batch, cfg)
    jitted, _ = jax.jit(igpo.loss, static_argnums=2)(lp, batch, cfg)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6)

    def grad(x, b):
        return jax.grad(lambda y: igpo.loss(y, b, cfg)[0])(x)

    parts = [slice(0, 2), slice(2, 6)]
    sub = [(lp[s], {k: (v if k == "num_tokens" else v[s]) for k, v in batch.items()}) for s in parts]
    np.testing.assert_allclose(float(sum(igpo.loss(x, b, cfg)[0] for x, b in sub)), float(eager), rtol=1e-5)
    split = jnp.concatenate([grad(x, b) for x, b in sub])
    np.testing.assert_allclose(np.asarray(split), np.asarray(grad(lp, batch)), rtol=1e-5, atol=1e-7)


def test_kl_term_is_k3_over_loss_positions():
    lp, batch = _loss_case(seed=3)
    with_kl, m = igpo.loss(lp, batch, igpo.Config(beta=0.5))
    without, _ = igpo.loss(lp, batch, igpo.Config(beta=0.0))
    d = np.asarray(batch["ref_logprobs"] - lp)
    k3 = np.sum((np.exp(d) - 1 - d) * np.asarray(batch["mask"])) / float(batch["num_tokens"])
    np.testing.assert_allclose(float(m["kl"]), k3, rtol=1e-5)
    np.testing.assert_allclose(float(with_kl - without), 0.5 * k3, rtol=1e-5)


def test_hint_canvas_reveals_eta_of_the_trace_in_chunks():
    cfg = igpo.Config(reserve_tail=4, max_scale=1.5)
    trace = np.arange(1, 41)  # 40 tokens, canvas 48 - 4 = 44 -> s = 1.1
    rng = np.random.default_rng(0)
    tok, mask = igpo.hint_canvas(trace, 48, 0.5, rng, cfg)
    n = int(mask.sum())
    assert 20 <= n < 20 + cfg.chunk_max
    # Each revealed trace token j sits at floor(1.1 j) (tokens are j + 1 here).
    pos = np.flatnonzero(mask)
    np.testing.assert_array_equal(np.floor((tok[pos] - 1) * 1.1).astype(int), pos)
    none_tok, none_mask = igpo.hint_canvas(trace, 48, 0.0, rng, cfg)
    assert not none_mask.any()
    ratios = igpo.inpaint_ratios(rng, 8, igpo.Config())
    assert np.all(np.diff(ratios) >= 0) and ratios.min() >= 0.2 and ratios.max() <= 0.6


def test_estimation_mask_and_completion_logprobs():
    prompt = jnp.ones((64, 4), jnp.int32)
    completion = jnp.full((64, 6), 2, jnp.int32)
    noisy, masked = igpo.estimation_mask(jax.random.key(0), prompt, completion, 1.0, 0.0, 9)
    assert bool(jnp.all(masked)) and bool(jnp.all(noisy[:, :4] == 1)) and bool(jnp.all(noisy[:, 4:] == 9))
    noisy, masked = igpo.estimation_mask(jax.random.key(1), prompt, completion, 0.5, 0.15, 9)
    assert 0.4 < float(jnp.mean(masked)) < 0.6 and 0.05 < float(jnp.mean(noisy[:, :4] == 9)) < 0.3
    logits = jnp.log(jnp.array([0.5, 0.25, 0.25, 0.0]))[None, None].repeat(3, 1)  # V = 4, id 3 is [MASK]
    lp, ent = igpo.completion_logprobs(logits, jnp.array([[0, 1]]))
    np.testing.assert_allclose(np.asarray(lp), np.log([[0.5, 0.25]]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ent), [[1.5 * np.log(2)] * 2], rtol=1e-5)
    assert np.array_equal(np.asarray(igpo.mask_ratios(jax.random.key(0), igpo.Config())), np.ones(4))
    r = np.asarray(igpo.mask_ratios(jax.random.key(0), igpo.Config(d1_masking=False)))
    assert r.shape == (4,) and r[-1] == pytest.approx(1.0) and np.all(np.diff(r) > 0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="ratio"):
        igpo.Config(ratio="tok")
    with pytest.raises(ValueError, match="eta_low"):
        igpo.Config(eta_low=0.7, eta_high=0.6)


def test_one_igpo_step_on_a_tiny_model():
    """Sample a group, find it all wrong, inpaint hints, replace, estimate log-probs, update."""
    mcfg = mdlm.MDLMConfig(
        vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=2, mask_id=15
    )
    graphdef, params = mdlm.split(mdlm.MaskedDiffusionLM(mcfg, rngs=nnx.Rngs(0)))
    G, L = 4, 8
    cfg = igpo.Config(num_iterations=1, chunk_min=2, chunk_max=3, reserve_tail=0, max_scale=1.0)
    scfg = sampler.SamplerConfig(canvas_len=L, steps=4)
    prompt = jnp.tile(jnp.array([[1, 2, 3]]), (G, 1))
    trace = np.array([4, 5, 6, 7, 8, 9, 10, 11])
    none = jnp.zeros((G, L), jnp.int32)
    canvas, _ = sampler.sample(graphdef, params, prompt, jax.random.key(0), scfg, mcfg.mask_id, none, none > 0)
    # "Correct" = the canvas starts with the trace's first two tokens; force the originals wrong.
    correct = jnp.zeros(G, bool)
    rng = np.random.default_rng(0)
    hints = [
        igpo.hint_canvas(trace, L, eta, rng, cfg)
        for eta in igpo.inpaint_ratios(rng, G, igpo.Config(eta_low=0.5, eta_high=0.9))
    ]
    hint_tok, hint_mask = (jnp.asarray(np.stack(x)) for x in zip(*hints))
    inp, _ = sampler.sample(graphdef, params, prompt, jax.random.key(1), scfg, mcfg.mask_id, hint_tok, hint_mask)
    assert bool(jnp.all(jnp.where(hint_mask, inp == hint_tok, True)))
    inp_ok = jnp.all(inp[:, :2] == jnp.array([[4, 5]]), axis=1) | jnp.array([True, False, False, False])
    comp, rewards, correct, inpaint_mask, replaced = igpo.replace_with_inpainted(
        canvas, correct.astype(jnp.float32), correct, inp, inp_ok.astype(jnp.float32), inp_ok, hint_mask, G, 4
    )
    assert int(replaced.sum()) == int(inp_ok.sum()) >= 1
    adv = igpo.advantages(rewards, G)
    noisy, masked = igpo.estimation_mask(jax.random.key(2), prompt, comp, 1.0, cfg.p_mask_prompt, mcfg.mask_id)

    def logprobs(p):
        return igpo.completion_logprobs(mdlm.apply(graphdef, p, noisy), comp)

    old_lp, ent = logprobs(params)
    F = igpo.entropy_filter(masked, inpaint_mask, ent, cfg.entropy_keep_ratio)
    assert int(F.sum()) < int(masked.sum()) or not bool(inpaint_mask.any())
    batch = {"old_logprobs": old_lp, "ref_logprobs": old_lp, "advantages": adv, "mask": F,
             "canvas_mask": jnp.ones_like(F), "num_tokens": jnp.sum(F)}  # fmt: skip
    opt = optax.sgd(1e-2)

    def objective(p):
        return igpo.loss(logprobs(p)[0], batch, cfg)

    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
    new_params = optax.apply_updates(params, opt.update(grads, opt.init(params), params)[0])
    assert np.isfinite(float(loss)) and float(metrics["kl"]) == 0.0
    assert float(optax.tree.norm(grads)) > 0
    # A small gradient step lowers the loss (the advantage-weighted surrogate rises).
    assert float(objective(new_params)[0]) < float(loss)
