"""HF checkpoints in/out: logits parity with transformers' PyTorch models, round trips, errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jaxrl_llm import sharding
from jaxrl_llm.models import hf_io, load_pretrained, positions_from_mask, safetensors_io, save_pretrained

V, D, F, L, H, K = 97, 32, 48, 2, 4, 2

CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=K,
        rope_theta=1e4,
        tie_word_embeddings=False,
    ),
    "llama3_rope_tied": lambda: transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        max_position_embeddings=64,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 5e5,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    "qwen2": lambda: transformers.Qwen2Config(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=K,
        tie_word_embeddings=True,
        rope_theta=1e6,
    ),
    "qwen3": lambda: transformers.Qwen3Config(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=K,
        head_dim=16,
        tie_word_embeddings=False,
    ),
    "qwen3_yarn": lambda: transformers.Qwen3Config(  # Qwen3's long-context setting; short original length
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=K,
        head_dim=16,
        tie_word_embeddings=False,
        max_position_embeddings=32,
        rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0, "original_max_position_embeddings": 8},
    ),
}
CLASSES = {
    "llama": transformers.LlamaForCausalLM,
    "qwen2": transformers.Qwen2ForCausalLM,
    "qwen3": transformers.Qwen3ForCausalLM,
}


def _hf_model(name, seed=0):
    hc = CONFIGS[name]()
    torch.manual_seed(seed)
    tm = CLASSES[hc.model_type](hc).eval()
    with torch.no_grad():
        for p in tm.parameters():
            p.normal_(0, 0.2)  # larger than init so that every weight matters for the logits
    return tm


def _hf_logits(tm, tokens, mask):
    positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        out = tm(
            input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
        )
    return out.logits.float().numpy()


def _batch(S=11):
    rng = np.random.RandomState(1)
    tokens = rng.randint(0, V, (3, S))
    mask = np.ones((3, S), np.int64)
    mask[1, :4] = 0  # left padding
    mask[2, :1] = 0
    return tokens, mask


def _ours_logits(model, tokens, mask):
    pos = positions_from_mask(jnp.asarray(mask))
    logits, _ = jax.jit(lambda t, p, m: model(t, p, m))(jnp.asarray(tokens), pos, jnp.asarray(mask))
    return np.asarray(logits)


@pytest.fixture(scope="module", params=list(CONFIGS))
def saved(request, tmp_path_factory):
    tm = _hf_model(request.param)
    path = tmp_path_factory.mktemp(request.param)
    tm.save_pretrained(path)
    model, tok = load_pretrained(path)
    assert tok is None
    return request.param, tm, path, model


def test_logits_parity_with_transformers(saved):
    name, tm, path, model = saved
    tokens, mask = _batch()
    ref = _hf_logits(tm, tokens, mask)
    ours = _ours_logits(model, tokens, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], atol=2e-5, rtol=1e-5)


def test_cached_prefill_then_decode_matches_full_forward(saved):
    name, tm, path, model = saved
    tokens, mask = _batch()
    full = _ours_logits(model, tokens, mask)
    pos = positions_from_mask(jnp.asarray(mask))
    cache = model.init_cache(3, 16)
    step = jax.jit(lambda t, p, m, c: model(t, p, m, cache=c))
    pieces = []
    for a, b in [(0, 8), (8, 9), (9, 10), (10, 11)]:  # prefill, then one token at a time
        out, cache = step(jnp.asarray(tokens[:, a:b]), pos[:, a:b], jnp.asarray(mask[:, a:b]), cache)
        pieces.append(np.asarray(out))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.concatenate(pieces, 1)[real], full[real], atol=2e-5, rtol=1e-5)


def test_round_trip_hf_ours_hf(saved, tmp_path):
    name, tm, path, model = saved
    save_pretrained(model, tmp_path)
    cfg = json.load(open(tmp_path / "config.json"))
    assert cfg["architectures"] == [type(tm).__name__] and cfg["model_type"] == tm.config.model_type
    assert cfg["tie_word_embeddings"] == tm.config.tie_word_embeddings
    assert cfg["rope_parameters"] == tm.config.rope_parameters
    assert cfg["dtype"] == "float32"
    assert os.path.isfile(tmp_path / "generation_config.json")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens, mask = _batch()
    real = mask.astype(bool)
    np.testing.assert_array_equal(_hf_logits(reloaded, tokens, mask)[real], _hf_logits(tm, tokens, mask)[real])
    for k, v in tm.state_dict().items():  # bit-exact weights, not merely close logits
        np.testing.assert_array_equal(reloaded.state_dict()[k].numpy(), v.numpy(), err_msg=k)


def test_sharded_checkpoints_both_ways(tmp_path):
    tm = _hf_model("qwen3")
    tm.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert os.path.isfile(tmp_path / "hf" / hf_io.INDEX_FILE)
    model, _ = load_pretrained(tmp_path / "hf")
    save_pretrained(model, tmp_path / "ours", max_shard_size=20_000)
    index = json.load(open(tmp_path / "ours" / hf_io.INDEX_FILE))
    assert len(set(index["weight_map"].values())) > 2
    assert not os.path.exists(tmp_path / "ours" / hf_io.SINGLE_FILE)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    tokens, mask = _batch()
    real = mask.astype(bool)
    np.testing.assert_array_equal(_hf_logits(reloaded, tokens, mask)[real], _hf_logits(tm, tokens, mask)[real])


def test_load_onto_mesh_places_each_tensor_on_its_shard(saved):
    name, tm, path, _ = saved
    mesh = sharding.make_mesh({"fsdp": 2, "tensor": 4})
    model, _ = load_pretrained(path, mesh=mesh)
    wq = model.layers["wq"][...]  # [L, D, H, Dh]: D on fsdp, H on tensor
    assert tuple(wq.sharding.spec)[:3] == (None, "fsdp", "tensor")
    assert wq.addressable_shards[0].data.shape == (L, D // 2, H // 4, wq.shape[-1])
    embed = model.embed[...]  # V=97 is not divisible by 4: replicated on that dim
    assert embed.sharding.spec[0] is None and embed.sharding.spec[1] == "fsdp"
    tokens, mask = _batch()
    real = mask.astype(bool)
    np.testing.assert_allclose(
        _ours_logits(model, tokens, mask)[real], _hf_logits(tm, tokens, mask)[real], atol=2e-5, rtol=1e-5
    )


def test_bfloat16_checkpoint_and_compute(tmp_path):
    tm = _hf_model("qwen2").to(torch.bfloat16)
    tm.save_pretrained(tmp_path)
    model, _ = load_pretrained(tmp_path)
    assert model.cfg.dtype == "bfloat16" and model.layers["wq"][...].dtype == jnp.bfloat16
    np.testing.assert_array_equal(  # bf16 weights read bit-exactly
        np.asarray(model.embed[...]).astype(np.float32), tm.model.embed_tokens.weight.detach().float().numpy()
    )
    tokens, mask = _batch()
    real = mask.astype(bool)
    ours = _ours_logits(model, tokens, mask)
    ref = _hf_logits(tm.float(), tokens, mask)
    assert ours.dtype == np.float32
    # bf16 activations vs f32 reference: loose, but far tighter than the logits' spread
    assert np.abs(ours[real] - ref[real]).mean() < 0.02 * np.abs(ref[real]).mean() + 0.05
    model32, _ = load_pretrained(tmp_path, dtype="float32")
    assert model32.layers["wq"][...].dtype == jnp.float32
    np.testing.assert_allclose(_ours_logits(model32, tokens, mask)[real], ref[real], atol=2e-4, rtol=1e-4)


def test_save_bfloat16_loads_in_transformers(tmp_path):
    model, _ = load_pretrained(_save(_hf_model("llama"), tmp_path / "src"))
    save_pretrained(model, tmp_path / "bf16", dtype="bfloat16")
    assert json.load(open(tmp_path / "bf16" / "config.json"))["dtype"] == "bfloat16"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert reloaded.model.embed_tokens.weight.dtype == torch.bfloat16
    expect = np.asarray(model.embed[...].astype(jnp.bfloat16).astype(jnp.float32))
    np.testing.assert_array_equal(reloaded.model.embed_tokens.weight.detach().float().numpy(), expect)


def _save(tm, path):
    tm.save_pretrained(path)
    return path


def test_safetensors_writer_is_readable_by_the_reference_library(tmp_path):
    from safetensors.numpy import load_file

    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones((5,), np.int64)}
    safetensors_io.write(tmp_path / "x.safetensors", tensors)
    back = load_file(tmp_path / "x.safetensors")
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)


# ------------------------------------------------------------------------------ bad input
def test_missing_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path / "nope")
    _hf_model("llama").config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained(tmp_path)


def test_missing_shard_file_is_named(tmp_path):
    _hf_model("llama").save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(f for f in os.listdir(tmp_path) if f.startswith("model-"))[1]
    os.remove(tmp_path / shard)
    with pytest.raises(FileNotFoundError, match=shard):
        load_pretrained(tmp_path)


def test_unknown_architecture(tmp_path):
    transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown architecture.*gpt2"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 4.0}},
            r"rope_parameters\.rope_type='dynamic' is not supported",
        ),
        (
            {
                "rope_parameters": {
                    "rope_type": "longrope",
                    "rope_theta": 1e4,
                    "short_factor": [1.0],
                    "long_factor": [1.0],
                    "original_max_position_embeddings": 8,
                }
            },
            r"rope_parameters\.rope_type='longrope'",
        ),
        (
            {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0, "beta_fast": 3}},
            r"rope_parameters: unexpected keys \['beta_fast'\]",
        ),
        ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
        ({"mlp_bias": True}, "mlp_bias=True is not supported"),
        ({"attention_bias": True}, "attention_bias=True for llama"),
        (
            {"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 8},
            r"layer_types=\['full_attention', 'sliding_attention'\] \(sliding_window=8\): only full_attention",
        ),
        ({"bos_token_id": [1, 3]}, r"bos_token_id=\[1, 3\]; expected an int or None"),
    ],
)
def test_unsupported_config_fields_are_named(changes, message):
    hc = CONFIGS["llama"]().to_dict()
    hc.update(changes)
    with pytest.raises((ValueError, NotImplementedError), match=message):
        hf_io.config_from_hf(hc)


@pytest.mark.parametrize("name", ["qwen2", "qwen3"])
def test_sliding_window_configs(name):
    """Qwen's sliding window: off (the released checkpoints) loads; on for any layer is rejected
    at load time, from a transformers config and from a raw config.json dict alike."""
    cls = {"qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}[name]
    kw = dict(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=4,
        num_attention_heads=H,
        num_key_value_heads=K,
    )
    assert hf_io.config_from_hf(cls(**kw, use_sliding_window=False, sliding_window=16)).num_layers == 4
    assert hf_io.config_from_hf(cls(**kw, use_sliding_window=True, max_window_layers=4)).num_layers == 4
    on = cls(**kw, use_sliding_window=True, sliding_window=16, max_window_layers=2)
    with pytest.raises(NotImplementedError, match=r"'sliding_attention'.*sliding_window=16.*only full_attention"):
        hf_io.config_from_hf(on)
    raw = {k: v for k, v in on.to_dict().items() if k != "layer_types"}
    with pytest.raises(NotImplementedError, match="sliding_window=16"):
        hf_io.config_from_hf(raw)


def test_config_fields_are_hashable_after_loading(saved):
    """What ``jax.jit`` hashes (the config in the model's graph definition) must hash: a dict
    rope setting or a list of eos ids used to break sampling for Llama 3.x checkpoints."""
    name, tm, path, model = saved
    hash(model.cfg)
    hc = tm.config.to_dict()
    hc["eos_token_id"] = [2, 7]
    cfg = hf_io.config_from_hf(hc)
    assert cfg.eos_token_id == (2, 7) and hash(cfg)
    rope_type = tm.config.rope_parameters["rope_type"]
    assert (cfg.rope_scaling is None) == (rope_type == "default")


def test_wrong_shape_names_the_tensor(tmp_path):
    tm = _hf_model("qwen2")
    tm.save_pretrained(tmp_path)
    f = safetensors_io.SafetensorsFile(tmp_path / hf_io.SINGLE_FILE)
    tensors = {k: np.array(f[k]) for k in f.keys()}
    tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((K * 8 + 1, D), np.float32)
    del f
    safetensors_io.write(tmp_path / hf_io.SINGLE_FILE, tensors)
    with pytest.raises(hf_io.CheckpointError, match=r"model\.layers\.1\.self_attn\.k_proj\.weight.*\(17, 32\)"):
        load_pretrained(tmp_path)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    tm = _hf_model("llama")
    tm.save_pretrained(tmp_path)
    cfg = json.load(open(tmp_path / "config.json"))
    cfg["model_type"], cfg["architectures"] = "qwen2", ["Qwen2ForCausalLM"]  # Qwen2 needs q/k/v biases
    json.dump(cfg, open(tmp_path / "config.json", "w"))
    with pytest.raises(hf_io.CheckpointError, match=r"missing tensors.*q_proj\.bias"):
        load_pretrained(tmp_path)


def test_truncated_safetensors(tmp_path):
    _hf_model("llama").save_pretrained(tmp_path)
    weights = tmp_path / hf_io.SINGLE_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(safetensors_io.SafetensorsError, match="truncated.*tensor"):
        load_pretrained(tmp_path)
    weights.write_bytes(data[:50])
    with pytest.raises(safetensors_io.SafetensorsError, match="truncated"):
        load_pretrained(tmp_path)
