"""The cache-carrying sampler (``sampling.cached``): extend == re-prefill, fork + decode == decode
from a re-prefilled prefix, log-probs == the trainer's recomputation, top-k log-probs, stops,
inactive rows, bounded compiles, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import kernels, sampling
from jaxrl_llm.models import Decoder, ModelConfig, completion_logprobs, positions_from_mask
from jaxrl_llm.sampling import cached

CFG = ModelConfig(
    vocab_size=48,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    architecture="llama",
)
SCFG = sampling.SamplingConfig(max_new_tokens=6, return_policy_logprobs=True, backend="xla")


@pytest.fixture(scope="module")
def model():
    m = Decoder(CFG, rngs=nnx.Rngs(0))
    m.lm_head[...] = m.lm_head[...] * 30.0  # far from uniform next-token distributions
    return m


@jax.jit
def last_logits(model, tokens, mask):
    """Uncached full forward; the logits at each row's last real token [B, V]."""
    logits = model(tokens, positions_from_mask(mask), mask)[0]
    last = tokens.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)
    return jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]


def right_pad(rows, width=None):
    width = width or max(len(r) for r in rows)
    t = np.zeros((len(rows), width), np.int32)
    m = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        t[i, : len(r)], m[i, : len(r)] = r, 1
    return t, m


def test_extend_equals_a_full_re_prefill(model):
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12, 13], [3]], pad_id=0)
    session = cached.prefill(model, prompts, pmask)
    np.testing.assert_allclose(session.logits, last_logits(model, prompts, pmask), atol=1e-4, rtol=1e-4)
    new = [[20, 21], [], [30, 31, 32, 33]]  # row 1 appends nothing
    t, m = right_pad(new, 5)
    extended = cached.extend(model, session, t, m)
    np.testing.assert_array_equal(extended.lengths, [5, 5, 5])
    full, fmask = sampling.pad_prompts([[5, 6, 7, 20, 21], [9, 10, 11, 12, 13], [3, 30, 31, 32, 33]], pad_id=0)
    np.testing.assert_allclose(extended.logits, last_logits(model, full, fmask), atol=1e-4, rtol=1e-4)
    # a second extension, then decoding: greedy tokens equal those from the re-prefilled context
    t2, m2 = right_pad([[40], [41, 42], [43]])
    twice = cached.extend(model, extended, t2, m2)
    full2, fmask2 = sampling.pad_prompts(
        [[5, 6, 7, 20, 21, 40], [9, 10, 11, 12, 13, 41, 42], [3, 30, 31, 32, 33, 43]], pad_id=0
    )
    np.testing.assert_allclose(twice.logits, last_logits(model, full2, fmask2), atol=1e-4, rtol=1e-4)


def test_decode_from_prefill_equals_the_reference_sampler(model):
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12, 13], [3]], pad_id=0)
    key = jax.random.key(3)
    out, _ = cached.decode(model, cached.prefill(model, prompts, pmask), key, SCFG)
    ref = sampling.sample(model, prompts, pmask, key, SCFG)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-4)
    np.testing.assert_allclose(out.policy_logprobs, ref.policy_logprobs, atol=1e-4)


def test_fork_and_decode_equals_decoding_a_re_prefilled_prefix(model):
    """Children forked from a parent's session sample the tokens that decoding from a fresh
    prefill of [prompt | parent's segment] samples with the same key: the parent's cache is the
    context, nothing is lost or recomputed."""
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12]], pad_id=0)
    seg_cfg = sampling.SamplingConfig(max_new_tokens=4, return_policy_logprobs=True, backend="xla")
    seg, parent = cached.decode(model, cached.prefill(model, prompts, pmask), jax.random.key(0), seg_cfg)
    assert (np.asarray(seg.lengths) == 4).all()  # no stop tokens configured
    children = cached.fork(parent, [0, 1], k=3)
    key = jax.random.key(7)
    out, _ = cached.decode(model, children, key, SCFG)
    contexts = [
        [5, 6, 7] + np.asarray(seg.tokens[0]).tolist(),
        [9, 10, 11, 12] + np.asarray(seg.tokens[1]).tolist(),
    ]
    ctx, cmask = sampling.pad_prompts([c for c in contexts for _ in range(3)], pad_id=0)
    ref, _ = cached.decode(model, cached.prefill(model, ctx, cmask), key, SCFG)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.policy_logprobs, ref.policy_logprobs, atol=1e-4)
    # and the sampled log-probs equal the trainer's recomputation over [prompt | segment | new]
    full = np.concatenate([np.asarray(ctx), np.asarray(out.tokens)], axis=1)
    fmask = np.concatenate([np.asarray(cmask), np.asarray(out.mask, np.int32)], axis=1)
    recomputed = completion_logprobs(model, jnp.asarray(full), jnp.asarray(fmask), 6, chunk_size=None)
    m = np.asarray(out.mask)
    np.testing.assert_allclose(np.asarray(recomputed) * m, np.asarray(out.logprobs) * m, atol=1e-4)
    assert np.isclose(np.asarray(out.logprobs), np.asarray(out.policy_logprobs), atol=1e-5).all()


