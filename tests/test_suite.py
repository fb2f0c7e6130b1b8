"""The learning suite: its tasks' rewards and demonstrations, the SFT-start cache key, the table
with GRPO's noise floor, and a smoke run of every suite task (tiny model, two RL steps)."""

import dataclasses
import importlib.util
import json
import pathlib

import numpy as np
import pytest
from scipy import stats

from jaxrl_llm import config as config_lib
from jaxrl_llm import tasks
from jaxrl_llm.models.tokenizer import synthetic_tokenizer
from jaxrl_llm.rewards import RewardRunner
from jaxrl_llm.tasks import codegen
from jaxrl_llm.tasks import suite as suite_tasks

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_runner():
    spec = importlib.util.spec_from_file_location("suite_runner", ROOT / "experiments" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


def _wrong(example):
    """A wrong completion of the task's own form (the right layout, a wrong final answer)."""
    demo = example.metadata["demonstration"]
    if example.id.startswith("suite:codegen"):
        return demo.replace("return", "return 1 +")
    reference = int(example.metadata["reference"])
    if "<answer>" in demo:
        return demo.rsplit("<answer>", 1)[0] + f"<answer>{reference + 1}</answer>"
    return str(reference + 1)


@pytest.mark.parametrize(
    "name", ["suite:partial_sums", "suite:tagged_arithmetic", "suite:number_arithmetic", "suite:codegen"]
)
def test_task_rewards_score_right_demonstrations_one_and_wrong_ones_zero(name):
    task = tasks.make_task(name, demonstrations=True, **({} if name == "suite:codegen" else {"size": 2000}))
    examples = task.eval_examples(3) + [next(task.train_iter(0)) for _ in range(2)]
    if name == "suite:tagged_arithmetic":  # demonstrations are tagged only part of the time
        right = [f"<answer>{e.metadata['reference']}</answer>" for e in examples]
    else:
        right = [e.metadata["demonstration"] for e in examples]
    wrong = [_wrong(e) for e in examples]
    scorer = RewardRunner(task.reward_fns, num_workers=0)
    rewards, info = scorer.score(right + wrong, examples + examples)
    assert np.all(rewards[: len(right)] >= 1.0), (name, rewards)
    assert np.all(rewards[len(right) :] < 1.0), (name, rewards)
    first = next(iter(info["per_fn"].values()))
    np.testing.assert_array_equal(first, [1.0] * len(right) + [0.0] * len(wrong))


def test_partial_sums_scratchpad_check_gives_partial_credit():
    task = tasks.make_task("suite:partial_sums", size=2000, min_terms=4, max_terms=4)
    e = task.eval_examples(1)[0]
    terms = suite_tasks.expression_terms(e.metadata["entry"]["metadata"]["expression"])
    lines = suite_tasks.partial_sums(terms)
    assert len(lines) == 3
    assert suite_tasks.scratchpad_valid(e.metadata["demonstration"], e) == 1.0
    broken = "\n".join([lines[0], "1 + 1 = 2", lines[2], f"<answer>{sum(terms)}</answer>"])
    assert suite_tasks.scratchpad_valid(broken, e) == pytest.approx(1 / 3)
    assert suite_tasks.scratchpad_valid(f"<answer>{sum(terms)}</answer>", e) == 0.0
    padded = e.metadata["demonstration"].replace("<answer>", "0 + 0 = 0\n<answer>")
    assert suite_tasks.scratchpad_valid(padded, e) == pytest.approx(3 / 4)


def test_held_out_accuracy_counts_the_answer_not_the_shaping_rewards():
    """With the scratchpad rewarded (or a large tag bonus), a valid scratchpad or a tag around a
    wrong total earns reward >= 1; evaluation must still count it wrong (``answer_correct``)."""
    for name, kwargs in (
        ("suite:partial_sums", {"scratchpad_weight": 1.0}),
        ("suite:tagged_arithmetic", {"format_weight": 1.0}),
    ):
        task = tasks.make_task(name, demonstrations=True, size=2000, **kwargs)
        e = task.eval_examples(1)[0]
        demo = (
            e.metadata["demonstration"]
            if name == "suite:partial_sums"
            else f"<answer>{e.metadata['reference']}</answer>"
        )
        wrong = _wrong(e) if name == "suite:partial_sums" else f"<answer>{int(e.metadata['reference']) + 1}</answer>"
        rewards, _ = RewardRunner(task.reward_fns, num_workers=0).score([demo, wrong], [e, e])
        assert rewards[1] >= 1.0, (name, rewards)  # the shaping reward alone reaches the old threshold
        assert task.correct_fn is suite_tasks.answer_correct
        assert task.correct_fn(demo, e) and not task.correct_fn(wrong, e)


def test_expression_terms_and_bad_expressions():
    assert suite_tasks.expression_terms("15 - 43 + 6") == [15, -43, 6]
    assert suite_tasks.partial_sums([4, 7, -2]) == ["4 + 7 = 11", "11 - 2 = 9"]
    with pytest.raises(tasks.TaskDataError, match="other than"):
        suite_tasks.expression_terms("3 * 4")


def test_tagged_demonstrations_follow_the_tag_rate_and_rl_answers_stay_references():
    demo_task = tasks.make_task("suite:tagged_arithmetic", demonstrations=True, tag_rate=0.5, size=3000)
    answers = [demo_task.train_example(i).answer for i in range(400)]
    rate = np.mean(["<answer>" in a for a in answers])
    assert 0.4 < rate < 0.6
    rl_task = tasks.make_task("suite:tagged_arithmetic", size=3000)
    e = rl_task.train_example(0)
    assert "<answer>" not in e.answer and e.answer == demo_task.train_example(0).metadata["reference"]
    with pytest.raises(tasks.TaskDataError, match="tag_rate"):
        tasks.make_task("suite:tagged_arithmetic", tag_rate=1.5)


def test_codegen_held_out_problems_are_never_trained_on():
    task = codegen.codegen_task(num_eval=100, split_seed=3)
    evals = {e.id.split("/")[-1] for e in task.eval_examples()}
    train = {task.train_example(i).id.split("/")[-1] for i in range(task.num_train)}
    assert len(evals) == 100 and len(train) == len(codegen.problems()) - 100 and not evals & train
    with pytest.raises(tasks.TaskDataError, match="num_eval"):
        codegen.codegen_task(num_eval=0)


def test_demonstrations_and_prompts_fit_each_suite_tasks_lengths():
    """The SFT stage raises on a demonstration longer than max_new_tokens and on a prompt longer
    than max_prompt_len: check the suite's from-scratch tasks against their limits up front."""
    tok = synthetic_tokenizer()
    for t in runner.SUITE + runner.EXTRA:
        if t.model != "small":
            continue
        task = tasks.make_task(t.task, **{**t.kwargs, **t.sft_kwargs})
        examples = task.eval_examples(40) + [task.train_example(i) for i in range(40)]
        for e in examples:
            prompt = tok(tasks.render_prompt(e, tok), add_special_tokens=False)["input_ids"]
            demo = tok(e.answer, add_special_tokens=False)["input_ids"]
            assert len(prompt) <= t.max_prompt_len, (t.key, len(prompt))
            assert len(demo) + 1 <= (t.sft_max_new_tokens or t.max_new_tokens), (t.key, len(demo))


def test_recipe_hash_keys_the_sft_start_by_everything_that_builds_it():
    t = runner.TASKS["partial_sums"]
    same = dataclasses.replace(t, eval_examples=7, steps=3)  # RL-only fields
    assert runner.recipe_hash(same) == runner.recipe_hash(t)
    for changed in (
        dataclasses.replace(t, sft=dataclasses.replace(t.sft, steps=t.sft.steps + 1)),
        dataclasses.replace(t, kwargs={**t.kwargs, "max_terms": 6}),
        dataclasses.replace(t, model="tiny"),
        dataclasses.replace(t, max_prompt_len=256),
        dataclasses.replace(t, sft_max_new_tokens=128),
    ):
        assert runner.recipe_hash(changed) != runner.recipe_hash(t)
    # sft_max_new_tokens is hashed only when set: arith's start keeps the hash it was built under
    assert runner.recipe_hash(runner.TASKS["arith"]) == "82afc142467c"


def test_rule_sets_beta_where_the_method_has_one_and_overrides_come_last(tmp_path):
    t = runner.TASKS["arith"]
    cfg = runner.run_config(t, "grpo", 1, "small", tmp_path / "r", overrides=["optim.learning_rate=1e-4"])
    assert cfg.algo.beta == runner.RULE.beta and cfg.optim.learning_rate == 1e-4 and cfg.seed == 1
    assert cfg.train.steps == runner.RULE.steps and cfg.sft.steps == 0
    smollm2 = runner.run_config(runner.TASKS["smollm2"], "grpo", 0, runner.SMOLLM2, tmp_path / "s")
    pre = runner.PRETRAINED_RULE
    assert runner.RULE.for_task(runner.TASKS["smollm2"]) is pre and runner.RULE.for_task(t) is runner.RULE
    assert (smollm2.optim.learning_rate, smollm2.train.steps, smollm2.sampling.temperature) == (
        pre.learning_rate,
        pre.steps,
        pre.temperature,
    )
    assert (smollm2.train.prompts_per_step, smollm2.train.group_size, smollm2.eval.temperature) == (8, 4, 0.7)
    assert smollm2.algo.beta == pre.beta and cfg.eval.temperature == runner.RULE.temperature


def test_jobs_run_each_pending_run_once_in_its_own_process_on_disjoint_cores(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "_subprocess_run", lambda d, cfg_json, cores: calls.append((d, cores)))
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    t = dataclasses.replace(runner.TASKS["arith"], sft=None, model="tiny")
    _fake_run(tmp_path / "grpo" / "arith" / "s1", [(0, 0.1, 0.1, 0.1)])  # finished: skipped
    dirs = runner.run_all("grpo", [t], [0, 1, 2], tmp_path, tmp_path / "cache", jobs=2)
    assert dirs == [tmp_path / "grpo" / "arith" / f"s{s}" for s in range(3)]
    assert sorted(d.name for d, _ in calls) == ["s0", "s2"]
    assert all(cores in ([0, 1], [2, 3]) for _, cores in calls)


def test_suite_file_loads_as_an_experiment():
    cfg = config_lib.load_experiment(str(ROOT / "experiments" / "suite.py"))
    assert cfg.task.name == "rg:basic_arithmetic" and cfg.sft.steps == runner.TASKS["arith"].sft.steps
    assert cfg.train.steps == runner.RULE.steps and cfg.model.name == "small"


def _fake_run(directory, evals, steps=4, finished=True):
    """A run directory with the files the report reads: config, metrics, summary."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"train": {"prompts_per_step": 2, "group_size": 4}}))
    lines = [
        {
            "phase": "rl",
            "step": s,
            "completion_len/mean": 3.0,
            "sampling_rounds": 1,
            "time/step": 0.5,
            "reward/mean": 0.5 + 0.5 * (s % 2),
        }
        for s in range(1, steps + 1)
    ]
    for step, acc, p1, pk in evals:
        lines.append({"phase": "eval", "step": step, "eval/accuracy": acc, "eval/pass@1": p1, "eval/pass@k": pk})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if finished:
        (directory / "summary.json").write_text(json.dumps({"status": "finished"}))


def test_report_table_has_mean_spread_and_grpo_noise_floor(tmp_path):
    for s, end in enumerate([0.5, 0.6, 0.7]):
        _fake_run(tmp_path / "grpo" / "arith" / f"s{s}", [(0, 0.4, 0.3, 0.6), (4, end, end - 0.1, end + 0.1)])
    for s, end in enumerate([0.8, 0.8]):
        _fake_run(tmp_path / "gtpo" / "arith" / f"s{s}", [(0, 0.4, 0.3, 0.6), (4, end, 0.7, 0.9)], finished=s == 0)
    written = runner.report(tmp_path, tasks=[runner.TASKS["arith"]])
    grpo_md, gtpo_md = written["grpo"].read_text(), written["gtpo"].read_text()
    # GRPO: end accuracy 0.6 +- 0.1 (sample std), its own std as the floor; tokens 4 steps x 3 x 8.
    assert (
        "| arith | short answer | 3 | 0.400 ± 0.000 [0.000] | 0.600 ± 0.100 [0.100] | 0.200 ± 0.100 [0.100]"
    ) in grpo_md
    assert "| 96 ± 0 [0] | 2 ± 0 [0] |" in grpo_md
    assert "| 2 (1 unfinished) | 0.400 ± 0.000 [0.000] | 0.800 ± 0.000 [0.100] |" in gtpo_md
    data = json.loads((tmp_path / "suite_gtpo.json").read_text())
    assert data["grpo_stats"]["arith"]["final"]["std"] == pytest.approx(0.1)
    assert data["tasks"]["arith"]["stats"]["final"]["mean"] == pytest.approx(0.8)
    assert "| arith | 1 -> 0.5 | - |" in grpo_md  # reward/mean of the first and the last quarter (1 of 4 steps)
    assert (tmp_path / "plots" / "arith.png").stat().st_size > 0


def test_report_without_grpo_runs_reads_the_committed_reference_and_gives_welch_p(tmp_path):
    ends = [0.45, 0.40, 0.36]
    for s, end in enumerate(ends):
        _fake_run(tmp_path / "dcpo" / "tagged" / f"s{s}", [(0, 0.367, 0.1, 0.3), (4, end, 0.29, 0.6 + 0.01 * s)])
    written = runner.report(tmp_path, tasks=[runner.TASKS["tagged"]], reference=runner.GRPO_REFERENCE)
    md = written["dcpo"].read_text()
    grpo_ends = json.loads(runner.GRPO_REFERENCE.read_text())["tasks"]["tagged"]["final"]
    floor = np.std(grpo_ends, ddof=1)
    assert f"0.403 ± 0.045 [{floor:.3f}]" in md  # the reference's spread is the bracketed floor
    data = json.loads((tmp_path / "suite_dcpo.json").read_text())
    assert data["noise_floor"] == "reference (suite_grpo_reference.json)"
    # p from the per-seed lists equals scipy's Welch test on the seeds themselves
    want = stats.ttest_ind(ends, grpo_ends, equal_var=False).pvalue
    assert data["p_vs_grpo"]["tagged"]["final"] == pytest.approx(want, rel=1e-9)
    assert f"| tagged | {want:.2g} |" in md
    assert data["p_vs_grpo"]["tagged"]["pass@1"] is not None  # from the reference's mean / std / n
    # a third seed still running is left out of the test (its last evaluation is not an end point)
    (tmp_path / "dcpo" / "tagged" / "s2" / "summary.json").unlink()
    runner.report(tmp_path, tasks=[runner.TASKS["tagged"]], reference=runner.GRPO_REFERENCE)
    data = json.loads((tmp_path / "suite_dcpo.json").read_text())
    want = stats.ttest_ind(ends[:2], grpo_ends, equal_var=False).pvalue
    assert data["p_vs_grpo"]["tagged"]["final"] == pytest.approx(want, rel=1e-9)
    # no reference asked for (the smoke run's tiny tasks): no floor and no p
    (tmp_path / "suite_dcpo.md").unlink()
    md = runner.report(tmp_path, tasks=[runner.TASKS["tagged"]])["dcpo"].read_text()
    assert "Welch" not in md and "[" not in md.split("Training signals")[0].split("| task |")[1]


def test_tokens_sampled_count_a_kinds_continuations(tmp_path):
    """SPO-chain trains on its completions but also samples Monte Carlo continuations: the table's
    tokens are the kind's own ``chain/sampled_tokens`` where logged, so equal-token comparisons
    against GRPO charge them."""
    _fake_run(tmp_path / "grpo" / "s0", [(0, 0.4, 0.3, 0.6), (4, 0.5, 0.4, 0.7)])
    assert runner.run_record(tmp_path / "grpo" / "s0")["tokens"] == 4 * 3.0 * 8
    chain = tmp_path / "spo_chain" / "s0"
    _fake_run(chain, [(0, 0.4, 0.3, 0.6), (4, 0.5, 0.4, 0.7)])
    lines = [json.loads(x) for x in (chain / "metrics.jsonl").read_text().splitlines()]
    for r in lines:
        if r["phase"] == "rl":
            r["chain/sampled_tokens"] = 100.0
    (chain / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert runner.run_record(chain)["tokens"] == 400.0


@pytest.mark.slow
def test_smoke_every_suite_task_two_rl_steps(tmp_path):
    """CI size (``--smoke``): the tiny model, two RL steps on every task, one SFT start built,
    cached and loaded; the table lists every task. ~55 s of CPU time (two compilations of each
    jitted function, shared through the compilation cache). A second call finds every run finished and the
    SFT start cached, and runs nothing."""
    out = tmp_path / "suite"
    assert runner.main(["--smoke", "--out", str(out), "--seeds", "0"]) == 0
    table = (out / "suite_grpo.md").read_text()
    for t in runner.SUITE:
        assert f"| {t.key} | {t.kind} | 1 |" in table
        metrics = [json.loads(x) for x in (out / "grpo" / t.key / "s0" / "metrics.jsonl").read_text().splitlines()]
        assert sum(r.get("phase") == "rl" for r in metrics) == 2
    starts = list((out / "sft_starts").glob("arith-*/start.json"))
    assert len(starts) == 1
    model_dir = json.loads((out / "grpo" / "arith" / "s0" / "config.json").read_text())["model"]["name"]
    assert pathlib.Path(model_dir) == starts[0].parent / "model"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.jsonl")}
    assert runner.main(["--smoke", "--out", str(out), "--seeds", "0", "--tasks", "arith", "codegen"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.jsonl")} == before


def test_report_lists_every_setting_that_differs_from_grpo(tmp_path):
    grpo = {
        "name": "g",
        "run_dir": "a",
        "algorithm": "grpo",
        "algo": {"aggregation": "seq_mean_token_mean", "std_ddof": 1},
    }
    hapo = {"name": "h", "run_dir": "b", "algorithm": "hapo", "algo": {"aggregation": "token_mean", "tau": 0.05}}
    assert runner.config_diff(grpo, hapo) == [
        ("algo.aggregation", "seq_mean_token_mean", "token_mean"),
        ("algo.std_ddof", 1, "-"),
        ("algo.tau", "-", 0.05),
    ]
    # a field missing from one config counts at its default (schema growth is no difference)
    assert runner.config_diff({**grpo, "train": {"group_size": 4}}, {**hapo, "train": {"staleness": 0}})[-1] == (
        "train.group_size",
        4,
        8,
    )
    for method, cfg in (("grpo", grpo), ("hapo", hapo)):
        _fake_run(tmp_path / method / "arith" / "s0", [(0, 0.4, 0.3, 0.6), (4, 0.5, 0.4, 0.7)])
        path = tmp_path / method / "arith" / "s0" / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **cfg}))
    md = runner.report(tmp_path, tasks=[runner.TASKS["arith"]])["hapo"].read_text()
    assert (
        "| arith | `algo.aggregation` seq_mean_token_mean -> token_mean, `algo.std_ddof` 1 -> -, `algo.tau` - -> 0.05 |"
        in md
    )
    assert "Settings that differ" not in runner.report(tmp_path, tasks=[runner.TASKS["arith"]])["grpo"].read_text()


def test_training_logs_each_reward_function_of_a_task_with_several(tmp_path):
    """``tagged`` pays a format bonus beside correctness: its hacking shows only per function."""
    from test_registry_train import tiny_run

    from jaxrl_llm import train

    cfg = tiny_run(
        tmp_path,
        "grpo",
        "task.name=suite:tagged_arithmetic",
        'task.kwargs={"num_eval": 8}',
        "task.max_prompt_len=160",
        "train.steps=1",
        "sampling.max_new_tokens=4",
    )
    train.train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (rl,) = [r for r in rows if r.get("phase") == "rl"]
    for name in ("reward/reasoning_gym_score", "reward/answer_tag_format"):
        assert 0.0 <= rl[name] <= 1.0, (name, rl)
    weighted = rl["reward/reasoning_gym_score"] + 0.2 * rl["reward/answer_tag_format"]
    assert rl["reward/mean"] == pytest.approx(weighted, abs=1e-6)
