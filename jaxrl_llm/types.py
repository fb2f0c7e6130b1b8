"""The arrays that flow between sampler, rewards, algorithms and trainer.

Shape letters: P prompts, G group size, B = P * G sequences, T completion length,
S full (prompt + completion) length, V vocabulary, L layers.

Ordering convention: rows are group-major. Row ``b`` is sample ``b % G`` of prompt
``b // G``, so ``x.reshape(P, G, ...)`` recovers the groups.

A ``Rollout`` (what the trainer assembles after sampling and scoring; plain dict of arrays):

  ``tokens``          [B, T] int32  completion token ids (padding after the stop is arbitrary)
  ``mask``            [B, T] f32    1 for completion tokens that count, 0 for padding
  ``rewards``         [B]    f32    scalar reward per sequence
  ``group_ids``       [B]    int32  prompt index of each row (== b // G)
  ``sampler_logprobs`` [B, T] f32   log-prob of each sampled token under the distribution
                                    actually sampled from (temperature / top-k / top-p applied)
  ``policy_logprobs`` [B, T] f32    (optional) the same tokens under the unmodified policy
  ``entropies``       [B, T] f32    (optional) entropy of the sampling distribution per step
  ``lengths``         [B]    int32  completion lengths
  plus whatever a method declares it needs (``values``, ``budgets``, ``prompt_ids``, ...).

A loss ``Batch`` is a ``Rollout`` after ``advantages`` (plain dict of arrays), with:

  ``old_logprobs``  [B, T] f32  log-probs under the policy that generated the data (pi_old)
  ``ref_logprobs``  [B, T] f32  (only when the method's KL weight is nonzero)
  ``advantages``    [B] or [B, T] f32
  ``num_tokens``    []  f32  sum of ``mask`` over the WHOLE optimization batch
  ``num_seqs``      []  f32  number of sequences in the WHOLE optimization batch

``num_tokens`` / ``num_seqs`` are global normalizers: a loss evaluated on one micro-batch
returns that micro-batch's share of the full-batch loss, so summing losses (and gradients)
over micro-batches or devices gives exactly the full-batch value.
"""

from typing import Any, Mapping

import jax

Array = jax.Array
Rollout = Mapping[str, Any]
Batch = Mapping[str, Any]
Metrics = dict[str, Array]
