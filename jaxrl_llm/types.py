"""The records that flow between tasks, rollouts, algorithms and the trainer.

Shape letters: P prompts, G group size, B rows, T completion length, Sp prompt length,
S = Sp + T full length, V vocabulary, L layers.

A row is the unit a loss sees: a completion, a tree edge, an episode turn, one side of a pair.
Group structure is data: ``group_ids`` [B] says which rows are compared with each other; for the
``group`` rollout kind rows are group-major (row ``b`` belongs to group ``b // G``) and the static
``group_size`` is G (1 when rows are not grouped). A preference pair (the ``pairs`` rollout kind)
is a group of two rows sharing a prompt, with ``extras["chosen"]`` [B] f32 1 on the preferred
response and 0 on the other (``ops.sequence`` computes pair quantities from these two arrays).

``Rollout`` (what a rollout kind returns, host NumPy arrays; a typed pytree):

  ``prompt_tokens``    [B, Sp] int32 left-padded prompt of each row; ``prompt_mask`` [B, Sp]
  ``tokens``           [B, T]  int32 completion token ids (padding after the stop is arbitrary)
  ``mask``             [B, T]  f32   1 on the completion's real tokens (the model attends to them)
  ``loss_mask``        [B, T]  f32   1 on the tokens the POLICY chose (the loss counts them);
                                     equals ``mask`` for plain completions, 0 on observations,
                                     tool output and other tokens the environment wrote
  ``rewards``          [B]     f32   scalar reward per row
  ``group_ids``        [B]     int32 the group a row is compared within
  ``prompt_ids``       [B]     int32 the training-example index of each row's prompt
  ``lengths``          [B]     int32 completion lengths
  ``sampler_logprobs`` [B, T]  f32   log-prob of each token under the distribution sampled from
  ``policy_logprobs``  [B, T]  f32   (optional) the same tokens under the unmodified policy
  ``old_logprobs``     [B, T]  f32   pi_old, filled by the trainer before ``advantages``
  ``ref_logprobs``     [B, T]  f32   pi_ref, filled when the method's KL weight ``beta`` > 0
  ``entropies``        [B, T]  f32   (optional) entropy of the sampling distribution per step
  ``images``           [B, N, H, W, C] f32 (optional) the pictures each row's prompt shows, pixels
                                     in [0, 1]; a vision-language model reads them at its image
                                     placeholders (``Policy.prompt_images``); images beyond a
                                     row's own are padding (episodes: N = env.max_turns)
  ``image_mask``       [B, Sp + T] f32 (optional) 1 on the image slots of ``[prompt | completion]``
                                     (``models.vision``); unset: the first N * n_patches
                                     placeholder ids of a row are the slots
  ``extras``           dict of a method's own arrays (``values``, ``budgets``, ``answer_ids``, ...)

``Batch`` (what a loss reads; ``algorithms.make_batch`` builds it) is a ``Rollout`` after
``advantages``, whose ``mask`` is the rollout's ``loss_mask``, with:

  ``advantages``  [B] or [B, T] f32
  ``is_weights``  [B, T] f32  (optional) rollout-correction weights (``train.rollout_correction``)
  ``num_tokens``  []  f32  sum of ``mask`` over the WHOLE optimization batch
  ``num_seqs``    []  f32  number of rows in the WHOLE optimization batch

``num_tokens`` / ``num_seqs`` are global normalizers: a loss evaluated on one micro-batch returns
that micro-batch's share of the full-batch loss, so summing losses (and gradients) over
micro-batches or devices gives exactly the full-batch value.

Both records read like the dicts the algorithm files were written against: ``batch["mask"]``,
``"values" in batch``, ``batch.get("is_weights")``, ``dict(batch)``; a key that is not a field
is looked up in ``extras``, and an unset (``None``) field is absent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
from flax import struct

Array = jax.Array
Metrics = dict[str, Array]
ChatMessages = Sequence[Mapping[str, str]]


@dataclasses.dataclass(frozen=True)
class Example:
    """One prompt with its reference.

    Attributes:
      prompt: raw text, or chat messages ``[{"role": ..., "content": ...}, ...]`` that
        ``tasks.render_prompt`` turns into text with the tokenizer's chat template.
      answer: the reference answer a verifier compares against (``None`` when the task has
        none, e.g. code tasks that are checked by tests, kept in ``metadata``).
      metadata: whatever the task's reward functions need (the reasoning-gym entry and config,
        HumanEval's tests and entry point, a preference pair's ``chosen``/``rejected``).
      id: stable identifier, unique within a task and split.
    """

    prompt: str | ChatMessages
    answer: str | None
    metadata: Mapping[str, Any]
    id: str


class _Items(Mapping):
    """Mapping access over a record's set fields, falling through to ``extras``."""

    _STATIC = ("group_size",)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extras")

    def __getitem__(self, key: str) -> Any:
        if key in self.field_names():
            value = getattr(self, key)
            if value is None:
                raise KeyError(key)
            return value
        return self.extras[key]

    def __iter__(self) -> Iterator[str]:
        for name in self.field_names():
            if getattr(self, name) is not None:
                yield name
        yield from self.extras

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if key in self.field_names():
            return getattr(self, key) is not None
        return key in self.extras

    def with_items(self, items: Mapping[str, Any] | None = None, **more: Any):
        """A copy with ``items`` set: field names replace fields, other keys go to ``extras``."""
        items = {**(items or {}), **more}
        names = set(self.field_names())
        fields = {k: v for k, v in items.items() if k in names}
        extras = {k: v for k, v in items.items() if k not in names}
        return self.replace(**fields, extras={**self.extras, **extras}) if extras else self.replace(**fields)

    def without(self, *keys: str):
        """A copy with ``keys`` unset (fields to ``None``, extras removed)."""
        names = set(self.field_names())
        fields = {k: None for k in keys if k in names}
        extras = {k: v for k, v in self.extras.items() if k not in keys}
        return self.replace(**fields, extras=extras)

    @classmethod
    def from_mapping(cls, items: Mapping[str, Any]):
        """The record of a plain dict (e.g. a test's arrays): known keys become fields, the rest extras."""
        return cls().with_items(items)


@struct.dataclass
class Rollout(_Items):
    """Rows produced by a rollout kind (see the module docstring for every field's shape)."""

    prompt_tokens: Any = None
    prompt_mask: Any = None
    tokens: Any = None
    mask: Any = None
    loss_mask: Any = None
    rewards: Any = None
    group_ids: Any = None
    prompt_ids: Any = None
    lengths: Any = None
    sampler_logprobs: Any = None
    policy_logprobs: Any = None
    old_logprobs: Any = None
    ref_logprobs: Any = None
    entropies: Any = None
    images: Any = None
    image_mask: Any = None
    extras: dict[str, Any] = struct.field(default_factory=dict)
    group_size: int | None = struct.field(pytree_node=False, default=None)

    @property
    def num_rows(self) -> int:
        return int(self.tokens.shape[0])


@struct.dataclass
class Batch(Rollout):
    """What a loss reads: a ``Rollout`` after ``advantages`` plus the global normalizers."""

    advantages: Any = None
    is_weights: Any = None
    num_tokens: Any = None
    num_seqs: Any = None
