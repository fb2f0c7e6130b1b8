"""The policy a run trains: model graph, parameters, tokenizer, mesh, the sampler and log-probs.

``Policy`` is what every phase below the trainer needs from the model, and all it needs: rollout
kinds sample from it and score with it, the update differentiates ``completion_logprobs`` of its
graph, evaluation and the CLI's ``eval`` / ``sample`` / ``export`` use it without a trainer or
reward workers. ``policy.params`` is the live handle: the update replaces it after each step.

Images: when the model is a ``models.vision.VisionLanguageModel`` and an example's metadata holds
``"image"`` [H, W, C] (or ``"images"`` [N, H, W, C]) pixels in [0, 1], ``render`` puts the image
placeholders (``N * num_patches`` ids) before the prompt text, ``prompt_images`` gives the pixels
[P, N, H, W, C], and ``generate`` / ``logprobs`` / ``completion_logprobs`` take them as
``images=`` (pixels in [0, 1]; the policy applies the encoder's normalization). Rows carry them
in ``Rollout.images``. Images anywhere in a row (multi-turn episodes with a screenshot per
observation): ``image_mask`` [B, S] beside ``images`` names the image slots (``models.vision``);
placeholder ids it does not mark, e.g. ones the policy sampled, are ordinary tokens.

Numerics: master weights are f32 (``model.param_dtype`` sets what the sampler reads); the forward
pass runs in ``model.compute_dtype``; log-probs are f32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_llm import distributed, kernels, models, sampling, sharding, tasks
from jaxrl_llm.config import Config
from jaxrl_llm.types import Example

del kernels  # imported for its side effect: it registers the optional CPU decode backend


def left_pad(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to ``length``: (tokens [N, length] int32, mask [N, length] int32)."""
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.int32)
    for i, s in enumerate(seqs):
        if len(s):
            tokens[i, length - len(s) :] = s
            mask[i, length - len(s) :] = 1
    return tokens, mask


