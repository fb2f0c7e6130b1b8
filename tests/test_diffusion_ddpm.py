"""The in-repo DDPM/DDIM (jaxrl_llm/diffusion/ddpm.py): schedule, forward noising against its closed
form, the DDIM sampler on a linear-Gaussian case where its map is known exactly, jit == eager,
training, and the safetensors cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import errors
from jaxrl_llm.diffusion import ddpm, reward

# diffusion/ broadcasts [B, D] against [D] NumPy-style: not yet written out for rank_promotion="raise".
pytestmark = pytest.mark.usefixtures("allow_rank_promotion")


def gaussian_eps(mean, std, abar):
    """The exact ``E[eps | x_t]`` when the data is ``N(mean, std^2 I)``:
    ``sqrt(1 - a) (x - sqrt(a) m) / (a s^2 + 1 - a)``."""

    def eps_fn(x, t):
        a = abar[t][:, None]
        return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mean) / (a * std**2 + 1 - a)

    return eps_fn


def test_linear_schedule_values():
    abar = np.asarray(ddpm.alphas_bar(1000, "linear"), np.float64)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(abar[0], 1 - 1e-4, rtol=1e-6)
    np.testing.assert_allclose(abar[-1], np.prod(1 - betas), rtol=1e-4)
    assert np.all(np.diff(abar) < 0)
    cos = np.asarray(ddpm.alphas_bar(10, "cosine"), np.float64)
    f = np.cos((np.arange(11) / 10 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(cos[:5], f[1:6] / f[0], rtol=1e-5)


def test_bad_schedule_and_steps_raise():
    with pytest.raises(ValueError, match="schedule"):
        ddpm.alphas_bar(10, "quadratic")
    with pytest.raises(ValueError, match="sample_steps"):
        ddpm.ddim_timesteps(10, 11)
    with pytest.raises(ValueError, match="PRNG key"):
        ddpm.ddim_sample(lambda x, t: x, jnp.zeros((1, 2)), ddpm.alphas_bar(10), ddpm.ddim_timesteps(10, 2), eta=1.0)


def test_q_sample_hand_values():
    abar = jnp.asarray([0.64, 0.36])
    x0 = jnp.asarray([[1.0, -2.0], [3.0, 0.5]])
    noise = jnp.asarray([[0.5, 0.5], [-1.0, 2.0]])
    out = ddpm.q_sample(x0, jnp.asarray([0, 1]), noise, abar)
    # sqrt(.64)=.8, sqrt(.36)=.6: row0 = .8 x0 + .6 n; row1 = .6 x0 + .8 n
    np.testing.assert_allclose(out, [[1.1, -1.3], [1.0, 1.9]], rtol=1e-6)


def test_forward_noising_matches_stepwise_chain():
    """Composing ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) n_t`` gives q_sample's marginal
    ``N(sqrt(abar_t) x_0, (1 - abar_t) I)``."""
    N = 50
    abar = ddpm.alphas_bar(N, "linear")
    betas = 1 - abar / jnp.concatenate([jnp.ones(1), abar[:-1]])
    x0 = jnp.asarray([1.5, -0.7])
    n = 40000
    x = jnp.broadcast_to(x0, (n, 2))
    keys = jax.random.split(jax.random.key(0), N)
    for t in range(N):
        x = jnp.sqrt(1 - betas[t]) * x + jnp.sqrt(betas[t]) * jax.random.normal(keys[t], (n, 2))
        if t in (4, 24, N - 1):
            closed = ddpm.q_sample(
                jnp.broadcast_to(x0, (n, 2)),
                jnp.full((n,), t),
                jax.random.normal(jax.random.key(t + 100), (n, 2)),
                abar,
            )
            np.testing.assert_allclose(x.mean(0), closed.mean(0), atol=0.025)
            np.testing.assert_allclose(x.var(0), closed.var(0), atol=0.025)
            np.testing.assert_allclose(closed.mean(0), jnp.sqrt(abar[t]) * x0, atol=0.02)
            np.testing.assert_allclose(closed.var(0), 1 - abar[t], rtol=0.03, atol=2e-3)


def _ddim_affine_coefficient(abar, timesteps, std):
    """For data N(m, s^2 I) and the exact eps, every DDIM(eta=0) step maps ``u = x_t - sqrt(a_t) m``
    to ``u * (sqrt(a_p a_t) s^2 + sqrt((1 - a_p)(1 - a_t))) / (a_t s^2 + 1 - a_t)``: the sampler is
    the affine map ``x_0 = m + c x_T`` up to the ``sqrt(a_T) m`` offset. Computed here in float64."""
    abar = np.asarray(abar, np.float64)
    ts = list(np.asarray(timesteps))
    c = 1.0
    for i, t in enumerate(ts):
        a_t = abar[t]
        a_p = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        c *= (np.sqrt(a_p * a_t) * std**2 + np.sqrt((1 - a_p) * (1 - a_t))) / (a_t * std**2 + 1 - a_t)
    return c


def test_ddim_eta0_is_the_known_affine_map_and_inverts():
    N, S = 100, 25
    abar = ddpm.alphas_bar(N, "linear")
    ts = ddpm.ddim_timesteps(N, S)
    m, s = jnp.asarray([1.0, -2.0]), 0.5
    x_T = jax.random.normal(jax.random.key(1), (512, 2))
    x0 = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts, eta=0.0)
    c = _ddim_affine_coefficient(abar, ts, s)
    a_T = float(abar[ts[0]])
    expected = m + c * (x_T - np.sqrt(a_T) * m)
    np.testing.assert_allclose(x0, expected, rtol=1e-4, atol=1e-4)
    # deterministic: a key does not change an eta=0 run
    again = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts, eta=0.0, key=jax.random.key(9))
    np.testing.assert_array_equal(x0, again)
    # invert the known map: the noise is recovered from the sample
    recovered = (x0 - m) / c + np.sqrt(a_T) * m
    np.testing.assert_allclose(recovered, x_T, atol=1e-3)
    # it transports N(0, I) towards the data N(m, s^2 I), closer with more steps
    c_fine = _ddim_affine_coefficient(abar, ddpm.ddim_timesteps(N, N), s)
    assert abs(c_fine - s) < abs(c - s) < 0.1
    assert abs(c_fine - s) < 0.03


def test_ddim_eta1_samples_the_data_distribution():
    N = 100
    abar = ddpm.alphas_bar(N, "linear")
    ts = ddpm.ddim_timesteps(N, N)
    m, s = jnp.asarray([1.0, -2.0]), 0.5
    x_T = jax.random.normal(jax.random.key(2), (20000, 2))
    a = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts, eta=1.0, key=jax.random.key(3))
    b = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts, eta=1.0, key=jax.random.key(4))
    assert not np.allclose(a, b)  # stochastic given the same x_T
    # exact marginal of this linear-Gaussian chain: u_p = k u + sigma z, u = x - sqrt(a_t) m, so
    # E[u_p] = k E[u], Var[u_p] = k^2 Var[u] + sigma^2, with k = (sqrt(a_p a_t) s^2 + sqrt((1 - a_p
    # - sigma^2)(1 - a_t))) / (a_t s^2 + 1 - a_t) (float64 here, independent of the sampler code)
    ab = np.asarray(abar, np.float64)
    t_list = list(np.asarray(ts))
    mean_u, var_u = -np.sqrt(ab[t_list[0]]) * np.asarray(m, np.float64), 1.0
    for i, t in enumerate(t_list):
        a_t, a_p = ab[t], (ab[t_list[i + 1]] if i + 1 < len(t_list) else 1.0)
        sigma2 = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        k = (np.sqrt(a_p * a_t) * s**2 + np.sqrt((1 - a_p - sigma2) * (1 - a_t))) / (a_t * s**2 + 1 - a_t)
        mean_u, var_u = k * mean_u, k**2 * var_u + sigma2
    np.testing.assert_allclose(a.mean(0), np.asarray(m) + mean_u, atol=0.015)
    np.testing.assert_allclose(a.std(0), [np.sqrt(var_u)] * 2, atol=0.01)
    assert abs(np.sqrt(var_u) - s) < 0.05  # and that marginal is close to the data's N(m, s^2 I)


def test_ddim_jit_equals_eager():
    N = 20
    abar = ddpm.alphas_bar(N)
    ts = ddpm.ddim_timesteps(N, 5)
    model = ddpm.MLPDenoiser(ddpm.DDPMConfig(hidden=16, depth=1, num_steps=N), nnx.Rngs(0))
    model.out.kernel[...] = 0.1 * jax.random.normal(jax.random.key(5), model.out.kernel.shape)
    g, st = nnx.split(model)
    x_T = jax.random.normal(jax.random.key(6), (8, 2))
    for eta in (0.0, 1.0):

        def run(x, k, eta=eta):
            return ddpm.ddim_sample(ddpm.eps_fn_of(g, st), x, abar, ts, eta=eta, key=k)

        np.testing.assert_allclose(
            run(x_T, jax.random.key(7)), jax.jit(run)(x_T, jax.random.key(7)), rtol=1e-5, atol=1e-6
        )


def test_clip_x0_bounds_the_sample_and_is_a_no_op_when_loose():
    N = 30
    abar = ddpm.alphas_bar(N)
    ts = ddpm.ddim_timesteps(N, 6)
    m, s = jnp.asarray([0.5, -0.5]), 0.2
    x_T = 3.0 * jax.random.normal(jax.random.key(3), (64, 2))  # far-out noise: some x0_hat leave [-1, 1]
    free = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts)
    loose = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts, clip_x0=1e6)
    tight = ddpm.ddim_sample(gaussian_eps(m, s, abar), x_T, abar, ts, clip_x0=1.0)
    np.testing.assert_allclose(loose, free, rtol=1e-4, atol=1e-4)
    assert float(jnp.max(jnp.abs(free))) > 1.0
    assert float(jnp.max(jnp.abs(tight))) <= 1.0 + 1e-6


def test_train_ddpm_learns_the_ring_and_checkpoint_roundtrips(tmp_path):
    cfg = ddpm.DDPMConfig(hidden=64, depth=2, num_steps=50)
    data = reward.ring_data(2048, seed=0)
    model, losses = ddpm.train_ddpm(cfg, data, steps=800, batch_size=256, lr=3e-3, seed=0)
    assert losses[-1] < 0.6 * losses[0]
    g, st = nnx.split(model)
    abar = ddpm.alphas_bar(cfg.num_steps, cfg.schedule)
    ts = ddpm.ddim_timesteps(cfg.num_steps, 20)
    x = ddpm.ddim_sample(
        ddpm.eps_fn_of(g, st), jax.random.normal(jax.random.key(0), (1000, 2)), abar, ts, eta=1.0, key=jax.random.key(1)
    )
    radius = np.linalg.norm(np.asarray(x), axis=1)
    assert abs(np.median(radius) - 2.0) < 0.25  # on the ring, not at the origin (N(0, I) has median 1.18)

    path = tmp_path / "ddpm.safetensors"
    ddpm.save(model, path)
    loaded = ddpm.load(path)
    assert loaded.cfg == cfg
    xt, t = jnp.ones((3, 2)), jnp.asarray([0, 10, 49])
    np.testing.assert_array_equal(model(xt, t), loaded(xt, t))
    assert ddpm.load_or_train(path, cfg, data, steps=1) is not None  # cache hit: no retraining
    np.testing.assert_array_equal(ddpm.load_or_train(path, cfg, data, steps=1)(xt, t), model(xt, t))


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(errors.UserError, match="does not exist"):
        ddpm.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        ddpm.train_ddpm(ddpm.DDPMConfig(), np.zeros((5, 3)), steps=1)
