"""The vision path (models/vision.py): SigLIP parity, images in the prefill, the sampler and the
trainer's log-probs with images, the bidirectional image block, named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxrl_llm import sharding
from jaxrl_llm.models import completion_logprobs, param_shardings, positions_from_mask, vision
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.sampling import SamplingConfig, sample

IMG = 99  # the placeholder id
DEC = ModelConfig(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    architecture="qwen3",
    tie_word_embeddings=True,
)
VIS = vision.VisionConfig(
    image_size=8, num_channels=1, patch_size=4, hidden_size=32, intermediate_size=64, num_heads=2, image_token_id=IMG
)
N = VIS.num_patches  # 4 placeholders per image


def vlm(vcfg=VIS, seed=0):
    return vision.VisionLanguageModel(DEC, vcfg, rngs=nnx.Rngs(seed))


def images(batch, count, seed=0, cfg=VIS):
    rng = np.random.default_rng(seed)
    return vision.normalize(rng.random((batch, count, cfg.image_size, cfg.image_size, cfg.num_channels)))


def prompts(num_images):
    """Two left-padded prompts: [pad.. | BOS, images.., question tokens]."""
    rows = [[1] + [IMG] * (N * num_images) + [5, 6, 7], [1] + [IMG] * (N * num_images) + [8, 9]]
    width = max(map(len, rows))
    tokens = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), np.int32)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return tokens, mask


def test_encoder_matches_transformers_siglip(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    cfg = vision.VisionConfig(
        image_size=8, num_channels=3, patch_size=2, hidden_size=32, intermediate_size=48, num_heads=4
    )
    hf_cfg = transformers.SiglipVisionConfig(
        image_size=8,
        num_channels=3,
        patch_size=2,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )
    torch.manual_seed(0)
    ref = transformers.SiglipVisionModel(hf_cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a misplaced one shows
        for name, p in ref.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    enc = vision.VisionEncoder(cfg, rngs=nnx.Rngs(1))
    vision.set_encoder_params(enc, vision.load_siglip_state(tensors, cfg))
    pixels = images(3, 1, seed=2, cfg=cfg)[:, 0]  # [3, 8, 8, 3]
    with torch.no_grad():
        want = ref(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())).last_hidden_state.numpy()
    got = np.asarray(jax.jit(lambda e, x: e(x))(enc, jnp.asarray(pixels)))
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


def test_load_siglip_state_names_missing_and_misshaped_tensors():
    cfg = vision.VisionConfig(num_layers=1)
    good = {
        "embeddings.patch_embedding.weight": np.zeros((32, 1, 2, 2)),
    }
    with pytest.raises(ValueError, match="missing tensor 'embeddings.patch_embedding.bias'"):
        vision.load_siglip_state(good, cfg)
    with pytest.raises(ValueError, match=r"'embeddings.patch_embedding.weight' has shape \(32, 3, 2, 2\)"):
        vision.load_siglip_state({"embeddings.patch_embedding.weight": np.zeros((32, 3, 2, 2))}, cfg)


@pytest.mark.parametrize("num_images", [1, 2])
def test_cached_prefill_equals_uncached_forward_with_images(num_images):
    model = vlm()
    tokens, mask = prompts(num_images)
    imgs = jnp.asarray(images(2, num_images))
    positions = positions_from_mask(jnp.asarray(mask))
    full, _ = model(jnp.asarray(tokens), positions, jnp.asarray(mask), images=imgs)
    S = tokens.shape[1]
    cache = model.init_cache(2, S + 4)
    cut = S - 2  # prefill all images and part of the text, then the rest one token at a time
    logits, cache = model(tokens[:, :cut], positions[:, :cut], mask[:, :cut], cache, images=imgs)
    pieces = [logits]
    for s in range(cut, S):
        step, cache = model(tokens[:, s : s + 1], positions[:, s : s + 1], mask[:, s : s + 1], cache)
        pieces.append(step)
    real = mask.astype(bool)  # a padded query attends to nothing: its logits are arbitrary
    np.testing.assert_allclose(np.concatenate(pieces, axis=1)[real], np.asarray(full)[real], atol=1e-5, rtol=1e-5)
    # the images reach the logits (every image, not just the first)
    other = imgs.at[:, -1].set(-imgs[:, -1])
    changed, _ = model(jnp.asarray(tokens), positions, jnp.asarray(mask), images=other)
    assert float(jnp.max(jnp.abs(changed[:, -1] - full[:, -1]))) > 1e-4


def test_image_block_attends_bidirectionally_and_text_stays_causal():
    """Decoder level (the encoder itself is bidirectional): changing only the LAST patch's input
    vector changes the FIRST patch's hidden state iff the image block is bidirectional."""
    tokens, mask = prompts(1)
    first = int(np.argmax(tokens[0] == IMG))
    model = vlm()
    embeds = jax.random.normal(jax.random.key(1), (*tokens.shape, DEC.hidden_size))
    nudged = embeds.at[:, first + N - 1].add(1.0)
    is_image = jnp.asarray(tokens == IMG)
    blocks = jnp.where(is_image, 1, 0)
    positions = positions_from_mask(jnp.asarray(mask))

    def hidden(x, block_ids):
        kw = dict(inputs_embeds=x, embeds_mask=is_image, block_ids=block_ids)
        return model.hidden_states(jnp.asarray(tokens), positions, jnp.asarray(mask), **kw)[0]

    delta = lambda block_ids: np.asarray(jnp.abs(hidden(nudged, block_ids) - hidden(embeds, block_ids)))[0]
    assert delta(blocks)[first].max() > 1e-4  # the first patch sees the last one
    assert delta(None)[first].max() == 0.0  # causal: it does not
    assert delta(blocks)[first - 1].max() == 0.0  # the text before the image never sees it


