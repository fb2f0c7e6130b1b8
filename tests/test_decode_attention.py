"""The "ragged" decode attention (``jaxrl_llm.kernels.ragged_attention``) against the reference
``backend.Xla.attend`` (values, f32 and bf16; rows of different lengths, left padding, holes, GQA,
several cache indices), that its Pallas kernel reads only each row's own KV blocks, whole
sampling calls on the zoo's ``tiny`` model and a cached session equal to the reference's, and that
``"auto"`` picks it on GPUs and TPUs only. On this CPU the Pallas kernel runs in interpret mode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import kernels, sampling  # noqa: F401  (kernels: registers "cpu" and "ragged")
from jaxrl_llm.kernels import ragged_attention as ra
from jaxrl_llm.models import get_model
from jaxrl_llm.sampling import backend, cached

KERNELS = [ra.RaggedAttention(kernel="pallas", interpret=True), ra.RaggedAttention(kernel="xla")]
TOL = {jnp.float32: 2e-6, jnp.bfloat16: 2e-2}


def _case(B, K, G, Dh, slots, dtype, seed=0):
    """q [B, 1, K*G, Dh], keys [B*K, Dh, slots], values [B*K, slots, Dh] and a valid mask [B, slots]:
    row 0 left-padded with a hole, row 1 full, row 2 one slot, the rest random."""
    rng = np.random.RandomState(seed)
    q = jnp.asarray(2 * rng.randn(B, 1, K * G, Dh), dtype)
    k = jnp.asarray(rng.randn(B * K, Dh, slots), dtype)
    v = jnp.asarray(rng.randn(B * K, slots, Dh), dtype)
    valid = rng.rand(B, slots) < 0.7
    valid[0] = False
    valid[0, 5 : slots - 3] = True
    valid[0, 20:27] = False
    valid[1] = True
    if B > 2:
        valid[2] = False
        valid[2, slots // 2] = True
    return q, k, v, jnp.asarray(valid)


def _allowed(valid, index, G):
    """The reference's mask for one new token at ``index`` ([B, 1, G, Smax], as ``decode_step``)."""
    slots = jnp.arange(valid.shape[1])
    return jnp.tile((slots[None, :] <= index)[None] & valid[:, None, :], (1, G, 1))[:, None]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize(
    "B,K,G,Dh,slots",
    [(4, 2, 3, 32, 80), (3, 8, 4, 64, 64), (2, 1, 1, 16, 48), (5, 2, 16, 16, 96)],
    ids=["gqa3", "llama1b-like", "mha1", "gqa16"],
)
def test_attend_equals_the_reference(B, K, G, Dh, slots, dtype):
    """Every index from the first slot to the last, across block edges, with rows of different
    lengths (left padding, a hole, one slot, a row that sees nothing yet at small indices)."""
    q, k, v, valid = _case(B, K, G, Dh, slots, dtype, seed=B + K + G)
    ref_attend = jax.jit(backend.Xla().attend)
    attends = [jax.jit(be.attend) for be in KERNELS]
    for index in sorted({0, 4, 5, 16, 31, 32, 47, slots // 2, slots - 4, slots - 1}):
        index = jnp.int32(index)
        allowed = _allowed(valid, index, G)
        ref = np.asarray(ref_attend(q, k, v, valid, index, allowed), np.float32)
        for be, attend in zip(KERNELS, attends):
            got = attend(q, k, v, valid, index, allowed)
            assert got.shape == q.shape and got.dtype == q.dtype
            np.testing.assert_allclose(
                np.asarray(got, np.float32), ref, atol=TOL[dtype], rtol=TOL[dtype], err_msg=f"{be.kernel} at {index}"
            )


def test_row_bounds():
    valid = jnp.asarray([[0, 1, 1, 0, 1, 1], [1] * 6, [0, 0, 0, 0, 1, 0], [0] * 6], bool)
    lo, hi, empty = ra.row_bounds(valid, jnp.int32(3))
    np.testing.assert_array_equal(lo, [1, 0, 0, 0])
    np.testing.assert_array_equal(hi, [3, 4, 6, 6])
    np.testing.assert_array_equal(empty, [False, False, True, True])


def test_pallas_kernel_reads_only_each_rows_own_blocks():
    """Keys and values outside a row's KV blocks are NaN: the kernel never loads them (any read
    would turn the row's output into NaN), and its output is the reference's on the clean cache."""
    B, K, G, Dh, slots, index = 3, 2, 2, 16, 128, 100
    q, k, v, valid = _case(B, K, G, Dh, slots, jnp.float32)
    valid = np.zeros((B, slots), bool)
    valid[0, 70:101] = True  # left padding: blocks [64, 112) of 16 slots
    valid[1, 3:40] = True
    valid[1, 60:101] = True  # a hole inside the row's blocks
    valid[2, 100] = True  # the new token only
    valid = jnp.asarray(valid)
    allowed = _allowed(valid, jnp.int32(index), G)
    ref = backend.Xla().attend(q, k, v, valid, jnp.int32(index), allowed)
    assert ra.block_for(slots) == 64
    block = 64
    lo, hi, _ = ra.row_bounds(valid, jnp.int32(index))
    slot = np.arange(slots)
    outside = (slot[None, :] < (np.asarray(lo) // block * block)[:, None]) | (
        slot[None, :] >= (-(-np.asarray(hi) // block) * block)[:, None]
    )  # [B, slots]
    assert outside.sum(1).tolist() == [64, 0, 64]
    outside = np.repeat(outside, K, axis=0)  # [B*K, slots]
    k_dirty = jnp.where(jnp.asarray(outside)[:, None, :], jnp.nan, k)
    v_dirty = jnp.where(jnp.asarray(outside)[:, :, None], jnp.nan, v)
    got = jax.jit(KERNELS[0].attend)(q, k_dirty, v_dirty, valid, jnp.int32(index), allowed)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=2e-6, rtol=2e-6)


def test_falls_back_to_the_reference_where_the_kernels_do_not_apply():
    assert "2 new tokens" in ra.supports("pallas", (1, 2, 4, 16), 64)
    assert "40 cache slots" in ra.supports("xla", (1, 1, 4, 16), 40)
    assert "head_dim 8" in ra.supports("pallas", (1, 1, 4, 8), 64)
    assert ra.supports("xla", (1, 1, 4, 8), 64) is None
    q, k, v, valid = _case(2, 1, 2, 8, 40, jnp.float32)  # 40 slots: no block width divides them
    allowed = _allowed(valid, jnp.int32(30), 2)
    ref = backend.Xla().attend(q, k, v, valid, jnp.int32(30), allowed)
    for be in KERNELS:
        np.testing.assert_array_equal(be.attend(q, k, v, valid, jnp.int32(30), allowed), ref)


# ------------------------------------------------------------------ whole sampling calls
@pytest.fixture(scope="module")
def tiny():
    model, _ = get_model("tiny")
    return model


def _prompts():
    return sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [3]], pad_id=0)


def _right_pad(rows, width):
    tokens, mask = np.zeros((len(rows), width), np.int32), np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)], mask[i, : len(row)] = row, 1
    return tokens, mask


