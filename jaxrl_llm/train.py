"""The canonical training loop every method runs through, as an outline.

``train(cfg)``:

  1. context: the policy (``policy.Policy``: model, params, tokenizer, sampler, mesh), the task,
     the algorithm's record (``algorithms.get``), its rollout kind (``rollouts.get``), the reward
     runner; resume from the newest readable checkpoint of the run directory, if any;
  2. SFT warm start (``sft.steps`` > 0, ``sft.py``);
  3. evaluate on the held-out split ("before", ``evaluate.py``);
  4. for each RL step:
       rollout     the kind's ``collect(ctx, key, algo_state)`` -> rows (``types.Rollout``); off-policy
                   (``train.staleness`` k > 0 or ``mesh.sampler_devices`` > 0, ``offpolicy.py``): the
                   rollout the sampler produced k steps ago, while it samples the one k steps ahead
       log-probs   pi_old (the sampler's, or recomputed), pi_ref when ``beta`` > 0, the critic's
                   values V_old for methods with one (forward passes in chunks of
                   ``train.micro_batch_size`` rows, ``Policy.by_row_chunks``), the rollout
                   correction (``is_weights``)
       advantages  ``algorithms.make_batch``: reward shaping, advantages, the loss ``Batch``
       update      ``num_iterations`` epochs of ``num_minibatches`` optimizer updates, gradients
                   accumulated over micro-batches inside one jitted, donated step (``update.py``)
       state       the kind's ``state_inputs`` and the method's ``update_state``; off-policy: the
                   learner's params pushed to the sampler
       log / eval / checkpoint
  5. evaluate again ("after"), print the summary table, write ``summary.json``.

Numerics: master weights and optimizer state are f32; the forward pass runs in
``model.compute_dtype``; log-probs and every loss are f32. Determinism: every random draw of step
``s`` comes from ``fold_in(key, s)`` and the data iterator position is checkpointed, so a resumed
run repeats an uninterrupted run's metrics.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import (
    algorithms,
    distributed,
    evaluate,
    metrics_log,
    offpolicy,
    rollouts,
    run_dir,
    sft,
    state,
    tasks,
    update,
)
from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as config_lib
from jaxrl_llm.config import Config
from jaxrl_llm.models import critic as critic_lib
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import correction, episode
from jaxrl_llm.types import Batch, Rollout


class Interrupted(Exception):
    """Raised inside the loop after SIGINT (or at ``stop_after``) once the checkpoint is saved."""


def enable_compilation_cache(directory: str) -> None:
    """Turns on JAX's persistent compilation cache in ``directory`` (every program is stored)."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


