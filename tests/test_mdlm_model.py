"""The masked-diffusion LM (jaxrl_llm/mdlm/model.py) and its sampler (jaxrl_llm/mdlm/sampler.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm.mdlm import data as mdata
from jaxrl_llm.mdlm import model as mdlm
from jaxrl_llm.mdlm import sampler

TINY = mdlm.MDLMConfig(
    vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=2, mask_id=15
)


def tiny_model(seed=0):
    return mdlm.split(mdlm.MaskedDiffusionLM(TINY, rngs=nnx.Rngs(seed)))


def _numpy_diffusion_loss(logits, targets, masked, t, num_tokens):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    total = 0.0
    for b in range(logits.shape[0]):
        for i in range(logits.shape[1]):
            if masked[b, i]:
                total += -logp[b, i, targets[b, i]] / t[b]
    return total / num_tokens


def _loss_case(seed=0, B=4, S=6, V=7):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, S, V)).astype(np.float32)
    targets = rng.integers(0, V, size=(B, S))
    masked = rng.random((B, S)) < 0.5
    t = rng.uniform(0.1, 1.0, size=B).astype(np.float32)
    return logits, targets, masked, t


def test_diffusion_loss_matches_numpy_reference():
    logits, targets, masked, t = _loss_case()
    got = mdlm.diffusion_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(masked), jnp.asarray(t), 24.0)
    np.testing.assert_allclose(float(got), _numpy_diffusion_loss(logits, targets, masked, t, 24.0), rtol=1e-5)


def test_diffusion_loss_hand_case():
    # One masked token with uniform logits over V=4, t=0.5, N=2: (log 4 / 0.5) / 2 = log 4.
    logits = jnp.zeros((1, 2, 4))
    got = mdlm.diffusion_loss(logits, jnp.array([[1, 2]]), jnp.array([[True, False]]), jnp.array([0.5]), 2.0)
    np.testing.assert_allclose(float(got), np.log(4.0), rtol=1e-6)


def test_diffusion_loss_jit_equals_eager_and_partition_invariant():
    logits, targets, masked, t = _loss_case(seed=1, B=6)
    args = tuple(jnp.asarray(a) for a in (logits, targets, masked, t))
    n = 36.0
    eager = mdlm.diffusion_loss(*args, n)
    np.testing.assert_allclose(float(jax.jit(mdlm.diffusion_loss)(*args, n)), float(eager), rtol=1e-6)

    def grad(lg, tg, m, tt):
        return jax.grad(lambda x: mdlm.diffusion_loss(x, tg, m, tt, n))(lg)

    full = grad(*args)
    parts = [sum(mdlm.diffusion_loss(*(a[s] for a in args), n) for s in (slice(0, 2), slice(2, 6)))]
    np.testing.assert_allclose(float(parts[0]), float(eager), rtol=1e-5)
    split_grad = jnp.concatenate([grad(*(a[s] for a in args)) for s in (slice(0, 2), slice(2, 6))])
    np.testing.assert_allclose(np.asarray(split_grad), np.asarray(full), rtol=1e-5, atol=1e-7)


def test_forward_noise_masks_only_maskable_positions_at_rate_t():
    tokens = jnp.ones((512, 40), jnp.int32)
    maskable = jnp.broadcast_to(jnp.arange(40) >= 10, (512, 40))
    noisy, masked, t = mdlm.forward_noise(jax.random.key(0), tokens, maskable, mask_id=15)
    assert not bool(jnp.any(masked[:, :10]))
    assert bool(jnp.all((noisy == 15) == masked))
    assert float(t.min()) > 0.0 and float(t.max()) <= 1.0
    # Per-row masked fraction tracks t (30 Bernoulli draws a row; average over rows).
    frac = jnp.mean(masked[:, 10:], axis=1)
    assert abs(float(jnp.mean(frac - t))) < 0.02


def test_model_is_bidirectional_and_never_predicts_mask():
    graphdef, params = tiny_model()
    tokens = jnp.array([[1, 2, 3, 4, 5, 6]])
    changed = tokens.at[0, 5].set(9)
    a, b = mdlm.apply(graphdef, params, tokens), mdlm.apply(graphdef, params, changed)
    # A causal model's position 0 could not see position 5.
    assert float(jnp.max(jnp.abs(a[0, 0, : TINY.mask_id] - b[0, 0, : TINY.mask_id]))) > 1e-6
    assert bool(jnp.all(jnp.isneginf(a[..., TINY.mask_id])))


# ----------------------------------------------------------------------------- sampler


def test_transfer_count_and_top_k():
    np.testing.assert_array_equal(
        sampler.transfer_count(jnp.array([8, 7, 1, 0]), jnp.array([4, 4, 1, 3])), [2, 2, 1, 0]
    )
    conf = jnp.array([[0.1, 0.9, -jnp.inf, 0.5], [0.3, 0.2, 0.1, 0.0]])
    np.testing.assert_array_equal(
        sampler.select_top_k(conf, jnp.array([2, 3])), [[False, True, False, True], [True, True, True, False]]
    )
    # -inf entries are never chosen, even when k asks for more.
    assert int(sampler.select_top_k(conf, jnp.array([4, 0]))[0].sum()) == 3


def test_sampler_unmasks_exactly_k_per_step():
    graphdef, params = tiny_model()
    cfg = sampler.SamplerConfig(canvas_len=8, steps=4, temperature=1.0)
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    canvas, filled = sampler.sample(graphdef, params, prompt, jax.random.key(0), cfg, TINY.mask_id)
    assert not bool(jnp.any(canvas == TINY.mask_id))
    for s in range(4):
        np.testing.assert_array_equal(np.sum(np.asarray(filled) == s, axis=1), [2, 2])


def test_sampler_keeps_inpainted_tokens_and_spreads_the_rest():
    graphdef, params = tiny_model(1)
    cfg = sampler.SamplerConfig(canvas_len=8, steps=3, temperature=1.0)
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    hint_mask = jnp.array([[0, 1, 1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0]], bool)
    hint_tok = jnp.full((2, 8), 7)
    canvas, filled = sampler.sample(graphdef, params, prompt, jax.random.key(3), cfg, TINY.mask_id, hint_tok, hint_mask)
    canvas, filled = np.asarray(canvas), np.asarray(filled)
    np.testing.assert_array_equal(canvas[0][np.asarray(hint_mask[0])], [7, 7, 7])
    np.testing.assert_array_equal(filled[0][np.asarray(hint_mask[0])], [-1, -1, -1])
    assert not np.any(canvas == TINY.mask_id)
    # Row 0 has 5 free positions over 3 steps: 2, 2, 1; row 1 has 8: 3, 3, 2.
    np.testing.assert_array_equal([np.sum(filled[0] == s) for s in range(3)], [2, 2, 1])
    np.testing.assert_array_equal([np.sum(filled[1] == s) for s in range(3)], [3, 3, 2])


def test_sampler_blocks_fill_left_to_right():
    graphdef, params = tiny_model(2)
    cfg = sampler.SamplerConfig(canvas_len=8, steps=4, block_length=4, temperature=0.0)
    _, filled = sampler.sample(graphdef, params, jnp.array([[1, 2]]), jax.random.key(0), cfg, TINY.mask_id)
    filled = np.asarray(filled)[0]
    assert set(filled[:4]) == {0, 1} and set(filled[4:]) == {2, 3}


def test_sampler_greedy_fills_most_confident_first_and_jit_equals_eager():
    graphdef, params = tiny_model(4)
    cfg = sampler.SamplerConfig(canvas_len=6, steps=6, temperature=0.0)
    prompt = jnp.array([[1, 2, 3]])
    canvas, filled = sampler.sample(graphdef, params, prompt, jax.random.key(0), cfg, TINY.mask_id)
    # Step 0 fills the masked position whose argmax probability is the largest.
    logits = mdlm.apply(graphdef, params, jnp.concatenate([prompt, jnp.full((1, 6), TINY.mask_id)], axis=1))[0, 3:]
    first = int(jnp.argmax(jnp.max(jax.nn.softmax(logits, -1), -1)))
    assert int(np.flatnonzero(np.asarray(filled)[0] == 0)[0]) == first
    assert int(canvas[0, first]) == int(jnp.argmax(logits[first]))
    with jax.disable_jit():
        canvas_e, filled_e = sampler.sample(graphdef, params, prompt, jax.random.key(0), cfg, TINY.mask_id)
    np.testing.assert_array_equal(np.asarray(canvas_e), np.asarray(canvas))
    np.testing.assert_array_equal(np.asarray(filled_e), np.asarray(filled))


def test_sampler_rejects_bad_config_and_shapes():
    with pytest.raises(ValueError, match="block_length"):
        sampler.SamplerConfig(canvas_len=8, steps=4, block_length=3)
    with pytest.raises(ValueError, match="steps"):
        sampler.SamplerConfig(canvas_len=8, steps=3, block_length=4)
    graphdef, params = tiny_model()
    cfg = sampler.SamplerConfig(canvas_len=8, steps=4)
    with pytest.raises(ValueError, match="inpaint_mask"):
        sampler.sample(
            graphdef,
            params,
            jnp.ones((1, 2), jnp.int32),
            jax.random.key(0),
            cfg,
            15,
            jnp.zeros((1, 7), jnp.int32),
            jnp.zeros((1, 7), bool),
        )


# ----------------------------------------------------------------------------- data


def test_partial_sums_canvas_round_trip_and_reward():
    d = mdata.PartialSumsCanvas(prompt_len=12, canvas_len=48, max_digits=1)
    task = d.task()
    examples = [task.train_example(i) for i in range(4)]
    prompts, answers = d.arrays(examples)
    assert prompts.shape == (4, 12) and answers.shape == (4, 48)
    texts = [mdata.decode_answer(a) for a in answers]
    assert texts[0] == examples[0].metadata["demonstration"]
    np.testing.assert_array_equal(mdata.correctness(task, texts, examples), [True] * 4)
    # reasoning-gym gives partial credit to a wrong answer that contains the reference (0.5 for a
    # sign error here): still not correct.
    assert examples[0].answer == "2"
    assert task.reward_fns[0][0]("<answer>-2</answer>", examples[0]) == 0.5
    np.testing.assert_array_equal(
        mdata.correctness(
            task, ["<answer>-2</answer>", "<answer>999</answer>", "<answer>2.0</answer>"], examples[:1] * 3
        ),
        [False, False, True],
    )
    with pytest.raises(ValueError, match="not in the synthetic tokenizer"):
        mdata.encode("é")
