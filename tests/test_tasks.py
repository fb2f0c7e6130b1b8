"""Tasks: sources, deterministic resumable iteration, held-out splits, bad input, prompts."""

import gzip
import json

import pytest

from jaxrl_llm import tasks
from jaxrl_llm.rewards import RewardRunner
from jaxrl_llm.tasks import Example, TaskDataError, make_task, render_prompt


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GSM8K_ROWS = [
    {
        "question": f"Tom has {i} apples and buys 1,000 more. How many?",
        "answer": f"{i} + 1000 = {i + 1000}\n#### {i + 1000:,}",
    }
    for i in range(10)
]


def _tiny_rg(**kw):
    return make_task("rg:chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=1, size=500, num_eval=50, **kw)


def test_rg_resume_is_exact_and_seeded():
    task = _tiny_rg()
    it = task.train_iter(seed=7)
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # must survive JSON
    expected = [next(it).id for _ in range(20)]
    resumed = task.train_iter(seed=7)
    resumed.set_state(state)
    assert [next(resumed).id for _ in range(20)] == expected
    # Same seed -> same stream; another seed -> another order.
    assert [next(task.train_iter(7)).id for _ in range(1)] == [next(task.train_iter(7)).id]
    a = [next(it).id for it in [task.train_iter(1)] for _ in range(10)]
    b = [next(it).id for it in [task.train_iter(2)] for _ in range(10)]
    assert a != b


def test_rg_state_for_another_seed_is_refused():
    task = _tiny_rg()
    with pytest.raises(TaskDataError, match="seed 1"):
        task.train_iter(2).set_state(task.train_iter(1).get_state())


def test_rg_epochs_cover_training_and_never_eval():
    task = _tiny_rg()
    it = task.train_iter(0)
    first_epoch = [next(it).id for _ in range(task.num_train)]
    second_epoch = [next(it).id for _ in range(task.num_train)]
    assert len(set(first_epoch)) == task.num_train == 450
    assert set(first_epoch) == set(second_epoch) and first_epoch != second_epoch
    train_idx = {int(i.rsplit("/", 1)[1]) for i in first_epoch}
    eval_idx = {int(e.id.rsplit("/", 1)[1]) for e in task.eval_examples()}
    assert eval_idx == set(range(50)) and not train_idx & eval_idx
    with pytest.raises(TaskDataError, match="holds out 50"):
        task.eval_examples(51)


def test_rg_short_prompts_and_own_scorer():
    task = _tiny_rg()
    ex = task.eval_examples(20)
    assert all(len(e.answer) <= 2 for e in ex)  # one-digit a +/- b
    fn, w = task.reward_fns[0]
    e = ex[0]
    assert fn(f"<answer>{e.answer}</answer>", e) == 1.0
    assert fn(f"\\boxed{{{e.answer}}}", e) == 1.0
    assert fn(e.answer, e) == 1.0  # raw answer, as a tiny model would emit
    assert fn(f"<answer>{int(e.answer) + 1}</answer>", e) == 0.0
    # The task's rewards run in worker processes (picklable examples and functions).
    with RewardRunner(task.reward_fns, num_workers=1, timeout_s=30) as runner:
        rewards, info = runner.score([e.answer for e in ex[:4]] + ["nope"], ex[:5])
    assert rewards.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert info["failures"]["reasoning_gym_score"] == 0


def test_rg_kwargs_pass_through_and_bad_names():
    task = make_task("rg:basic_arithmetic", min_terms=2, max_terms=2, min_digits=1, max_digits=1, size=100, num_eval=10)
    assert task.eval_examples(1)[0].metadata["entry"]["metadata"]["num_terms"] == 2
    with pytest.raises(TaskDataError, match="not registered"):
        make_task("rg:no_such_task")
    with pytest.raises(TaskDataError, match="bogus"):
        make_task("rg:chain_sum", bogus=3)
    with pytest.raises(ValueError, match="unknown task"):
        make_task("imagenet")


def test_gsm8k_answers_split_and_resume(tmp_path):
    path = _write_jsonl(tmp_path / "train.jsonl", GSM8K_ROWS)
    task = make_task("gsm8k", path=path, num_eval=3, split_seed=1)
    evals = task.eval_examples()
    train_ids = {next(it).id for it in [task.train_iter(0)] for _ in range(task.num_train)}
    assert task.num_train == 7 and len(train_ids) == 7
    assert not train_ids & {e.id for e in evals}
    assert all(e.id.startswith(path + ":") for e in evals)
    e = evals[0]
    line = int(e.id.rsplit(":", 1)[1])
    assert e.answer == str(line - 1 + 1000)  # "#### 1,00x" -> "100x"
    assert "\\boxed{}" in e.prompt[0]["content"]
    fn = task.reward_fns[0][0]
    assert fn(f"so the total is \\boxed{{{int(e.answer):,}}}", e) == 1.0
    assert fn("so the total is \\boxed{7}", e) == 0.0
    # Separate eval file.
    eval_path = _write_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS[:2])
    task2 = make_task("gsm8k", path=path, eval_path=eval_path)
    assert task2.num_train == 10 and [x.answer for x in task2.eval_examples()] == ["1000", "1001"]