def _assert_same(out, ref):
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_array_equal(out.mask, ref.mask)
    for field in ("logprobs", "policy_logprobs", "entropies"):
        np.testing.assert_allclose(getattr(out, field), getattr(ref, field), atol=2e-5, err_msg=field)


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_sampling_equals_the_reference_on_tiny(tiny, greedy):
    """``sample`` (left-padded prompts of 1-10 tokens, 2 samples each) and ``continue_from``
    (prefixes of different lengths: a gap of invalid slots inside the context)."""
    tokens, mask = _prompts()
    cfg = sampling.SamplingConfig(max_new_tokens=20, greedy=greedy, return_policy_logprobs=True)
    rag, ref = dataclasses.replace(cfg, backend="ragged"), dataclasses.replace(cfg, backend="xla")
    assert sampling.resolve_backend(tiny, rag, 6) == ra.RaggedAttention(kernel="pallas", interpret=True)
    assert ra.supports("pallas", (6, 1, 4, tiny.cfg.head_dim), 48) is None  # the kernel runs, no fallback
    out = sampling.sample(tiny, tokens, mask, jax.random.key(3), rag, num_samples=2)
    _assert_same(out, sampling.sample(tiny, tokens, mask, jax.random.key(3), ref, num_samples=2))
    if not greedy:
        assert np.asarray(out.logprobs).min() < -0.1  # the draws come from spread laws
    prefix, prefix_mask = _right_pad([[20, 21, 22, 23, 24], [], [25]], width=8)
    out = sampling.continue_from(tiny, tokens, mask, prefix, prefix_mask, jax.random.key(4), rag)
    _assert_same(out, sampling.continue_from(tiny, tokens, mask, prefix, prefix_mask, jax.random.key(4), ref))


