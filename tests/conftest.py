"""Test setup: offline, deterministic, 8 fake CPU devices for sharding tests."""

import gc
import os

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

import jax  # noqa: E402
import pytest  # noqa: E402
from jax._src import compilation_cache  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
# Implicit rank promotion ([3, 13, 1] * [4] broadcasting silently) is an error in tests: every
# broadcast between arrays of different ranks is written out (issue #15 item 10).
jax.config.update("jax_numpy_rank_promotion", "raise")


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
