"""The built-in offline tokenizer (``zoo.get_tokenizer`` also finds models' tokenizers by name).

The synthetic tokenizer is character level over printable ASCII plus newline and tab (digits,
arithmetic operators, letters, punctuation, space), with ChatML special tokens, built in code with
``tokenizers`` and wrapped as a ``transformers.PreTrainedTokenizerFast``: no files, no network,
and it round-trips through ``save_pretrained`` / ``AutoTokenizer.from_pretrained``. Characters
outside that set encode to ``<|unk|>``. Its 101 ids fit in a 128-row embedding.
"""

from __future__ import annotations

import tokenizers
import transformers

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Ids 0..3, in this order; eos is <|im_end|> so that generation stops at the end of a chat turn.
SPECIAL_TOKENS = ("<|pad|>", "<|im_start|>", "<|im_end|>", "<|unk|>")
SYNTHETIC_CHARS = "\n\t" + "".join(chr(c) for c in range(32, 127))


def synthetic_tokenizer():
    """The character-level ChatML tokenizer described in the module docstring.

    pad = ``<|pad|>`` (0), bos = ``<|im_start|>`` (1), eos = ``<|im_end|>`` (2), unk (3), then
    one id per character of ``SYNTHETIC_CHARS`` (4..100).
    """
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: len(SPECIAL_TOKENS) + i for i, c in enumerate(SYNTHETIC_CHARS)})
    # BPE without merges splits text into single characters; Fuse joins them back verbatim.
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[], unk_token="<|unk|>"))
    tok.decoder = tokenizers.decoders.Fuse()
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|unk|>",
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
        model_max_length=1 << 16,
        clean_up_tokenization_spaces=False,
    )


TOKENIZERS = {"synthetic": synthetic_tokenizer}
