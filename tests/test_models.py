"""The model core: completion log-probs / entropies, RoPE settings, KV cache, config validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jaxrl_llm.models import Decoder, KVCache, ModelConfig, completion_logprobs, positions_from_mask, rope

CFG = ModelConfig(
    vocab_size=61,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    architecture="qwen3",
    tie_word_embeddings=False,
)


@pytest.fixture(scope="module")
def model():
    m = Decoder(CFG, rngs=nnx.Rngs(0))
    # Larger weights than the 0.02 init so that the softmax is far from uniform.
    for name, var in m.layers.items():
        if name.startswith("w"):
            var[...] = var[...] * 10
    m.lm_head[...] = m.lm_head[...] * 30
    return m


def _batch():
    rng = np.random.RandomState(0)
    tokens = rng.randint(0, CFG.vocab_size, (3, 13)).astype(np.int32)
    mask = np.ones((3, 13), np.int32)
    mask[0, :3] = 0  # left-padded prompt
    mask[1, -2:] = 0  # right-padded completion
    return jnp.asarray(tokens), jnp.asarray(mask)


def _forward(model, tokens, positions, mask=None, cache=None):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a[:3], cache=a[3]))(state, tokens, positions, mask, cache)


def _reference(model, tokens, mask, T):
    """NumPy log_softmax / entropy over the full logits."""
    logits, _ = _forward(model, tokens, positions_from_mask(mask), mask)
    logits = np.asarray(logits, np.float64)
    S = tokens.shape[1]
    lg = logits[:, S - T - 1 : S - 1]
    lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
    logp_all = lg - lse[..., None]
    logp = np.take_along_axis(logp_all, np.asarray(tokens)[:, S - T :, None], -1)[..., 0]
    entropy = -(np.exp(logp_all) * logp_all).sum(-1)
    return logp, entropy


@pytest.mark.parametrize("chunk_size", [None, 128, 4, 1])  # unchunked, one chunk, a remainder, per token
def test_completion_logprobs_and_entropy_match_numpy(model, chunk_size):
    tokens, mask = _batch()
    T = 6
    expect_logp, expect_ent = _reference(model, tokens, mask, T)
    fn = jax.jit(lambda t, m: completion_logprobs(model, t, m, T, return_entropy=True, chunk_size=chunk_size))
    logp, ent = fn(tokens, mask)
    assert logp.shape == ent.shape == (3, T) and logp.dtype == ent.dtype == jnp.float32
    np.testing.assert_allclose(logp, expect_logp, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ent, expect_ent, atol=1e-5, rtol=1e-5)
    assert expect_ent.std() > 0.1  # the check has teeth: entropies differ across tokens
    only_logp = jax.jit(lambda t, m: completion_logprobs(model, t, m, T, chunk_size=chunk_size))(tokens, mask)
    np.testing.assert_allclose(only_logp, logp, atol=1e-6)


def test_chunked_gradients_equal_unchunked(model):
    tokens, mask = _batch()
    T = 7
    graphdef, params = nnx.split(model)
    weights = jnp.asarray(np.random.RandomState(1).randn(3, T), jnp.float32)

    def loss(p, chunk):
        m = nnx.merge(graphdef, p)
        logp, ent = completion_logprobs(m, tokens, mask, T, return_entropy=True, chunk_size=chunk)
        return jnp.sum(weights * (logp + 0.1 * ent))

    g_full = jax.jit(jax.grad(lambda p: loss(p, None)))(params)
    g_chunk = jax.jit(jax.grad(lambda p: loss(p, 3)))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), g_full, g_chunk)
    assert float(jnp.abs(g_full["lm_head"][...]).max()) > 0


def test_left_padding_does_not_change_logits(model):
    tokens, _ = _batch()
    row = tokens[:1, 3:]
    plain, _ = _forward(model, row, jnp.arange(10)[None])
    padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), row], 1)
    mask = jnp.asarray([[0] * 3 + [1] * 10])
    out, _ = _forward(model, padded, positions_from_mask(mask), mask)
    np.testing.assert_allclose(out[:, 3:], plain, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- RoPE
@pytest.mark.parametrize(
    "params",
    [
        {"rope_type": "default", "rope_theta": 1e4},
        {"rope_type": "linear", "rope_theta": 1e4, "factor": 4.0},
        {
            "rope_type": "llama3",
            "rope_theta": 5e5,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 256},
        {
            "rope_type": "yarn",
            "rope_theta": 1e4,
            "factor": 8.0,
            "original_max_position_embeddings": 128,
            "beta_fast": 16.0,
            "beta_slow": 2.0,
            "truncate": False,
        },
        {
            "rope_type": "yarn",
            "rope_theta": 1e4,
            "factor": 8.0,
            "original_max_position_embeddings": 128,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
        },
        {
            "rope_type": "yarn",
            "rope_theta": 1e4,
            "factor": 2.0,
            "original_max_position_embeddings": 512,
            "attention_factor": 1.3,
        },
    ],
)
def test_rope_inverse_frequencies_match_transformers(params):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hc = transformers.LlamaConfig(
        hidden_size=256, num_attention_heads=2, rope_parameters=dict(params), max_position_embeddings=1024
    )
    kind = params["rope_type"]
    if kind == "default":
        expect = 1.0 / (params["rope_theta"] ** (torch.arange(0, 128, 2).float() / 128))
        expect_scale = 1.0
    else:
        expect, expect_scale = ROPE_INIT_FUNCTIONS[kind](hc, "cpu")
    scaling = rope.RopeScaling.from_hf(params)
    assert (scaling is None) == (kind == "default")
    ours = rope.inverse_frequencies(128, params["rope_theta"], scaling)
    np.testing.assert_allclose(ours, expect.numpy(), rtol=1e-6)
    assert (1.0 if scaling is None else scaling.attention_scale) == pytest.approx(expect_scale, rel=1e-12)
    if kind == "yarn":  # cos / sin carry YaRN's attention factor, as transformers' rotary embedding
        cos, sin = rope.cos_sin(jnp.asarray([[0, 3]]), 128, params["rope_theta"], scaling)
        np.testing.assert_allclose(cos[0, 0], expect_scale, rtol=1e-6)
        assert expect_scale != 1.0


@pytest.mark.parametrize(
    "params, error, message",
    [
        (
            {"rope_type": "dynamic", "factor": 2.0},
            NotImplementedError,
            r"rope_parameters\.rope_type='dynamic'.*sequence length",
        ),
        ({"rope_type": "longrope", "factor": 2.0}, NotImplementedError, "rope_type='longrope'"),
        (
            {"rope_type": "su"},
            NotImplementedError,
            r"rope_type='su' is not supported; supported: default, linear, llama3, yarn",
        ),
        (
            {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 64},
            ValueError,
            "rope_parameters: rope_type 'llama3' needs 'high_freq_factor'",
        ),
        (
            {"rope_type": "linear", "factor": 2.0, "low_freq_factor": 1.0},
            ValueError,
            r"unexpected keys \['low_freq_factor'\] for rope_type 'linear'",
        ),
        ({"rope_type": "linear", "factor": "2"}, ValueError, "factor='2' must be a number"),
        ({"rope_type": "linear", "factor": 0.0}, ValueError, "factor=0.0 must be > 0"),
        ({"rope_type": "default", "factor": 2.0}, ValueError, r"unexpected keys \['factor'\] for rope_type 'default'"),
        ({"rope_type": "default", "partial_rotary_factor": 0.5}, NotImplementedError, "partial_rotary_factor=0.5"),
    ],
)
def test_unsupported_or_malformed_rope_scaling_is_named(params, error, message):
    with pytest.raises(error, match=message):
        rope.RopeScaling.from_hf(params)


def test_rope_scaling_round_trips_the_keys_it_read():
    params = {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32, "truncate": False}
    scaling = rope.RopeScaling.from_hf({**params, "rope_theta": 1e6})
    assert scaling.to_hf() == params and isinstance(scaling.factor, float)
    assert rope.RopeScaling.from_hf({"type": "linear", "factor": 2.0}).to_hf() == {"rope_type": "linear", "factor": 2.0}
    # As transformers: llama3 / yarn fall back to max_position_embeddings for the original length.
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    assert rope.RopeScaling.from_hf(llama3, max_position_embeddings=99).original_max_position_embeddings == 99


# ------------------------------------------------------------------------- config hashing
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def test_config_is_hashable_with_every_field_set():
    """The config is hashed under jit (it is part of the model's graph definition): a dict-valued
    rope_scaling used to make ``sampling.sample`` fail with ``unhashable type: 'dict'``."""
    cfg = CFG.replace(rope_scaling=dict(LLAMA3), eos_token_id=[2, 5], bos_token_id=1, pad_token_id=0)
    assert isinstance(cfg.rope_scaling, rope.RopeScaling) and cfg.eos_token_id == (2, 5)
    assert hash(cfg) == hash(
        CFG.replace(rope_scaling=rope.RopeScaling(**LLAMA3), eos_token_id=(2, 5), bos_token_id=1, pad_token_id=0)
    )
    m = Decoder(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(m)
    hash(graphdef)
    tokens = jnp.zeros((1, 4), jnp.int32)
    logits, _ = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t, jnp.arange(4)[None]))(state, tokens)
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"bos_token_id": [1, 2]}, r"bos_token_id=\[1, 2\]; expected an int or None"),
        ({"eos_token_id": 2.5}, r"eos_token_id=2.5; expected an int, a list of ints or None"),
        ({"rope_scaling": ("llama3", 8.0)}, "rope_scaling=.*expected None, a rope.RopeScaling or a dict"),
        ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, r"rope_scaling\.rope_type='dynamic'"),
        ({"rms_norm_eps": [1e-6]}, r"ModelConfig\.rms_norm_eps=\[1e-06\] is not hashable"),
    ],
)
def test_config_rejects_unhashable_or_unsupported_fields(changes, message):
    with pytest.raises((ValueError, NotImplementedError), match=message):
        CFG.replace(**changes)


# ------------------------------------------------------------------------------ KV cache
def test_cache_take_rows_and_truncate(model):
    tokens, mask = _batch()
    pos = positions_from_mask(mask)
    cache = model.init_cache(3, 16)
    _, cache = _forward(model, tokens[:, :8], pos[:, :8], mask[:, :8], cache)
    assert int(cache.index) == 8 and cache.k.shape == (2, 3, 16, 2, 8)
    rows = cache.take_rows(jnp.asarray([2, 2, 0]))
    np.testing.assert_array_equal(rows.k[:, 1], cache.k[:, 2])
    np.testing.assert_array_equal(rows.valid[2], cache.valid[0])
    cut = cache.truncate(jnp.asarray([8, 5, 0]))
    assert cut.valid[1].sum() == 5 and not cut.valid[2].any()
    # Continuing a truncated row equals running the shorter prefix from scratch.
    short = model.init_cache(1, 16)
    _, short = _forward(model, tokens[1:2, :5], pos[1:2, :5], mask[1:2, :5], short)
    nxt = tokens[1:2, 8:9]
    a, _ = _forward(model, nxt, jnp.asarray([[5]]), None, cut.take_rows(jnp.asarray([1])))
    b, _ = _forward(model, nxt, jnp.asarray([[5]]), None, short.replace(index=jnp.asarray(8, jnp.int32)))
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_empty_cache_shapes():
    c = KVCache.empty(2, 3, 7, 2, 8, jnp.bfloat16)
    assert c.k.dtype == jnp.bfloat16 and c.valid.shape == (3, 7) and c.max_len == 7


# -------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"architecture": "gpt2"}, "unknown architecture 'gpt2'"),
        ({"num_kv_heads": 3}, "multiple of num_kv_heads"),
        ({"dtype": "int8"}, "dtype='int8'"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        CFG.replace(**changes)


def test_num_params_counts_every_parameter():
    for cfg in [CFG, CFG.replace(architecture="qwen2", attention_bias=True, tie_word_embeddings=True)]:
        m = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
        assert sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param))) == cfg.num_params
