"""The vision path: a small ViT patch encoder (SigLIP architecture) and a projector into the decoder.

A vision-language model here is the project's ``Decoder`` plus two submodules: ``VisionEncoder``
turns images into patch features, ``Projector`` maps them to the decoder's width, and the result
enters the decoder as soft tokens written over placeholder ids (``Decoder.hidden_states``'s
``inputs_embeds`` / ``embeds_mask``), the LLaVA recipe:

    tokens  [... <image> x n_patches ... question ...]          (placeholder id, n per image)
    x_s     = E[token_s]                      where token_s is not a placeholder
            = Projector(VisionEncoder(img_j))_k   for the k-th placeholder of image j

The image's patches attend to each other bidirectionally when ``VisionConfig.bidirectional`` is
set (``block_ids`` = image index + 1); text stays causal. Because the image enters only through the
inputs of the prompt, the same call serves the uncached forward (training), the sampler's prefill
(``sampling.sample(..., images=...)``; decoding is unchanged: new tokens attend to the cached
image keys) and ``models.completion_logprobs(..., images=...)``. Several images per sequence:
``images`` is [B, N, H, W, C] and the prompt holds ``N * n_patches`` placeholders, image after
image. A placeholder id beyond the first ``N * n_patches`` of a row (e.g. one the policy sampled)
is an ordinary token on every path.

Images anywhere in a row (multi-turn episodes, one screenshot per observation): ``image_mask``
[B, S] names the image slots explicitly, instead of counting placeholder ids. The k-th set
position of a row takes patch embedding k (image ``k // n_patches``), wherever it sits (prompt or
completion); a placeholder id the mask does not mark (e.g. one the policy sampled) is an ordinary
token. ``images`` is then [B, N_max, H, W, C] padded with unused images (a row marks
``n_used * n_patches`` slots, ``n_used <= N_max``). The rollout that writes the placeholders builds
the mask (``rollouts/episode.py``); the sampler's prefill, ``models.completion_logprobs`` and the
trainer take it beside ``images``.

Encoder (SigLIP vision tower; Zhai et al., "Sigmoid Loss for Language Image Pre-Training",
https://arxiv.org/abs/2303.15343, code https://github.com/google-research/big_vision; numerics as
transformers' ``modeling_siglip.py``, which the parity test compares against):

    z_0 = Conv_pxp(pixels) + P                        (patch embedding, learned positions, no CLS)
    z_l = z_{l-1} + MHA(LN_1(z_{l-1}));  z_l = z_l + W_2 gelu_tanh(W_1 LN_2(z_l))   (pre-norm)
    features = LN_post(z_L)                           ([B*N, n_patches, D_v])

Projector (LLaVA-1.5's two-layer MLP; Liu et al., "Improved Baselines with Visual Instruction
Tuning", https://arxiv.org/abs/2310.03744, code https://github.com/haotian-liu/LLaVA):
``W_b gelu(W_a f + a) + b`` into the decoder's hidden size.

Loading a real encoder (``load_siglip_state``): a SigLIP / SigLIP2 / SmolVLM-style vision tower in
safetensors, tensors named as transformers' ``SiglipVisionModel`` saves them (an optional
``vision_model.`` prefix, as inside a full SigLIP or PaliGemma checkpoint, is accepted with
``prefix=``)::

    embeddings.patch_embedding.weight   [D, C, p, p]   -> patch_w [p*p*C, D] (pixel order y, x, c)
    embeddings.patch_embedding.bias     [D]            -> patch_b
    embeddings.position_embedding.weight [n, D]        -> pos
    encoder.layers.{l}.layer_norm{1,2}.{weight,bias}   -> ln1_w / ln1_b / ln2_w / ln2_b [L, D]
    encoder.layers.{l}.self_attn.{q,k,v}_proj.weight [D, D] (out, in) -> wq / wk / wv [L, D, H, Dh]
    encoder.layers.{l}.self_attn.{q,k,v}_proj.bias   [D]              -> bq / bk / bv [L, H, Dh]
    encoder.layers.{l}.self_attn.out_proj.weight [D, D] / .bias        -> wo [L, H, Dh, D] / bo [L, D]
    encoder.layers.{l}.mlp.fc1.weight [F, D] / .bias, mlp.fc2.weight [D, F] / .bias
                                                       -> fc1 [L, D, F] / fc1_b, fc2 [L, F, D] / fc2_b
    post_layernorm.{weight,bias}                       -> post_w / post_b

The attention-pooling head (``head.*``) is not used (a VLM reads all patch features) and is
skipped. The projector has no standard layout and stays trained in-repo. Pixels go in as the
SigLIP processor leaves them: [0, 1] scaled by ``(x - 0.5) / 0.5`` (``normalize``).

Sharding: every parameter carries logical axes (``vision_embed``, ``vision_mlp``, ``vision_heads``,
``patch_pixels``, ``image_patches`` plus the decoder's ``layers`` / ``head_dim`` / ``norm`` /
``embed``) mapped by ``jaxrl_llm.sharding.RULES``. The parameters are ``nnx.Param`` of the model,
so a run's Orbax checkpoint holds them with the decoder's.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, UnidentifiedImageError

from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.decoder import Decoder


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """A SigLIP-architecture vision tower plus the projector and how images enter the prompt.

    Field names follow transformers' ``SiglipVisionConfig``. ``image_token_id``: the placeholder
    id the prompt holds ``num_patches`` times per image. ``bidirectional``: an image's patches
    attend to each other in both directions inside the decoder (text stays causal).
    """

    image_size: int = 8
    num_channels: int = 1
    patch_size: int = 2
    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    layer_norm_eps: float = 1e-6
    image_token_id: int = 0
    bidirectional: bool = True

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"VisionConfig: image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"VisionConfig: hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}"
            )
        if self.num_channels not in (1, 3):
            raise ValueError(f"VisionConfig: num_channels={self.num_channels}; expected 1 (grey) or 3 (RGB)")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.num_channels


# Logical axes of the vision tower's parameters (stacked layers lead with "layers").
VISION_PARAM_AXES = {
    "patch_w": ("patch_pixels", "vision_embed"),
    "patch_b": ("vision_embed",),
    "pos": ("image_patches", "vision_embed"),
    "ln1_w": ("layers", "vision_embed"),
    "ln1_b": ("layers", "vision_embed"),
    "wq": ("layers", "vision_embed", "vision_heads", "head_dim"),
    "wk": ("layers", "vision_embed", "vision_heads", "head_dim"),
    "wv": ("layers", "vision_embed", "vision_heads", "head_dim"),
    "bq": ("layers", "vision_heads", "head_dim"),
    "bk": ("layers", "vision_heads", "head_dim"),
    "bv": ("layers", "vision_heads", "head_dim"),
    "wo": ("layers", "vision_heads", "head_dim", "vision_embed"),
    "bo": ("layers", "vision_embed"),
    "ln2_w": ("layers", "vision_embed"),
    "ln2_b": ("layers", "vision_embed"),
    "fc1": ("layers", "vision_embed", "vision_mlp"),
    "fc1_b": ("layers", "vision_mlp"),
    "fc2": ("layers", "vision_mlp", "vision_embed"),
    "fc2_b": ("layers", "vision_embed"),
    "post_w": ("vision_embed",),
    "post_b": ("vision_embed",),
}
PROJECTOR_PARAM_AXES = {
    "w_a": ("vision_embed", "embed"),
    "b_a": ("norm",),
    "w_b": ("embed", "embed"),
    "b_b": ("norm",),
}


def vision_param_shapes(cfg: VisionConfig) -> dict[str, tuple[int, ...]]:
    L, D, F, H, Dh = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.head_dim
    return {
        "patch_w": (cfg.patch_dim, D),
        "patch_b": (D,),
        "pos": (cfg.num_patches, D),
        "ln1_w": (L, D),
        "ln1_b": (L, D),
        "wq": (L, D, H, Dh),
        "wk": (L, D, H, Dh),
        "wv": (L, D, H, Dh),
        "bq": (L, H, Dh),
        "bk": (L, H, Dh),
        "bv": (L, H, Dh),
        "wo": (L, H, Dh, D),
        "bo": (L, D),
        "ln2_w": (L, D),
        "ln2_b": (L, D),
        "fc1": (L, D, F),
        "fc1_b": (L, F),
        "fc2": (L, F, D),
        "fc2_b": (L, D),
        "post_w": (D,),
        "post_b": (D,),
    }


def _lead(v, ndim: int):
    """``v`` with leading unit axes up to ``ndim`` (broadcasting written out)."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis, statistics in f32 (``torch.nn.LayerNorm``)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps) * _lead(weight, x.ndim) + _lead(bias, x.ndim)
    return y.astype(x.dtype)


