"""Reward models for FIND (jaxrl_llm/diffusion/reward.py): the 2-D mode reward by hand, the class
reward, and the in-repo digit classifier (needs the optional scikit-learn extra)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm.diffusion import reward

# diffusion/ broadcasts [B, D] against [D] NumPy-style: not yet written out for rank_promotion="raise".
pytestmark = pytest.mark.usefixtures("allow_rank_promotion")


def test_ring_centers_and_data():
    c = reward.ring_centers(4, 2.0)
    np.testing.assert_allclose(c, [[2, 0], [0, 2], [-2, 0], [0, -2]], atol=1e-6)
    x = reward.ring_data(4000, num_modes=4, radius=2.0, std=0.1, seed=0)
    assert x.shape == (4000, 2)
    np.testing.assert_allclose(np.median(np.linalg.norm(x, axis=1)), 2.0, atol=0.02)
    counts = np.bincount(np.asarray(reward.nearest_mode(jnp.asarray(x), jnp.asarray(c))), minlength=4)
    assert counts.min() > 900


def test_mode_reward_hand_values():
    x = jnp.asarray([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0]])
    r = reward.mode_reward(x, jnp.asarray([1.0, 1.0]), width=2.0)
    # exp(-0/4), exp(-1/4), exp(-4/4)
    np.testing.assert_allclose(r, [1.0, np.exp(-0.25), np.exp(-1.0)], rtol=1e-6)


def test_class_reward():
    logits = jnp.log(jnp.asarray([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]))
    np.testing.assert_allclose(reward.class_reward(logits, 1), [0.5, 0.1], rtol=1e-6)
    np.testing.assert_allclose(reward.class_reward(logits, 2, "logprob"), np.log([0.3, 0.3]), rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        reward.class_reward(logits, 0, "margin")


def test_digit_classifier_held_out_accuracy():
    pytest.importorskip("sklearn")
    x_tr, y_tr, x_te, y_te = reward.digits_data(seed=0)
    assert x_tr.shape[1] == 64 and x_tr.min() == -1.0 and x_tr.max() == 1.0
    assert len(x_te) == 359 and not set(map(bytes, x_te[:50])) & set(map(bytes, x_tr))
    clf = reward.train_classifier(x_tr, y_tr, steps=400, seed=0)
    assert reward.accuracy(clf, x_te, y_te) > 0.93
