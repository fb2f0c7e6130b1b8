"""Optimizer updates: the optimizer, gradient accumulation inside one jitted step, the skip of a
non-finite update, and the RL update's epochs over minibatches.

One update (``Updater.step``) takes a minibatch of rows as host arrays, splits it into
micro-batches placed sharded over the mesh's data axes, and runs ONE jitted, donated program:
``lax.scan`` over the micro-batches summing ``grad(loss)``, then the optimizer. Every loss returns
its micro-batch's share of the full-minibatch loss (the normalizers ``num_tokens`` / ``num_seqs``
are global, ``jaxrl_llm.types``), so the summed gradient is the full-minibatch gradient exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_llm import distributed, sharding
from jaxrl_llm.config import ConfigError
from jaxrl_llm.types import Batch


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "constant",
    min_lr_ratio: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter, 2019) after global-norm clipping, on a linear-warmup schedule
    followed by a constant rate or a cosine decay to ``min_lr_ratio * learning_rate``."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    if schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0 if warmup_steps else learning_rate,
            learning_rate,
            warmup_steps,
            max(total_steps, warmup_steps + 1),
            end_value=learning_rate * min_lr_ratio,
        )
    elif schedule == "constant":
        lr = (
            optax.join_schedules(
                [optax.linear_schedule(0.0, learning_rate, warmup_steps), optax.constant_schedule(learning_rate)],
                [warmup_steps],
            )
            if warmup_steps
            else learning_rate
        )
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'cosine' or 'constant'")
    parts = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm > 0 else []
    parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    return optax.chain(*parts)


def combine_metrics(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
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
        return (jax.tree.map(jnp.add, g_acc, g), combine_metrics(m_acc, m)), None

    rest = jax.tree.map(lambda x: x[1:], micro_batches)
    (grads, metrics), _ = jax.lax.scan(body, (grads, metrics), rest)
    return grads, metrics


def apply_update(
    tx: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any, loss: jax.Array
) -> tuple[Any, Any, jax.Array, jax.Array]:
    """One optimizer update, skipped (params and state unchanged) when the loss or the gradient
    norm is not finite. Returns (params, opt_state, grad_norm, finite)."""
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    return keep(new_params, params), keep(new_opt_state, opt_state), grad_norm, finite


def with_scalars(batch: Any, scalars: Mapping[str, Any]) -> Any:
    """``batch`` with the global normalizers set (a ``Batch`` record or a plain dict)."""
    return batch.with_items(scalars) if isinstance(batch, Batch) else {**batch, **scalars}


class Updater:
    """Jitted, donated optimizer steps over a trainable pytree laid out by ``shardings``.

    ``put(x, batch_axis)`` places a host array sharded over the mesh's data axes; ``replicated``
    is the sharding of optimizer counters.

    Donation: the step donates the trainable pytree and the optimizer state, so the new values are
    written into their buffers (one copy of each alive, not two) and the arrays passed in are
    deleted: a caller keeps only what ``step`` returns (the trainer's reference params are a
    ``jnp.copy``). Outputs match inputs in shape, dtype and sharding, so every buffer is reused, on
    the CPU backend too (no "donated buffers were not usable" warning; tests/test_memory_controls.py).
    """

    def __init__(self, shardings: Any, put: Callable[[np.ndarray, int], jax.Array], replicated: jax.sharding.Sharding):
        self.shardings = shardings
        self.put = put
        self.replicated = replicated
        self._cache: dict[str, Callable] = {}
        self._warned: set[str] = set()
        mesh = getattr(replicated, "mesh", None)
        self.row_shards = 1 if mesh is None else sharding.axis_shards(mesh, "batch")  # rows' shards

    def init(self, tx: optax.GradientTransformation, trainable: Any) -> Any:
        """``tx.init(trainable)`` laid out like the params (moments) or replicated (counters), so
        that the donated update step sees identical input and output shardings: no recompiles."""
        shardings = optax.tree_map_params(
            tx,
            lambda _, sh: sh,
            jax.eval_shape(tx.init, trainable),
            self.shardings,
            transform_non_params=lambda _: self.replicated,
        )
        return jax.jit(tx.init, out_shardings=shardings)(trainable)

    def _build(self, tx: optax.GradientTransformation, loss_fn: Callable, opt_state: Any) -> Callable:
        def step(trainable, opt_state, inputs, batch, scalars):
            def micro(p, mb):
                mb_inputs, mb_batch = mb
                return loss_fn(p, mb_inputs, with_scalars(mb_batch, scalars))

            grads, metrics = accumulate_gradients(micro, trainable, (inputs, batch))
            trainable, opt_state, grad_norm, finite = apply_update(tx, trainable, opt_state, grads, metrics["loss"])
            metrics = {**metrics, "grad_norm": grad_norm, "finite": finite.astype(jnp.float32)}
            return trainable, opt_state, metrics

        opt_sh = jax.tree.map(lambda x: x.sharding, opt_state)
        return jax.jit(step, donate_argnums=(0, 1), out_shardings=(self.shardings, opt_sh, None))

    def step(
        self,
        name: str,
        tx: optax.GradientTransformation,
        loss_fn: Callable,
        trainable: Any,
        opt_state: Any,
        inputs: Mapping[str, np.ndarray],
        batch: Any,
        scalars: Mapping[str, float],
        micro_batch_size: int,
    ) -> tuple[Any, Any, dict[str, float]]:
        """One optimizer update on the rows given (host arrays, leading dim = minibatch size).

        ``loss_fn(trainable, inputs, batch) -> (loss, metrics)`` with ``inputs`` the model inputs
        (``tokens`` / ``attention_mask``) and ``batch`` the loss's rows of one micro-batch, the
        global ``scalars`` set. ``name`` keys the compiled program: one ``loss_fn`` per name. The
        rows are split into micro-batches of ``micro_batch_size`` (0 = one). Returns the new
        ``(trainable, opt_state, metrics)``; the old ones are donated.
        """
        n = int(inputs["tokens"].shape[0])
        mb = micro_batch_size or n
        if n % mb:
            raise ValueError(f"micro_batch_size={mb} does not divide the minibatch of {n} rows")
        m = n // mb
        self._check_row_shards(name, mb)
        split = lambda x: self.put(np.ascontiguousarray(np.asarray(x).reshape(m, mb, *np.shape(x)[1:])), 1)
        dev_inputs = {k: split(v) for k, v in inputs.items()}
        dev_batch = jax.tree.map(split, batch)
        dev_scalars = {k: jnp.asarray(v, jnp.float32) for k, v in scalars.items()}
        if name not in self._cache:
            self._cache[name] = self._build(tx, loss_fn, opt_state)
        trainable, opt_state, metrics = self._cache[name](trainable, opt_state, dev_inputs, dev_batch, dev_scalars)
        return trainable, opt_state, {k: float(distributed.to_host(v)) for k, v in metrics.items()}

    def _check_row_shards(self, name: str, rows: int) -> None:
        """Warns once per program when its micro-batches of ``rows`` rows cannot be split over the
        mesh's row shards: ``put`` then replicates them, and every device runs every row (correct,
        but the data-parallel devices do no parallel work)."""
        k = self.row_shards
        if k > 1 and rows % k and name not in self._warned:
            self._warned.add(name)
            warnings.warn(
                f"update {name!r}: micro-batches of {rows} rows do not split over the mesh's {k} row shards "
                f"(data x fsdp), so each is replicated and every device runs all its rows; make the micro-batch "
                f"(train.micro_batch_size or sft.micro_batch_size; 0 = the whole minibatch) a multiple of {k}",
                stacklevel=3,
            )

    def forget(self) -> None:
        """Drops the compiled programs (after a restore placed the state anew)."""
        self._cache.clear()


def prompt_sharing(
    share_prompt: bool,
    num_minibatches: int,
    micro_batch_size: int,
    prompt_tokens: np.ndarray,
    prompt_mask: np.ndarray,
    group_size: int,
) -> int:
    """The group size G when each group's prompt can be computed once in the update and log-prob
    passes (``train.share_prompt``; the G rows of every group hold one prompt, and minibatches and
    micro-batches hold whole groups), else 1."""
    G = int(group_size)
    B = prompt_tokens.shape[0]
    if not share_prompt or G <= 1 or B % G:
        return 1
    minibatch = B // num_minibatches
    if B % num_minibatches or minibatch % G or (micro_batch_size and micro_batch_size % G):
        return 1
    same = lambda x: bool((x.reshape(B // G, G, -1) == x[::G, None]).all())
    return G if same(prompt_tokens) and same(prompt_mask) else 1


def check_rows(num_rows: int, num_minibatches: int, micro_batch_size: int, kind: str) -> None:
    """Raises ``ConfigError`` unless ``train.num_minibatches`` divides the ``num_rows`` rows of a
    step and ``train.micro_batch_size`` divides each minibatch. The update checks the rows the
    rollout kind produced: ``config.validate`` checks ``prompts_per_step * group_size`` only for
    the kinds whose rows that is (``config.PROMPT_GROUP_KINDS``); others produce other counts
    (pairs: 2 rows a prompt; tree: the edges that train plus replay)."""
    if num_rows % num_minibatches:
        raise ConfigError(
            f"train.num_minibatches={num_minibatches} must divide the {num_rows} rows of a step of the "
            f"{kind!r} rollout kind"
        )
    minibatch = num_rows // num_minibatches
    if micro_batch_size and minibatch % micro_batch_size:
        raise ConfigError(
            f"train.micro_batch_size={micro_batch_size} must divide the minibatch of {minibatch} rows "
            f"(the {num_rows} rows of a step of the {kind!r} rollout kind / train.num_minibatches={num_minibatches})"
        )


def minibatch_orders(key: jax.Array, num_rows: int, num_minibatches: int, epoch: int, share: int) -> list[np.ndarray]:
    """The row indices of each minibatch of ``epoch``: all rows in order for one minibatch, else a
    random split drawn from ``fold_in(key, 1000 + epoch)``, of whole groups when prompts are
    shared (``share`` > 1). ``num_minibatches`` must divide the rows (``check_rows``): a remainder
    would leave rows out of every minibatch."""
    if num_rows % num_minibatches or num_rows % share:
        raise ValueError(
            f"{num_rows} rows do not split into {num_minibatches} minibatches of whole groups of {share} rows"
        )
    order = np.arange(num_rows)
    if num_minibatches > 1:
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1000 + epoch), num_rows // share))
        order = (perm[:, None] * share + np.arange(share)).reshape(-1)
    size = num_rows // num_minibatches
    return [order[i * size : (i + 1) * size] for i in range(num_minibatches)]