def test_math_jsonl_gz_and_parquet(tmp_path):
    rows = [
        {"problem": "Half of one?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": "Level 1"},
        {"problem": "Root of 4?", "answer": "2"},
    ]
    gz = tmp_path / "math.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    task = make_task("math", path=str(gz), num_eval=1)
    by_answer = {e.answer for e in [task.train_example(0), task.eval_example(0)]}
    assert by_answer == {"\\frac{1}{2}", "2"}
    half = next(e for e in [task.train_example(0), task.eval_example(0)] if e.answer == "\\frac{1}{2}")
    assert task.reward_fns[0][0]("\\boxed{0.5}", half) == 1.0
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(
        pa.Table.from_pylist([{"problem": "p", "answer": "3"}, {"problem": "q", "answer": "4"}]), tmp_path / "m.parquet"
    )
    ptask = make_task("math", path=str(tmp_path / "m.parquet"))
    assert ptask.num_train == 2 and ptask.train_example(1).answer == "4" and "row 1" in ptask.train_example(1).id


def test_bad_input_errors_name_the_place(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GSM8K_ROWS[0]) + "\n" + '{"question": "x", "answer": \n')
    with pytest.raises(TaskDataError, match=r"bad\.jsonl:2: malformed JSON"):
        make_task("gsm8k", path=str(bad))
    missing = _write_jsonl(tmp_path / "missing.jsonl", [GSM8K_ROWS[0], {"question": "no answer here"}])
    with pytest.raises(TaskDataError, match=r"missing\.jsonl:2: record lacks field 'answer'"):
        make_task("gsm8k", path=missing)
    nomark = _write_jsonl(tmp_path / "nomark.jsonl", [{"question": "q", "answer": "42"}])
    with pytest.raises(TaskDataError, match=r"nomark\.jsonl:1: .*####"):
        make_task("gsm8k", path=nomark)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TaskDataError, match="empty.jsonl: file holds no records"):
        make_task("gsm8k", path=str(empty))
    with pytest.raises(TaskDataError, match="no such file"):
        make_task("math", path=str(tmp_path / "absent.jsonl"))
    one = _write_jsonl(tmp_path / "one.jsonl", GSM8K_ROWS[:1])
    with pytest.raises(TaskDataError, match="training keeps at least one"):
        make_task("gsm8k", path=one, num_eval=1)
    with pytest.raises(TaskDataError, match="no training examples"):
        tasks.Task("t", 0, lambda i: None, 0, lambda i: None)
    wrong_type = _write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": 3, "rejected": "b"}])
    with pytest.raises(TaskDataError, match=r"pairs\.jsonl:1: field 'chosen' has type int"):
        make_task("preference", path=wrong_type)


def test_preference_pairs(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": f"good{i}", "rejected": f"bad{i}"}
        for i in range(4)
    ]
    task = make_task("preference", path=_write_jsonl(tmp_path / "pairs.jsonl", rows), num_eval=1)
    ex = task.train_example(0)
    i = int(ex.prompt[0]["content"][1:])
    assert ex.metadata == {"chosen": f"good{i}", "rejected": f"bad{i}"}
    assert [fn(t, ex) for fn, _ in task.reward_fns for t in (f" good{i}\n", f"bad{i}")] == [1.0, 0.0]


def test_humaneval_split():
    task = make_task("humaneval", num_eval=64)
    assert task.num_train + task.num_eval == 164
    train_ids = {task.train_example(i).id for i in range(task.num_train)}
    assert not train_ids & {e.id for e in task.eval_examples()}
    assert isinstance(task.eval_example(0).prompt, str) and task.eval_example(0).metadata["entry_point"]


def _tokenizer(chat_template):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(
        ["hello world <|im_start|> <|im_end|>"],
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"]),
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=chat_template, eos_token="<|im_end|>")


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_render_prompt_chat_template_and_fallback():
    ex = Example([{"role": "user", "content": "2+2?"}], "4", {}, "x")
    text = render_prompt(ex, _tokenizer(CHATML), system_prompt="Be brief.")
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(ex, _tokenizer(None)) == "user: 2+2?\nassistant: "
    raw = Example("def f():\n", None, {}, "y")
    assert render_prompt(raw, _tokenizer(CHATML)) == "def f():\n"
    with pytest.raises(ValueError, match="message 0 needs 'role' and 'content'"):
        render_prompt(Example([{"text": "hi"}], None, {}, "z"), _tokenizer(CHATML))


def test_tfds_errors_are_clear_without_prepared_data(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(TaskDataError, match="does not exist"):
        make_task("tfds:gsm8k", data_dir=str(tmp_path / "absent"))
    with pytest.raises(TaskDataError, match="cannot open split 'train'"):
        make_task("tfds:gsm8k", data_dir=str(tmp_path), gsm8k_answers=True)


def test_the_train_iterator_yields_each_example_with_its_index():
    """The trainer keys per-prompt state by ``prompt_ids``: the stream gives the index itself (it
    no longer rebuilds grain's shuffle order), and ``next`` / ``next_indexed`` share one position."""
    task = _tiny_rg()
    it = task.train_iter(seed=3)
    plain = task.train_iter(seed=3)
    for _ in range(30):
        index, example = it.next_indexed()
        assert example.id == task.train_example(index).id == next(plain).id
    state = it.get_state()
    resumed = task.train_iter(seed=3)
    resumed.set_state(state)
    assert resumed.next_indexed()[0] == it.next_indexed()[0]
