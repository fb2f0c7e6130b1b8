"""Pictures in multi-turn episodes (issue #20): the image screen of ``combination_lock`` encodes the
lock's state, an episode under a vision-language policy shows one picture per observation at the
slots the environment wrote, the trainer's log-probs of such rows equal the sampler's, a
placeholder id the policy samples stays an ordinary token, ARPO (GUI) replays episodes with their
screens and trains through ``train.train``, and bad combinations are named."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxrl_llm import algorithms, envs, train
from jaxrl_llm import config as C
from jaxrl_llm.algorithms import arpo_gui
from jaxrl_llm.envs.combination_lock import CombinationLock, LockConfigError, parse_button
from jaxrl_llm.models import vision
from jaxrl_llm.policy import Policy
from jaxrl_llm.rollouts import Context, episode, replay_episode

K, N_PATCHES = 3, 16  # env.max_turns; tiny-vlm-16px: 16x16 grey pictures, 4x4 patches
BASE = [
    "model.name=tiny-vlm-16px",
    "algorithm=gigpo",
    "train.prompts_per_step=2",
    "train.group_size=2",
    "sampling.max_new_tokens=3",
    f"env.max_turns={K}",
    "env.max_episode_tokens=160",
    "env.kv_cache=reprefill",
    "env.name=open_lock",
    "mesh.num_devices=1",
]
LOCK = {"screen": "image", "wrong_open": "continue", "min_solution": 2}


class OpenLock(CombinationLock):
    """The image lock where an action naming no button selects the next dial (instead of ending
    the episode): a random policy then plays every turn, so episodes show several pictures."""

    def step(self, action):
        return super().step(action if parse_button(action) else "n")


@pytest.fixture(autouse=True)
def open_lock(monkeypatch):
    monkeypatch.setitem(envs.ENVS, "open_lock", OpenLock)


def make_cfg(*overrides, lock=None):
    cfg = C.resolve_algo(C.apply_overrides(C.default_config(), BASE + list(overrides)))
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, kwargs=dict(LOCK if lock is None else lock)))


@pytest.fixture(scope="module")
def policy():
    return Policy.create(make_cfg())


def make_ctx(policy, cfg):
    return Context(cfg, algorithms.get(cfg.algorithm), policy, None, None, None)


def read_screen(pixels, num_dials, num_digits):
    """The lock's state read back from its picture (``combination_lock`` module docstring):
    (digits, selected dial, per-dial bottom mark)."""
    S = pixels.shape[0]
    w, unit = S // num_dials, (S - 4) // num_digits
    cols = [pixels[:, i * w, 0] for i in range(num_dials)]
    digits = [int(c[2 : S - 2].sum()) // unit - 1 for c in cols]
    sel = [i for i, c in enumerate(cols) if c[0] == 1]
    assert len(sel) == 1
    return digits, sel[0], [bool(c[S - 1]) for c in cols]


def test_the_lock_picture_encodes_the_state():
    env = CombinationLock(screen="image")
    assert env.reset(3) == "" and "bar per dial" in env.instructions
    for digits, code, sel in [([1, 0, 2], [1, 3, 3], 0), ([3, 3, 0], [3, 1, 0], 2), ([0, 0, 0], [1, 2, 3], 1)]:
        env.digits, env.code, env.sel = list(digits), list(code), sel
        pixels = env.screen()
        assert pixels.shape == (16, 16, 1) and pixels.dtype == np.float32 and set(np.unique(pixels)) <= {0.0, 1.0}
        assert read_screen(pixels, 3, 4) == (digits, sel, [d == c for d, c in zip(digits, code)])
        for j in range(3):  # each band's last column stays dark, between the dials
            assert not pixels[:, j * 5 + 4].any()
        np.testing.assert_array_equal(env.screen(), pixels)  # deterministic
    # the picture follows the buttons
    env.digits, env.code, env.sel = [1, 0, 2], [1, 3, 3], 0
    env.step("n"), env.step("u")
    assert read_screen(env.screen(), 3, 4)[:2] == ([1, 1, 2], 1)
    assert env.step("o").observation == "wrong code; the lock jammed"
    # count feedback: the first ok dials are marked; none: no mark; 10 digits, 5 dials fit 16 pixels
    count = CombinationLock(screen="image", feedback="count", num_dials=5, num_digits=10, min_solution=2)
    count.reset(0)
    count.digits, count.code, count.sel = [9, 0, 4, 4, 7], [9, 1, 4, 0, 0], 4
    assert read_screen(count.screen(), 5, 10) == ([9, 0, 4, 4, 7], 4, [True, True, False, False, False])
    none = CombinationLock(screen="image", feedback="none")
    none.reset(0)
    assert not none.screen()[-2:].any()
    text = CombinationLock()
    assert text.reset(0) != "" and text.screen() is None  # the text screen shows no picture
    with pytest.raises(LockConfigError, match="screen must be one of"):
        CombinationLock(screen="png")
    with pytest.raises(LockConfigError, match="image_size=8 cannot draw 5 dials"):
        CombinationLock(screen="image", image_size=8, num_dials=5)


def test_episode_rows_show_one_picture_per_observation_and_score_like_the_sampler(policy):
    """The key contract: the trainer's log-probs of image episode rows (pictures in the prompt AND
    in the completion, at several turns) equal the sampler's, with or without prompt sharing, and
    they read the pictures (blank ones change them)."""
    cfg = make_cfg()
    rollout, metrics = episode.collect(make_ctx(policy, cfg), jax.random.key(0), None)
    B, T = rollout.tokens.shape
    steps = np.asarray(rollout["num_steps"])
    assert (steps == K).all() and metrics["episode/stop_turns"] == 1.0  # every turn played
    # K pictures per row (the first screen + one per step that went on), each at 16 env-written slots
    assert rollout.images.shape == (B, K, 16, 16, 1)
    assert rollout.image_mask.shape == (B, rollout.prompt_tokens.shape[1] + T)
    np.testing.assert_array_equal(rollout.image_mask.sum(1), steps * N_PATCHES)
    assert all(rollout.images[b, k].any() for b in range(B) for k in range(K))
    prompt_slots = rollout.image_mask[:, : rollout.prompt_tokens.shape[1]]
    np.testing.assert_array_equal(prompt_slots.sum(1), N_PATCHES)  # the first screen is in the prompt
    tokens, attention = train.model_inputs(rollout)
    assert (tokens[rollout.image_mask > 0] == policy.vision_cfg.image_token_id).all()
    assert (rollout.loss_mask * rollout.image_mask[:, -T:] == 0).all()  # slots are never the policy's
    # the pictures change over the episode (the dials move)
    assert any(not np.array_equal(rollout.images[b, 0], rollout.images[b, k]) for b in range(B) for k in range(1, K))
    lm = rollout.loss_mask > 0
    for share in (1, 2):
        lp = policy.logprobs(policy.params, tokens, attention, T, share, rollout.images, rollout.image_mask)
        np.testing.assert_allclose(lp[lm], rollout.policy_logprobs[lm], atol=2e-5)
    later = rollout.images.copy()
    later[:, 1:] = 0.0  # blank the screens after the first: only the later turns' log-probs move
    lp_blank = policy.logprobs(policy.params, tokens, attention, T, 1, later, rollout.image_mask)
    first_turn = lm & (np.asarray(rollout["step_ids"]) == 0)
    np.testing.assert_allclose(lp_blank[first_turn], rollout.policy_logprobs[first_turn], atol=2e-5)
    assert np.abs(lp_blank[lm & ~first_turn] - rollout.policy_logprobs[lm & ~first_turn]).max() > 1e-4


def test_step_rows_carry_the_pictures_of_their_context(policy):
    cfg = make_cfg("env.rows=step", "algorithm=grpo")
    rollout, _ = episode.collect(make_ctx(policy, cfg), jax.random.key(1), None)
    B, W = rollout.tokens.shape
    assert B == 4 * K and rollout.images.shape == (B, K, 16, 16, 1)
    k = np.asarray(rollout["step_index"])
    np.testing.assert_array_equal(rollout.image_mask.sum(1), (k + 1) * N_PATCHES)  # step k saw k + 1 screens
    assert rollout.image_mask[:, -W:].sum() == 0  # a turn holds no picture
    tokens, attention = train.model_inputs(rollout)
    lp = policy.logprobs(policy.params, tokens, attention, W, 1, rollout.images, rollout.image_mask)
    lm = rollout.loss_mask > 0
    np.testing.assert_allclose(lp[lm], rollout.policy_logprobs[lm], atol=2e-5)


def test_a_placeholder_the_policy_samples_stays_an_ordinary_token(policy):
    """A sampled placeholder id in the context is no image slot: the sampler takes the context
    (no error, no picture written there) and the trainer agrees with it; pictures in the unused
    slots change nothing, whereas counting placeholder ids would have put one there."""
    cfg = make_cfg()
    ctx = make_ctx(policy, cfg)
    episodes, _ = episode.play(make_ctx(policy, make_cfg(f"env.max_turns={K - 1}")), [5, 5], jax.random.key(2))
    image_id = policy.vision_cfg.image_token_id
    for ep in episodes:  # the policy "sampled" a placeholder id as its last action
        ep.turn_start.append(len(ep.tokens))
        ep.add([image_id], True, [-1.0], [-1.0], [0.0])
        ep.rewards.append(0.0), ep.anchors.append(None), ep.invalid.append(False)
    width = episode.bucket_length(max(len(ep.prompt) for ep in episodes)) + cfg.env.max_episode_tokens
    sampler = episode.Reprefill(policy, width, False, None, None, policy.vision_cfg, num_images=K)
    out = sampler.sample(episodes, np.ones(2, bool), jax.random.key(3))
    for b, ep in enumerate(episodes):
        n = int(out["lengths"][b])
        ep.add(out["tokens"][b, :n], True, out["logprobs"][b, :n], out["policy_logprobs"][b, :n])
    rows = episode.episode_rows(ctx, episodes, 2)
    tokens, attention = train.model_inputs(rows)
    T = rows.tokens.shape[1]
    sampled = (tokens[:, -T:] == image_id) & (rows.loss_mask > 0)
    assert sampled.sum(1).min() >= 1 and (rows.image_mask[:, -T:][sampled] == 0).all()
    # the new turn's sampler log-probs == the trainer's; noise in the unused picture slots is unread
    new = np.zeros_like(rows.loss_mask, bool)
    for b, ep in enumerate(episodes):
        new[b, len(ep.tokens) - int(out["lengths"][b]) : len(ep.tokens)] = True
    noisy = rows.images.copy()
    noisy[:, K - 1] = np.random.default_rng(0).uniform(size=noisy[:, K - 1].shape)
    assert all(len(ep.images) == K - 1 for ep in episodes)  # so the last picture slot is padding
    lp = policy.logprobs(policy.params, tokens, attention, T, 1, rows.images, rows.image_mask)
    lp_noisy = policy.logprobs(policy.params, tokens, attention, T, 1, noisy, rows.image_mask)
    np.testing.assert_allclose(lp[new], rows.policy_logprobs[new], atol=2e-5)
    np.testing.assert_array_equal(lp_noisy, lp)
    counted = policy.logprobs(policy.params, tokens, attention, T, 1, noisy)  # placeholders counted
    assert np.abs(counted[new] - lp[new]).max() > 1e-4


def test_text_episodes_carry_no_pictures(policy):
    """The text lock under the same vision-language policy: no images, no image mask, and the
    trainer's log-probs still equal the sampler's (the existing text path, unchanged)."""
    cfg = make_cfg(lock={"wrong_open": "continue", "min_solution": 2})
    rollout, _ = episode.collect(make_ctx(policy, cfg), jax.random.key(0), None)
    assert rollout.images is None and rollout.image_mask is None
    tokens, attention = train.model_inputs(rollout)
    lp = policy.logprobs(policy.params, tokens, attention, rollout.tokens.shape[1])
    lm = rollout.loss_mask > 0
    np.testing.assert_allclose(lp[lm], rollout.policy_logprobs[lm], atol=2e-5)


def arpo_cfg(*overrides, lock=None):
    return make_cfg(
        "algorithm=arpo_gui",
        "env.max_episode_tokens=160",
        "algo.episode_tokens=160",
        "algo.num_tasks=1",
        f"algo.episode_images={K}",
        "train.prompts_per_step=1",
        "train.group_size=2",
        *overrides,
        lock=lock,
    )


def test_replayed_episodes_keep_their_screens(policy):
    """An all-failure group gets a buffered episode with ITS pictures and slots; the trainer scores
    the replayed row as it scored the original."""
    cfg = arpo_cfg()
    ctx = make_ctx(policy, cfg)
    state = arpo_gui.init_state(cfg.algo)
    first, _ = replay_episode.collect(ctx, jax.random.key(4), state)
    assert first["replaced"].sum() == 0 and (first["eval"] == 0).all()
    # push row 1 of the first step as a success of task 0 (update_state's path)
    batch = first.replace(old_logprobs=np.zeros_like(first.loss_mask)).with_items(eval=np.array([0.0, 1.0]))
    batch, _ = algorithms.make_batch(algorithms.get("arpo_gui"), batch, cfg.algo)
    state = arpo_gui.update_state(state, jax.tree.map(np.asarray, batch), cfg.algo)
    assert int(state["buffer"]["count"][0]) == 1
    second, metrics = replay_episode.collect(ctx, jax.random.key(5), state)
    assert metrics["replay/replaced"] == 1.0 and second["replaced"].tolist() == [1.0, 0.0]
    T = second.tokens.shape[1]
    np.testing.assert_array_equal(second.tokens[0], first.tokens[1])
    np.testing.assert_array_equal(second.images[0], first.images[1])
    np.testing.assert_array_equal(second.image_mask[0], first.image_mask[1])
    lp = [policy.logprobs(policy.params, *train.model_inputs(r), T, 1, r.images, r.image_mask) for r in (first, second)]
    lm = first.loss_mask[1] > 0
    np.testing.assert_allclose(lp[1][0][lm], lp[0][1][lm], atol=2e-5)
    with pytest.raises(ValueError, match=rf"set algo.episode_images={K} and algo.image_shape=\(16, 16, 1\)"):
        replay_episode.collect(
            ctx, jax.random.key(4), arpo_gui.init_state(dataclasses.replace(cfg.algo, episode_images=0))
        )
    assert "episode_images=2 must equal env.max_turns=3" in arpo_gui.check_config(
        dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, episode_images=2))
    )


def test_one_arpo_gui_training_step_on_the_image_lock(tmp_path):
    cfg = arpo_cfg(
        f"run_dir={tmp_path / 'run'}",
        "train.steps=1",
        "sft.steps=0",
        "eval.num_examples=0",
        "reward.num_workers=0",
        "log.progress=false",
        "log.tensorboard=false",
        "checkpoint.every=0",
    )
    summary = train.train(cfg)
    assert summary["status"] == "finished"
    (row,) = [r for r in train.metrics_log.read_metrics(tmp_path / "run") if r.get("phase") == "rl"]
    assert np.isfinite(row["loss"]) and row["episode/steps"] == K


class FlatLock(OpenLock):
    """A screen without its channel axis: [H, W] instead of [H, W, C]."""

    def screen(self):
        return super().screen()[..., 0]


def test_bad_combinations_are_named(policy, monkeypatch):
    with pytest.raises(ValueError, match=r"screen of environment 'open_lock'.*8x8 pixels.*16x16"):
        episode.play(make_ctx(policy, make_cfg(lock={**LOCK, "image_size": 8})), [0], jax.random.key(0))
    monkeypatch.setitem(envs.ENVS, "flat_lock", FlatLock)
    with pytest.raises(ValueError, match=r"screen of environment 'flat_lock': expected \[H, W, C\] pixels"):
        episode.play(make_ctx(policy, make_cfg("env.name=flat_lock")), [0], jax.random.key(0))
    text_cfg = make_cfg("model.name=tiny")
    with pytest.raises(ValueError, match="shows pictures but model 'tiny' has no vision encoder"):
        episode.play(make_ctx(Policy.create(text_cfg), text_cfg), [0], jax.random.key(0))
    with pytest.raises(NotImplementedError, match="set env.kv_cache='reprefill'"):
        episode.play(make_ctx(policy, make_cfg("env.kv_cache=grow")), [0], jax.random.key(0))
    image_id = policy.vision_cfg.image_token_id
    tokens = np.array([[5, image_id, image_id, 6]])
    with pytest.raises(ValueError, match=r"image_mask\[0, 0\] marks token 5"):
        vision.check_image_mask(tokens, np.array([[1, 0, 0, 0]]), 1, policy.vision_cfg)
    with pytest.raises(ValueError, match="marks 2 image slots; whole images of 16 patches"):
        vision.check_image_mask(tokens, np.array([[0, 1, 1, 0]]), 1, policy.vision_cfg)
    with pytest.raises(ValueError, match="image placeholders but no images were given"):
        policy.generate(tokens, np.ones_like(tokens), jax.random.key(0), 1, image_mask=np.array([[0, 1, 0, 0]]))
    images = np.zeros((1, 1, 8, 8, 1), np.float32)  # the 8x8 pictures of tiny-vlm, not this encoder's 16x16
    with pytest.raises(ValueError, match="images of 8x8 pixels, the vision encoder takes 16x16"):
        policy.generate(tokens, np.ones_like(tokens), jax.random.key(0), 1, images=images)
