"""Length buckets and prompt padding: static shapes so a run compiles a bounded number of times."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_BUCKET = 16


def bucket_length(n: int, minimum: int = MIN_BUCKET) -> int:
    """The smallest power of two >= max(n, minimum).

    Every length in ``[1, N]`` maps to one of ``1 + log2(N / minimum)`` buckets, so the number of
    distinct compiled shapes per dimension grows logarithmically in the longest length, while the
    padding wasted is below 2x.
    """
    if n < 0:
        raise ValueError(f"bucket_length: length must be >= 0, got {n}")
    if minimum < 1:
        raise ValueError(f"bucket_length: minimum must be >= 1, got {minimum}")
    n = max(int(n), int(minimum))
    return 1 << (n - 1).bit_length()


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, bucket: int | None = None):
    """Left-pads token lists into ``(tokens [P, Sp] int32, mask [P, Sp] int32)``.

    ``Sp`` is ``bucket`` if given (it must fit the longest prompt), else
    ``bucket_length(longest)``. Left padding puts every prompt's last token in the last column,
    where decoding continues.
    """
    if len(prompts) == 0:
        raise ValueError("pad_prompts: no prompts given")
    lengths = [len(p) for p in prompts]
    empty = [i for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(f"pad_prompts: prompts {empty[:8]} are empty; every prompt needs >= 1 token")
    longest = max(lengths)
    width = bucket_length(longest) if bucket is None else int(bucket)
    if width < longest:
        raise ValueError(
            f"pad_prompts: bucket {width} is shorter than the longest prompt "
            f"({longest} tokens, prompt {lengths.index(longest)})"
        )
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p) :] = np.asarray(p, np.int32)
        mask[i, width - len(p) :] = 1
    return tokens, mask
