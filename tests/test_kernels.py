"""The CPU decode kernels (``jaxrl_llm.kernels.cpu_matmul``) against NumPy, their build and
fallback, and the "cpu" backend's registration (its equality with the reference decode backend is
``tests/test_sampling.py::test_every_backend_equals_the_reference``)."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.kernels import cpu_matmul

needs_kernel = pytest.mark.skipif(not cpu_matmul.available(), reason="the CPU matmul kernel did not build here")


@needs_kernel
@pytest.mark.parametrize(
    "M,K,N",
    [
        (1, 576, 1536),
        (5, 130, 64),
        (16, 1536, 576),
        (64, 576, 192),
        (7, 300, 128),
        (13, 5, 64),
        (0, 8, 64),
        (7, 4100, 64),
        (13, 4100, 192),
    ],
)
def test_matmul_equals_numpy(M, K, N):
    """Every row-tile size (6, then a 1-5 row tail), a K-block tail (K > 4096), and more than 6 rows over several
    panels (each thread prefetching its next panel, across K-blocks too), against float64 NumPy."""
    rng = np.random.RandomState(M + K + N)
    x, w = rng.randn(M, K).astype(np.float32), rng.randn(K, N).astype(np.float32)
    got = np.asarray(jax.jit(lambda x, w: cpu_matmul.matmul(x, cpu_matmul.pack(w)))(x, w))
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-4 * np.sqrt(K))


@needs_kernel
def test_matmul_keeps_leading_dims_and_packs_layers_and_transposes():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 40).astype(np.float32)
    stack = rng.randn(4, 40, 128).astype(np.float32)
    table = rng.randn(192, 40).astype(np.float32)  # an embedding table [V, D] used as W^T
    for layer in range(4):
        packed = jax.jit(cpu_matmul.pack, static_argnames="layer")(stack, layer=layer)
        np.testing.assert_array_equal(np.asarray(cpu_matmul.unpack(packed)), stack[layer])
        got = np.asarray(jax.jit(cpu_matmul.matmul)(x, packed))
        assert got.shape == (2, 3, 128)
        np.testing.assert_allclose(got, x.astype(np.float64) @ stack[layer], rtol=1e-5, atol=1e-4)
    packed = jax.jit(cpu_matmul.pack, static_argnames="transposed")(table, transposed=True)
    np.testing.assert_array_equal(np.asarray(cpu_matmul.unpack(packed)), table.T)


@needs_kernel
def test_matmul_ahead_is_only_a_hint():
    """``ahead`` (the next product's panels, prefetched) changes no value, whatever its K."""
    rng = np.random.RandomState(3)
    x, w = rng.randn(16, 96).astype(np.float32), rng.randn(96, 192).astype(np.float32)
    nxt = rng.randn(200, 128).astype(np.float32)
    plain = jax.jit(lambda x, w: cpu_matmul.matmul(x, cpu_matmul.pack(w)))(x, w)
    hinted = jax.jit(lambda x, w, n: cpu_matmul.matmul(x, cpu_matmul.pack(w), ahead=cpu_matmul.pack(n)))(x, w, nxt)
    np.testing.assert_array_equal(np.asarray(hinted), np.asarray(plain))
    with pytest.raises(ValueError, match="ahead must be packed"):
        cpu_matmul.matmul(jnp.asarray(x), cpu_matmul.pack(jnp.asarray(w)), ahead=jnp.ones((2, 64)))


@needs_kernel
@pytest.mark.parametrize("M,swiglu", [(16, False), (3, True), (13, True)])
def test_matmul_residual_norm_equals_numpy(M, swiglu):
    """x' = residual + a @ W and h = rms_norm(x') * norm, a = x or silu(gate) * up, against float64 NumPy."""
    rng = np.random.RandomState(M)
    K, N, eps = 40, 128, 1e-5
    x = rng.randn(M, 2 * K if swiglu else K).astype(np.float32) * 3
    w, residual = rng.randn(K, N).astype(np.float32), rng.randn(M, N).astype(np.float32)
    norm = rng.randn(N).astype(np.float32)
    x64 = x.astype(np.float64)
    a = x64[:, :K] / (1 + np.exp(-x64[:, :K])) * x64[:, K:] if swiglu else x64
    want = residual + a @ w
    want_h = want / np.sqrt(np.mean(want**2, axis=-1, keepdims=True) + eps) * norm
    got, got_h = jax.jit(
        lambda x, w, r, n: cpu_matmul.matmul_residual_norm(x, cpu_matmul.pack(w), r, n, eps, swiglu=swiglu)
    )(x, w, residual, norm)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got_h), want_h, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        cpu_matmul.matmul_residual_norm(
            jnp.asarray(x),
            cpu_matmul.pack(jnp.asarray(w)),
            jnp.asarray(residual),
            jnp.asarray(norm[:64]),
            eps,
            swiglu=swiglu,
        )


