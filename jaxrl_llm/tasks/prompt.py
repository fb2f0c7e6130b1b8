"""Turn an ``Example``'s prompt into the text the sampler tokenizes."""

from typing import Any

from jaxrl_llm.tasks.example import Example


def render_prompt(example: Example, tokenizer: Any, system_prompt: str | None = None) -> str:
    """The prompt text for ``example``.

    Chat messages go through ``tokenizer.apply_chat_template(messages, tokenize=False,
    add_generation_prompt=True)`` (transformers 5), with ``system_prompt`` prepended as a
    system message. A raw-text prompt is returned as is, after ``system_prompt`` and a blank
    line when one is given. When the tokenizer has no chat template, messages fall back to
    ``"<role>: <content>"`` lines ending with ``"assistant: "``.
    """
    prompt = example.prompt
    if isinstance(prompt, str):
        return f"{system_prompt}\n\n{prompt}" if system_prompt else prompt
    messages = [dict(m) for m in prompt]
    for j, m in enumerate(messages):
        if "role" not in m or "content" not in m:
            raise ValueError(f"example {example.id!r}: chat message {j} needs 'role' and 'content', got {sorted(m)}")
    if system_prompt:
        messages = [{"role": "system", "content": system_prompt}, *messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
