"""Off-policy training (``jaxrl_llm/offpolicy.py``): the pipeline at k = 0 is the synchronous
trainer, a sampler on its own 4 of the 8 fake devices gives the colocated run's metrics, k = 2
with partial rollouts tags every token with a version in [v - 2, v] and resumes exactly with
rollouts in flight."""

import jax
import numpy as np
import pytest
from test_registry_train import tiny_run

from jaxrl_llm import checkpoint, metrics_log, offpolicy, policy, rollouts, train
from jaxrl_llm import config as C

TASK = (
    'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
    '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 2000}'
)


def tiny(run_dir, *overrides):
    """3 GRPO steps of the tiny model, 8 rows of at most 4 tokens, no evaluation."""
    return tiny_run(
        run_dir,
        "grpo",
        TASK,
        "log.every=1",
        "train.prompts_per_step=4",
        "train.share_prompt=true",
        "sampling.max_new_tokens=4",
        "checkpoint.every=1",
        "optim.learning_rate=1e-2",
        *overrides,
    )


def comparable(run_dir, drop=("offpolicy/",)):
    """metrics.jsonl without wall-clock keys, compile counts and the pipeline's own keys."""
    return [
        {k: v for k, v in r.items() if not k.startswith(("time/", *drop)) and k != "compiles"}
        for r in metrics_log.read_metrics(run_dir)
    ]


@pytest.fixture(scope="module")
def sync_run(tmp_path_factory):
    """The synchronous trainer on the first 4 devices (the learner's devices in the split runs)."""
    d = tmp_path_factory.mktemp("sync")
    assert train.train(tiny(d, "mesh.num_devices=4"))["status"] == "finished"
    return d


def test_pipeline_at_k0_is_the_synchronous_trainer_bit_for_bit(sync_run, tmp_path, monkeypatch):
    # k = 0 normally builds no pipeline; forcing it through the queue must change no bit
    monkeypatch.setattr(offpolicy, "enabled", lambda cfg: True)
    assert train.train(tiny(tmp_path, "mesh.num_devices=4"))["status"] == "finished"
    rows = metrics_log.read_metrics(tmp_path)
    assert [r["offpolicy/staleness_max"] for r in rows] == [0.0, 0.0, 0.0]
    assert comparable(tmp_path) == comparable(sync_run)


def test_disaggregated_sampler_on_4_of_8_devices_equals_the_colocated_run(sync_run, tmp_path):
    cfg = tiny(tmp_path, "mesh.sampler_devices=4")
    tr = train.Trainer(cfg)
    try:
        learner = {d.id for d in tr.policy.mesh.devices.flat}
        sampler = {d.id for d in tr.offpolicy.sampler.mesh.devices.flat}
        assert learner == {0, 1, 2, 3} and sampler == {4, 5, 6, 7}
        leaf = jax.tree.leaves(tr.offpolicy.sampler.params)[0]
        assert {d.id for d in leaf.sharding.device_set} <= sampler
    finally:
        tr.close()
    assert train.train(cfg)["status"] == "finished"
    rows = metrics_log.read_metrics(tmp_path)
    assert all(r["time/push"] > 0 for r in rows)
    # same learner devices and the same per-device layout for the sampler: equal bit for bit
    assert comparable(tmp_path) == comparable(sync_run)


def test_disaggregated_k1_samples_in_a_thread_and_repeats_the_colocated_k1_run(tmp_path):
    # the sampler's thread overlaps the update, yet the numbers are the colocated pipeline's
    assert train.train(tiny(tmp_path / "split", "train.staleness=1", "mesh.sampler_devices=4"))["status"] == "finished"
    assert train.train(tiny(tmp_path / "colo", "train.staleness=1", "mesh.num_devices=4"))["status"] == "finished"
    rows = metrics_log.read_metrics(tmp_path / "split")
    assert [r["offpolicy/staleness_max"] for r in rows] == [0.0, 1.0, 1.0]
    assert all("time/sample_wait" in r for r in rows)
    assert comparable(tmp_path / "split") == comparable(tmp_path / "colo")


