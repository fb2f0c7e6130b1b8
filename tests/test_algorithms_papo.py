"""PAPO (algorithms/papo.py): the paper's hand-computed case, the text-only degradation, the
shared-per-group patch blackout."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import algorithms
from jaxrl_llm.algorithms import grpo, papo

LN = math.log


def one_response(masked, has_image=1.0):
    lp = jnp.asarray([[LN(0.5), LN(0.8)]])
    batch = {
        "old_logprobs": lp,
        "advantages": jnp.zeros((1,)),
        "mask": jnp.ones((1, 2)),
        "num_tokens": jnp.float32(2.0),
        "num_seqs": jnp.float32(1.0),
        "masked_logprobs": jnp.asarray([masked]),
        "has_image": jnp.asarray([has_image]),
    }
    return lp, batch


@pytest.mark.parametrize("jit", [False, True])
def test_hand_computed_kl_prc_and_gradient(jit):
    # log pi = [ln .5, ln .8], l_mask = [ln .25, ln .8]: k3 = [0.193147, 0], token-mean 0.0965736
    cfg = papo.Config(beta=0.0, gamma=0.02, eta_1=0.0, eta_2=0.0)
    lp, batch = one_response([LN(0.25), LN(0.8)])
    fn = lambda x: papo.loss(x, batch, cfg)
    fn = jax.jit(fn) if jit else fn
    (loss, metrics), grad = jax.value_and_grad(fn, has_aux=True)(lp)
    np.testing.assert_allclose(metrics["papo/kl_prc"], 0.0965736, rtol=1e-5)
    np.testing.assert_allclose(loss, -0.00193147, rtol=1e-5)  # -gamma * KL_prc (advantage 0, ratio 1)
    # d/dlogpi_1 of -gamma k3_1 / 2 = -gamma (1 - e^{d_1}) / 2 = -0.005; token 2 has d = 0
    np.testing.assert_allclose(grad, [[-0.005, 0.0]], atol=1e-7)


def test_hand_computed_double_entropy():
    # H_ori = 0.458145, H_mask = 0.804719; eta = 0.03 adds 0.0378859
    base = papo.Config(beta=0.0, gamma=0.0, eta_1=0.0, eta_2=0.0)
    lp, batch = one_response([LN(0.25), LN(0.8)])
    off, _ = papo.loss(lp, batch, base)
    on, m = papo.loss(lp, batch, dataclasses.replace(base, eta_1=0.03, eta_2=0.03))
    np.testing.assert_allclose(m["papo/entropy_ori"], 0.458145, rtol=1e-5)
    np.testing.assert_allclose(m["papo/entropy_mask"], 0.804719, rtol=1e-5)
    np.testing.assert_allclose(on - off, 0.0378859, rtol=1e-5)
    # the masked branch is detached: its entropy term has no gradient
    g = jax.grad(lambda b: papo.loss(lp, {**batch, "masked_logprobs": b}, dataclasses.replace(base, eta_2=0.03))[0])(
        batch["masked_logprobs"]
    )
    assert float(jnp.max(jnp.abs(g))) == 0.0


def test_text_rows_degrade_to_grpo_token_mean_plus_eta_1():
    """Without an image (has_image = 0, or a rollout with no corrupted pass) the perception term and
    the masked entropy vanish: PAPO = token-mean GRPO + eta_1 H_ori."""
    cfg = papo.Config(beta=0.0, gamma=0.5, eta_1=0.1, eta_2=0.7)
    rng = np.random.default_rng(0)
    lp = jnp.asarray(-rng.random((4, 3)), jnp.float32)
    old = lp + 0.1
    rollout = {
        "tokens": jnp.zeros((4, 3), jnp.int32),
        "mask": jnp.ones((4, 3)),
        "rewards": jnp.asarray([1.0, 0.0, 1.0, 1.0]),
        "group_ids": jnp.asarray([0, 0, 1, 1]),
        "old_logprobs": old,
        "group_size": 2,
    }
    algo = algorithms.get("papo")
    batch, _ = algorithms.make_batch(algo, rollout, cfg)
    assert float(jnp.sum(batch["has_image"])) == 0.0
    loss, metrics = papo.loss(lp, batch, cfg)
    gcfg = grpo.Config(beta=0.0, aggregation="token_mean")
    gbatch, _ = algorithms.make_batch(algorithms.get("grpo"), rollout, gcfg)
    want, _ = grpo.loss(lp, gbatch, gcfg)
    np.testing.assert_allclose(loss, want + 0.1 * float(jnp.mean(-lp)), rtol=1e-6)
    assert float(metrics["papo/kl_prc"]) == 0.0 and float(metrics["papo/image_rows"]) == 0.0


def test_corruption_is_shared_per_group_and_drops_the_ratio():
    cfg = papo.Config(mask_ratio=0.6, mask_patch=2)
    images = jnp.ones((6, 2, 8, 8, 1))  # 3 groups of 2, two images per row
    out = np.asarray(papo.corrupt_images(jax.random.key(0), images, 2, cfg))
    np.testing.assert_array_equal(out[0], out[1])  # shared by a group
    assert not np.array_equal(out[0], out[2])  # drawn per group
    patches = out[..., 0].reshape(6, 2, 4, 2, 4, 2)
    assert np.all(patches.min(axis=(3, 5)) == patches.max(axis=(3, 5)))  # whole patches go black
    assert 0.45 < 1.0 - out.mean() < 0.75  # about mask_ratio of the pixels
    with pytest.raises(ValueError, match="5 rows are not whole groups of group_size=2"):
        papo.corrupt_images(jax.random.key(0), jnp.ones((5, 1, 8, 8, 1)), 2, cfg)
