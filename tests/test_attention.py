"""Attention implementations (``models.attention``): each one that runs on a CPU ("dot_product"
through XLA, "splash" in Pallas interpret mode) equals the reference "xla" in values and in
gradients w.r.t. q, k, v on the masks the decoder builds; "auto" is "xla" on a CPU; the setting
reaches the model from the run config; bad names are named errors. Also the 1B-class zoo shapes,
by ``eval_shape`` only."""

import dataclasses
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import config as run_config
from jaxrl_llm import policy
from jaxrl_llm.models import Decoder, ModelConfig, attention, positions_from_mask, zoo

CPU_IMPLS = ("dot_product", "splash")  # besides the reference; "cudnn" needs a CUDA GPU
B, S, H, DH = 3, 16, 4, 32
TOL = {"float32": 2e-5, "bfloat16": 3e-2}


def _causal(key_valid, q_slots, num_keys):
    """[B, S, Skv]: query at slot q_slots[s] sees real keys at or before it (Decoder.hidden_states)."""
    return (jnp.arange(num_keys)[None, :] <= q_slots[:, None])[None] & key_valid[:, None, :]


def _left_padded(lengths, width):
    return jnp.arange(width)[None, :] >= width - jnp.asarray(lengths)[:, None]


def _masks():
    """name -> (allowed [B, S, Skv], causal): the call kinds of the decoder."""
    pad = _left_padded([16, 11, 5], S)
    prompt_len = 10  # prefill: S new tokens after 10 cached slots (left-padded prompts)
    cache_valid = jnp.concatenate([_left_padded([10, 6, 2], prompt_len), jnp.ones((B, S), bool)], axis=1)
    cache_valid = cache_valid.at[1, prompt_len + 13 :].set(False)  # a right-padded completion
    blocks = jnp.zeros((B, S), jnp.int32).at[:, 4:9].set(1).at[2, 11:14].set(2)
    same_block = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] > 0)
    return {
        "left_padding": (_causal(pad, jnp.arange(S), S), True),
        "prefill_after_cache": (_causal(cache_valid, prompt_len + jnp.arange(S), prompt_len + S), False),
        "prefill_into_empty_cache": (_causal(jnp.pad(pad, ((0, 0), (0, 8))), jnp.arange(S), S + 8), False),
        "bidirectional_blocks": (
            (_causal(jnp.ones((B, S), bool), jnp.arange(S), S) | same_block) & pad[:, None],
            False,
        ),
    }


MASKS = _masks()


def _qkv(num_keys, num_kv_heads, dtype, seed=0):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    q = 2.0 * jax.random.normal(kq, (B, S, H, DH))  # sharp enough that the softmax is not uniform
    k = jax.random.normal(kk, (B, num_keys, num_kv_heads, DH))
    v = jax.random.normal(kv, (B, num_keys, num_kv_heads, DH))
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def _outputs_and_grads(impl, q, k, v, allowed, causal):
    """Output and d(sum(out * w))/d(q, k, v), rows that may attend to nothing left out of both."""
    live = allowed.any(-1)[:, :, None, None]  # [B, S, 1, 1]
    w = jax.random.normal(jax.random.key(7), q.shape[:3] + (v.shape[-1],))

    def loss(q, k, v):
        out = attention.attend(q, k, v, allowed, impl=impl, scale=DH**-0.5, causal=causal)
        return jnp.sum(jnp.where(live, out.astype(jnp.float32) * w, 0.0)), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return out, grads, live


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("num_kv_heads", [2, 1])
@pytest.mark.parametrize("mask_name", list(MASKS))
def test_implementations_match_the_reference(mask_name, num_kv_heads, dtype):
    allowed, causal = MASKS[mask_name]
    q, k, v = _qkv(allowed.shape[-1], num_kv_heads, dtype)
    ref, ref_grads, live = _outputs_and_grads("xla", q, k, v, allowed, causal)
    for impl in CPU_IMPLS:
        out, grads, _ = _outputs_and_grads(impl, q, k, v, allowed, causal)
        assert out.dtype == ref.dtype and np.isfinite(np.asarray(out, np.float32)).all(), impl
        tol = TOL[dtype]
        got, want = np.asarray(jnp.where(live, out, 0), np.float32), np.asarray(jnp.where(live, ref, 0), np.float32)
        np.testing.assert_allclose(got, want, atol=tol, rtol=tol, err_msg=f"{impl} values")
        for name, g, g_ref in zip("qkv", grads, ref_grads):
            g, g_ref = np.asarray(g, np.float32), np.asarray(g_ref, np.float32)
            scale = max(1.0, float(np.abs(g_ref).max()))
            np.testing.assert_allclose(g, g_ref, atol=tol * scale, rtol=tol, err_msg=f"{impl} d/d{name}")


def test_splash_serves_causal_calls_and_leaves_the_rest_to_xla():
    allowed, _ = MASKS["prefill_after_cache"]
    q, k, v = _qkv(allowed.shape[-1], 2, "float32")
    ref = attention.attend(q, k, v, allowed, impl="xla", scale=DH**-0.5)
    np.testing.assert_array_equal(attention.attend(q, k, v, allowed, impl="splash", scale=DH**-0.5), ref)
    kw = dict(dtype=jnp.float32, head_dim=DH, q_len=S, kv_len=S)
    assert attention.implementation_for("splash", causal=True, **kw) == "splash"
    assert attention.implementation_for("splash", causal=False, **kw) == "xla"


