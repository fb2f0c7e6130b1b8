"""Off-policy training: bounded staleness, a sampler on its own devices, partial rollouts.

Large RL systems let sampling run ahead of the update, so that the two overlap (AReaL: Fu et al.,
"AReaL: A Large-Scale Asynchronous Reinforcement Learning System for Language Reasoning",
https://arxiv.org/abs/2505.24298, code https://github.com/inclusionAI/AReaL; also verl, slime,
SkyRL, ROLL). Here it is a deterministic pipeline, so a run's numbers never depend on thread timing:

* **Staleness bound k** (``train.staleness``). Policy version ``v`` is the number of RL updates
  applied. The rollout that the update at version ``v`` consumes was sampled by version
  ``max(v - k, 0)``: at RL step ``v`` the sampler produces the rollout of step ``v + k`` with the
  params of version ``v`` while the learner updates on the rollout of step ``v`` (``queue`` holds
  the rollouts of steps ``v .. v + k - 1`` between steps; the first ``k`` are sampled by version 0).
  The rollout of global step ``g`` is sampled with ``fold_in(key, g)`` and draws its prompts from
  the task stream in step order, exactly as the synchronous trainer does; so ``k = 0`` is the
  synchronous trainer (the trainer then does not build a pipeline at all unless the sampler has
  its own devices). Every token carries the version that sampled it (``extras["versions"]`` [B, T]
  int32, -1 off the response). With ``k > 0`` the trainer recomputes pi_old under the learner's
  current params and ``train.rollout_correction`` (``rollouts/correction.py``: token TIS, sequence
  MIS, or off) reweights with ``w_t = pi_old(y_t) / mu(y_t)``, ``mu`` the sampling version's
  distribution (``sampler_logprobs``).
* **Disaggregated placement** (``mesh.sampler_devices`` > 0): the sampler is a copy of the policy
  on its own sub-mesh (``policy.make_sampler_mesh``), its params placed by the same rules table;
  after each update the learner's params are pushed to it (``Policy.push``: ``jax.device_put`` to
  the sampler's shardings). With ``k > 0`` the sampler's work for step ``v + k`` runs in a thread
  while the learner updates on its own devices; the step ends by joining it, then pushing.
* **Partial rollouts** (``train.partial_rollout_tokens = w`` > 0, ``group`` kind): a queued
  rollout is generated in windows. The rollout of step ``s`` is begun (prompts drawn, first window
  of at most ``w`` tokens) at version ``s - k``, every queued rollout advances one window at each
  later version, and the consuming version ``s`` finishes what is left. A generation cut at a
  version boundary thus continues under the new weights, its tokens tagged with the versions that
  sampled them: versions ``s - k .. s``. The carry is the window rollouts' (``window.advance``).

The queue (finished rollouts, or partial generations with their per-token log-probs and versions)
is checkpointed with the run (``tree`` / ``meta`` / ``restore_target`` / ``load``), so a run
killed with rollouts in flight resumes to the uninterrupted run's metrics.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent import futures
from typing import Any

import jax
import numpy as np

from jaxrl_llm import policy as policy_lib
from jaxrl_llm.config import Config, ConfigError
from jaxrl_llm.rollouts import group, window
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.types import Rollout

_ROLLOUT_FIELDS = tuple(f.name for f in dataclasses.fields(Rollout) if f.name not in ("extras", "group_size"))
_EXTRA = "extras__"  # checkpoint key prefix of a rollout's extras (Orbax keys take no "/" or ".")


def enabled(cfg: Config) -> bool:
    """Whether the run needs the pipeline: stale rollouts, or a sampler on its own devices."""
    return cfg.train.staleness > 0 or cfg.mesh.sampler_devices > 0


def check(cfg: Config, algo: Any, kind: Kind) -> None:
    """Raises ``ConfigError`` for a method the pipeline cannot run off-policy."""
    t = cfg.train
    if t.staleness and kind.name == "window":
        raise ConfigError(
            f"train.staleness={t.staleness}: the window kind of {algo.name!r} carries its in-flight responses "
            "in the method's state, so it cannot sample ahead; use train.staleness=0"
        )
    if t.partial_rollout_tokens and (kind.name != "group" or algo.has_filter or algo.rollout_extras):
        raise ConfigError(
            f"train.partial_rollout_tokens={t.partial_rollout_tokens} needs a method on the plain group kind "
            f"(no filter_groups, no rollout_extras); {algo.name!r} has kind {kind.name!r}"
        )


@dataclasses.dataclass
class Entry:
    """A queued rollout: of global step ``step``, begun by policy version ``version``. Either
    ``rollout`` (finished, with its ``metrics``) or ``partial`` (a generation in progress:
    prompts, response so far, log-probs, per-token versions, ``done`` rows; ``windows`` sampled)."""

    step: int
    version: int
    rollout: Rollout | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    partial: dict[str, np.ndarray] | None = None
    windows: int = 0

    def arrays(self) -> dict[str, np.ndarray]:
        if self.partial is not None:
            return dict(self.partial)
        r = self.rollout
        out = {k: np.asarray(getattr(r, k)) for k in _ROLLOUT_FIELDS if getattr(r, k) is not None}
        out.update({_EXTRA + k: np.asarray(v) for k, v in r.extras.items()})
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "version": self.version,
            "kind": "partial" if self.partial is not None else "rollout",
            "group_size": None if self.rollout is None else self.rollout.group_size,
            "metrics": self.metrics,
            "windows": self.windows,
            "shapes": {k: [list(v.shape), str(v.dtype)] for k, v in self.arrays().items()},
        }

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, Any], meta: dict[str, Any]) -> Entry:
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        entry = cls(
            int(meta["step"]), int(meta["version"]), metrics=dict(meta["metrics"]), windows=int(meta["windows"])
        )
        if meta["kind"] == "partial":
            entry.partial = arrays
        else:
            fields = {k: v for k, v in arrays.items() if not k.startswith(_EXTRA)}
            extras = {k.removeprefix(_EXTRA): v for k, v in arrays.items() if k.startswith(_EXTRA)}
            entry.rollout = Rollout(**fields, extras=extras, group_size=meta["group_size"])
        return entry


def restore_target(meta: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The checkpoint layout of a saved queue (its ``meta``): zero arrays of the saved shapes."""
    if not meta:
        return None
    return {
        str(i): {k: np.zeros(shape, dtype) for k, (shape, dtype) in m["shapes"].items()} for i, m in enumerate(meta)
    }


