"""Multi-host runs with JAX's multi-controller runtime (``jax.distributed``).

Every host runs the same command. The runtime initializes from the environment:

* TPU pod slices, SLURM, Open MPI, Kubernetes: ``jax.distributed.initialize()`` auto-detects the
  coordinator, the process count and this process's id; set ``JAXRL_DISTRIBUTED=1`` (or pass
  ``--distributed`` to the CLI).
* Anywhere else (several GPU hosts by hand, or several CPU processes on one machine as the tests
  do): set ``JAX_COORDINATOR_ADDRESS=host:port``, ``JAXRL_NUM_PROCESSES=N`` and
  ``JAXRL_PROCESS_ID=i`` on each process.

After initialization ``jax.devices()`` lists every device of every process; the mesh from the
config spans all of them, and the trainer feeds each process's share of every global batch with
``jax.make_array_from_callback``.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

_initialized = False


def requested() -> bool:
    """True when the environment asks for a multi-process run."""
    return bool(os.environ.get("JAXRL_DISTRIBUTED") or os.environ.get("JAXRL_NUM_PROCESSES"))


def initialize(force: bool = False) -> None:
    """Initializes ``jax.distributed`` when the environment (or ``force``) asks for it.

    Must run before anything touches a JAX device. Idempotent.
    """
    global _initialized
    if _initialized or not (force or requested()):
        return
    num = os.environ.get("JAXRL_NUM_PROCESSES")
    pid = os.environ.get("JAXRL_PROCESS_ID")
    if (num is None) != (pid is None):
        raise ValueError("set both JAXRL_NUM_PROCESSES and JAXRL_PROCESS_ID, or neither (auto-detect)")
    kwargs = {}
    if num is not None:
        if not os.environ.get("JAX_COORDINATOR_ADDRESS"):
            raise ValueError("JAXRL_NUM_PROCESSES is set but JAX_COORDINATOR_ADDRESS (host:port) is not")
        kwargs = dict(num_processes=int(num), process_id=int(pid))
    jax.distributed.initialize(**kwargs)
    _initialized = True


def is_main() -> bool:
    """Process 0 writes logs, plots and summaries; every process takes part in checkpoints."""
    return jax.process_index() == 0


def to_host(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-process sharded) array as NumPy on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def sync(name: str) -> None:
    """A barrier across processes (no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
