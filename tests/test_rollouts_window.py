"""The ``window`` rollout kind (T-PPO) on the tiny model: windows of at most ``w`` tokens, earlier
windows kept with their own log-probs, finished slots refilled; and a run stopped mid-response
resumes from its checkpointed in-flight set with the metrics of a run never stopped."""

import jax
import numpy as np
import pytest
from test_registry_train import tiny_run

from jaxrl_llm import checkpoint, metrics_log, train
from jaxrl_llm.algorithms import tppo

W, T, N = 1, 3, 4


def _run(run_dir, *more):
    sizes = [f"algo.window={W}", f"algo.num_slots={N}", "algo.max_prompt_len=40", f"algo.max_response_len={T}"]
    return tiny_run(run_dir, "tppo", f"sampling.max_new_tokens={T}", *sizes, *more)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    tr = train.Trainer(_run(tmp_path_factory.mktemp("window") / "run"))
    yield tr
    tr.close()


def test_windows_advance_in_flight_sequences_and_refill_finished_slots(trainer):
    ctx, cfg = trainer.ctx, trainer.cfg.algo
    state = tppo.init_state(cfg)
    first, m1 = trainer.kind.collect(ctx, jax.random.key(0), state)
    assert m1["window/refilled"] == N and first.tokens.shape == (N, T) and first.prompt_tokens.shape == (N, 40)
    np.testing.assert_array_equal(first.extras["window_start"], 0)
    assert (first.lengths <= W).all() and (first.loss_mask.sum(1) == first.lengths).all()
    state = tppo.update_state(state, first, cfg)
    second, m2 = trainer.kind.collect(ctx, jax.random.key(1), state)
    finished = first.extras["finished"] > 0
    assert m2["window/refilled"] == finished.sum()
    for b in range(N):
        if finished[b]:  # a new prompt from the stream, a fresh response
            assert second.prompt_ids[b] != first.prompt_ids[b] and second.extras["window_start"][b] == 0
            continue
        # the same response, one window further: earlier tokens and their log-probs kept as they were
        assert second.prompt_ids[b] == first.prompt_ids[b]
        n = int(first.lengths[b])
        assert second.extras["window_start"][b] == n and n < second.lengths[b] <= n + W
        np.testing.assert_array_equal(second.tokens[b, :n], first.tokens[b, :n])
        np.testing.assert_array_equal(second.policy_logprobs[b, :n], first.policy_logprobs[b, :n])
        assert not second.loss_mask[b, :n].any() and second.loss_mask[b, n : second.lengths[b]].all()
        assert (second.policy_logprobs[b, n : second.lengths[b]] < 0).all()
    # only finished rows are scored
    assert (second.rewards[second.extras["finished"] == 0] == 0).all()


@pytest.mark.slow
def test_a_run_stopped_mid_response_resumes_identically(tmp_path):
    ref = train.train(_run(tmp_path / "ref", "train.steps=4"))
    assert ref["status"] == "finished"
    run = _run(tmp_path / "run", "train.steps=4")
    assert train.train(run, stop_after=2)["status"] == "stopped"
    # the checkpoint holds responses in flight: the resumed run must continue them, not restart
    ckpt = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints", async_save=False)
    _, tree, _ = ckpt.restore(lambda meta: train.Trainer(run).restore_target(meta))
    ckpt.close()
    inflight = np.asarray(tree["algo_state"]["active"]) > 0
    assert inflight.any() and (np.asarray(tree["algo_state"]["lengths"])[inflight] > 0).all()
    assert train.train(run)["status"] == "finished"
    comparable = lambda d: [
        {k: v for k, v in r.items() if not k.startswith("time/") and k != "compiles"}
        for r in metrics_log.read_metrics(d)
    ]
    assert comparable(tmp_path / "run") == comparable(tmp_path / "ref")