def versions_of(mask: np.ndarray, version: int) -> np.ndarray:
    """[B, T] int32: ``version`` on the response tokens (``mask``), -1 elsewhere."""
    return np.where(np.asarray(mask) > 0, version, -1).astype(np.int32)


class Pipeline:
    """The queue of rollouts sampled ahead and the sampler that produces them (module docstring).

    Per RL step the trainer calls ``rollout = pipeline.next(key, version, algo_state)`` in place
    of the kind's ``collect``, updates, then ``pipeline.after_update(params)``."""

    def __init__(self, cfg: Config, ctx: Context, kind: Kind, learner: policy_lib.Policy):
        check(cfg, ctx.algo, kind)
        self.cfg, self.kind = cfg, kind
        self.k, self.w = cfg.train.staleness, cfg.train.partial_rollout_tokens
        self.total_steps = cfg.sft.steps + cfg.train.steps  # global steps: no rollout is begun past them
        mesh = policy_lib.make_sampler_mesh(cfg)
        self.sampler = learner if mesh is None else learner.on_mesh(mesh)
        self.disaggregated = mesh is not None
        self.ctx = dataclasses.replace(ctx, policy=self.sampler)
        self.queue: list[Entry] = []  # the rollouts of steps v .. v + len - 1, in order
        self._pool = futures.ThreadPoolExecutor(1) if self.disaggregated and self.k else None
        self._pending: futures.Future | None = None
        self._stale_params = self.disaggregated  # the sampler's copy is not the learner's yet
        self._first_push = 0.0

    # ------------------------------------------------------------------ sampling
    def _begin(self, key: jax.Array, step: int, version: int, algo_state: Any) -> Entry:
        """The rollout of global step ``step`` by the sampler's current params (``version``):
        finished, or with partial rollouts its prompts and first window."""
        step_key = jax.random.fold_in(key, step)
        if not self.w:
            rollout, metrics = self.kind.collect(self.ctx, step_key, algo_state)
            rollout = rollout.with_items(versions=versions_of(rollout.mask, version))
            return Entry(step, version, rollout=rollout, metrics=metrics)
        c, policy = self.cfg, self.sampler
        P, G, T = c.train.prompts_per_step, c.train.group_size, c.sampling.max_new_tokens
        if self.ctx.algo.temperature(self.ctx.algo_cfg, algo_state)[0] is not None:
            raise ConfigError(f"train.partial_rollout_tokens: {self.ctx.algo.name!r} sets a temperature rule")
        examples, ids = group.draw_from_stream(self.ctx, P, jax.random.fold_in(step_key, 1), algo_state)
        prompt_tokens, prompt_mask = policy.encode_prompts(examples)
        zeros = np.zeros((P * G, T), np.float32)
        partial = {
            "prompt_tokens": np.repeat(prompt_tokens, G, axis=0).astype(np.int32),  # [B, Sp]
            "prompt_mask": np.repeat(prompt_mask, G, axis=0).astype(np.int32),
            "prompt_ids": np.repeat(ids, G).astype(np.int32),  # [B]
            "tokens": np.full((P * G, T), policy.pad_id, np.int32),  # [B, T] response so far
            "lengths": np.zeros(P * G, np.int32),
            "done": np.zeros(P * G, np.float32),
            "sampler_logprobs": zeros,
            "policy_logprobs": zeros,
            "entropies": zeros,
            "versions": np.full((P * G, T), -1, np.int32),
        }
        entry = Entry(step, version, partial=partial, metrics={"time/sample": 0.0})
        self._advance(entry, key, version, self.w)
        return entry

    def _advance(self, entry: Entry, key: jax.Array, version: int, tokens: int) -> None:
        """At most ``tokens`` more tokens of every unfinished row of a partial rollout, sampled by
        the sampler's current params (``version``); finished rows keep theirs."""
        p = entry.partial
        if p["done"].all():
            return
        t0 = time.perf_counter()
        s = window.advance(
            self.ctx,
            p["prompt_tokens"],
            p["prompt_mask"],
            p["tokens"],
            p["lengths"],
            p["sampler_logprobs"],
            p["policy_logprobs"],
            jax.random.fold_in(jax.random.fold_in(key, entry.step), 2 + entry.windows),
            tokens,
        )
        live = p["done"] == 0  # [B]
        new = s["new"] * live[:, None]  # [B, T] this window's kept tokens
        keep = lambda name, fresh: np.where(live.reshape((-1,) + (1,) * (fresh.ndim - 1)), fresh, p[name])
        p["tokens"] = keep("tokens", s["tokens"])
        p["lengths"] = keep("lengths", s["lengths"]).astype(np.int32)
        p["sampler_logprobs"] = keep("sampler_logprobs", s["sampler_logprobs"])
        p["policy_logprobs"] = keep("policy_logprobs", s["policy_logprobs"])
        p["entropies"] = np.where(new > 0, s["entropies"], p["entropies"]).astype(np.float32)
        p["versions"] = np.where(new > 0, version, p["versions"]).astype(np.int32)
        p["done"] = np.maximum(p["done"], s["finished"].astype(np.float32))
        entry.windows += 1
        entry.metrics["time/sample"] += time.perf_counter() - t0

    def _finish(self, entry: Entry, key: jax.Array, version: int) -> tuple[Rollout, dict[str, float]]:
        """The consumed rollout: a partial one's remaining tokens sampled by ``version``, then
        scored as the group kind does."""
        if entry.partial is None:
            return entry.rollout, dict(entry.metrics)
        c, p = self.cfg, entry.partial
        T, G = c.sampling.max_new_tokens, c.train.group_size
        if not p["done"].all():
            self._advance(entry, key, version, T)
        t0 = time.perf_counter()
        examples = [self.ctx.task.train_example(int(i)) for i in p["prompt_ids"]]
        rewards, info = self.ctx.score(self.sampler.decode(p["tokens"], p["lengths"]), examples)
        mask = (np.arange(T)[None] < p["lengths"][:, None]).astype(np.float32)  # [B, T]
        rollout = Rollout(
            prompt_tokens=p["prompt_tokens"],
            prompt_mask=p["prompt_mask"],
            tokens=p["tokens"],
            mask=mask,
            loss_mask=mask,
            rewards=np.asarray(rewards, np.float32),
            group_ids=np.repeat(np.arange(len(examples) // G, dtype=np.int32), G),
            prompt_ids=p["prompt_ids"],
            lengths=p["lengths"],
            sampler_logprobs=p["sampler_logprobs"] * mask,
            policy_logprobs=p["policy_logprobs"] * mask,
            entropies=p["entropies"] * mask,
            extras={"versions": np.where(mask > 0, p["versions"], -1).astype(np.int32)},
            group_size=G,
        )
        metrics = group.rollout_metrics(rollout, c.eval.correct_threshold)
        failures = sum(info["failures"].values()) + sum(info["timeouts"].values())
        metrics.update(
            {
                "time/sample": entry.metrics["time/sample"],
                "time/reward": time.perf_counter() - t0,
                "reward/failures": float(failures),
                "offpolicy/windows": float(entry.windows),
            }
        )
        return rollout, metrics

    def _sampler_work(self, key: jax.Array, step: int, version: int, algo_state: Any) -> Entry | None:
        """What the sampler does at ``version``: with partial rollouts, advance every queued one by
        a window; then begin the rollout of global step ``step`` (none past the run's last step)."""
        if self.w:
            for entry in self.queue:
                self._advance(entry, key, version, self.w)
        return self._begin(key, step, version, algo_state) if step < self.total_steps else None

    # ------------------------------------------------------------------ the step
    def next(
        self, key: jax.Array, step: int, version: int, algo_state: Any, params: Any
    ) -> tuple[Rollout, dict[str, float]]:
        """The rollout the update of global step ``step`` (policy ``version``) consumes, and its
        metrics (``offpolicy/*``: its tokens' staleness); starts the sampler's work for step
        ``step + k`` (in a thread when the sampler has its own devices)."""
        metrics: dict[str, float] = {}
        if self._stale_params:  # run start or resume: the sampler's copy of the learner's params
            self._first_push = self.push(params)
        if self.queue and self.queue[0].step != step:
            raise RuntimeError(f"off-policy queue starts at step {self.queue[0].step}, the trainer is at step {step}")
        # run start (or the resume of an extended run): the first k rollouts, all by this version
        while len(self.queue) < self.k and step + len(self.queue) < self.total_steps:
            self.queue.append(self._begin(key, step + len(self.queue), version, algo_state))
        if self.k == 0:
            self._keep(self._sampler_work(key, step, version, algo_state))
        head = self.queue.pop(0)
        rollout, head_metrics = self._finish(head, key, version)
        if self.k:
            work = lambda: self._sampler_work(key, step + self.k, version, algo_state)
            self._pending = self._pool.submit(work) if self._pool else None
            if self._pool is None:
                self._keep(work())
        versions = np.asarray(rollout.extras["versions"])
        mask = np.asarray(rollout.loss_mask if rollout.loss_mask is not None else rollout.mask) > 0
        lag = (version - versions)[mask & (versions >= 0)]
        metrics.update(head_metrics)
        metrics["offpolicy/staleness_mean"] = float(lag.mean()) if lag.size else 0.0
        metrics["offpolicy/staleness_max"] = float(lag.max()) if lag.size else 0.0
        return rollout, metrics

    def after_update(self, params: Any) -> dict[str, float]:
        """Waits for the sampler's work of this step, then pushes the updated ``params`` to it."""
        t0 = time.perf_counter()
        if self._pending is not None:
            self._keep(self._pending.result())
            self._pending = None
        out = {"time/sample_wait": time.perf_counter() - t0}
        if self.disaggregated:
            out["time/push"] = self.push(params) + self._first_push
            self._first_push = 0.0
        return out

    def _keep(self, entry: Entry | None) -> None:
        if entry is not None:
            self.queue.append(entry)

    def push(self, params: Any) -> float:
        """Learner -> sampler weights (``Policy.push``); returns the seconds it took, to completion."""
        t0 = time.perf_counter()
        self.sampler.push(params)
        jax.block_until_ready(self.sampler.params)
        self._stale_params = False
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ checkpoint
    def tree(self) -> dict[str, Any] | None:
        return {str(i): e.arrays() for i, e in enumerate(self.queue)} or None

    def meta(self) -> list[dict[str, Any]]:
        return [e.meta() for e in self.queue]

    def load(self, tree: dict[str, Any] | None, meta: list[dict[str, Any]]) -> None:
        """Takes a restored queue; the sampler's params are refreshed at the next step."""
        self.queue = [Entry.from_checkpoint(tree[str(i)], m) for i, m in enumerate(meta)]
        self._stale_params = self.disaggregated

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