class Trainer:
    """A run's fixed parts (policy, task, algorithm, rollout kind, rewards, optimizers) and its
    moving ``state`` (``state.RunState``; the policy's live params are ``policy.params``)."""

    def __init__(self, cfg: Config):
        cfg = config_lib.resolve_algo(cfg)
        if cfg.compilation_cache_dir:
            enable_compilation_cache(cfg.compilation_cache_dir)
        self.algo = algorithms.get(cfg.algorithm)
        self.kind = rollouts.get(cfg.train.rollout or self.algo.rollout)
        self.task = tasks.make_task(cfg.task.name, **dict(cfg.task.kwargs))
        self.cfg = cfg = config_lib.fit_to_task(cfg, self.task.num_train)
        self.run_dir = pathlib.Path(cfg.resolved_run_dir)
        self.is_main = distributed.is_main()
        self.policy = Policy.create(cfg)
        if self.policy.vision_cfg is not None and self.algo.needs_critic:
            raise config_lib.ConfigError(
                f"algorithm {self.algo.name!r} trains a critic, which reads no images; "
                f"model {cfg.model.name!r} is a vision-language model: choose a critic-free method"
            )
        if self.kind.name in episode.PLAYING_KINDS:
            episode.make_env(cfg.env)  # a bad env.name or env.kwargs fails here, before any step
        self.rewards = evaluate.make_scorer(self.task, cfg)
        self.data = self.task.train_iter(cfg.seed)
        self.ctx = rollouts.Context(cfg, self.algo, self.policy, self.task, self.data, self.rewards.score)
        self.offpolicy = offpolicy.Pipeline(cfg, self.ctx, self.kind, self.policy) if offpolicy.enabled(cfg) else None
        self.sft_tx, self.rl_tx = state.optimizers(cfg)
        self.total_sft, self.total_steps = cfg.sft.steps, cfg.sft.steps + cfg.train.steps
        self._updaters: dict[str, update.Updater] = {}
        self._make_batch = jax.jit(algorithms.make_batch, static_argnums=(0, 2))
        self._update_state = jax.jit(self.algo.update_state, static_argnums=(2,))
        self._values = jax.jit(self._values_impl, static_argnums=(4,))
        self.state = state.RunState(key=jax.random.key(cfg.seed), phase="sft" if cfg.sft.steps else "rl")
        if self.state.phase == "sft":
            self.state.opt_state = self.init_opt_state("sft", None)
        else:  # no SFT stage: the RL state (optimizer, reference copy, algorithm state) starts now
            self.start_rl()

    # ------------------------------------------------------------------ state
    def updater(self, phase: str, critic: Any) -> update.Updater:
        if phase not in self._updaters:
            tree = state.trainable(self.policy.params, critic)
            self._updaters[phase] = update.Updater(
                self.policy.shardings_of(tree), self.policy.put, self.policy.replicated
            )
        return self._updaters[phase]

    def init_opt_state(self, phase: str, critic: Any) -> Any:
        tx = self.sft_tx if phase == "sft" else self.rl_tx
        return self.updater(phase, critic).init(tx, state.trainable(self.policy.params, critic))

    def start_rl(self) -> None:
        """SFT -> RL: the critic (methods with one), a fresh RL optimizer, the algorithm state (the
        kind may prepare it, e.g. an offline prior), the frozen reference params."""
        st, c = self.state, self.cfg
        st.phase = "rl"
        if self.algo.needs_critic:
            st.critic = state.new_critic(c, self.policy.params, self.policy.shardings_of)
        st.opt_state = self.init_opt_state("rl", st.critic)
        st.algo_state = self.kind.prepare_state(
            self.ctx, jax.random.fold_in(st.key, 10**9 + 1), self.algo.init_state(c.algo)
        )
        # A device copy, not an alias: the live params are donated to every update.
        st.ref_params = jax.tree.map(jnp.copy, self.policy.params) if self.algo.uses_reference(c.algo) else None

    def restore_target(self, meta: dict[str, Any]) -> dict[str, Any]:
        init_critic = lambda params: state.new_critic(self.cfg, params, self.policy.shardings_of)
        target = state.restore_target(
            meta, self.cfg, self.algo, self.policy.params, self.init_opt_state, init_critic, self.state.key
        )
        if "inflight" in meta:
            target["inflight"] = offpolicy.restore_target(meta["inflight"])
        return target

    def load(self, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        self.policy.params = self.state.load(tree, meta)
        self.data.set_state(meta["data"])
        if self.offpolicy is not None:
            self.offpolicy.load(tree.get("inflight"), meta.get("inflight", []))
        for u in self._updaters.values():
            u.forget()

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tree, meta = self.state.tree(self.policy.params), self.state.meta(self.data.get_state(), self.cfg)
        if self.offpolicy is not None:  # the rollouts sampled ahead (in flight)
            tree["inflight"], meta["inflight"] = self.offpolicy.tree(), self.offpolicy.meta()
        return tree, meta

    def close(self) -> None:
        """Stops the reward workers (and the off-policy sampler's thread)."""
        if self.offpolicy is not None:
            self.offpolicy.close()
        self.rewards.close()

    # ------------------------------------------------------------------ RL pieces
    def _values_impl(self, params, critic, tokens, attention, num_completion):
        return critic_lib.values(
            self.cfg.train.critic, self.policy.graphdef, params, critic, tokens, attention, num_completion
        )

    def rl_loss(self, num_completion: int, group_size: int):
        """``(trainable, inputs, batch) -> (loss, metrics)``: the method's loss of the policy's
        log-probs, with the critic's current ``values`` for methods with one, and the policy's
        full-vocabulary ``entropies`` [B, T] for methods that differentiate them (EPO)."""
        p, algo, layout, has_critic = self.policy, self.algo, self.cfg.train.critic, self.algo.needs_critic
        with_entropy = "entropies" in algo.differentiable_batch_keys

        def fn(trainable, inputs, batch):
            params, critic = state.split(trainable, True if has_critic else None)
            logp = p.completion_logprobs(
                p.model(params),
                inputs["tokens"],
                inputs["attention_mask"],
                num_completion,
                group_size=group_size,
                return_entropy=with_entropy,
                images=inputs.get("images"),
                image_mask=inputs.get("image_mask"),
            )
            if with_entropy:
                logp, entropies = logp
                batch = batch.with_items(entropies=entropies)
            if has_critic:
                batch = batch.with_items(
                    values=critic_lib.values(
                        layout, p.graphdef, params, critic, inputs["tokens"], inputs["attention_mask"], num_completion
                    )
                )
            return algo.loss(logp, batch, self.cfg.algo)

        return fn


def model_inputs(rollout: Rollout) -> tuple[np.ndarray, np.ndarray]:
    """``[prompt | completion]`` tokens and attention mask [B, S] of a rollout's rows."""
    tokens = np.concatenate([rollout.prompt_tokens, rollout.tokens], axis=1)
    attention = np.concatenate([np.asarray(rollout.prompt_mask, np.float32), rollout.mask], axis=1)
    return tokens, attention


def score_rollout(tr: Trainer, rollout: Rollout, share: int) -> tuple[Rollout, dict[str, float]]:
    """pi_old (the sampler's untempered log-probs, or recomputed), pi_ref when ``beta`` > 0, the
    critic's V_old for methods with one (each pass in chunks of ``train.micro_batch_size`` rows),
    then the rollout correction: all before the advantages, which KL-in-reward methods and GAE read."""
    c, p, st = tr.cfg, tr.policy, tr.state
    tokens, attention = model_inputs(rollout)
    T = rollout.tokens.shape[1]
    old = rollout.policy_logprobs
    images, image_mask = rollout.images, rollout.image_mask
    if c.train.old_logprobs == "recompute" or old is None or c.train.staleness > 0:  # stale: the learner's pi_old
        old = p.logprobs(p.params, tokens, attention, T, share, images, image_mask)
    rollout = rollout.replace(old_logprobs=old)
    if st.ref_params is not None:
        rollout = rollout.replace(
            ref_logprobs=p.logprobs(st.ref_params, tokens, attention, T, share, images, image_mask)
        )
    if st.critic is not None:
        values = p.by_row_chunks(lambda tok, att: tr._values(p.params, st.critic, tok, att, T), tokens, attention)
        rollout = rollout.with_items(values=np.asarray(values, np.float32))
    t = c.train
    return correction.apply(
        rollout, t.rollout_correction, t.rollout_correction_cap, t.rollout_correction_low, t.rollout_correction_high
    )


def rl_update(
    tr: Trainer, batch: Batch, key: jax.Array, share: int, inputs: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """``num_iterations`` epochs of ``num_minibatches`` optimizer updates over the batch's rows.

    ``inputs``: the rows' ``[prompt | completion]`` tokens and attention mask (``model_inputs`` of
    the ROLLOUT: the batch's ``mask`` is the loss mask, which leaves out tokens the model must still
    attend to, such as forced prefixes, earlier windows and observations). The rows' images
    (``batch.images``, a vision-language policy) and their slots (``batch.image_mask``) go to the
    model beside them."""
    c, st, p = tr.cfg, tr.state, tr.policy
    tokens, attention = inputs
    images, image_mask = batch.images, batch.image_mask
    T, B = batch.tokens.shape[1], batch.tokens.shape[0]
    update.check_rows(B, c.train.num_minibatches, c.train.micro_batch_size, tr.kind.name)
    rows_batch = batch.without("prompt_tokens", "prompt_mask", "num_tokens", "num_seqs", "images", "image_mask")
    loss = tr.rl_loss(T, share)
    out: list[dict[str, float]] = []
    for epoch in range(c.train.num_iterations):
        for i, rows in enumerate(update.minibatch_orders(key, B, c.train.num_minibatches, epoch, share)):
            mb = jax.tree.map(lambda x: np.asarray(x)[rows], rows_batch)
            scalars = {"num_tokens": max(float(np.sum(mb.mask)), 1.0), "num_seqs": float(len(rows))}
            trainable, st.opt_state, m = tr.updater("rl", st.critic).step(
                f"rl/T={T}/G={share}",
                tr.rl_tx,
                loss,
                state.trainable(p.params, st.critic),
                st.opt_state,
                {"tokens": tokens[rows], "attention_mask": attention[rows]}
                | ({} if images is None else {"images": np.asarray(images, np.float32)[rows]})
                | ({} if image_mask is None or images is None else {"image_mask": np.asarray(image_mask, bool)[rows]}),
                mb,
                scalars,
                c.train.micro_batch_size,
            )
            p.params, st.critic = state.split(trainable, st.critic)
            out.append(m)
            if not m["finite"]:
                st.counters["nonfinite_skipped"] += 1
                if c.train.on_nonfinite == "stop":
                    raise FloatingPointError(
                        f"non-finite loss or gradient at step {st.step + 1} (epoch {epoch}, minibatch {i}): "
                        f"loss={m['loss']}, grad_norm={m['grad_norm']}; the last checkpoint holds the "
                        "state before it (train.on_nonfinite='skip' skips such updates instead)"
                    )
    metrics = {
        k: float(np.min([m[k] for m in out])) if k == "finite" else float(np.mean([m[k] for m in out])) for k in out[0]
    }
    metrics["nonfinite_skipped"] = float(st.counters["nonfinite_skipped"])
    return metrics


def rl_step(tr: Trainer, timer: metrics_log.Timer) -> dict[str, float]:
    """One RL step: rollout -> log-probs -> advantages -> update -> algorithm state."""
    c, st = tr.cfg, tr.state
    key = jax.random.fold_in(st.key, st.step)
    if tr.offpolicy is None:
        rollout, metrics = tr.kind.collect(tr.ctx, key, st.algo_arrays())
    else:  # sampled ahead by the version st.step - staleness (offpolicy.py)
        rollout, metrics = tr.offpolicy.next(
            st.key, st.step, st.step - tr.total_sft, st.algo_arrays(), tr.policy.params
        )
    timer.add("sample", metrics.pop("time/sample"))
    timer.add("reward", metrics.pop("time/reward"))
    st.counters["reward_failures"] += int(metrics["reward/failures"])
    share = update.prompt_sharing(
        c.train.share_prompt,
        c.train.num_minibatches,
        c.train.micro_batch_size,
        rollout.prompt_tokens,
        rollout.prompt_mask,
        rollout.group_size,
    )
    with timer("logprobs"):
        rollout, correction_metrics = score_rollout(tr, rollout, share)
    with timer("advantages"):
        batch, adv_metrics = tr._make_batch(tr.algo, rollout, c.algo, st.algo_arrays())
        batch = jax.tree.map(np.asarray, batch)
    metrics.update({k: float(v) for k, v in {**adv_metrics, **correction_metrics}.items()})
    with timer("update"):
        metrics.update(rl_update(tr, batch, key, share, model_inputs(rollout)))
    if tr.algo.has_state:
        with timer("logprobs"):
            batch = tr.kind.state_inputs(tr.ctx, batch, st.algo_arrays())
        st.algo_state = tr._update_state(st.algo_arrays(), batch, c.algo)
    if tr.offpolicy is not None:
        metrics.update(tr.offpolicy.after_update(tr.policy.params))
    return metrics


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: Config, stop_after: int | None = None, extend: bool = False) -> dict[str, Any]:
    """Runs (or resumes) the run described by ``cfg``; returns the summary dict.

    The run directory must hold no run, or this config's (``run_dir.prepare``; ``extend`` allows
    the changes ``run_dir.EXTENDABLE`` lists); a finished run returns its saved summary and
    touches no file. ``stop_after``: stop (with a checkpoint, status ``"stopped"``) once the
    global step reaches this value; used by tests and by ``--stop-after``.
    """
    distributed.initialize()
    cfg = config_lib.resolve_algo(config_lib.validate(cfg))
    directory = pathlib.Path(cfg.resolved_run_dir)
    if distributed.is_main():
        if run_dir.prepare(directory, config_lib.to_dict(cfg), extend=extend) == "finished":
            return run_dir.read_summary(directory)
    elif (run_dir.read_summary(directory) or {}).get("status") == "finished":
        return run_dir.read_summary(directory)
    t_start = time.perf_counter()
    tr = Trainer(cfg)
    c, st = tr.cfg, tr.state
    ckpt = checkpoint_lib.Checkpointer(tr.run_dir / "checkpoints", c.checkpoint.max_to_keep, c.checkpoint.async_save)
    restored = ckpt.restore(tr.restore_target)
    resume_step = None
    if restored is not None:
        resume_step, tree, meta = restored
        tr.load(tree, meta)
        if "after" in st.eval_history and st.step < tr.total_steps:  # extended (--extend) past its old end:
            st.eval_history[str(st.step)] = st.eval_history.pop("after")  # that was an eval at this step
        if tr.is_main:
            print(
                f"resumed from {tr.run_dir}/checkpoints/{resume_step} (phase {st.phase})", file=sys.stderr, flush=True
            )
    progress = metrics_log.Progress(tr.total_steps, st.step, c.name, enabled=tr.is_main and c.log.progress)
    say = lambda text: progress.write(text) if tr.is_main else None
    logger = metrics_log.MetricsLogger(tr.run_dir, resume_step, c.log.tensorboard, enabled=tr.is_main)
    compiles = metrics_log.CompileCounter()
    # Warm-up is this process's first two steps of each phase (a resumed process compiles its
    # programs again), its first evaluation and its first checkpoint save (on a multi-device mesh
    # the save compiles the slicing of sharded arrays); both can fall after the first two steps.
    # Compiles outside warm-up are recompilations.
    warmup_end = {"sft": st.step + 2, "rl": max(tr.total_sft, st.step) + 2}
    warmed_up: set[str] = set()
    warmup_compiles = {"n": 0}  # compiles of a first evaluation or save since the last step's count

    @contextlib.contextmanager
    def first_time(kind: str):
        counter = metrics_log.CompileCounter() if kind not in warmed_up else None
        yield
        if counter is not None:
            warmed_up.add(kind)
            warmup_compiles["n"] += counter.take()

    flags = {"sigint": False}
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        flags["sigint"] = True
        say("SIGINT: saving a checkpoint after this step, then exiting (Ctrl-C again to abort)")
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)

    def save(wait: bool = False) -> None:
        with first_time("save"):
            ckpt.save(st.step, *tr.checkpoint(), wait=wait)

    def finish_step(m: dict[str, float], phase: str, log_every: bool) -> None:
        m["compiles"] = compiles.take()
        if st.step > warmup_end[phase]:
            st.counters["compiles_after_warmup"] += int(m["compiles"]) - warmup_compiles["n"]
        warmup_compiles["n"] = 0
        if log_every:
            logger.log(phase, st.step, m)
        if flags["sigint"] or (stop_after is not None and st.step >= stop_after):
            save(wait=True)
            raise Interrupted("stopped" if not flags["sigint"] else "interrupted")
        if c.checkpoint.every and st.step % c.checkpoint.every == 0:
            save()

    def run_eval(name: str) -> None:
        with first_time("eval"):
            st.eval_history[name] = evaluate.evaluate(
                tr.policy, tr.task, tr.rewards.score, c.eval, jax.random.fold_in(st.key, 10**9)
            )
        logger.log("eval", st.step, st.eval_history[name])
        say(f"{name + ' RL' if name in ('before', 'after') else 'eval at step ' + name}: {_fmt(st.eval_history[name])}")

    status = "finished"
    evals = bool(c.eval.num_examples and tr.task.num_eval)
    try:
        while st.phase == "sft" and st.step < tr.total_sft:
            timer = metrics_log.Timer()
            with timer("update"):
                st.opt_state, m = sft.step(tr.policy, tr.updater("sft", None), tr.sft_tx, st.opt_state, tr.data, c)
            st.step += 1
            m.update(timer.split())
            progress.update(m, ("sft/loss", "time/step"))
            finish_step(m, "sft", st.step % c.log.every == 0 or st.step == tr.total_sft)
        if st.phase == "sft":
            tr.start_rl()
        if "before" not in st.eval_history and evals:
            run_eval("before")
        while st.step < tr.total_steps:
            timer = metrics_log.Timer()
            m = rl_step(tr, timer)
            st.step += 1
            m.update(timer.split())
            progress.update(m)
            rl = st.step - tr.total_sft
            if evals and c.eval.every and rl % c.eval.every == 0 and st.step < tr.total_steps:
                run_eval(str(st.step))
            finish_step(m, "rl", rl % c.log.every == 0 or st.step == tr.total_steps)
        if "after" not in st.eval_history and evals:
            run_eval("after")
        if st.step not in ckpt.all_steps():
            save(wait=True)
    except Interrupted as e:
        status = str(e)
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
        ckpt.close()
        logger.close()
        tr.close()
    summary = {
        "status": status,
        "step": st.step,
        "run_dir": str(tr.run_dir),
        "wall_time_s": time.perf_counter() - t_start,
        "eval": st.eval_history,
        "counters": st.counters,
    }
    if tr.is_main and status == "finished":
        metrics_log.report_run(
            tr.run_dir, tr.state.eval_history, bool(tr.cfg.sft.steps), tr.state.counters, summary, run_dir.SUMMARY_FILE
        )
    return summary


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('eval/')}={v:.3f}" for k, v in metrics.items())


if __name__ == "__main__":
    sys.exit("use `jaxrl-llm train` (jaxrl_llm.cli)")