@needs_kernel
def test_pack_lays_stacks_side_by_side():
    """Fused projections: a list of stacks packs as their concatenation along N, layer by layer."""
    rng = np.random.RandomState(2)
    stacks = [rng.randn(3, 40, n).astype(np.float32) for n in (192, 64, 128)]
    for layer in range(3):
        packed = jax.jit(lambda ws: cpu_matmul.pack(ws, layer=layer))(stacks)
        np.testing.assert_array_equal(
            np.asarray(cpu_matmul.unpack(packed)), np.concatenate([w[layer] for w in stacks], axis=-1)
        )
    with pytest.raises(ValueError, match="layers and rows differ"):
        cpu_matmul.pack([stacks[0], stacks[1][:, :32]], layer=0)
    with pytest.raises(ValueError, match="do not split"):
        cpu_matmul.pack([stacks[0], rng.randn(3, 40, 96).astype(np.float32)], layer=0)


@needs_kernel
def test_matmul_inside_a_loop_matches_xla():
    """As the sampler uses it: in a ``while_loop`` body, the packed weight loop-invariant."""
    rng = np.random.RandomState(1)
    w = jnp.asarray(rng.randn(64, 64).astype(np.float32) / 8)
    x = jnp.asarray(rng.randn(4, 64).astype(np.float32))

    def run(matmul, w):
        return jax.lax.fori_loop(0, 10, lambda i, x: jnp.tanh(matmul(x, w)), x)

    ours = jax.jit(lambda x, w: run(cpu_matmul.matmul, cpu_matmul.pack(w)))(x, w)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(jax.jit(lambda x, w: run(jnp.matmul, w))(x, w)), atol=1e-5)


def test_pack_rejects_what_it_cannot_pack():
    assert not cpu_matmul.packable(100, jnp.float32) and not cpu_matmul.packable(128, jnp.bfloat16)
    with pytest.raises(ValueError, match="do not split into f32 panels of 64"):
        cpu_matmul.pack(jnp.ones((8, 100)))
    with pytest.raises(ValueError, match="K 8"):
        cpu_matmul.matmul(jnp.ones((2, 9)), jnp.ones((1, 8, 64)))


