"""Test setup: offline, deterministic, 8 fake CPU devices for sharding tests."""

import gc
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile thousands of small programs and run each for milliseconds, so XLA:CPU's LLVM
# optimization passes take much of their time: at level 0 the suite's CPU time fell by about a
# quarter (2026-12-07). The level changes the machine code's speed and, in the last bits, the
# rounding of some fused sums (no fast-math): a check must allow f32 rounding of the sum it
# compares, as a jit-vs-eager check must anyway. Set before JAX starts its backend;
# an XLA_FLAGS that already names a level is left as it is. Subprocesses (CLI runs, notebook
# kernels) inherit it unless a test passes its own XLA_FLAGS.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

# The suite compiles many programs more than once: a run and its resumed twin, jit-vs-eager
# pairs, the same sampler in every end-to-end file (``jax.clear_caches`` below drops JAX's
# in-memory cache after each file). JAX's persistent compilation cache turns each repeat into a
# read: on three end-to-end files it cut 208 s to 151 s, and the suite's test time 3,160 s to
# 2,917 s (2026-12-07). One directory per xdist worker, made here and removed at the end of the
# session (``pytest_unconfigure``), because JAX writes entries without a lock
# when the cache has no size limit; subprocesses a test starts inherit their worker's directory
# through the environment. A JAX_COMPILATION_CACHE_DIR set by the caller is used as it is.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_OWN_CACHE_DIR = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ or os.environ.get("JAXRL_LLM_TEST_CACHE_OF", _WORKER) != _WORKER:
    _OWN_CACHE_DIR = tempfile.mkdtemp(prefix=f"jaxrl_llm-tests-xla-{_WORKER}-")
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=_OWN_CACHE_DIR,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        JAXRL_LLM_TEST_CACHE_OF=_WORKER,
    )

import jax  # noqa: E402
import pytest  # noqa: E402
from jax._src import compilation_cache  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
# Implicit rank promotion ([3, 13, 1] * [4] broadcasting silently) is an error in tests: every
# broadcast between arrays of different ranks is written out (issue #15 item 10).
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_unconfigure(config):
    """Removes this process's compilation cache directory (xdist workers leave without running
    ``atexit`` handlers)."""
    if _OWN_CACHE_DIR is not None:
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


@pytest.fixture
def allow_rank_promotion():
    """NumPy-style rank broadcasting for code not yet written out (``jaxrl_llm/diffusion/``)."""
    with jax.numpy_rank_promotion("allow"):
        yield


@pytest.fixture(autouse=True)
def _no_leaked_compilation_cache():
    """A test whose run config names ``compilation_cache_dir`` turns JAX's persistent cache on for
    the whole process (``train.enable_compilation_cache``); turn it off again after that test, so
    later tests in the same xdist worker do not read executables from another test's cache."""
    before = jax.config.jax_compilation_cache_dir
    yield
    if jax.config.jax_compilation_cache_dir != before:
        jax.config.update("jax_compilation_cache_dir", before)
        compilation_cache.reset_cache()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test file. Every XLA:CPU executable keeps memory
    mappings of its own until its cache entry dies; a long-lived xdist worker that ran a few dozen
    files held ~56,000 mappings, and the next compilation crashed (SIGSEGV / SIGABRT in
    ``backend_compile_and_load``) at the kernel's ``vm.max_map_count`` of 65,530, after which the
    xdist controller waited forever. Cleared per file, a worker stays near 2,000."""
    yield
    jax.clear_caches()
    gc.collect()
