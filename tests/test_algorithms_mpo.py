"""MPO (``algorithms/mpo.py``): the rubric in the algorithm state (versions, history), adopted from
the meta-reward step, and checkpointed and restored exactly through the trainer."""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrl_llm import checkpoint as checkpoint_lib
from jaxrl_llm import config as C
from jaxrl_llm import metrics_log, train
from jaxrl_llm.algorithms import mpo
from jaxrl_llm.judges import rubric


def test_state_adopts_a_new_rubric_as_the_next_version():
    cfg = mpo.Config(rubric_bytes=256, max_versions=3)
    s0 = mpo.init_state(cfg)
    assert rubric.decode(s0["rubric"]) == rubric.SEED_RUBRIC and int(s0["version"]) == 0
    same = mpo.update_state(s0, {"mpo_rubric": s0["rubric"]}, cfg)
    assert int(same["version"]) == 0 and int(same["updates"]) == 1
    new_text = rubric.render(["digits", "format", "correct"])
    s1 = mpo.update_state(same, {"mpo_rubric": jnp.asarray(rubric.encode(new_text, 256))}, cfg)
    assert int(s1["version"]) == 1 and rubric.decode(s1["rubric"]) == new_text
    assert [rubric.decode(r) for r in np.asarray(s1["history"])[:2]] == [rubric.SEED_RUBRIC, new_text]
    # a full history keeps the newest version in its last row
    texts = [rubric.render(["digits", n]) for n in ("correct", "no_repetition", "format")]
    s = s1
    for t in texts:
        s = mpo.update_state(s, {"mpo_rubric": jnp.asarray(rubric.encode(t, 256))}, cfg)
    assert int(s["version"]) == 4 and rubric.decode(np.asarray(s["history"])[-1]) == texts[-1]
    # num_mpo_interval = 0 is the fixed-rubric baseline: the state never changes its rubric
    fixed = dataclasses.replace(cfg, num_mpo_interval=0)
    assert rubric.decode(mpo.update_state(s0, {"mpo_rubric": s1["rubric"]}, fixed)["rubric"]) == rubric.SEED_RUBRIC


def test_rubric_state_is_checkpointed_and_restored_exactly(tmp_path):
    cfg = C.apply_overrides(
        C.default_config(),
        [
            f"run_dir={tmp_path / 'mpo'}",
            "model.name=tiny",
            "task.name=rg:basic_arithmetic",
            'task.kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
            '"allow_parentheses": false, "allow_negation": false, "num_eval": 8, "size": 24}',
            "sft.steps=0",
            "train.steps=2",
            "train.prompts_per_step=2",
            "train.group_size=2",
            "sampling.max_new_tokens=2",
            "eval.num_examples=0",
            "reward.num_workers=0",
            "log.progress=false",
            "log.tensorboard=false",
            "mesh.num_devices=1",
            "algorithm=mpo",
            "algo.num_mpo_interval=1",
            "algo.mpo_samples=4",
            "algo.mrm_high=0.0",  # every score counts as high: a wrong answer makes the MRM add 'correct'
        ],
    )
    tr = train.Trainer(cfg)
    ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", async_save=False)
    try:
        metrics = train.rl_step(tr, metrics_log.Timer())
        tr.state.step += 1
        assert metrics["time/judge"] >= 0 and "mpo/true_quality" in metrics
        st = tr.state.algo_state
        assert int(np.asarray(st["version"])) == 1, "the meta step should have refined the seed rubric"
        assert "correct" in rubric.parse(rubric.decode(np.asarray(st["rubric"])))
        saved = {k: np.asarray(v).copy() for k, v in st.items()}
        ckpt.save(tr.state.step, *tr.checkpoint(), wait=True)
        tr.state.algo_state = mpo.init_state(cfg.algo)  # forget it
        _, state, meta = ckpt.restore(tr.restore_target)
        tr.load(state, meta)
        for k, v in saved.items():
            np.testing.assert_array_equal(np.asarray(tr.state.algo_state[k]), v, err_msg=k)
    finally:
        tr.close()
        ckpt.close()


def test_fixed_rubric_baseline_never_calls_the_meta_step():
    import types

    from jaxrl_llm.rollouts import judged
    from jaxrl_llm.types import Batch

    cfg = mpo.Config(num_mpo_interval=0, rubric_bytes=256)
    ctx = types.SimpleNamespace(algo_cfg=cfg)  # no policy or task: the meta step must not run
    batch = Batch(tokens=np.zeros((2, 2), np.int32), lengths=np.ones(2, np.int32), rewards=np.ones(2, np.float32))
    out = judged.rubric_state_inputs(ctx, batch, mpo.init_state(cfg))
    assert rubric.decode(out["mpo_rubric"]) == rubric.SEED_RUBRIC