@pytest.mark.parametrize("group_size", [1, 3])
def test_sampler_logprobs_equal_trainer_recomputation_with_images(group_size):
    model = vlm(seed=3)
    tokens, mask = prompts(2)
    imgs = images(2, 2, seed=4)
    cfg = SamplingConfig(max_new_tokens=6, temperature=1.0, backend="xla")
    out = sample(model, tokens, mask, jax.random.key(0), cfg, num_samples=group_size, images=imgs)
    seq = jnp.concatenate([out.prompt_tokens, out.tokens], axis=1)
    seq_mask = jnp.concatenate([out.prompt_mask, out.mask.astype(jnp.int32)], axis=1)
    row_images = jnp.repeat(jnp.asarray(imgs), group_size, axis=0)
    T = out.tokens.shape[1]
    got = completion_logprobs(model, seq, seq_mask, T, group_size=group_size, images=row_images, chunk_size=4)
    m = np.asarray(out.mask)
    np.testing.assert_allclose(np.asarray(got) * m, np.asarray(out.logprobs) * m, atol=2e-5)
    # without the images the recomputation differs: the test can see a dropped image
    blind = completion_logprobs(model, seq, seq_mask, T, group_size=group_size, images=-row_images)
    assert float(np.max(np.abs((np.asarray(blind) - np.asarray(out.logprobs)) * m))) > 1e-4


def test_text_only_path_unchanged_by_the_vision_module():
    model = vlm()
    tokens = jnp.asarray([[1, 5, 6, 7, 8]])
    positions = positions_from_mask(jnp.ones_like(tokens))
    plain = vision.Decoder(DEC, rngs=nnx.Rngs(0))
    nnx.update(plain, nnx.state(model, nnx.Param).filter(lambda path, _: path[0] not in ("vision", "projector")))
    np.testing.assert_array_equal(model(tokens, positions)[0], plain(tokens, positions)[0])


def test_vision_parameters_are_sharded_by_the_rules_table():
    model = vlm()
    mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
    shards = param_shardings(model, mesh)
    assert shards["vision"]["params"]["fc1"].spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert shards["vision"]["params"]["wq"].spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    assert shards["projector"]["w_a"].spec == jax.sharding.PartitionSpec("fsdp", None)


def test_wrong_images_and_corrupt_files_raise_named_errors(tmp_path):
    model = vlm()
    tokens, mask = prompts(1)
    cfg = SamplingConfig(max_new_tokens=2, backend="xla")
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="images: images of 16x16 pixels, the vision encoder takes 8x8"):
        sample(model, tokens, mask, key, cfg, images=np.zeros((2, 1, 16, 16, 1)))
    with pytest.raises(ValueError, match="images: 3 channels, the vision encoder takes 1"):
        sample(model, tokens, mask, key, cfg, images=np.zeros((2, 1, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"prompt_tokens row 0 holds 4 image placeholders \(id 99\); 2 image"):
        sample(model, tokens, mask, key, cfg, images=np.zeros((2, 2, 8, 8, 1)))
    with pytest.raises(ValueError, match="has no vision encoder"):
        sample(vision.Decoder(DEC, rngs=nnx.Rngs(0)), tokens, mask, key, cfg, images=np.zeros((2, 1, 8, 8, 1)))
    broken = tmp_path / "broken.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    broken.write_bytes((tmp_path / "ok.png").read_bytes()[:20])  # truncated PNG
    with pytest.raises(ValueError, match="broken.png: not a readable image file"):
        vision.load_image(broken, VIS)
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="big.png: image is 8x9 pixels, the vision encoder takes 8x8"):
        vision.load_image(tmp_path / "big.png", VIS)
    ok = vision.load_image(tmp_path / "ok.png", VIS)
    assert ok.shape == (8, 8, 1) and ok.dtype == np.float32