def test_auto_is_the_reference_on_cpu():
    for dtype in (jnp.float32, jnp.bfloat16):
        for causal in (True, False):
            chosen = attention.implementation_for(
                "auto", dtype=dtype, head_dim=64, q_len=128, kv_len=128, causal=causal
            )
            assert chosen == "xla"
    allowed, causal = MASKS["left_padding"]
    q, k, v = _qkv(S, 2, "bfloat16")
    kw = dict(scale=DH**-0.5, causal=causal)
    np.testing.assert_array_equal(
        attention.attend(q, k, v, allowed, impl="auto", **kw), attention.attend(q, k, v, allowed, impl="xla", **kw)
    )


def test_cudnn_off_gpu_and_unknown_names_are_named_errors():
    allowed, causal = MASKS["left_padding"]
    q, k, v = _qkv(S, 2, "bfloat16")
    with pytest.raises(ValueError, match="attention_impl='cudnn' runs on a CUDA GPU"):
        attention.attend(q, k, v, allowed, impl="cudnn", scale=1.0, causal=causal)
    with pytest.raises(ValueError, match=r"attention_impl='flash'; expected one of auto, xla, dot_product"):
        attention.attend(q, k, v, allowed, impl="flash", scale=1.0)
    with pytest.raises(ValueError, match=r"attention_impl='flash'; expected one of auto, xla, dot_product"):
        zoo.TINY.replace(attention_impl="flash")
    with pytest.raises(run_config.ConfigError, match=r"model\.attention must be one of \['auto', 'xla'"):
        run_config.apply_overrides(run_config.default_config(), ["model.attention=flash"])


def test_run_config_choices_are_the_implementations_and_reach_the_model():
    hint = typing.get_type_hints(run_config.ModelConfig)["attention"]
    assert typing.get_args(hint) == attention.IMPLEMENTATIONS
    assert run_config.ModelConfig().attention == ModelConfig.attention_impl == "auto"
    cfg = run_config.apply_overrides(run_config.default_config(), ["model.name=tiny", "model.attention=xla"])
    model, _ = policy.build_model(cfg)
    assert model.cfg.attention_impl == "xla"
    model, _ = policy.build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, attention="auto")))
    assert model.cfg == zoo.TINY


@pytest.fixture(scope="module")
def tiny_models():
    """``tiny`` once per implementation, same weights, scaled up so attention is far from uniform."""
    base = Decoder(zoo.TINY, rngs=nnx.Rngs(0))
    for name, var in base.layers.items():
        if name.startswith("w"):
            var[...] = var[...] * 8
    base.embed[...] = base.embed[...] * 10
    graphdef, state = nnx.split(base)
    models = {}
    for impl in ("xla",) + CPU_IMPLS:
        m = nnx.merge(graphdef, state)
        m.cfg = zoo.TINY.replace(attention_impl=impl)
        models[impl] = m
    return models


def _tiny_batch():
    tokens = jax.random.randint(jax.random.key(2), (B, S), 3, zoo.TINY.vocab_size)
    mask = _left_padded([16, 11, 5], S).astype(jnp.int32)
    return tokens, mask, positions_from_mask(mask)


def test_decoder_logits_match_per_implementation(tiny_models):
    tokens, mask, pos = _tiny_batch()
    real = np.asarray(mask, bool)
    blocks = jnp.zeros((B, S), jnp.int32).at[:, 12:15].set(1)
    forward = jax.jit(lambda m, t, p, a, b: m(t, p, a, block_ids=b)[0])
    prefill = jax.jit(lambda m, t, p, a, c: m(t, p, a, c))
    results = {}
    for impl, m in tiny_models.items():
        plain = forward(m, tokens, pos, mask, None)
        with_blocks = forward(m, tokens, pos, mask, blocks)
        cache = m.init_cache(B, S + 4)
        first, cache = prefill(m, tokens[:, :10], pos[:, :10], mask[:, :10], cache)
        second, _ = prefill(m, tokens[:, 10:], pos[:, 10:], mask[:, 10:], cache)
        results[impl] = (plain, with_blocks, jnp.concatenate([first, second], axis=1))
    assert np.std(np.asarray(results["xla"][0])[real]) > 1.0  # logits far from flat
    for impl in CPU_IMPLS:
        for got, want in zip(results[impl], results["xla"]):
            assert np.isfinite(np.asarray(got)).all()
            np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(results["xla"][2][real], results["xla"][0][real], atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize(
    "name, cfg, params",
    [("llama-1b-random", zoo.LLAMA_1B, 1_235_814_400), ("qwen2.5-1.5b-random", zoo.QWEN25_1_5B, 1_543_714_304)],
)
def test_1b_benchmark_shapes(name, cfg, params):
    model = nnx.eval_shape(lambda: zoo.MODELS[name].build("bfloat16", 0, None)[0])
    assert model.cfg == cfg.replace(dtype="bfloat16", param_dtype="bfloat16")
    shapes = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert sum(int(np.prod(x.shape)) for x in shapes) == cfg.num_params == params
    assert {x.dtype for x in shapes} == {jnp.dtype(jnp.bfloat16)}
    with pytest.raises(
        ValueError, match=f"model {name!r} is a benchmark shape with random weights and has no tokenizer"
    ):
        zoo.get_tokenizer(name)