def test_stops_inactive_rows_and_top_k_logprobs(model):
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10], [3, 4]], pad_id=0)
    session = cached.prefill(model, prompts, pmask)
    probe, _ = cached.decode(model, session, jax.random.key(1), SCFG)
    stop = int(probe.tokens[0, 1])  # row 0 emits it at step 1
    cfg = sampling.SamplingConfig(max_new_tokens=6, stop_token_ids=(stop,), pad_id=0, backend="xla")
    out, after = cached.decode(model, session, jax.random.key(1), cfg, active=[True, True, False], top_logprobs=3)
    assert int(out.lengths[0]) == 2 and int(out.stop_reason[0]) == sampling.STOP_TOKEN
    assert int(out.lengths[2]) == 0 and int(out.stop_reason[2]) == cached.STOP_NONE
    assert not np.asarray(out.mask[2]).any()
    np.testing.assert_array_equal(after.lengths, np.asarray(session.lengths) + np.asarray(out.lengths))
    np.testing.assert_allclose(after.logits[2], session.logits[2])  # an inactive row is untouched
    # top-k: the k largest log pi at each sampled step, descending, 0 off the mask
    logp = np.asarray(jax.nn.log_softmax(session.logits[0]))
    np.testing.assert_array_equal(out.top_ids[0, 0], np.argsort(-logp)[:3])
    np.testing.assert_allclose(out.top_logprobs[0, 0], np.sort(logp)[::-1][:3], atol=1e-5)
    assert (np.diff(np.asarray(out.top_logprobs[:2, 0]), axis=-1) <= 0).all()
    assert not np.asarray(out.top_logprobs[2]).any()
    # the session after a stop continues from the row's last real token (the stop token)
    full, fmask = sampling.pad_prompts([[5, 6, 7] + np.asarray(out.tokens[0, :2]).tolist()], pad_id=0)
    np.testing.assert_allclose(after.logits[:1], last_logits(model, full, fmask), atol=1e-4, rtol=1e-4)


def test_equal_buckets_do_not_recompile(model):
    cfg = sampling.SamplingConfig(max_new_tokens=3, backend="xla")
    for n in (3, 5, 9):  # all prompts in the 16 bucket
        t, m = sampling.pad_prompts([list(range(1, n + 1)), [4]], pad_id=0, bucket=16)
        s = cached.prefill(model, t, m)
        _, s = cached.decode(model, cached.fork(s, [0, 1], 2), jax.random.key(n), cfg)
        if n == 3:
            before = cached.compile_count()
    assert cached.compile_count() == before


@pytest.mark.skipif(not kernels.cpu_matmul.available(), reason="the CPU kernels did not build here")
def test_cpu_kernels_decode_a_forked_session_like_the_reference():
    """The CPU decode backend over a forked, truncated and extended session (cache holes, rows at
    different lengths) samples the reference's tokens; the kernels need 16-multiple head dims."""
    cfg = CFG.replace(vocab_size=128, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=4, head_dim=16)
    m = Decoder(cfg, rngs=nnx.Rngs(1))
    m.lm_head[...] = m.lm_head[...] * 10.0
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12, 13]], pad_id=0)
    s = cached.prefill(m, prompts, pmask)
    _, s = cached.decode(m, s, jax.random.key(0), sampling.SamplingConfig(4, backend="xla"))
    s = cached.truncate(cached.fork(s, [0, 1], 2), [4, 5, 6, 7])
    t, mk = right_pad([[20], [21, 22], [], [23]])
    s = cached.extend(m, s, t, mk)
    outs = {
        name: cached.decode(
            m, s, jax.random.key(3), sampling.SamplingConfig(6, return_policy_logprobs=True, backend=name)
        )[0]
        for name in ("xla", "cpu")
    }
    assert cached.backends.resolve("cpu", cfg, None, 4).name == "cpu"
    np.testing.assert_array_equal(outs["cpu"].tokens, outs["xla"].tokens)
    np.testing.assert_allclose(outs["cpu"].policy_logprobs, outs["xla"].policy_logprobs, atol=1e-4)


def test_bad_inputs_raise_clear_errors(model):
    t, m = sampling.pad_prompts([[1, 2]], pad_id=0)
    with pytest.raises(ValueError, match="no real token"):
        cached.prefill(model, t, np.zeros_like(m))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        cached.prefill(model, np.full_like(t, 99), m)
    s = cached.prefill(model, t, m)
    with pytest.raises(ValueError, match="rows must lie in"):
        cached.fork(s, [1])
    with pytest.raises(ValueError, match="active has 2 entries"):
        cached.decode(model, s, jax.random.key(0), SCFG, active=[True, False])
    with pytest.raises(ValueError, match="tokens have 2 rows"):
        cached.extend(model, s, np.ones((2, 3), np.int32), np.ones((2, 3), np.int32))
