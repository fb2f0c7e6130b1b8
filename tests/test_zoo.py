"""Built-in tiny models, the synthetic tokenizer, sharding helpers, and the public models API."""

import ast
import json
import pathlib

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jaxrl_llm import sharding
from jaxrl_llm.models import (
    Decoder,
    get_model,
    get_tokenizer,
    gguf_io,
    list_models,
    load_pretrained,
    param_shardings,
    positions_from_mask,
    save_pretrained,
    shard_model,
    zoo,
)
from jaxrl_llm.models import tokenizer as tokenizer_lib


@pytest.fixture(scope="module")
def tiny():
    return get_model("tiny")


@pytest.fixture(scope="module")
def synthetic():
    return get_tokenizer("synthetic")


def _n_params(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_list_models():
    assert {"smollm2-135m-instruct", "tiny", "small"} <= set(list_models())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        get_model("nope")


def test_tiny_and_small_sizes(tiny):
    model, tok = tiny
    assert isinstance(model, Decoder) and model.cfg.num_layers == 2
    n = _n_params(model)
    assert n == model.cfg.num_params and 1e5 < n < 1e6
    assert model.cfg.vocab_size >= len(tok) and len(tok) <= 256
    small = nnx.eval_shape(lambda: Decoder(zoo.SMALL, rngs=nnx.Rngs(0)))
    assert 1e6 < _n_params(small) == zoo.SMALL.num_params < 1e7
    assert 128 <= zoo.SMALL.hidden_size <= 256 and zoo.SMALL.num_layers == 4


def test_seed_controls_init():
    a, _ = get_model("tiny", seed=0)
    b, _ = get_model("tiny", seed=0)
    c, _ = get_model("tiny", seed=1)
    np.testing.assert_array_equal(a.layers["wq"][...], b.layers["wq"][...])
    assert not np.allclose(a.layers["wq"][...], c.layers["wq"][...])


def test_bfloat16_model():
    model, _ = get_model("tiny", dtype="bfloat16")
    assert model.layers["w_up"][...].dtype == jnp.bfloat16
    tokens = jnp.ones((2, 5), jnp.int32)
    logits, _ = model(tokens, jnp.broadcast_to(jnp.arange(5), (2, 5)))
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()


# ------------------------------------------------------------------------ tokenizer
def test_synthetic_tokenizer_round_trips_text(synthetic):
    text = "Q: What is 12 + 7 * (3 - 1) / 4?\nA:\t<think>2**3 = 8</think> answer is -5.25; ok!"
    ids = synthetic(text).input_ids
    assert len(ids) == len(text)  # one id per character, no bos added
    assert synthetic.decode(ids) == text
    assert max(ids) < len(synthetic) <= 128


def test_synthetic_special_tokens_and_chat_template(synthetic):
    assert (synthetic.pad_token_id, synthetic.bos_token_id, synthetic.eos_token_id) == (0, 1, 2)
    assert synthetic.convert_tokens_to_ids("<|im_start|>") == 1
    msgs = [{"role": "user", "content": "2+2?"}]
    ids = synthetic.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert synthetic.decode(ids) == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert ids.count(1) == 2 and ids.count(2) == 1  # special tokens are single ids, not characters
    assert synthetic("é").input_ids == [synthetic.unk_token_id]
    assert synthetic.padding_side == "left"


def test_synthetic_tokenizer_save_and_reload(synthetic, tmp_path):
    synthetic.save_pretrained(tmp_path)
    back = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\n31 - 4 = ?<|im_end|>\n"
    assert back(text).input_ids == synthetic(text).input_ids
    assert back.chat_template == synthetic.chat_template
    assert (back.pad_token_id, back.eos_token_id, back.padding_side) == (0, 2, "left")
    assert get_tokenizer(str(tmp_path))(text).input_ids == synthetic(text).input_ids


def test_get_tokenizer_unknown():
    with pytest.raises(KeyError, match="unknown tokenizer"):
        get_tokenizer("nope")


def _imported_models_modules(module) -> set[str]:
    """Sibling ``jaxrl_llm.models`` modules that ``module``'s source imports, function bodies included."""
    found = set()
    for node in ast.walk(ast.parse(pathlib.Path(module.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "jaxrl_llm.models":
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxrl_llm.models."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("jaxrl_llm.models."))
    return found


def test_tokenizer_and_zoo_depend_one_way():
    """Issue #15 item 9: ``tokenizer`` imported ``zoo`` (inside ``get_tokenizer``) while ``zoo``
    imported ``tokenizer``. The zoo (the registry of named things) now owns ``get_tokenizer``."""
    assert "tokenizer" in _imported_models_modules(zoo)
    assert _imported_models_modules(tokenizer_lib) == set()
    assert get_tokenizer is zoo.get_tokenizer
    assert get_tokenizer("tiny")("1+1").input_ids == tokenizer_lib.synthetic_tokenizer()("1+1").input_ids


# --------------------------------------------------------------- export of a tiny model
def test_tiny_exports_to_transformers_with_same_logits(tiny, tmp_path):
    model, tok = tiny
    save_pretrained(model, tmp_path, tokenizer=tok)
    cfg = json.load(open(tmp_path / "config.json"))
    assert cfg["architectures"] == ["Qwen3ForCausalLM"] and cfg["tie_word_embeddings"] is True
    assert json.load(open(tmp_path / "generation_config.json"))["eos_token_id"] == 2
    tm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ttok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    batch = ttok(["1+2=3", "10*10=100"], padding=True, return_tensors="np")
    tokens, mask = batch["input_ids"], batch["attention_mask"]
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        ref = tm(
            input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)
        ).logits.numpy()
    ours, _ = model(jnp.asarray(tokens), positions_from_mask(jnp.asarray(mask)), jnp.asarray(mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(ours)[real], ref[real], atol=1e-5, rtol=1e-5)
    back, back_tok = load_pretrained(tmp_path)
    assert back.cfg == model.cfg
    jax.tree.map(np.testing.assert_array_equal, nnx.state(back, nnx.Param), nnx.state(model, nnx.Param))
    assert back_tok("7-3").input_ids == tok("7-3").input_ids


# ------------------------------------------------------------------------- sharding
def test_param_shardings_follow_the_rules_table(tiny):
    model, _ = tiny
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    specs = param_shardings(model, mesh)
    assert tuple(specs["layers"]["wq"].spec)[:3] == (None, "fsdp", "tensor")  # [L, D, H, Dh]
    assert tuple(specs["layers"]["w_down"].spec) == (None, "tensor", "fsdp")  # [L, F, D]
    assert tuple(specs["embed"].spec) == ("tensor", "fsdp")  # [V, D]
    assert jax.tree.structure(specs) == jax.tree.structure(
        jax.tree.map(lambda v: 0, nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))
    )


def test_shard_model_keeps_the_function(tiny):
    model, _ = get_model("tiny", seed=3)
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 101, (4, 9)))
    pos = jnp.broadcast_to(jnp.arange(9), (4, 9))
    expect, _ = model(tokens, pos)
    mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
    shard_model(model, mesh)
    w = model.layers["w_gate"][...]
    assert w.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert w.addressable_shards[0].data.shape == (2, 128 // 4, 256 // 2)
    graphdef, params = nnx.split(model)
    got, _ = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t, pos))(params, tokens)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expect), atol=1e-5, rtol=1e-5)


def test_get_model_with_mesh():
    mesh = sharding.make_mesh({"fsdp": 8})
    model, _ = get_model("tiny", mesh=mesh)
    assert model.layers["w_up"][...].sharding.spec[1] == "fsdp"


# ---------------------------------------------------------------------------------- GGUF
@pytest.mark.parametrize(
    "scaling, freqs, message",
    [
        (gguf.RopeScalingType.YARN, False, "llama.rope.scaling.type='yarn' is not supported"),
        (None, True, "tensor 'rope_freqs.weight' .*Llama 3"),
    ],
)
def test_gguf_rope_scaling_is_rejected_not_ignored(tmp_path, scaling, freqs, message):
    """A Llama 3.x GGUF carries its rope scaling as factors the loader does not apply: it must
    fail at load time, not run plain RoPE."""
    path = str(tmp_path / "m.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    if scaling is not None:
        writer.add_rope_scaling_type(scaling)
    writer.add_tensor("rope_freqs.weight" if freqs else "output_norm.weight", np.ones(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(NotImplementedError, match=message):
        gguf_io.load_gguf(path, tokenizer=False)
