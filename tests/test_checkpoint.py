"""Checkpoints: Orbax round trip, fallback past a corrupt step, and whole-run resume:
SIGINT saves and exits; SIGKILL at a random point then resume gives the metrics of a run never
interrupted; a corrupt latest checkpoint falls back to the previous one and still ends identical."""

import os
import pathlib
import random
import signal
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxrl_llm import metrics_log
from jaxrl_llm.checkpoint import Checkpointer, UnreadableCheckpointError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _corrupt(step_dir: pathlib.Path) -> None:
    for f in step_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0garbage")


def test_round_trip_and_fallback_past_a_corrupt_step(tmp_path):
    params = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.zeros(3)}
    tx = optax.adamw(1e-3)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "algo_state": {"n": jnp.int32(5)},
        "rng": jax.random.key_data(jax.random.key(3)),
    }
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(1, state, {"step": 1, "data": {"pos": 10}})
    later = jax.tree.map(lambda x: x + 1, state)
    ckpt.save(2, later, {"step": 2, "data": {"pos": 20}})
    ckpt.wait()
    step, restored, meta = ckpt.restore(state)
    assert step == 2 and meta["data"] == {"pos": 20}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(later)):
        np.testing.assert_array_equal(a, b)
    _corrupt(tmp_path / "2")
    with pytest.warns(UserWarning, match="checkpoint step 2 .* unreadable.*falling back"):
        step, restored, meta = ckpt.restore(state)
    assert step == 1 and meta["data"] == {"pos": 10}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    ckpt.close()


def _state(offset: float) -> dict:
    return {"w": jnp.arange(6.0).reshape(2, 3) + offset, "n": jnp.int32(offset)}


def test_corrupt_newest_step_is_moved_aside_and_the_step_saved_again(tmp_path):
    """Issue #14 A: after falling back past a corrupt newest step, saving that step number again
    must write the new state (it was refused: "already exists ... not saved again"), and the
    corrupt files must be kept under a name Orbax does not take for a step."""
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(60, _state(60), {"step": 60})
    ckpt.save(70, _state(70), {"step": 70})
    ckpt.wait()
    _corrupt(tmp_path / "70")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step, restored, _ = ckpt.restore(_state(0))
    assert step == 60
    np.testing.assert_array_equal(restored["w"], _state(60)["w"])
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("corrupt-70-")]
    assert len(aside) == 1 and any(f.is_file() for f in aside[0].rglob("*")), list(tmp_path.iterdir())
    messages = [str(w.message) for w in caught if "checkpoint step 70" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and str(aside[0]) in messages[0], messages
    assert ckpt.all_steps() == [60]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "already exists ... not saved again" would raise here
        ckpt.save(70, _state(71), {"step": 70}, wait=True)
    ckpt.close()
    reopened = Checkpointer(tmp_path, max_to_keep=3)
    assert reopened.all_steps() == [60, 70]
    step, restored, meta = reopened.restore(_state(0))
    assert step == 70 and meta["step"] == 70
    np.testing.assert_array_equal(restored["w"], _state(71)["w"])
    assert aside[0].exists()  # kept: neither pruned nor cleaned up as a temporary directory
    reopened.close()


def test_no_step_restores_raises_and_moves_nothing(tmp_path):
    """A target that fits no checkpoint (or every step corrupt) must not be taken for "start
    fresh" (that mixed two runs' checkpoints in one directory), nor quarantine good steps."""
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(1, _state(1), {"step": 1})
    ckpt.save(2, _state(2), {"step": 2}, wait=True)
    with pytest.raises(UnreadableCheckpointError, match=r"no checkpoint in .* restores \(steps \[1, 2\]"):
        ckpt.restore({"other": jnp.zeros((5, 5))})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]
    step, _, _ = ckpt.restore(_state(0))
    assert step == 2
    ckpt.close()


def test_empty_directory_restores_nothing(tmp_path):
    ckpt = Checkpointer(tmp_path / "none")
    assert ckpt.restore({"x": jnp.zeros(2)}) is None
    ckpt.close()


