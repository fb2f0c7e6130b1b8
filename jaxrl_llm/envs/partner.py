"""A frozen partner model beside the trained policy: two-model rollouts.

Several agent methods play the trained policy against or together with a second, frozen model:
EPO-strategic's acting model (the strategist is trained, the actor is not), DialTree-RPO's
target, LSPO's other players, a TextArena opponent. ``FrozenPartner`` is that second model: a
``Policy`` of its own (``model`` names a zoo model, e.g. ``smollm2-135m-instruct`` or ``tiny``),
built by ``Policy.create`` on the run's mesh rules, so its sampler is jitted and its params are
sharded exactly like the policy's; it is never updated. ``reply(texts)`` renders each text as one
user message with the partner's chat template, samples (greedy by default: a deterministic
partner) and returns the decoded replies. ``as_actor`` / ``as_player`` adapt it to the callables
the environments take (``envs.strategic.StrategyEnv``'s actor, ``TextArenaEnv``'s partner).

``partner(cfg, model)`` builds one per (run config, model name) and process and reuses it (the
episode rollout builds its environments every step; the partner's params and compiled sampler
must outlive them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from jaxrl_llm.policy import Policy, left_pad
from jaxrl_llm.sampling import bucket_length


class FrozenPartner:
    """A frozen model with its own tokenizer and jitted sampler (module docstring)."""

    def __init__(self, policy: Policy, greedy: bool = True, seed: int = 0):
        self.policy, self.greedy = policy, greedy
        self.key = jax.random.key(seed)
        self.calls = 0

    @classmethod
    def create(cls, cfg: Any, model: str, max_new_tokens: int = 16, greedy: bool = True) -> FrozenPartner:
        """The partner ``model`` on ``cfg``'s mesh and dtypes, ``max_new_tokens`` per reply."""
        pcfg = dataclasses.replace(
            cfg,
            model=dataclasses.replace(cfg.model, name=model),
            sampling=dataclasses.replace(cfg.sampling, max_new_tokens=max_new_tokens),
        )
        return cls(Policy.create(pcfg), greedy=greedy, seed=cfg.seed)

    def encode(self, text: str) -> list[int]:
        messages = [{"role": "user", "content": text}]
        rendered = self.policy.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.policy.encode_text(rendered)

    def reply(self, texts: list[str]) -> list[str]:
        """One reply per text (a user message each), sampled in one batch."""
        ids = [self.encode(t) for t in texts]
        tokens, mask = left_pad(ids, bucket_length(max(len(x) for x in ids)), self.policy.pad_id)
        out = self.policy.generate(tokens, mask, jax.random.fold_in(self.key, self.calls), 1, greedy=self.greedy)
        self.calls += 1
        return self.policy.decode(out["tokens"], out["lengths"])

    def as_actor(self, template: str) -> Callable[[str, str], str]:
        """``(observation, strategy) -> action``: ``template.format(observation=..., strategy=...)``
        as the partner's prompt."""
        return lambda observation, strategy: self.reply([template.format(observation=observation, strategy=strategy)])[
            0
        ]

    def as_player(self) -> Callable[[str], str]:
        """``observation -> action`` (a TextArena partner)."""
        return lambda observation: self.reply([observation])[0]


_PARTNERS: dict[tuple, FrozenPartner] = {}


def partner(cfg: Any, model: str, max_new_tokens: int = 16, greedy: bool = True) -> FrozenPartner:
    """The process's ``FrozenPartner`` for ``model`` (with ``cfg``'s seed, dtypes, attention and mesh
    size), built on first use."""
    m = cfg.model
    key = (model, max_new_tokens, greedy, cfg.seed, m.param_dtype, m.compute_dtype, m.attention, repr(cfg.mesh))
    if key not in _PARTNERS:
        _PARTNERS[key] = FrozenPartner.create(cfg, model, max_new_tokens, greedy)
    return _PARTNERS[key]