def test_push_reshards_by_the_rules_table():
    cfg = C.apply_overrides(C.default_config(), ["model.name=tiny", "mesh.fsdp=2", "mesh.sampler_devices=2"])
    learner = policy.Policy.create(cfg)
    sampler = learner.on_mesh(policy.make_sampler_mesh(cfg))
    assert learner.mesh.shape["fsdp"] == 2 and sampler.mesh.shape["fsdp"] == 1 and sampler.mesh.size == 2
    updated = jax.tree.map(lambda x: x + 1, learner.params)
    sampler.push(updated)
    want = jax.tree.leaves(policy.variable_shardings(sampler.mesh, sampler.params))
    for a, b, sh in zip(jax.tree.leaves(updated), jax.tree.leaves(sampler.params), want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert b.sharding == sh
    spec_l = {tuple(x.sharding.spec) for x in jax.tree.leaves(learner.params)}
    spec_s = {tuple(x.sharding.spec) for x in jax.tree.leaves(sampler.params)}
    assert any("fsdp" in str(s) for s in spec_l) and not any("fsdp" in str(s) for s in spec_s)


def test_partial_rollouts_carry_generations_across_versions(tmp_path):
    cfg = tiny(tmp_path, "train.steps=4", "train.staleness=2", "train.partial_rollout_tokens=1")  # drives steps 0-3
    tr = train.Trainer(cfg)
    try:
        pipe, params, state = tr.offpolicy, tr.policy.params, tr.state.algo_arrays()
        seen = []
        for v in range(4):
            rollout, m = pipe.next(tr.state.key, v, v, state, params)
            ahead = {e.step: (e.partial["tokens"].copy(), e.partial["lengths"].copy()) for e in pipe.queue}
            pipe.after_update(params)
            seen.append((rollout, m))
            if v < 3:  # the queued generations are continued, not restarted: their prefixes stay
                for e in pipe.queue:
                    if e.step in ahead:
                        tokens, lengths = ahead[e.step]
                        for b, n in enumerate(lengths):
                            np.testing.assert_array_equal(e.partial["tokens"][b, :n], tokens[b, :n])
                            assert e.partial["lengths"][b] >= n
        for v, (rollout, m) in enumerate(seen):
            versions, mask = rollout.extras["versions"], rollout.mask > 0
            assert (versions[~mask] == -1).all() and (versions[mask] >= max(v - 2, 0)).all()
            assert (versions[mask] <= v).all()
            assert (np.diff(np.where(mask, versions, v), axis=1) >= 0).all()  # versions grow along a row
            assert m["offpolicy/staleness_max"] == min(v, 2)
            full = rollout.lengths == 4
            if v >= 2 and full.any():  # windows of 1 token at v-2, v-1, then the rest at v
                np.testing.assert_array_equal(versions[full], np.tile([v - 2, v - 1, v, v], (int(full.sum()), 1)))
        assert (seen[3][0].lengths == 4).any()
    finally:
        tr.close()


@pytest.mark.slow  # three runs (whole, stopped, resumed): ~25 s
def test_k2_partial_rollouts_resume_exactly_with_rollouts_in_flight(tmp_path):
    overrides = (
        "train.steps=3",
        "train.staleness=2",
        "train.partial_rollout_tokens=2",
        "train.rollout_correction=token_tis",
    )
    ref = train.train(tiny(tmp_path / "ref", *overrides))
    assert ref["status"] == "finished"
    rows = metrics_log.read_metrics(tmp_path / "ref")
    assert [r["offpolicy/staleness_max"] for r in rows] == [0.0, 1.0, 2.0]
    assert all(any(k.startswith("rollout_is/") for k in r) for r in rows)
    run = tiny(tmp_path / "run", *overrides)
    assert train.train(run, stop_after=1)["status"] == "stopped"
    ckpt = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints", async_save=False)
    tr = train.Trainer(run)
    try:
        _, tree, meta = ckpt.restore(tr.restore_target)
    finally:
        ckpt.close()
        tr.close()
    assert [m["step"] for m in meta["inflight"]] == [1, 2] and {m["kind"] for m in meta["inflight"]} == {"partial"}
    assert (np.asarray(tree["inflight"]["0"]["lengths"]) > 0).all()
    assert train.train(run)["status"] == "finished"
    assert comparable(tmp_path / "run", drop=()) == comparable(tmp_path / "ref", drop=())


def test_configs_the_pipeline_cannot_run_are_refused():
    with pytest.raises(C.ConfigError, match="partial_rollout_tokens=2 needs train.staleness"):
        C.apply_overrides(C.default_config(), ["train.partial_rollout_tokens=2"])
    with pytest.raises(C.ConfigError, match="train.staleness"):
        C.apply_overrides(C.default_config(), ["train.staleness=-1"])
    cfg = C.apply_overrides(C.default_config(), ["train.staleness=1"])
    window = rollouts.get("window")
    with pytest.raises(C.ConfigError, match="window kind of 'tppo'"):
        offpolicy.check(cfg, train.algorithms.get("tppo"), window)
    cfg = C.apply_overrides(C.default_config(), ["train.staleness=1", "train.partial_rollout_tokens=2"])
    with pytest.raises(C.ConfigError, match="plain group kind"):
        offpolicy.check(cfg, train.algorithms.get("dapo"), rollouts.get("group"))  # dynamic sampling
    offpolicy.check(cfg, train.algorithms.get("grpo"), rollouts.get("group"))