def _fresh_process(env_extra: dict) -> subprocess.CompletedProcess:
    """Samples with a tiny model in a new process (the kernels' build state is per process): the
    backend "auto" resolves to before and after ``jaxrl_llm.kernels`` is imported, and whether
    importing ``jaxrl_llm.sampling`` loaded the kernels."""
    code = (
        "import sys, warnings, jax, numpy as np\n"
        "from jaxrl_llm import sampling\n"
        "from jaxrl_llm.models import get_model\n"
        "model, _ = get_model('tiny')\n"
        "cfg = sampling.SamplingConfig(max_new_tokens=5)\n"
        "print('LOADED', 'jaxrl_llm.kernels' in sys.modules, 'BEFORE', sampling.resolve_backend(model, cfg, 2).name)\n"
        "import jaxrl_llm.kernels\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    use = sampling.resolve_backend(model, cfg, 2).name\n"
        "out = sampling.sample(model, np.ones((2, 4), np.int32), np.ones((2, 4), np.int32), jax.random.key(0), cfg)\n"
        "print('USES', use, 'TOKENS', out.tokens.shape, 'WARN', ' | '.join(str(w.message)[:200] for w in caught))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XLA_FLAGS": "", **env_extra}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def test_sampling_does_not_import_the_kernels_and_a_build_is_logged(tmp_path):
    """``jaxrl_llm.sampling`` alone decodes with the reference; importing ``jaxrl_llm.kernels``
    registers "cpu", which "auto" then picks, compiling the library first with one line on stderr
    that says where."""
    proc = _fresh_process({"JAXRL_LLM_KERNEL_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED False BEFORE xla" in proc.stdout
    assert "USES cpu TOKENS (2, 5) WARN \n" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "compiling the CPU decode kernels" in line]
    assert len(lines) == 1 and str(tmp_path) in lines[0], proc.stderr[-3000:]
    assert len(list(tmp_path.glob("cpu_matmul-*.so"))) == 1


def test_sampler_falls_back_to_xla_when_the_kernel_cannot_build(tmp_path):
    """A missing compiler is a warning that names the failed command, and sampling still works."""
    proc = _fresh_process({"CXX": "/nonexistent/g++", "JAXRL_LLM_KERNEL_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "USES xla TOKENS (2, 5)" in proc.stdout
    assert "CPU decode kernels did not build, decoding falls back to XLA" in proc.stdout
    assert "/nonexistent/g++" in proc.stdout
    assert not list(tmp_path.glob("*.so"))  # nothing half-written left behind


def test_sampler_kernel_can_be_turned_off():
    proc = _fresh_process({"JAXRL_LLM_CPU_KERNELS": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "USES xla TOKENS (2, 5)" in proc.stdout and "did not build" not in proc.stdout


_ADVICE = """
import re, jax, jax.numpy as jnp
from jaxrl_llm.kernels import cpu_matmul
assert cpu_matmul.available()
packed = jax.jit(cpu_matmul.pack)(jnp.ones((1000, 64 * 40), jnp.float32)).block_until_ready()  # ~10 MB
lo = packed.unsafe_buffer_pointer()
hi = lo + packed.nbytes
advised, start, end = [], None, None
for line in open("/proc/self/smaps"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
    if m:
        start, end = int(m.group(1), 16), int(m.group(2), 16)
    elif line.startswith("VmFlags") and " hg" in line and start < hi and end > lo:
        advised.append((start, end))
print("ADVISED", len(advised), "OUTSIDE", [(hex(a), hex(b)) for a, b in advised if a < lo or b > hi], hex(lo), hex(hi))
"""


@needs_kernel
@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_pack_advises_huge_pages_only_inside_its_output():
    """``madvise(MADV_HUGEPAGE)`` covers whole 2 MiB pages inside the packed output only: no
    neighbouring memory of XLA's is advised (a fresh process without glibc's hugetlb tunable, so
    that only the kernel advises)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    proc = subprocess.run([sys.executable, "-c", _ADVICE], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ADVISED 1 OUTSIDE []" in proc.stdout, proc.stdout


def test_no_kernel_reference_in_sampling():
    """``jaxrl_llm/sampling`` is plain JAX over the backend protocol: it names no kernel module."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxrl_llm", "sampling")
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name)) as f:
                text = f.read()
            assert "cpu_matmul" not in text, name
            assert not re.search(
                r"^\s*(from|import)\s+jaxrl_llm\.kernels|^\s*from\s+jaxrl_llm\s+import\s+.*kernels", text, re.M
            ), name


@needs_kernel
@pytest.mark.parametrize(
    "B,K,G,Dh,T,index",
    [
        (2, 3, 3, 64, 70, 40),
        (4, 2, 2, 32, 33, 32),
        (1, 1, 1, 16, 5, 0),
        (3, 2, 4, 16, 100, 99),
        (2, 1, 5, 128, 200, 150),
        (1, 1, 2, 48, 7, 6),
        (1, 2, 3, 64, 96, 69),
        (2, 1, 2, 32, 64, 50),
        (1, 2, 3, 16, 192, 120),
        (2, 2, 2, 64, 96, 62),
    ],
)
def test_decode_attention_equals_numpy(B, K, G, Dh, T, index):
    """Masked slots, slots after ``index`` (never read), 64/16-slot blocks and a partial last vector;
    the last three: 3 whole vectors after the 64-slot blocks and a 4th over the partial one (its
    scores were never computed: the softmax read stale scratch memory)."""
    rng = np.random.RandomState(B * T + index)
    q = rng.randn(B * K, G, Dh).astype(np.float32)
    k = rng.randn(B * K, Dh, T).astype(np.float32)
    v = rng.randn(B * K, T, Dh).astype(np.float32)
    k[:, :, index + 1 :] = np.nan  # never read
    v[:, index + 1 :] = np.nan
    valid = rng.rand(B, T) > 0.3
    valid[:, index] = True
    scale = 1 / np.sqrt(Dh)
    got = np.asarray(
        jax.jit(cpu_matmul.decode_attention, static_argnames="scale")(q, k, v, valid, np.int32(index), scale=scale)
    )
    used = slice(0, index + 1)
    scores = np.einsum("ngd,ndt->ngt", q.astype(np.float64), k[:, :, used]) * scale
    allowed = valid[np.arange(B * K) // K, used][:, None, :]
    scores = np.where(allowed, scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, np.einsum("ngt,ntd->ngd", p, v[:, used]), rtol=1e-5, atol=2e-6)


@needs_kernel
def test_sample_rows_matches_the_xla_sampler_and_never_draws_a_masked_token():
    """Same draws, log q and entropy as ``processors`` (inverse CDF at the same uniforms), with
    temperatures, a ragged vocabulary (not a multiple of 16) and -inf logits."""
    from jaxrl_llm.sampling import processors

    rng = np.random.RandomState(0)
    B, V = 256, 1003
    logits = (rng.randn(B, V) * 3).astype(np.float32)
    logits[:, ::7] = -np.inf  # never drawn
    temperature = rng.uniform(0.3, 2.0, B).astype(np.float32)
    uniform = rng.rand(B).astype(np.float32)
    token, logq, entropy = jax.jit(cpu_matmul.sample_rows)(logits, temperature, uniform)
    ref_logq, ref_entropy = processors.log_softmax_and_entropy(jnp.asarray(logits / temperature[:, None]))
    ref_token = processors.inverse_cdf_sample(ref_logq, jnp.asarray(uniform))
    np.testing.assert_array_equal(np.asarray(token), np.asarray(ref_token))
    assert (np.asarray(token) % 7 != 0).all()
    np.testing.assert_allclose(
        logq, np.take_along_axis(np.asarray(ref_logq), np.asarray(token)[:, None], 1)[:, 0], atol=2e-5
    )
    np.testing.assert_allclose(entropy, ref_entropy, atol=2e-5)
    # the draw inverts q's CDF: 20000 evenly spaced uniforms on one row give q's frequencies
    with np.errstate(divide="ignore"):
        row = np.log(np.array([[0.1, 0.2, 0.3, 0.4] + [0.0] * 13], np.float32))
    u = (np.arange(20000, dtype=np.float64) + 0.5) / 20000
    draws = np.asarray(
        jax.jit(cpu_matmul.sample_rows)(np.repeat(row, len(u), 0), np.ones(len(u), np.float32), u.astype(np.float32))[0]
    )
    np.testing.assert_allclose(np.bincount(draws, minlength=17)[:4] / len(u), [0.1, 0.2, 0.3, 0.4], atol=1e-3)
    assert draws.max() < 4
