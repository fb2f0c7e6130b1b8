"""The canonical training loop every method runs through.

``train(cfg)`` reads as the outline of a run:

  1. build the mesh, the policy, the task, the algorithm, the reward runner;
  2. resume from the newest readable checkpoint in the run directory, if any;
  3. SFT warm start (``sft.steps`` > 0): cross-entropy on demonstrations, prompt tokens masked;
  4. evaluate on the held-out split ("before");
  5. RL steps, each:
       prompts from the task -> G completions per prompt (sampler) -> rewards (host, parallel,
       with timeouts) -> the algorithm's reward shaping / advantages / group filter (dynamic
       sampling: more prompts are drawn until the batch is full) -> pi_old log-probs (from the
       sampler, or recomputed) -> reference log-probs when the KL weight ``beta`` is nonzero
       (the params frozen at RL start; same graph, no second model object) -> ``num_iterations``
       epochs of ``num_minibatches`` optimizer updates, gradients accumulated over micro-batches
       inside one jitted, donated step -> algorithm-state update -> metrics -> periodic eval ->
       checkpoint;
  6. evaluate again ("after"), print the summary table, write the curves.

Numerics: master weights and optimizer state are f32; the forward pass runs in
``model.compute_dtype``; log-probs and every loss are f32. The loss normalizers ``num_tokens`` /
``num_seqs`` are computed over the whole optimization minibatch (``jaxrl_llm.types``), so
accumulating micro-batch gradients by summation gives the full-batch gradient exactly.

Determinism: every random draw of step ``s`` comes from ``fold_in(base_key, s)`` and the data
iterator position is checkpointed, so a resumed run repeats an uninterrupted run's metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import signal
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as config_lib
from jaxrl_llm import distributed, metrics_log, sharding
from jaxrl_llm.config import Config

# ---------------------------------------------------------------------------------------------
# Pieces that do not depend on the run: optimizers, padding, micro-batch accumulation


def make_optimizer(learning_rate: float, total_steps: int, warmup_steps: int = 0,
                   schedule: str = "constant", min_lr_ratio: float = 0.1, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                   max_grad_norm: float = 1.0) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter, 2019) after global-norm clipping, on a linear-warmup schedule
    followed by a constant rate or a cosine decay to ``min_lr_ratio * learning_rate``."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    if schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0 if warmup_steps else learning_rate, learning_rate, warmup_steps,
            max(total_steps, warmup_steps + 1), end_value=learning_rate * min_lr_ratio)
    elif schedule == "constant":
        lr = (optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps),
                                    optax.constant_schedule(learning_rate)], [warmup_steps])
              if warmup_steps else learning_rate)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'cosine' or 'constant'")
    parts = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm > 0 else []
    parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    return optax.chain(*parts)


def left_pad(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to ``length``: (tokens [N, length] int32, mask [N, length] int32)."""
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.int32)
    for i, s in enumerate(seqs):
        if len(s):
            tokens[i, length - len(s):] = s
            mask[i, length - len(s):] = 1
    return tokens, mask