# ------------------------------------------------------------------------------ whole runs

OVERRIDES = [
    "model.name=tiny",
    "task.name=rg:basic_arithmetic",
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 2000}',
    "sft.steps=2",
    "sft.batch_size=8",
    "train.steps=6",
    "train.prompts_per_step=4",
    "train.group_size=2",
    "sampling.max_new_tokens=4",
    "eval.num_examples=8",
    "eval.k=0",
    "eval.batch_size=8",
    "reward.num_workers=0",
    "log.progress=false",
    "log.tensorboard=false",
    "checkpoint.every=1",
    "checkpoint.max_to_keep=3",
    "algo.beta=0.04",
    "optim.learning_rate=1e-3",
]


def _launch(run_dir, cache_dir, *extra):
    # the inherited XLA_FLAGS carry the test suite's optimization level (tests/conftest.py)
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags)
    cmd = [
        sys.executable,
        "-m",
        "jaxrl_llm.cli",
        "train",
        "--run-dir",
        str(run_dir),
        "--set",
        f"compilation_cache_dir={cache_dir}",
    ]
    for o in OVERRIDES + list(extra):
        cmd += ["--set", o]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _steps(run_dir):
    d = pathlib.Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _comparable(run_dir):
    """Metrics without wall-clock and compile-count keys (those differ between processes)."""
    return [
        {k: v for k, v in r.items() if not k.startswith("time/") and k != "compiles"}
        for r in metrics_log.read_metrics(run_dir)
    ]


def _wait_for_step(proc, run_dir, step, timeout=600):
    t0 = time.time()
    while max(_steps(run_dir), default=0) < step:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before checkpoint {step}:\n{proc.stdout.read()[-3000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no checkpoint {step} after {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigint_sigkill_and_corrupt_checkpoint_resume_identically(tmp_path):
    cache = tmp_path / "xla_cache"
    rng = random.Random(int(time.time()))
    seed_note = f"(random seed {rng.random()})"

    # 1. the reference: never interrupted
    code, out = _finish(_launch(tmp_path / "ref", cache))
    assert code == 0, out[-3000:]
    reference = _comparable(tmp_path / "ref")
    assert [r["phase"] for r in reference].count("rl") == 6

    run = tmp_path / "run"
    # 2. SIGINT during the RL phase: saves a checkpoint of the step it is at, then exits 130
    proc = _launch(run, cache)
    _wait_for_step(proc, run, 3)
    proc.send_signal(signal.SIGINT)
    code, out = _finish(proc)
    assert code == 130, out[-3000:]
    last = max(_steps(run))
    assert last >= 3 and metrics_log.read_metrics(run)[-1]["step"] <= last

    # 3. resume, then SIGKILL at a random moment after the next checkpoint lands
    proc = _launch(run, cache)
    _wait_for_step(proc, run, last + 1)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.kill()
    proc.wait()
    # Under load the kill can land after the run finished; a finished run is left alone when run
    # again, so take its summary away, as a kill just before the summary was written would.
    (run / "summary.json").unlink(missing_ok=True)

    # 4. corrupt whatever checkpoint is newest now: the resume must fall back past it
    newest = max(_steps(run))
    _corrupt(run / "checkpoints" / str(newest))
    code, out = _finish(_launch(run, cache))
    assert code == 0, out[-3000:]
    assert f"checkpoint step {newest}" in out and "falling back" in out, out[-3000:]
    assert _comparable(run) == reference, seed_note
    # the corrupt step is kept aside, and the run's last step is on disk and readable
    assert len(list((run / "checkpoints").glob(f"corrupt-{newest}-*"))) == 1
    manager = ocp.CheckpointManager((run / "checkpoints").absolute(), item_names=("state", "meta"))
    final = max(r["step"] for r in reference)  # SFT steps + RL steps
    assert max(manager.all_steps()) == final
    assert manager.restore(final, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]["step"] == final
    manager.close()