def right_pad(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads (and truncates) token lists to ``length``: (tokens [N, length], mask [N, length] f32)."""
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.float32)
    for i, s in enumerate(seqs):
        s = list(s)[:length]
        tokens[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return tokens, mask


def build_model(cfg: Config):
    """The policy and its tokenizer from ``cfg.model``: f32 master weights, forward pass in
    ``model.compute_dtype`` (the decoder casts each weight at use), attention by ``model.attention``,
    the memory and compile controls ``model.remat`` and ``model.scan_layers``."""
    model, tokenizer = models.get_model(cfg.model.name, dtype="float32", seed=cfg.seed)
    if tokenizer is None:
        raise ValueError(
            f"model {cfg.model.name!r} comes without a tokenizer; the trainer needs one: pair it with one, "
            f"model.name='{cfg.model.name}+synthetic' (models.zoo.with_tokenizer)"
        )
    m = cfg.model
    run_cfg = model.cfg.replace(
        dtype=m.compute_dtype, attention_impl=m.attention, remat=m.remat, scan_layers=m.scan_layers
    )
    if model.cfg != run_cfg:
        model.cfg = run_cfg
    return model, tokenizer


def _run_devices(cfg: Config) -> tuple[list[jax.Device], list[jax.Device]]:
    """(learner devices, sampler devices) of ``mesh.num_devices`` / ``mesh.sampler_devices``."""
    devices = jax.devices()[: cfg.mesh.num_devices] if cfg.mesh.num_devices else jax.devices()
    n = cfg.mesh.sampler_devices
    if n and n >= len(devices):
        raise ValueError(f"mesh.sampler_devices={n} leaves no learner device of the {len(devices)} in use")
    return devices[: len(devices) - n], devices[len(devices) - n :]


def make_mesh(cfg: Config) -> jax.sharding.Mesh:
    """The learner's mesh: the run's devices less the sampler's (``mesh.sampler_devices``)."""
    m = cfg.mesh
    return sharding.make_mesh({"data": m.data, "fsdp": m.fsdp, "tensor": m.tensor}, _run_devices(cfg)[0])


def make_sampler_mesh(cfg: Config) -> jax.sharding.Mesh | None:
    """The sampler's own mesh (disaggregated placement): the last ``mesh.sampler_devices`` devices,
    all on ``data`` but ``tensor`` (no ``fsdp``: the sampler holds whole weights per data shard);
    None when the sampler shares the learner's mesh."""
    devices = _run_devices(cfg)[1]
    if not devices:
        return None
    tensor = cfg.mesh.tensor if len(devices) % cfg.mesh.tensor == 0 else 1
    return sharding.make_mesh({"data": -1, "tensor": tensor}, devices)


def variable_shardings(mesh: jax.sharding.Mesh, state: Any) -> Any:
    """Shardings of an ``nnx.State`` by its variables' ``logical_axes`` (the rules table), a dim
    replicated where the mesh does not divide it."""
    is_var = lambda x: isinstance(x, nnx.Variable)
    variables, _ = jax.tree.flatten(state, is_leaf=is_var)
    shards = []
    for var in variables:
        value = var[...] if is_var(var) else var
        axes = var.get_metadata().get("logical_axes") if is_var(var) else None
        axes = axes or (None,) * value.ndim
        shards.append(sharding.divisible_sharding(mesh, axes, value.shape))
    return jax.tree.unflatten(jax.tree.structure(state), shards)


def _cast_floats(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def _eos_ids(tokenizer, model_cfg) -> list[int]:
    ids = []
    for value in (tokenizer.eos_token_id, model_cfg.eos_token_id):
        if value is None:
            continue
        ids.extend(value if isinstance(value, (list, tuple)) else [value])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0 and im_end != tokenizer.unk_token_id:
        ids.append(im_end)
    return sorted({int(i) for i in ids})


class Policy:
    """Model graph + live params + tokenizer on a mesh, with the sampler and log-prob functions.

    Build with ``Policy.create(cfg)``; ``params`` is replaced by the update (it is donated).
    """

    def __init__(
        self, cfg: Config, graphdef: Any, params: Any, tokenizer: Any, mesh: jax.sharding.Mesh, param_shardings: Any
    ):
        self.cfg = cfg
        self.graphdef = graphdef
        self.params = params
        self.tokenizer = tokenizer
        self.mesh = mesh
        self.param_shardings = param_shardings
        model = nnx.merge(graphdef, params)
        self.model_cfg = model.cfg
        self.vision_cfg = getattr(model, "vision_cfg", None)  # None: text only
        self.pad_id = _pad_id(tokenizer)
        self.eos_ids = _eos_ids(tokenizer, self.model_cfg)
        self._logprobs = jax.jit(self._logprobs_impl, static_argnums=(3, 4))

    @classmethod
    def create(cls, cfg: Config, mesh: jax.sharding.Mesh | None = None) -> Policy:
        mesh = mesh or make_mesh(cfg)
        model, tokenizer = build_model(cfg)
        graphdef, state = nnx.split(model)
        shardings = variable_shardings(mesh, state)
        return cls(cfg, graphdef, jax.device_put(state, shardings), tokenizer, mesh, shardings)

    def on_mesh(self, mesh: jax.sharding.Mesh) -> Policy:
        """A copy of this policy on another mesh (the sampler's), its params placed there by the
        rules table; ``push`` refreshes them."""
        shardings = variable_shardings(mesh, self.params)
        return Policy(self.cfg, self.graphdef, jax.device_put(self.params, shardings), self.tokenizer, mesh, shardings)

    def push(self, params: Any) -> None:
        """Takes ``params`` (another mesh's, e.g. the learner's after an update) as this policy's,
        resharded onto this policy's mesh (``jax.device_put`` copies across devices)."""
        self.params = jax.device_put(params, self.param_shardings)

    # ------------------------------------------------------------------ model
    def shardings_of(self, tree: Any) -> Any:
        """Shardings of a parameter pytree (nnx variables with logical axes) on this mesh."""
        return variable_shardings(self.mesh, tree)

    @property
    def replicated(self) -> jax.sharding.NamedSharding:
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def model(self, params: Any) -> nnx.Module:
        return nnx.merge(self.graphdef, params)

    def put(self, x: np.ndarray, batch_axis: int = 0) -> jax.Array:
        """A host NumPy array (identical on every process) as a global array sharded along its
        ``batch_axis`` over the mesh's data axes (replicated when they do not divide it)."""
        axes = [None] * x.ndim
        axes[batch_axis] = "batch"
        sh = sharding.divisible_sharding(self.mesh, axes, x.shape)
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    def row_chunk(self) -> int:
        """Rows per pass of ``by_row_chunks``: ``train.micro_batch_size`` (0: all rows in one pass)
        rounded up to a multiple of the mesh's row shards (``data x fsdp``), so that every chunk
        is split over them and each device holds at most ``micro_batch_size`` rows of it (a
        chunk they did not divide would be replicated: every device would run all its rows)."""
        rows = self.cfg.train.micro_batch_size
        return math.lcm(rows, sharding.axis_shards(self.mesh, "batch")) if rows else 0

    def by_row_chunks(self, fn: Callable[..., jax.Array], *rows: np.ndarray | None) -> np.ndarray:
        """``fn(*rows)`` [B, ...] on the host, run in chunks of ``row_chunk()`` rows.

        ``rows``: host arrays [B, ...] (None passes through as None); ``fn`` takes them placed on
        the mesh, sharded by row, and returns a device array whose leading axis is the rows. With
        ``train.micro_batch_size`` 0 it runs once over all B rows. Otherwise the rows are padded
        (copies of the last row, dropped from the result) to a multiple of the chunk and ``fn``
        runs once per chunk: one compiled shape whatever B is, and the activations of one
        chunk alive at a time. Why: the whole-batch forward passes (pi_ref, a recomputed pi_old,
        the critic's values) hold ~28 MB of activations a row with the 3M-parameter ``small``
        model at 508 tokens, ~16 GB at 576 rows in one pass, while the update's micro-batches
        bound theirs (``small``, 256 rows of 384 tokens on a CPU: one pass asked for a 3.6 GB
        buffer; the step in chunks of 8 rows peaked at 2.0 GB). A row's result does not depend on
        the other rows of its chunk, so the chunked result equals the one-pass one (up to float
        rounding where XLA picks another kernel for the smaller shape)."""
        chunk = self.row_chunk()
        if not chunk:
            return distributed.to_host(fn(*(None if x is None else self.put(x) for x in rows)))
        B = next(x for x in rows if x is not None).shape[0]
        pad = -B % chunk
        rows = tuple(None if x is None else np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) for x in rows)
        outs = [
            fn(*(None if x is None else self.put(x[i : i + chunk]) for x in rows)) for i in range(0, B + pad, chunk)
        ]
        return np.concatenate([distributed.to_host(out) for out in outs])[:B]

    def completion_logprobs(
        self,
        model: nnx.Module,
        tokens: jax.Array,
        attention_mask: jax.Array,
        num_completion: int,
        group_size: int = 1,
        return_entropy: bool = False,
        images: jax.Array | None = None,
        image_mask: jax.Array | None = None,
    ):
        """``models.completion_logprobs`` with the run's chunking (``model.logprob_chunk_size``);
        ``images`` [B, N, H, W, C] pixels in [0, 1] for a vision-language policy, ``image_mask``
        [B, S] its image slots (optional)."""
        chunk = self.cfg.model.logprob_chunk_size or None  # 0: one pass, logits kept (no recompute)
        return models.completion_logprobs(
            model,
            tokens,
            attention_mask,
            num_completion,
            return_entropy=return_entropy,
            chunk_size=chunk,
            group_size=group_size,
            images=None if images is None else models.vision.normalize(images),
            image_mask=image_mask,
        )

    def _logprobs_impl(self, params, tokens, attention_mask, num_completion, group_size, images, image_mask):
        return jax.lax.stop_gradient(
            self.completion_logprobs(
                self.model(params),
                tokens,
                attention_mask,
                num_completion,
                group_size,
                images=images,
                image_mask=image_mask,
            )
        )

    def logprobs(
        self,
        params: Any,
        tokens: np.ndarray,
        attention_mask: np.ndarray,
        num_completion: int,
        group_size: int = 1,
        images: np.ndarray | None = None,
        image_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per-token log-probs [B, T] (host f32) of the last ``num_completion`` tokens, no gradient,
        in chunks of ``train.micro_batch_size`` rows (``by_row_chunks``).
        ``group_size`` > 1: rows come in groups sharing one prompt, computed once per group (when
        the chunk holds whole groups; otherwise each row computes its own prompt).
        ``images``: each row's [N, H, W, C] pixels in [0, 1] (a vision-language policy);
        ``image_mask`` [B, S]: its image slots, when they are not the first placeholders."""
        if image_mask is not None and images is not None:
            models.vision.check_image_mask(tokens, image_mask, np.shape(images)[1], self.vision_cfg)
            image_mask = np.asarray(image_mask, bool)
        else:
            image_mask = None
        images = None if images is None else np.asarray(images, np.float32)
        chunk = self.row_chunk()
        if chunk and chunk % group_size:
            group_size = 1
        fn = lambda tok, att, img, img_mask: self._logprobs(params, tok, att, num_completion, group_size, img, img_mask)
        return np.asarray(self.by_row_chunks(fn, tokens, attention_mask, images, image_mask), np.float32)

    # ------------------------------------------------------------------ prompts and sampling
    def render(self, example: Example) -> list[int]:
        """The prompt's token ids; a vision-language policy's image placeholders come first."""
        text = tasks.render_prompt(example, self.tokenizer, system_prompt=self.cfg.task.system_prompt or None)
        pixels = self.example_images(example)
        slots = [] if pixels is None else [self.vision_cfg.image_token_id] * (len(pixels) * self.vision_cfg.num_patches)
        return slots + self.encode_text(text)

    def example_images(self, example: Example) -> np.ndarray | None:
        """The example's pictures [N, H, W, C] (pixels in [0, 1], checked against the encoder), or
        None for a text-only example. An example with pictures and a policy without a vision
        encoder is an error: the model would answer without seeing them."""
        meta = example.metadata or {}
        if "images" in meta:
            pixels = np.asarray(meta["images"], np.float32)
        elif "image" in meta:
            pixels = np.asarray(meta["image"], np.float32)[None]
        else:
            return None
        if self.vision_cfg is None:
            raise ValueError(
                f"example {example.id!r} holds an image but model {self.cfg.model.name!r} has no vision "
                f"encoder; train a vision-language model ({', '.join(models.vision_models())})"
            )
        return models.vision.check_images(pixels[None], self.vision_cfg, f"image of example {example.id!r}")[0]

    def prompt_images(self, examples: Sequence[Example]) -> np.ndarray | None:
        """The examples' pictures [P, N, H, W, C] in [0, 1] (``render``'s order), or None when no
        example has one; every example of a batch must show the same number of images."""
        pixels = [self.example_images(e) for e in examples]
        if all(p is None for p in pixels):
            return None
        counts = {e.id: 0 if p is None else len(p) for e, p in zip(examples, pixels)}
        if len(set(counts.values())) > 1:
            raise ValueError(f"a batch's examples must show the same number of images; got {counts}")
        return np.stack(pixels)

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompts(self, examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded prompt tokens and mask [P, Sp]: Sp is the power-of-two bucket of the longest
        prompt (bounded recompiles), capped at ``task.max_prompt_len`` (so a cap just above a
        task's prompt lengths wastes no padding)."""
        return self.pad_prompts([self.render(e) for e in examples], [f"prompt of example {e.id!r}" for e in examples])

    def pad_prompts(self, ids: Sequence[Sequence[int]], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Prompt token lists left-padded as ``encode_prompts`` describes; a prompt longer than
        ``task.max_prompt_len`` raises, named by its entry of ``names``."""
        longest = max(len(x) for x in ids)
        cap = self.cfg.task.max_prompt_len
        if longest > cap:
            i = max(range(len(ids)), key=lambda j: len(ids[j]))
            raise ValueError(f"{names[i]} has {longest} tokens > task.max_prompt_len={cap}; raise it")
        return left_pad(ids, min(sampling.bucket_length(longest), cap), self.pad_id)

    def generate(
        self,
        prompt_tokens: np.ndarray,
        prompt_mask: np.ndarray,
        key: jax.Array,
        num_samples: int,
        greedy: bool = False,
        temperature: float | None = None,
        temperature_rule: Callable | None = None,
        temperature_rule_params: Any = None,
        images: np.ndarray | None = None,
        image_mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Samples ``num_samples`` completions per prompt with the live params; returns the sampler
        output as host arrays. ``temperature_rule`` / ``temperature_rule_params``: the sampler's
        per-row temperature hook and its traced arguments (``sampling.sample``). ``images``: each
        prompt's [N, H, W, C] pixels in [0, 1] (``prompt_images``), needed when the prompts hold
        image placeholders. ``image_mask`` [P, Sp]: the image slots, when not every placeholder id
        is one (multi-turn contexts holding sampled tokens; ``sampling.sample``)."""
        if images is None and self.vision_cfg is not None:
            real = np.asarray(prompt_mask, bool)
            if image_mask is None:
                slots = np.asarray(prompt_tokens)[real] == self.vision_cfg.image_token_id
            else:
                slots = np.asarray(image_mask, bool)[real]
            if slots.any():
                raise ValueError("generate: the prompts hold image placeholders but no images were given")
            image_mask = None
        s = self.cfg.sampling
        scfg = sampling.SamplingConfig(
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature if temperature is None else temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            greedy=greedy,
            stop_token_ids=tuple(self.eos_ids),
            pad_id=self.pad_id,
            return_policy_logprobs=not greedy,
            return_entropies=not greedy,
            backend=s.backend,
        )
        params = self.params
        if self.cfg.model.param_dtype != "float32":
            params = _cast_floats(params, jnp.dtype(self.cfg.model.param_dtype))
        out = sampling.sample(
            self.model(params),
            prompt_tokens,
            prompt_mask,
            key,
            scfg,
            num_samples=num_samples,
            temperature_rule=temperature_rule,
            mesh=self.mesh,
            temperature_rule_params=temperature_rule_params,
            images=None if images is None else models.vision.normalize(images),
            image_mask=image_mask,
        )
        arrays = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
        return {k: distributed.to_host(v) for k, v in arrays.items() if isinstance(v, jax.Array)}

    def decode(self, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
        return [
            self.tokenizer.decode(row[: int(n)].tolist(), skip_special_tokens=True) for row, n in zip(tokens, lengths)
        ]