def right_pad(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads (and truncates) token lists to ``length``: (tokens [N, length], mask [N, length])."""
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.float32)
    for i, s in enumerate(seqs):
        s = list(s)[:length]
        tokens[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return tokens, mask


def _combine_metrics(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Micro-batch metric reduction (``jaxrl_llm.types``): sum, except ``*/max`` and ``*/min``."""
    out = {}
    for k in a:
        if k.endswith("/max"):
            out[k] = jnp.maximum(a[k], b[k])
        elif k.endswith("/min"):
            out[k] = jnp.minimum(a[k], b[k])
        else:
            out[k] = a[k] + b[k]
    return out


def accumulate_gradients(loss_fn: Callable, params: Any, micro_batches: Any) -> tuple[Any, dict[str, jax.Array]]:
    """Sum of ``grad(loss_fn)(params, mb)`` over the leading axis of ``micro_batches``.

    ``loss_fn(params, mb) -> (loss, metrics)`` returns its micro-batch's share of the full-batch
    loss (global normalizers), so the sum is the full-batch gradient. Runs as ``lax.scan``: one
    compiled body, activations of one micro-batch alive at a time.
    Returns (grads, metrics) with ``metrics["loss"]`` the summed loss.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def one(mb):
        (loss, metrics), grads = grad_fn(params, mb)
        return grads, {"loss": loss, **metrics}

    first = jax.tree.map(lambda x: x[0], micro_batches)
    grads, metrics = one(first)
    n = jax.tree.leaves(micro_batches)[0].shape[0]
    if n == 1:
        return grads, metrics

    def body(carry, mb):
        g_acc, m_acc = carry
        g, m = one(mb)
        return (jax.tree.map(jnp.add, g_acc, g), _combine_metrics(m_acc, m)), None

    rest = jax.tree.map(lambda x: x[1:], micro_batches)
    (grads, metrics), _ = jax.lax.scan(body, (grads, metrics), rest)
    return grads, metrics


def apply_update(tx: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any,
                 loss: jax.Array) -> tuple[Any, Any, jax.Array, jax.Array]:
    """One optimizer update, skipped (params and state unchanged) when the loss or the gradient
    norm is not finite. Returns (params, opt_state, grad_norm, finite)."""
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    return keep(new_params, params), keep(new_opt_state, opt_state), grad_norm, finite


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021, "Evaluating LLMs trained on code", eq. 1):
    ``1 - C(n - c, k) / C(n, k)`` for ``n`` samples of which ``c`` are correct."""
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.prod((num_samples - num_correct - i) / (num_samples - i) for i in range(k))


def enable_compilation_cache(directory: str) -> None:
    """Turns on JAX's persistent compilation cache in ``directory`` for this process (every
    program, however fast it compiled, is stored)."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _cast_floats(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _to_python(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _to_python(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_python(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    return x


# ---------------------------------------------------------------------------------------------
# The trainer: static pieces of a run (mesh, graph, jitted steps) and the state that moves


class Interrupted(Exception):
    """Raised inside the loop after SIGINT once the checkpoint is saved."""


class Trainer:
    """Everything that stays fixed through a run, and the jitted functions over it.

    Mutable state (``params``, ``opt_state``, ``algo_state``, ``ref_params``, ``step``, the data
    iterator) lives on the instance and moves through ``save`` / ``restore``.
    """

    def __init__(self, cfg: Config):
        from jaxrl_llm import algorithms, models, rewards, tasks

        self.cfg = cfg = config_lib.resolve_algo(cfg)
        if cfg.compilation_cache_dir:
            enable_compilation_cache(cfg.compilation_cache_dir)
        self.run_dir = pathlib.Path(cfg.resolved_run_dir)
        self.is_main = distributed.is_main()
        devices = jax.devices()[: cfg.mesh.num_devices] if cfg.mesh.num_devices else None
        self.mesh = sharding.make_mesh({"data": cfg.mesh.data, "fsdp": cfg.mesh.fsdp, "tensor": cfg.mesh.tensor},
                                       devices)
        self.algo = algorithms.get(cfg.algorithm)
        self.algo_cfg = cfg.algo
        self.task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
        self.cfg = cfg = fit_algo_to_task(cfg, self.algo, self.task.num_train)
        self.algo_cfg = cfg.algo
        self.reward_runner = rewards.RewardRunner(self.task.reward_fns, num_workers=cfg.reward.num_workers,
                                                  timeout_s=cfg.reward.timeout_s)
        model, self.tokenizer = build_model(cfg)
        self.model_cfg = model.cfg
        self.graphdef, state = nnx.split(model)
        del model
        self.param_shardings = self._param_shardings(state)
        self.params = jax.device_put(state, self.param_shardings)
        self.pad_id = _pad_id(self.tokenizer)
        self.eos_ids = _eos_ids(self.tokenizer, self.model_cfg)
        self.base_key = jax.random.key(cfg.seed)
        self.data_iter = self.task.train_iter(cfg.seed)
        self.step = 0  # global step: SFT steps first, then RL steps
        self.total_sft = cfg.sft.steps
        self.total_steps = cfg.sft.steps + cfg.train.steps
        self.algo_state = None
        self.ref_params = None
        self.eval_history: dict[str, dict[str, float]] = {}
        self.counters = {"nonfinite_skipped": 0, "reward_failures": 0, "compiles_after_warmup": 0}
        self.sft_tx = make_optimizer(cfg.sft.learning_rate, cfg.sft.steps, cfg.sft.warmup_steps,
                                     "cosine", 0.1, weight_decay=cfg.sft.weight_decay,
                                     max_grad_norm=cfg.optim.max_grad_norm)
        o = cfg.optim
        t = cfg.train
        updates_per_step = t.num_iterations * t.num_minibatches
        self.rl_tx = make_optimizer(o.learning_rate, t.steps * updates_per_step, o.warmup_steps, o.schedule,
                                    o.min_lr_ratio, o.b1, o.b2, o.eps, o.weight_decay, o.max_grad_norm)
        self._jit_cache: dict[str, Callable] = {}
        self.phase = "sft" if cfg.sft.steps else "rl"
        if self.phase == "sft":
            self.opt_state = self._init_opt_state(self.sft_tx)
        else:  # no SFT stage: the RL state (optimizer, reference copy, algorithm state) starts now
            self.start_rl()

    # ------------------------------------------------------------------ sharding / placement
    def _param_shardings(self, state: nnx.State) -> Any:
        is_var = lambda x: isinstance(x, nnx.Variable)
        variables, treedef = jax.tree.flatten(state, is_leaf=is_var)
        shards = []
        for var in variables:
            value = var[...] if is_var(var) else var
            axes = var.get_metadata().get("logical_axes") if is_var(var) else None
            axes = axes or (None,) * value.ndim
            shards.append(sharding.divisible_sharding(self.mesh, axes, value.shape))
        return jax.tree.unflatten(jax.tree.structure(state), shards)

    def _init_opt_state(self, tx: optax.GradientTransformation) -> Any:
        """``tx.init(params)`` laid out like the params (moments) or replicated (counters), so
        that the donated update step sees identical input and output shardings: no recompiles."""
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        shardings = optax.tree_map_params(tx, lambda _, sh: sh, jax.eval_shape(tx.init, self.params),
                                          self.param_shardings, transform_non_params=lambda _: replicated)
        return jax.jit(tx.init, out_shardings=shardings)(self.params)

    def put(self, x: np.ndarray, batch_axis: int = 0) -> jax.Array:
        """A host NumPy array (identical on every process) as a global array sharded along its
        ``batch_axis`` over the mesh's data axes (replicated when they do not divide it)."""
        axes = [None] * x.ndim
        axes[batch_axis] = "batch"
        sh = sharding.divisible_sharding(self.mesh, axes, x.shape)
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    def model(self, params: Any) -> nnx.Module:
        return nnx.merge(self.graphdef, params)

    # ------------------------------------------------------------------ jitted functions
    def _jit(self, name: str, build: Callable[[], Callable]) -> Callable:
        if name not in self._jit_cache:
            self._jit_cache[name] = build()
        return self._jit_cache[name]

    def _logprobs_fn(self, params, tokens, attention_mask, num_completion, group_size=1):
        model = self.model(params)
        return jax.lax.stop_gradient(self._completion_logprobs(model, tokens, attention_mask, num_completion,
                                                               group_size=group_size))

    def _completion_logprobs(self, model, tokens, attention_mask, num_completion, return_entropy=False,
                             group_size=1):
        from jaxrl_llm.models import completion_logprobs

        chunk = self.cfg.model.logprob_chunk_size or None  # 0: one pass, logits kept (no recompute)
        return completion_logprobs(model, tokens, attention_mask, num_completion,
                                   return_entropy=return_entropy, chunk_size=chunk, group_size=group_size)

    def logprobs(self, params: Any, tokens: jax.Array, attention_mask: jax.Array, num_completion: int,
                 group_size: int = 1) -> jax.Array:
        """Per-token log-probs [B, T] of the last ``num_completion`` tokens, no gradient.
        ``group_size`` > 1: rows come in groups sharing one prompt, computed once per group."""
        fn = self._jit("logprobs", lambda: jax.jit(self._logprobs_fn, static_argnums=(3, 4)))
        return fn(params, tokens, attention_mask, num_completion, group_size)

    def _update_fn(self, tx: optax.GradientTransformation, loss_of_logprobs: Callable, num_completion: int,
                   group_size: int = 1) -> Callable:
        """Jitted ``(params, opt_state, inputs, batch, scalars) -> (params, opt_state, metrics)``.

        ``inputs`` holds ``tokens`` / ``attention_mask`` [M, mb, S] and ``batch`` the loss's
        per-row arrays [M, mb, ...] for M micro-batches; ``scalars`` the global normalizers.
        params and opt_state are donated: updated in place.
        """

        def step(params, opt_state, inputs, batch, scalars):
            def loss_fn(p, mb):
                mb_inputs, mb_batch = mb
                logp = self._completion_logprobs(self.model(p), mb_inputs["tokens"], mb_inputs["attention_mask"],
                                                 num_completion, group_size=group_size)
                return loss_of_logprobs(logp, {**mb_batch, **scalars})

            grads, metrics = accumulate_gradients(loss_fn, params, (inputs, batch))
            params, opt_state, grad_norm, finite = apply_update(tx, params, opt_state, grads, metrics["loss"])
            metrics = {**metrics, "grad_norm": grad_norm, "finite": finite.astype(jnp.float32)}
            return params, opt_state, metrics

        opt_sh = jax.tree.map(lambda x: x.sharding, self.opt_state)
        return jax.jit(step, donate_argnums=(0, 1), out_shardings=(self.param_shardings, opt_sh, None))

    def run_update(self, name: str, tx, loss_of_logprobs, tokens: np.ndarray, attention_mask: np.ndarray,
                   batch: Mapping[str, np.ndarray], scalars: Mapping[str, float], micro_batch_size: int,
                   num_completion: int, group_size: int = 1) -> dict[str, float]:
        """One optimizer update on the rows given (host arrays, leading dim = minibatch size).

        The rows are split into micro-batches of ``micro_batch_size`` (0 = one), each placed
        sharded over the mesh's data axes; ``scalars`` are the minibatch's global normalizers.
        ``group_size`` > 1: the rows come in groups sharing one prompt, each micro-batch holding
        whole groups; each prompt is computed once (``completion_logprobs(group_size=...)``).
        """
        n = tokens.shape[0]
        mb = micro_batch_size or n
        if n % mb:
            raise ValueError(f"micro_batch_size={mb} does not divide the minibatch of {n} rows")
        m = n // mb
        split = lambda x: self.put(np.ascontiguousarray(x.reshape(m, mb, *x.shape[1:])), batch_axis=1)
        inputs = {"tokens": split(tokens), "attention_mask": split(attention_mask)}
        dev_batch = {k: split(v) for k, v in batch.items()}
        dev_scalars = {k: jnp.asarray(v, jnp.float32) for k, v in scalars.items()}
        fn = self._jit(f"{name}/T={num_completion}/G={group_size}",
                       lambda: self._update_fn(tx, loss_of_logprobs, num_completion, group_size))
        self.params, self.opt_state, metrics = fn(self.params, self.opt_state, inputs, dev_batch, dev_scalars)
        return {k: float(distributed.to_host(v)) for k, v in metrics.items()}

    # ------------------------------------------------------------------ prompts and sampling
    def render(self, example) -> list[int]:
        from jaxrl_llm import tasks

        text = tasks.render_prompt(example, self.tokenizer, system_prompt=self.cfg.task.system_prompt or None)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompts(self, examples) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded prompt tokens and mask [P, Sp]: Sp is the power-of-two bucket of the longest
        prompt (bounded recompiles), capped at ``task.max_prompt_len`` (so a cap just above a
        task's prompt lengths wastes no padding)."""
        return self.pad_prompts([self.render(e) for e in examples], [f"prompt of example {e.id!r}" for e in examples])

    def pad_prompts(self, ids: Sequence[Sequence[int]], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Prompt token lists left-padded as ``encode_prompts`` describes; a prompt longer than
        ``task.max_prompt_len`` raises, named by its entry of ``names``."""
        from jaxrl_llm import sampling

        longest = max(len(x) for x in ids)
        if longest > self.cfg.task.max_prompt_len:
            i = max(range(len(ids)), key=lambda j: len(ids[j]))
            raise ValueError(f"{names[i]} has {longest} tokens > "
                             f"task.max_prompt_len={self.cfg.task.max_prompt_len}; raise it")
        return left_pad(ids, min(sampling.bucket_length(longest), self.cfg.task.max_prompt_len), self.pad_id)

    def generate(self, prompt_tokens: np.ndarray, prompt_mask: np.ndarray, key: jax.Array, num_samples: int,
                 greedy: bool = False, temperature: float | None = None, temperature_rule=None,
                 temperature_rule_params=None):
        """Samples ``num_samples`` completions per prompt; returns the sampler output as host arrays.
        ``temperature_rule`` / ``temperature_rule_params``: the sampler's per-row temperature hook
        and its traced arguments (``sampling.sample``)."""
        from jaxrl_llm import sampling

        s = self.cfg.sampling
        scfg = sampling.SamplingConfig(
            max_new_tokens=s.max_new_tokens, temperature=s.temperature if temperature is None else temperature,
            top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, greedy=greedy, stop_token_ids=tuple(self.eos_ids),
            pad_id=self.pad_id, return_policy_logprobs=not greedy, return_entropies=not greedy)
        params = self.params
        if self.cfg.model.param_dtype != "float32":
            params = _cast_floats(params, jnp.dtype(self.cfg.model.param_dtype))
        out = sampling.sample(self.model(params), prompt_tokens, prompt_mask, key, scfg, num_samples=num_samples,
                              temperature_rule=temperature_rule, mesh=self.mesh,
                              temperature_rule_params=temperature_rule_params)
        return {f.name: distributed.to_host(getattr(out, f.name)) for f in dataclasses.fields(out)
                if isinstance(getattr(out, f.name), jax.Array)}

    def decode(self, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
        return [self.tokenizer.decode(row[: int(n)].tolist(), skip_special_tokens=True)
                for row, n in zip(tokens, lengths)]

    def score(self, completions: list[str], examples: list) -> tuple[np.ndarray, dict[str, Any]]:
        rewards, info = self.reward_runner.score(completions, examples)
        return np.asarray(rewards, np.float32), info

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        return {"params": self.params, "opt_state": self.opt_state, "algo_state": _host_local(self.algo_state),
                "ref_params": self.ref_params, "rng": np.asarray(jax.random.key_data(self.base_key))}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase, "data": _to_python(self.data_iter.get_state()),
                "eval_history": self.eval_history, "counters": self.counters,
                "config": config_lib.to_dict(self.cfg)}

    def restore_target(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The pytree layout a checkpoint with ``meta`` holds (depends on the phase it was in)."""
        phase = meta["phase"]
        opt_state = self.opt_state if phase == self.phase else self._init_opt_state(
            self.sft_tx if phase == "sft" else self.rl_tx)
        rl = phase == "rl"
        return {"params": self.params, "opt_state": opt_state,
                "algo_state": _host_local(self._initial_algo_state()) if rl else None,
                "ref_params": self.params if rl and self._uses_reference() else None,
                "rng": np.asarray(jax.random.key_data(self.base_key))}

    def load(self, state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        self.step = int(meta["step"])
        self.phase = meta["phase"]
        self.params = state["params"]
        self.opt_state = state["opt_state"]
        self.algo_state = state["algo_state"]
        self.ref_params = state["ref_params"]
        self.base_key = jax.random.wrap_key_data(np.asarray(state["rng"]))
        self.data_iter.set_state(meta["data"])
        self.eval_history = dict(meta.get("eval_history", {}))
        self.counters.update(meta.get("counters", {}))
        self._jit_cache = {k: v for k, v in self._jit_cache.items() if "update" not in k}

    def close(self) -> None:
        """Stops the reward workers."""
        self.reward_runner.close()

    # ------------------------------------------------------------------ algorithm hooks
    def _uses_reference(self) -> bool:
        return float(getattr(self.algo_cfg, "beta", 0.0) or 0.0) != 0.0

    def _initial_algo_state(self) -> Any:
        init = getattr(self.algo, "init_state", None)
        return init(self.algo_cfg) if init is not None else None

    def start_rl(self) -> None:
        """SFT -> RL transition: fresh RL optimizer, algorithm state, frozen reference params."""
        self.phase = "rl"
        self.opt_state = self._init_opt_state(self.rl_tx)
        self.algo_state = self._initial_algo_state()
        # A device copy, not an alias: the live params are donated to every update.
        self.ref_params = jax.tree.map(jnp.copy, self.params) if self._uses_reference() else None


def _host_local(tree: Any) -> Any:
    """Single-device arrays (algorithm state, RNG) as NumPy: Orbax writes NumPy leaves from the
    primary process, whereas a single-device jax.Array cannot be saved by a multi-process run."""
    def one(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) == 1:
            return np.asarray(x)
        return x

    return jax.tree.map(one, tree)


def _pad_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def _eos_ids(tokenizer, model_cfg) -> list[int]:
    ids = []
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(model_cfg, "eos_token_id", None)):
        if value is None:
            continue
        ids.extend(value if isinstance(value, (list, tuple)) else [value])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if hasattr(tokenizer, "convert_tokens_to_ids") else None
    if isinstance(im_end, int) and im_end >= 0 and im_end != getattr(tokenizer, "unk_token_id", None):
        ids.append(im_end)
    return sorted({int(i) for i in ids})


def fit_algo_to_task(cfg: Config, algo: Any, num_train: int) -> Config:
    """Checks the algorithm config against the task and the sampler; fills ``num_prompts``.

    A per-prompt state (``num_prompts``) indexes the task's training examples by ``prompt_ids``:
    0 (unset) becomes ``num_train``; a method that draws its own prompts (``select_prompts``)
    covers the first ``num_prompts <= num_train`` examples; any other method needs
    ``num_prompts == num_train``. A stored response length (``max_response_len``) must equal
    ``sampling.max_new_tokens``. Raises ``ConfigError`` naming the field otherwise.
    """
    a = cfg.algo
    n = getattr(a, "num_prompts", None)
    if n is not None:
        if n == 0:
            a = dataclasses.replace(a, num_prompts=num_train)
        elif hasattr(algo, "select_prompts") and n > num_train:
            raise config_lib.ConfigError(
                f"algo.num_prompts={n} > the {num_train} training examples of task {cfg.task.name!r}: "
                f"{cfg.algorithm} draws prompt indices in [0, num_prompts); lower it")
        elif not hasattr(algo, "select_prompts") and n != num_train:
            raise config_lib.ConfigError(
                f"algo.num_prompts={n} != the {num_train} training examples of task {cfg.task.name!r}: "
                f"{cfg.algorithm}'s per-prompt state is indexed by the example index; set it to {num_train} or 0")
    t = getattr(a, "max_response_len", None)
    if t is not None and t != cfg.sampling.max_new_tokens:
        raise config_lib.ConfigError(
            f"algo.max_response_len={t} != sampling.max_new_tokens={cfg.sampling.max_new_tokens}: "
            f"{cfg.algorithm} stores responses of that length; make them equal")
    return cfg if a is cfg.algo else dataclasses.replace(cfg, algo=a)


def build_model(cfg: Config):
    """The policy and its tokenizer from ``cfg.model``: f32 master weights, forward pass in
    ``model.compute_dtype`` (the decoder casts each weight at use)."""
    from jaxrl_llm import models

    model, tokenizer = models.get_model(cfg.model.name, dtype="float32", seed=cfg.seed)
    if tokenizer is None:
        raise ValueError(f"model {cfg.model.name!r} comes without a tokenizer; the trainer needs one")
    if model.cfg.dtype != cfg.model.compute_dtype:
        model.cfg = model.cfg.replace(dtype=cfg.model.compute_dtype)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Phases


def sft_demonstration(example, template: str) -> str:
    """The demonstration completion of ``example``: ``template`` with ``{answer}`` filled in."""
    if example.answer is None:
        raise ValueError(f"example {example.id!r} has no reference answer to build an SFT demonstration from")
    return template.format(answer=example.answer)


def sft_step(tr: Trainer) -> dict[str, float]:
    """One SFT update: token-mean cross-entropy on demonstrations, prompt tokens masked.

    ``loss = -sum_{b,t} mask[b,t] * log pi(y[b,t] | x_b, y[b,<t]) / sum_{b,t} mask[b,t]``, the
    denominator over the whole batch (``num_tokens``).
    """
    c = tr.cfg
    examples = [next(tr.data_iter) for _ in range(c.sft.batch_size)]
    prompt_tokens, prompt_mask = tr.encode_prompts(examples)
    eos = tr.eos_ids[0] if tr.eos_ids else tr.pad_id
    demos = [list(tr.tokenizer(sft_demonstration(e, c.sft.template), add_special_tokens=False)["input_ids"]) + [eos]
             for e in examples]
    longest = max(range(len(demos)), key=lambda i: len(demos[i]))
    if len(demos[longest]) > c.sampling.max_new_tokens:
        raise ValueError(f"SFT demonstration of example {examples[longest].id!r} has {len(demos[longest])} tokens "
                         f"(stop token included) > sampling.max_new_tokens={c.sampling.max_new_tokens}; raise it")
    completion, cmask = right_pad(demos, c.sampling.max_new_tokens, tr.pad_id)
    tokens = np.concatenate([prompt_tokens, completion], axis=1)
    attention = np.concatenate([prompt_mask.astype(np.float32), cmask], axis=1)

    def loss(logprobs, batch):
        total = -jnp.sum(logprobs * batch["mask"])
        return total / batch["num_tokens"], {"sft/tokens": jnp.sum(batch["mask"])}

    metrics = tr.run_update("sft_update", tr.sft_tx, loss, tokens, attention, {"mask": cmask},
                            {"num_tokens": float(cmask.sum())}, c.sft.micro_batch_size,
                            completion.shape[1])
    return {"sft/loss": metrics["loss"], "grad_norm": metrics["grad_norm"], "finite": metrics["finite"]}


def collect_rollout(tr: Trainer, key: jax.Array) -> tuple[dict[str, Any], list, dict[str, float]]:
    """Samples, scores and (with a ``filter_groups`` hook) filters until ``prompts_per_step``
    groups are kept. Returns (rollout of host arrays, examples per row, metrics).

    The rollout always holds ``prompt_ids`` [B] int32, each row's training-example index. The
    algorithm's optional hooks act here: ``select_prompts`` draws the prompt indices instead of
    the data iterator, ``group_prompts`` gives each row of a group its own prompt text (one
    sample per prompt, rows group-major), ``temperature_rule`` sets the sampler's temperature
    from the algorithm state, and ``host_extras`` adds arrays computed from the decoded text.
    """
    c = tr.cfg
    P, G = c.train.prompts_per_step, c.train.group_size
    kept: list[dict[str, np.ndarray]] = []
    kept_examples: list = []
    metrics: dict[str, float] = {}
    n_kept = 0
    sample_time = reward_time = 0.0
    rule, rule_params = _temperature_rule(tr)
    host_extras = getattr(tr.algo, "host_extras", None)
    for round_ in range(c.train.max_sampling_rounds):
        round_key = jax.random.fold_in(key, round_)
        examples, ids = _draw_prompts(tr, P, jax.random.fold_in(round_key, 1))
        t0 = time.perf_counter()
        prompt_tokens, prompt_mask, per_prompt, row_arrays = _encode_groups(tr, examples, G)
        out = tr.generate(prompt_tokens, prompt_mask, round_key, 1 if per_prompt else G, temperature_rule=rule,
                          temperature_rule_params=rule_params)
        sample_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        row_examples = [e for e in examples for _ in range(G)]
        completions = tr.decode(out["tokens"], out["lengths"])
        rewards, info = tr.score(completions, row_examples)
        reward_time += time.perf_counter() - t0
        failures = sum(info["failures"].values()) + sum(info["timeouts"].values())
        if failures and info.get("errors"):
            warnings.warn(f"reward failures at step {tr.step + 1}: {info['errors']}")
        metrics["reward/failures"] = metrics.get("reward/failures", 0.0) + failures
        tr.counters["reward_failures"] += failures
        chunk = {
            "prompt_tokens": out["prompt_tokens"].astype(np.int32),
            "prompt_mask": out["prompt_mask"].astype(np.int32),
            "tokens": out["tokens"].astype(np.int32),
            "mask": out["mask"].astype(np.float32),
            "rewards": rewards,
            "sampler_logprobs": out["logprobs"].astype(np.float32),
            "lengths": out["lengths"].astype(np.int32),
            "prompt_ids": np.repeat(ids, G).astype(np.int32),
        }
        for name in ("policy_logprobs", "entropies"):
            if name in out:
                chunk[name] = out[name].astype(np.float32)
        chunk.update(row_arrays)
        if host_extras is not None:
            chunk.update({k: np.asarray(v) for k, v in host_extras(completions, G, tr.algo_cfg).items()})
        if round_ == 0:
            metrics.update(_rollout_metrics(chunk, G, c.eval.correct_threshold))
        keep = _keep_groups(tr, chunk, G)
        for g in np.flatnonzero(keep):
            if n_kept == P:
                break
            rows = slice(g * G, (g + 1) * G)
            kept.append({k: v[rows] for k, v in chunk.items()})
            kept_examples.extend(row_examples[rows])
            n_kept += 1
        if n_kept == P:
            break
    metrics["sampling_rounds"] = round_ + 1
    if n_kept < P:
        # Not enough informative groups: fill with the last round's groups so shapes stay static.
        metrics["filter/underfilled"] = float(P - n_kept)
        for g in range(P - n_kept):
            rows = slice(g * G, (g + 1) * G)
            kept.append({k: v[rows] for k, v in chunk.items()})
            kept_examples.extend(row_examples[rows])
    rollout = {k: _pad_cat([part[k] for part in kept]) for k in kept[0]}
    rollout["group_ids"] = np.repeat(np.arange(P, dtype=np.int32), G)
    rollout["group_size"] = G
    metrics["time/sample"] = sample_time
    metrics["time/reward"] = reward_time
    return rollout, kept_examples, metrics


def _algo_state(tr: Trainer) -> Any:
    """The algorithm state as jax arrays (a restored checkpoint holds NumPy leaves, which lack
    the ``.at`` updates the hooks use)."""
    return None if tr.algo_state is None else jax.tree.map(jnp.asarray, tr.algo_state)


@dataclasses.dataclass(frozen=True)
class _StateTemperature:
    """The sampler rule ``(logits [B, V], step, state) -> temperature [B]`` of a method with a
    ``temperature_from_stats(logits, state, cfg)`` hook. Equal (and equally hashed) for every
    step of a run, while the state travels as the sampler's traced ``temperature_rule_params``:
    new statistics each step reuse the compiled sampling program."""

    algo: Any
    cfg: Any

    def __call__(self, logits, step, state):
        return self.algo.temperature_from_stats(logits, state, self.cfg)


def _temperature_rule(tr: Trainer) -> tuple[Any, Any]:
    """``(rule, traced params)`` for RL sampling: ``temperature_from_stats`` with the state as a
    traced argument when the method has it, else its ``temperature_rule(cfg, state)`` (static:
    recompiles when the rule changes), else ``(None, None)`` (``sampling.temperature``)."""
    state = _algo_state(tr)
    if hasattr(tr.algo, "temperature_from_stats") and state is not None:
        return _StateTemperature(tr.algo, tr.algo_cfg), state
    hook = getattr(tr.algo, "temperature_rule", None)
    return (hook(tr.algo_cfg, state) if hook is not None else None), None


@functools.lru_cache(maxsize=4)
def _example_order(num_train: int, seed: int) -> Any:
    """Index ``p`` -> the training-example index the data iterator yields at position ``p``:
    the same grain pipeline as ``tasks.TrainIterator``, without the ``map`` to examples."""
    import grain

    return grain.MapDataset.range(num_train).shuffle(seed=seed).repeat(None)


def _draw_prompts(tr: Trainer, P: int, key: jax.Array) -> tuple[list, np.ndarray]:
    """``P`` training examples and their indices [P] int32: from the algorithm's
    ``select_prompts(state, P, key, cfg)`` when it has one, else the next ``P`` of the data iterator."""
    select = getattr(tr.algo, "select_prompts", None)
    if select is not None:
        ids = np.asarray(select(_algo_state(tr), P, key, tr.algo_cfg), np.int32)
        if ids.shape != (P,) or ids.min() < 0 or ids.max() >= tr.task.num_train:
            raise ValueError(f"{tr.cfg.algorithm}.select_prompts returned indices of shape {ids.shape} in "
                             f"[{ids.min()}, {ids.max()}]; need [{P}] in [0, {tr.task.num_train})")
        return [tr.task.train_example(int(i)) for i in ids], ids
    state = tr.data_iter.get_state()
    order = _example_order(tr.task.num_train, int(state["seed"]))
    start = int(state["grain"]["next_index"])
    ids = np.asarray([order[start + j] for j in range(P)], np.int32)
    examples = [next(tr.data_iter) for _ in range(P)]
    if tr.task.train_example(int(ids[0])).id != examples[0].id:
        raise RuntimeError(f"prompt_ids out of step with the data iterator of task {tr.task.name!r}: index "
                           f"{ids[0]} is not example {examples[0].id!r} (did tasks.TrainIterator change?)")
    return examples, ids


def _encode_groups(tr: Trainer, examples: list, G: int) -> tuple[np.ndarray, np.ndarray, bool, dict[str, np.ndarray]]:
    """Prompt tokens/mask for sampling. Without a ``group_prompts`` hook: [P, Sp], to be sampled
    ``G`` times each. With it: the hook's ``G`` prompt texts per example, [P*G, Sp] group-major,
    sampled once each, and its per-row arrays concatenated to [P*G]. Returns
    ``(tokens, mask, one_sample_per_prompt, row_arrays)``."""
    from jaxrl_llm import tasks

    hook = getattr(tr.algo, "group_prompts", None)
    if hook is None:
        tokens, mask = tr.encode_prompts(examples)
        return tokens, mask, False, {}
    system = tr.cfg.task.system_prompt or None
    ids, names, arrays = [], [], []
    for e in examples:
        texts, extra = hook(tasks.render_prompt(e, tr.tokenizer, system_prompt=system), G, tr.algo_cfg)
        if len(texts) != G:
            raise ValueError(f"{tr.cfg.algorithm}.group_prompts returned {len(texts)} prompts for group size {G}")
        ids.extend(list(tr.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        names.extend(f"a {tr.cfg.algorithm}.group_prompts prompt of example {e.id!r}" for _ in texts)
        arrays.append(extra)
    tokens, mask = tr.pad_prompts(ids, names)
    return tokens, mask, True, {k: np.concatenate([np.asarray(a[k]) for a in arrays]) for k in arrays[0]}


def _pad_cat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenates rows whose trailing dims may differ (prompt buckets): left-pads prompts."""
    if parts[0].ndim == 1 or len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts, axis=0)
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (width - p.shape[1], 0))) for p in parts], axis=0)


def _keep_groups(tr: Trainer, chunk: Mapping[str, np.ndarray], G: int) -> np.ndarray:
    hook = getattr(tr.algo, "filter_groups", None)
    if hook is None:
        return np.ones(chunk["rewards"].shape[0] // G, bool)
    keep_rows = np.asarray(hook({**chunk, "group_size": G}, tr.algo_cfg), bool)  # [B]
    return keep_rows.reshape(-1, G).any(axis=1)


def _rollout_metrics(chunk: Mapping[str, np.ndarray], G: int, correct_threshold: float) -> dict[str, float]:
    r = chunk["rewards"]
    groups = r.reshape(-1, G)
    lengths = chunk["lengths"]
    out = {
        "reward/mean": float(r.mean()), "reward/std": float(r.std()),
        "reward/max": float(r.max()), "reward/min": float(r.min()),
        "completion_len/mean": float(lengths.mean()), "completion_len/max": float(lengths.max()),
    }
    wrong = r < correct_threshold  # the eval's notion of a correct completion
    if wrong.any():
        out["completion_len/wrong"] = float(lengths[wrong].mean())
    if (~wrong).any():
        out["completion_len/correct"] = float(lengths[~wrong].mean())
    if G > 1:  # a group of one always has zero spread: the fraction would read 1 and mean nothing
        out["frac_zero_std_groups"] = float((groups.std(axis=1) == 0).mean())
    if "entropies" in chunk:
        m = chunk["mask"]
        out["entropy"] = float((chunk["entropies"] * m).sum() / max(m.sum(), 1.0))
    return out


def rl_step(tr: Trainer, timer: metrics_log.Timer) -> dict[str, float]:
    """One RL step (see the module outline)."""
    c = tr.cfg
    key = jax.random.fold_in(tr.base_key, tr.step)
    rollout, examples, metrics = collect_rollout(tr, key)
    timer.add("sample", metrics.pop("time/sample"))
    timer.add("reward", metrics.pop("time/reward"))

    tokens = np.concatenate([rollout["prompt_tokens"], rollout["tokens"]], axis=1)
    attention = np.concatenate([rollout["prompt_mask"].astype(np.float32), rollout["mask"]], axis=1)
    T = rollout["tokens"].shape[1]
    share = _prompt_sharing(tr, rollout)
    # pi_old and pi_ref come before the advantages: KL-in-reward methods read them there.
    with timer("logprobs"):
        if c.train.old_logprobs == "recompute" or "policy_logprobs" not in rollout:
            old = tr.logprobs(tr.params, tr.put(tokens), tr.put(attention), T, share)
            rollout["old_logprobs"] = distributed.to_host(old)
        else:
            rollout["old_logprobs"] = rollout["policy_logprobs"]
        if tr.ref_params is not None:
            ref = tr.logprobs(tr.ref_params, tr.put(tokens), tr.put(attention), T, share)
            rollout["ref_logprobs"] = distributed.to_host(ref)

    with timer("advantages"):
        shape = getattr(tr.algo, "shape_rewards", None)
        if shape is not None:
            rollout["rewards"] = np.asarray(shape(rollout["rewards"], rollout, tr.algo_cfg), np.float32)
        adv, adv_metrics = tr.algo.advantages(rollout, tr.algo_cfg, _algo_state(tr))
        rollout["advantages"] = np.asarray(adv, np.float32)
        metrics.update({k: float(v) for k, v in adv_metrics.items()
                        if not (k == "frac_zero_std_groups" and c.train.group_size == 1)})
        extras = getattr(tr.algo, "batch_extras", None)
        if extras is not None:
            rollout.update({k: np.asarray(v) for k, v in extras(rollout, tr.algo_cfg).items()})

    batch_keys = [k for k, v in rollout.items() if isinstance(v, np.ndarray) and v.ndim >= 1
                  and k not in ("prompt_tokens", "prompt_mask") and v.shape[0] == tokens.shape[0]]
    B = tokens.shape[0]
    mbs = B // c.train.num_minibatches
    loss = lambda logprobs, batch: tr.algo.loss(logprobs, batch, tr.algo_cfg)
    update_metrics: list[dict[str, float]] = []
    with timer("update"):
        for epoch in range(c.train.num_iterations):
            order = np.arange(B)
            if c.train.num_minibatches > 1:  # a random split; whole groups when prompts are shared
                perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1000 + epoch), B // share))
                order = (perm[:, None] * share + np.arange(share)).reshape(-1)
            for i in range(c.train.num_minibatches):
                rows = order[i * mbs:(i + 1) * mbs]
                batch = {k: rollout[k][rows] for k in batch_keys}
                scalars = {"num_tokens": float(batch["mask"].sum()), "num_seqs": float(len(rows))}
                m = tr.run_update("rl_update", tr.rl_tx, loss, tokens[rows], attention[rows], batch, scalars,
                                  c.train.micro_batch_size, T, share)
                update_metrics.append(m)
                if not m["finite"]:
                    tr.counters["nonfinite_skipped"] += 1
                    if c.train.on_nonfinite == "stop":
                        raise FloatingPointError(
                            f"non-finite loss or gradient at step {tr.step + 1} (epoch {epoch}, minibatch {i}): "
                            f"loss={m['loss']}, grad_norm={m['grad_norm']}; the last checkpoint holds the "
                            "state before it (train.on_nonfinite='skip' skips such updates instead)")

    update = getattr(tr.algo, "update_state", None)
    if update is not None:
        with timer("logprobs"):
            _replay_logprobs(tr, rollout)
        tr.algo_state = _update_state(tr, rollout)
    for k in update_metrics[0]:
        vals = [m[k] for m in update_metrics]
        metrics[k] = float(np.mean(vals)) if k != "finite" else float(np.min(vals))
    metrics["nonfinite_skipped"] = float(tr.counters["nonfinite_skipped"])
    return metrics


def _prompt_sharing(tr: Trainer, rollout: Mapping[str, Any]) -> int:
    """The group size G when each group's prompt can be computed once in the update and log-prob
    passes (``train.share_prompt``; the G rows of every group hold one prompt, and minibatches and
    micro-batches hold whole groups), else 1."""
    c = tr.cfg.train
    G = int(rollout["group_size"])
    prompts, prompt_mask = rollout["prompt_tokens"], rollout["prompt_mask"]
    B = prompts.shape[0]
    if not c.share_prompt or G <= 1 or B % G:
        return 1
    minibatch = B // c.num_minibatches
    if B % c.num_minibatches or minibatch % G or (c.micro_batch_size and c.micro_batch_size % G):
        return 1
    same = lambda x: bool((x.reshape(B // G, G, -1) == x[::G, None]).all())
    return G if same(prompts) and same(prompt_mask) else 1


def _update_state(tr: Trainer, rollout: Mapping[str, Any]) -> Any:
    """``update_state(state, rollout, cfg)`` jitted over the rollout's arrays (``group_size``
    static): run eagerly, a hook with a ``lax.scan`` or ``vmap`` over a closure re-traces and
    recompiles every step (single-stream SPO did, 28 times in a 30-step run)."""
    G = rollout["group_size"]
    hook, cfg = tr.algo.update_state, tr.algo_cfg
    fn = tr._jit(f"algo_state/G={G}",
                 lambda: jax.jit(lambda state, arrays: hook(state, {**arrays, "group_size": G}, cfg)))
    arrays = {k: v for k, v in rollout.items() if isinstance(v, np.ndarray)}
    return fn(_algo_state(tr), arrays)


def _replay_logprobs(tr: Trainer, rollout: dict[str, Any]) -> None:
    """With a ``replay_tokens(state, rollout, cfg)`` hook returning stored responses [B, T] (T > 0),
    scores ``[prompt_tokens | replay tokens]`` under the current (post-update) policy into
    ``rollout["replay_logprobs"]`` [B, T] for ``update_state`` (single-stream SPO's policy shift)."""
    hook = getattr(tr.algo, "replay_tokens", None)
    if hook is None:
        return
    replay = {k: np.asarray(v) for k, v in hook(_algo_state(tr), rollout, tr.algo_cfg).items()}
    T = replay["tokens"].shape[1]
    if T == 0:
        return
    tokens = np.concatenate([rollout["prompt_tokens"], replay["tokens"].astype(np.int32)], axis=1)
    attention = np.concatenate([rollout["prompt_mask"].astype(np.float32), replay["mask"].astype(np.float32)], axis=1)
    lp = tr.logprobs(tr.params, tr.put(tokens), tr.put(attention), T)
    rollout["replay_logprobs"] = np.asarray(distributed.to_host(lp), np.float32)


def evaluate(tr: Trainer, key_index: int = 10**9) -> dict[str, float]:
    """Held-out accuracy: greedy (``eval/accuracy``), sampled pass@1 and pass@k (``eval.k``
    samples per prompt at ``eval.temperature``, unbiased estimator). A completion is correct when
    its reward is >= ``eval.correct_threshold``."""
    e = tr.cfg.eval
    examples = tr.task.eval_examples(min(e.num_examples, tr.task.num_eval))
    key = jax.random.fold_in(tr.base_key, key_index)
    greedy_correct, sampled = [], []
    lengths = []
    for start in range(0, len(examples), e.batch_size):
        chunk = examples[start:start + e.batch_size]
        prompt_tokens, prompt_mask = tr.encode_prompts(chunk)
        out = tr.generate(prompt_tokens, prompt_mask, key, 1, greedy=True)
        rewards, _ = tr.score(tr.decode(out["tokens"], out["lengths"]), chunk)
        greedy_correct.extend((rewards >= e.correct_threshold).tolist())
        lengths.extend(out["lengths"].tolist())
        if e.k:
            out = tr.generate(prompt_tokens, prompt_mask, jax.random.fold_in(key, start), e.k,
                              temperature=e.temperature)
            rows = [x for x in chunk for _ in range(e.k)]
            rewards, _ = tr.score(tr.decode(out["tokens"], out["lengths"]), rows)
            sampled.extend((rewards >= e.correct_threshold).reshape(len(chunk), e.k).sum(axis=1).tolist())
    out = {"eval/accuracy": float(np.mean(greedy_correct)), "eval/completion_len": float(np.mean(lengths))}
    if e.k:
        out["eval/pass@1"] = float(np.mean([pass_at_k(e.k, c, 1) for c in sampled]))
        out["eval/pass@k"] = float(np.mean([pass_at_k(e.k, c, e.k) for c in sampled]))
    return out


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: Config, stop_after: int | None = None) -> dict[str, Any]:
    """Runs (or resumes) the run described by ``cfg``; returns the summary dict.

    ``stop_after``: stop (with a checkpoint) once the global step reaches this value, as if
    interrupted; used by tests and by ``--stop-after``.
    """
    distributed.initialize()
    cfg = config_lib.validate(cfg)
    t_start = time.perf_counter()
    tr = Trainer(cfg)
    c = tr.cfg
    if tr.is_main:
        tr.run_dir.mkdir(parents=True, exist_ok=True)
        (tr.run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(c), indent=2))
    ckpt = checkpoint_lib.Checkpointer(tr.run_dir / "checkpoints", c.checkpoint.max_to_keep, c.checkpoint.async_save)
    restored = ckpt.restore(tr.restore_target)
    resume_step = None
    if restored is not None:
        resume_step, state, meta = restored
        tr.load(state, meta)
        _say(tr, f"resumed from {tr.run_dir}/checkpoints/{resume_step} (phase {tr.phase})")
    logger = metrics_log.MetricsLogger(tr.run_dir, resume_step, c.log.tensorboard, enabled=tr.is_main)
    compiles = metrics_log.CompileCounter()
    interrupted = {"flag": False}
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        interrupted["flag"] = True
        _say(tr, "SIGINT: saving a checkpoint after this step, then exiting (Ctrl-C again to abort)")
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)

    def save(wait: bool = False):
        ckpt.save(tr.step, tr.checkpoint_state(), tr.checkpoint_meta(), wait=wait)

    def after_step(phase_every: int) -> None:
        if interrupted["flag"] or (stop_after is not None and tr.step >= stop_after):
            save(wait=True)
            raise Interrupted
        if phase_every and tr.step % phase_every == 0:
            save()

    progress = metrics_log.Progress(tr.total_steps, tr.step, c.name, enabled=tr.is_main and c.log.progress)
    status = "finished"
    try:
        # SFT warm start
        while tr.phase == "sft" and tr.step < tr.total_sft:
            timer = metrics_log.Timer()
            with timer("update"):
                m = sft_step(tr)
            tr.step += 1
            m.update(timer.split())
            m["compiles"] = compiles.take()
            if tr.step > 2:
                tr.counters["compiles_after_warmup"] += int(m["compiles"])
            if tr.step % c.log.every == 0 or tr.step == tr.total_sft:
                logger.log("sft", tr.step, m)
            progress.update(m, ("sft/loss", "time/step"))
            after_step(c.checkpoint.every)
        if tr.phase == "sft":
            tr.start_rl()
        # RL
        if "before" not in tr.eval_history and (c.eval.num_examples and tr.task.num_eval):
            tr.eval_history["before"] = evaluate(tr)
            logger.log("eval", tr.step, tr.eval_history["before"])
            _say(tr, "before RL: " + _fmt(tr.eval_history["before"]))
        rl_start = tr.total_sft
        while tr.step < tr.total_steps:
            timer = metrics_log.Timer()
            m = rl_step(tr, timer)
            tr.step += 1
            m.update(timer.split())
            m["compiles"] = compiles.take()
            if tr.step > rl_start + 2:
                tr.counters["compiles_after_warmup"] += int(m["compiles"])
            if (tr.step - rl_start) % c.log.every == 0 or tr.step == tr.total_steps:
                logger.log("rl", tr.step, m)
            progress.update(m)
            if c.eval.every and (tr.step - rl_start) % c.eval.every == 0 and tr.step < tr.total_steps:
                ev = evaluate(tr)
                tr.eval_history[str(tr.step)] = ev
                logger.log("eval", tr.step, ev)
            after_step(c.checkpoint.every)
        if "after" not in tr.eval_history and (c.eval.num_examples and tr.task.num_eval):
            tr.eval_history["after"] = evaluate(tr)
            logger.log("eval", tr.step, tr.eval_history["after"])
        if tr.step not in ckpt.all_steps():
            save(wait=True)
    except Interrupted:
        status = "interrupted"
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
        ckpt.close()
        logger.close()
        tr.close()
    summary = {"status": status, "step": tr.step, "run_dir": str(tr.run_dir),
               "wall_time_s": time.perf_counter() - t_start, "eval": tr.eval_history, "counters": tr.counters}
    if tr.is_main and status == "finished":
        _finish(tr, summary)
    return summary


def _fmt(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('eval/')}={v:.3f}" for k, v in metrics.items())


def _say(tr: Trainer, text: str) -> None:
    if tr.is_main:
        print(text, file=sys.stderr, flush=True)


def _finish(tr: Trainer, summary: dict[str, Any]) -> None:
    """Prints the summary table, writes ``summary.json`` and the curves ``curves.png``."""
    from jaxrl_llm import plot

    rows = {name: ev for name, ev in tr.eval_history.items() if name in ("before", "after")}
    if rows:
        print(metrics_log.summary_table(rows), flush=True)
    if len(rows) == 2:
        before, after = rows["before"]["eval/accuracy"], rows["after"]["eval/accuracy"]
        start = "after SFT" if tr.cfg.sft.steps else "at the start"
        print(f"held-out accuracy (greedy): {100 * before:.1f}% {start} -> {100 * after:.1f}% after RL "
              f"({100 * (after - before):+.1f} points)", flush=True)
    records = [r for r in metrics_log.read_metrics(tr.run_dir) if r.get("phase") == "rl"]
    if records:
        keys = [k for k in ("time/sample", "time/reward", "time/update", "time/logprobs", "time/other", "time/step")
                if k in records[-1]]
        split = {k: float(np.mean([r[k] for r in records if k in r])) for k in keys}
        print(metrics_log.summary_table({"seconds per RL step (mean)": split}), flush=True)
        summary["time_split"] = split
    print(f"wall time {summary['wall_time_s']:.1f} s; counters {tr.counters}", flush=True)
    (tr.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    try:
        plot.plot_runs([tr.run_dir], tr.run_dir / "curves.png")
    except ValueError as e:
        warnings.warn(f"no curves written: {e}")