def test_blocked_xla_formulation_samples_like_the_reference(tiny, monkeypatch):
    """The XLA formulation (the TPU choice) through a whole sampling call."""
    monkeypatch.setattr(ra.RaggedAttention, "for_call", classmethod(lambda cls, mesh: cls(kernel="xla")))
    tokens, mask = _prompts()
    cfg = sampling.SamplingConfig(max_new_tokens=20, return_policy_logprobs=True, backend="ragged")
    assert sampling.resolve_backend(tiny, cfg, 3) == ra.RaggedAttention(kernel="xla")
    ref = sampling.SamplingConfig(max_new_tokens=20, return_policy_logprobs=True, backend="xla")
    _assert_same(
        sampling.sample(tiny, tokens, mask, jax.random.key(5), cfg),
        sampling.sample(tiny, tokens, mask, jax.random.key(5), ref),
    )


def test_a_forked_session_decodes_like_the_reference(tiny):
    """A session with cache holes and rows at different lengths (forked, truncated, extended; an
    inactive row), decoded with the ragged attention: the reference's tokens and log-probs."""
    prompts, pmask = sampling.pad_prompts([[5, 6, 7], [9, 10, 11, 12, 13]], pad_id=0)
    s = cached.prefill(tiny, prompts, pmask)
    _, s = cached.decode(tiny, s, jax.random.key(0), sampling.SamplingConfig(4, backend="xla"))
    s = cached.truncate(cached.fork(s, [0, 1], 2), [4, 5, 6, 7])
    s = cached.extend(tiny, s, *_right_pad([[20], [21, 22], [], [23]], width=2))
    active = np.array([True, True, False, True])
    outs = {
        name: cached.decode(
            tiny,
            s,
            jax.random.key(3),
            sampling.SamplingConfig(6, return_policy_logprobs=True, backend=name),
            active=active,
        )[0]
        for name in ("xla", "ragged")
    }
    np.testing.assert_array_equal(outs["ragged"].tokens, outs["xla"].tokens)
    np.testing.assert_array_equal(outs["ragged"].lengths, [6, 6, 0, 6])
    np.testing.assert_allclose(outs["ragged"].policy_logprobs, outs["xla"].policy_logprobs, atol=2e-5)


# ------------------------------------------------------------------ which backend "auto" picks
def test_auto_picks_it_on_gpus_and_tpus_only(tiny, monkeypatch):
    cfg = sampling.SamplingConfig(max_new_tokens=4)
    bf16 = tiny.cfg.replace(dtype="bfloat16")
    assert sampling.resolve_backend(tiny, cfg, 2).name in ("cpu", "xla")  # this CPU: unchanged
    assert backend.resolve("auto", bf16, None, 2) == backend.Xla()
    assert not ra.RaggedAttention.picked_by_auto(tiny.cfg, None, 2)
    for platform, kernel in (("gpu", "pallas"), ("tpu", "xla")):
        monkeypatch.setattr(ra, "_platform", lambda mesh, p=platform: p)
        assert backend.resolve("auto", bf16, None, 2) == ra.RaggedAttention(kernel=kernel, interpret=False)
    monkeypatch.setattr(ra, "_platform", lambda mesh: "cpu")
    assert backend.resolve("ragged", bf16, None, 2) == ra.RaggedAttention(kernel="pallas", interpret=True)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32], ids=["bf16", "f32"])
def test_kernels_lower_for_their_accelerators(dtype):
    """No GPU or TPU here: the Pallas kernel lowers to a Triton call for a CUDA device and the XLA
    formulation for a TPU, at the 1B decode shape (64 rows, 8 kv heads of 4 query heads, 208 slots)."""
    B, K, G, Dh, slots = 64, 8, 4, 64, 208
    args = (
        jax.ShapeDtypeStruct((B * K, G, Dh), dtype),
        jax.ShapeDtypeStruct((B * K, Dh, slots), dtype),
        jax.ShapeDtypeStruct((B * K, slots, Dh), dtype),
        jax.ShapeDtypeStruct((B, slots), jnp.bool_),
        jax.ShapeDtypeStruct((), jnp.int32),
    )
    pallas = jax.jit(lambda *a: ra.pallas_attention(*a, interpret=False))
    text = pallas.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert "xla.gpu.triton" in text and "ragged_decode_attention" in text
    jax.jit(ra.blocked_attention).trace(*args).lower(lowering_platforms=("tpu",))