def patchify(pixels, patch_size: int):
    """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C]: patches row-major, pixels (y, x, c) inside a patch."""
    B, H, W, C = pixels.shape
    p = patch_size
    x = pixels.reshape(B, H // p, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


class VisionEncoder(nnx.Module):
    """Images [B, H, W, C] (normalized pixels) -> patch features [B, n_patches, D_v]."""

    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = jax.nn.initializers.normal(0.02)
        keys = jax.random.split(rngs.params(), len(VISION_PARAM_AXES))
        params = {}
        for (name, shape), k in zip(vision_param_shapes(cfg).items(), keys):
            if name.endswith("_w") and name.startswith(("ln", "post")):
                value = jnp.ones(shape, jnp.float32)
            elif name.endswith("_b") or name in ("bq", "bk", "bv", "bo"):
                value = jnp.zeros(shape, jnp.float32)
            else:
                value = init(k, shape, jnp.float32)
            params[name] = nnx.Param(value, logical_axes=VISION_PARAM_AXES[name])
        self.params = nnx.Dict(params)

    def __call__(self, pixels):
        cfg = self.cfg
        p = {k: v[...] for k, v in self.params.items()}
        x = patchify(pixels.astype(jnp.float32), cfg.patch_size) @ p["patch_w"]  # [B, n, D]
        x = x + _lead(p["patch_b"], 3)
        x = x + p["pos"][None]
        layers = {k: p[k] for k in VISION_PARAM_AXES if VISION_PARAM_AXES[k][0] == "layers"}
        scale = 1.0 / math.sqrt(cfg.head_dim)

        def block(x, q):
            h = layer_norm(x, q["ln1_w"], q["ln1_b"], cfg.layer_norm_eps)
            qh = jnp.einsum("bnd,dhk->bnhk", h, q["wq"]) + _lead(q["bq"], 4)  # [B, n, H, Dh]
            kh = jnp.einsum("bnd,dhk->bnhk", h, q["wk"]) + _lead(q["bk"], 4)
            vh = jnp.einsum("bnd,dhk->bnhk", h, q["wv"]) + _lead(q["bv"], 4)
            probs = jax.nn.softmax(jnp.einsum("bqhk,bshk->bhqs", qh, kh) * scale, axis=-1)  # full attention
            out = jnp.einsum("bhqs,bshk->bqhk", probs, vh)
            x = x + jnp.einsum("bqhk,hkd->bqd", out, q["wo"]) + _lead(q["bo"], 3)
            h = layer_norm(x, q["ln2_w"], q["ln2_b"], cfg.layer_norm_eps)
            h = jax.nn.gelu(h @ q["fc1"] + _lead(q["fc1_b"], 3), approximate=True)  # gelu_pytorch_tanh
            return x + h @ q["fc2"] + _lead(q["fc2_b"], 3), None

        x, _ = jax.lax.scan(block, x, layers)
        return layer_norm(x, p["post_w"], p["post_b"], cfg.layer_norm_eps)


class Projector(nnx.Module):
    """Patch features [.., D_v] -> decoder inputs [.., D]: ``W_b gelu(W_a f + a) + b``."""

    def __init__(self, vision_dim: int, model_dim: int, *, rngs: nnx.Rngs):
        init = jax.nn.initializers.normal(0.02)
        ka, kb = jax.random.split(rngs.params())
        self.w_a = nnx.Param(init(ka, (vision_dim, model_dim), jnp.float32), logical_axes=PROJECTOR_PARAM_AXES["w_a"])
        self.b_a = nnx.Param(jnp.zeros((model_dim,), jnp.float32), logical_axes=PROJECTOR_PARAM_AXES["b_a"])
        self.w_b = nnx.Param(init(kb, (model_dim, model_dim), jnp.float32), logical_axes=PROJECTOR_PARAM_AXES["w_b"])
        self.b_b = nnx.Param(jnp.zeros((model_dim,), jnp.float32), logical_axes=PROJECTOR_PARAM_AXES["b_b"])

    def __call__(self, features):
        h = jax.nn.gelu(features @ self.w_a[...] + _lead(self.b_a[...], features.ndim), approximate=False)
        return h @ self.w_b[...] + _lead(self.b_b[...], h.ndim)


class VisionLanguageModel(Decoder):
    """A ``Decoder`` whose prompts may hold images (module docstring).

    It IS a decoder (the sampler, ``completion_logprobs``, sharding and checkpoints take it as one);
    ``hidden_states`` / ``__call__`` accept ``images`` [B, N, H, W, C] in addition.
    """

    def __init__(self, cfg: ModelConfig, vision_cfg: VisionConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        if not 0 <= vision_cfg.image_token_id < cfg.vocab_size:
            raise ValueError(
                f"VisionConfig.image_token_id={vision_cfg.image_token_id} is outside the vocabulary [0, {cfg.vocab_size})"
            )
        self.vision_cfg = vision_cfg
        self.vision = VisionEncoder(vision_cfg, rngs=rngs)
        self.projector = Projector(vision_cfg.hidden_size, cfg.hidden_size, rngs=rngs)

    def image_embeds(self, images):
        """Images [B, N, H, W, C] -> projected patch embeddings [B, N * n_patches, D] (compute dtype)."""
        B, N = images.shape[:2]
        feats = self.vision(images.reshape(B * N, *images.shape[2:]))  # [B*N, n, D_v]
        out = self.projector(feats).astype(self.cfg.compute_dtype)  # [B*N, n, D]
        return out.reshape(B, N * self.vision_cfg.num_patches, -1)

    def image_inputs(self, tokens, images, attention_mask=None, image_mask=None):
        """``(inputs_embeds [B, S, D], embeds_mask [B, S], block_ids [B, S] or None)`` for
        ``Decoder.hidden_states``: the k-th image slot of a row (k < N * n_patches, padding not
        counted) takes patch embedding k; its block is its image's index + 1. The slots are the
        positions ``image_mask`` [B, S] marks, or without it the row's placeholder ids."""
        vc = self.vision_cfg
        embeds = self.image_embeds(images)  # [B, N*n, D]
        slots = embeds.shape[1]
        is_image = tokens == vc.image_token_id if image_mask is None else image_mask.astype(jnp.bool_)
        if attention_mask is not None:
            is_image = is_image & attention_mask.astype(jnp.bool_)
        k = jnp.cumsum(is_image, axis=-1) - 1  # index of each placeholder in its row
        is_image = is_image & (k < slots)
        k = jnp.clip(k, 0, slots - 1)
        inputs = jnp.take_along_axis(embeds, k[..., None], axis=1)  # [B, S, D]
        blocks = jnp.where(is_image, k // vc.num_patches + 1, 0).astype(jnp.int32) if vc.bidirectional else None
        return inputs, is_image, blocks

    def hidden_states(
        self, tokens, positions, attention_mask=None, cache=None, *, images=None, image_mask=None, **soft
    ):
        if images is None:
            return super().hidden_states(tokens, positions, attention_mask, cache, **soft)
        inputs, embeds_mask, blocks = self.image_inputs(tokens, images, attention_mask, image_mask)
        return super().hidden_states(
            tokens, positions, attention_mask, cache, inputs_embeds=inputs, embeds_mask=embeds_mask, block_ids=blocks
        )


# ----------------------------------------------------------------------------- images in, checked
def check_images(images, cfg: VisionConfig, where: str = "images") -> np.ndarray:
    """``images`` as float32 [B, N, H, W, C], or a one-line ``ValueError`` naming what is wrong."""
    a = np.asarray(images)
    want = (cfg.image_size, cfg.image_size, cfg.num_channels)
    if a.ndim != 5:
        raise ValueError(f"{where}: expected [batch, images, {want[0]}, {want[1]}, {want[2]}], got shape {a.shape}")
    if a.shape[4] != cfg.num_channels:
        raise ValueError(f"{where}: {a.shape[4]} channels, the vision encoder takes {cfg.num_channels}")
    if a.shape[2:4] != want[:2]:
        raise ValueError(
            f"{where}: images of {a.shape[2]}x{a.shape[3]} pixels, the vision encoder takes {want[0]}x{want[1]}"
        )
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{where}: dtype {a.dtype} is not numeric")
    return a.astype(np.float32)


def check_placeholders(tokens, num_images: int, cfg: VisionConfig, where: str = "prompt_tokens") -> None:
    """Each row of ``tokens`` [B, S] must hold ``num_images * num_patches`` placeholders."""
    counts = (np.asarray(tokens) == cfg.image_token_id).sum(axis=-1)
    want = num_images * cfg.num_patches
    bad = np.flatnonzero(counts != want)
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"{where} row {r} holds {int(counts[r])} image placeholders (id {cfg.image_token_id}); "
            f"{num_images} image(s) x {cfg.num_patches} patches need {want}"
        )


def check_image_mask(tokens, image_mask, num_images: int, cfg: VisionConfig, where: str = "image_mask") -> np.ndarray:
    """``image_mask`` as bool [B, S] beside ``tokens`` [B, S], or a ``ValueError`` naming the first
    bad row: every marked position must hold the placeholder id, and a row marks whole images,
    at most ``num_images`` of them."""
    t, m = np.asarray(tokens), np.asarray(image_mask)
    if m.shape != t.shape:
        raise ValueError(f"{where}: shape {m.shape} differs from the tokens' {t.shape}")
    m = m.astype(bool)
    wrong = m & (t != cfg.image_token_id)
    if wrong.any():
        r, c = np.argwhere(wrong)[0]
        raise ValueError(
            f"{where}[{r}, {c}] marks token {int(t[r, c])}, not the image placeholder {cfg.image_token_id}"
        )
    counts = m.sum(axis=-1)
    bad = np.flatnonzero((counts % cfg.num_patches != 0) | (counts > num_images * cfg.num_patches))
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"{where} row {r} marks {int(counts[r])} image slots; whole images of {cfg.num_patches} patches, "
            f"at most {num_images}, are needed"
        )
    return m


def normalize(pixels):
    """Pixels in [0, 1] -> the encoder's input range, ``(x - 0.5) / 0.5`` (the SigLIP processor).
    A JAX array (traced inside a jitted loss, too) stays one; anything else becomes float32 NumPy."""
    if not isinstance(pixels, jax.Array):
        pixels = np.asarray(pixels, np.float32)
    return (pixels - 0.5) / 0.5


def load_image(path: str | os.PathLike, cfg: VisionConfig) -> np.ndarray:
    """An image file -> [H, W, C] float32 in [0, 1], checked against ``cfg``.

    Raises ``ValueError`` naming the file when it cannot be decoded (missing, truncated, not an
    image) or when its size does not match ``cfg.image_size`` (resize it beforehand: silently
    resampling would change what the model sees). Grey / RGB conversion follows ``num_channels``.
    """
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if cfg.num_channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable image file ({type(err).__name__}: {err})") from None
    if img.size != (cfg.image_size, cfg.image_size):
        raise ValueError(
            f"{path}: image is {img.size[0]}x{img.size[1]} pixels, the vision encoder takes {cfg.image_size}x{cfg.image_size}"
        )
    a = np.asarray(img, np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


# ----------------------------------------------------------------------------- real weights in
def load_siglip_state(tensors: dict[str, np.ndarray], cfg: VisionConfig, prefix: str = "") -> dict[str, np.ndarray]:
    """Maps a SigLIP vision tower's tensors (module docstring's layout) to ``VisionEncoder`` params.

    ``tensors``: name -> array (e.g. ``safetensors.numpy.load_file(path)``); ``prefix``: prepended
    to every name (``"vision_model."`` for a full SigLIP checkpoint). Returns name -> array for
    ``VisionEncoder.params``; a missing tensor or a shape that does not match ``cfg`` raises a
    ``ValueError`` naming it.
    """
    L, D, H, Dh, p, C = cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.patch_size, cfg.num_channels

    def get(name, shape):
        full = prefix + name
        if full not in tensors:
            raise ValueError(f"SigLIP weights: missing tensor {full!r}")
        a = np.asarray(tensors[full], np.float32)
        if a.shape != shape:
            raise ValueError(f"SigLIP weights: {full!r} has shape {a.shape}, the config needs {shape}")
        return a

    def stack(fmt, shape, fn=lambda a: a):
        return np.stack([fn(get(fmt.format(l=l), shape)) for l in range(L)])

    F = cfg.intermediate_size
    lay = "encoder.layers.{l}."
    out = {
        "patch_w": get("embeddings.patch_embedding.weight", (D, C, p, p)).transpose(2, 3, 1, 0).reshape(p * p * C, D),
        "patch_b": get("embeddings.patch_embedding.bias", (D,)),
        "pos": get("embeddings.position_embedding.weight", (cfg.num_patches, D)),
        "ln1_w": stack(lay + "layer_norm1.weight", (D,)),
        "ln1_b": stack(lay + "layer_norm1.bias", (D,)),
        "ln2_w": stack(lay + "layer_norm2.weight", (D,)),
        "ln2_b": stack(lay + "layer_norm2.bias", (D,)),
        "wo": stack(lay + "self_attn.out_proj.weight", (D, D), lambda a: a.T.reshape(H, Dh, D)),
        "bo": stack(lay + "self_attn.out_proj.bias", (D,)),
        "fc1": stack(lay + "mlp.fc1.weight", (F, D), lambda a: a.T),
        "fc1_b": stack(lay + "mlp.fc1.bias", (F,)),
        "fc2": stack(lay + "mlp.fc2.weight", (D, F), lambda a: a.T),
        "fc2_b": stack(lay + "mlp.fc2.bias", (D,)),
        "post_w": get("post_layernorm.weight", (D,)),
        "post_b": get("post_layernorm.bias", (D,)),
    }
    for n in "qkv":
        out[f"w{n}"] = stack(lay + f"self_attn.{n}_proj.weight", (D, D), lambda a: a.T.reshape(D, H, Dh))
        out[f"b{n}"] = stack(lay + f"self_attn.{n}_proj.bias", (D,), lambda a: a.reshape(H, Dh))
    return out


def set_encoder_params(encoder: VisionEncoder, values: dict[str, np.ndarray]) -> None:
    """Writes ``load_siglip_state``'s arrays into ``encoder`` (in place)."""
    for name, value in values.items():
        encoder.params[name][...] = jnp.asarray(value, encoder.params[name][...].dtype)
