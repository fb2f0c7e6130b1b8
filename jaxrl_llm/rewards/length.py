"""Length shaping: DAPO's soft overlong punishment and Kimi k1.5's group length reward."""

import dataclasses

import numpy as np

from jaxrl_llm.types import Example


def overlong_penalty(lengths: np.ndarray, max_len: int, cache_len: int) -> np.ndarray:
    """DAPO soft overlong punishment (Yu et al., 2025, eq. 13), added to the task reward:

        R(y) = 0                                 if |y| <= L_max - L_cache
             = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
             = -1                                if |y| > L_max

    Args:
      lengths: [B] completion lengths (tokens, as the trainer counts them): NumPy or jax.
      max_len: L_max; cache_len: L_cache, the width of the linear ramp (0 < L_cache <= L_max).
    Returns:
      [B] f32 penalties in [-1, 0].
    """
    if not 0 < cache_len <= max_len:
        raise ValueError(
            f"overlong_penalty: need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}"
        )
    # The three cases are one clip: the ramp is >= 0 up to L_max - L_cache and reaches -1 at L_max.
    # Written with array methods only, so NumPy lengths give NumPy and traced jax lengths (DAPO's
    # ``shape_rewards`` under jit) give jax: the one implementation of the penalty.
    lengths = lengths if hasattr(lengths, "clip") else np.asarray(lengths)
    return (((max_len - cache_len) - lengths) / cache_len).clip(-1.0, 0.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class OverlongPenalty:
    """``overlong_penalty`` as a reward function over the completion's length in characters
    (for tokens, apply ``overlong_penalty`` to the rollout's ``lengths`` in the trainer)."""

    max_len: int
    cache_len: int

    def __post_init__(self):
        overlong_penalty(np.zeros(1), self.max_len, self.cache_len)

    @property
    def name(self) -> str:
        return "overlong_penalty"

    def __call__(self, completion: str, example: Example) -> float:
        return float(overlong_penalty(np.array([len(completion)]), self.max_len, self.cache_len)[0])


def group_length_reward(lengths: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Kimi k1.5 length reward (Kimi Team, 2025, §2.3.3), per group of samples of one prompt:

        lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)
        reward_i = lambda_i                if correct_i
                 = min(0, lambda_i)        otherwise

    with min/max over the group; a group whose lengths are all equal gets 0.

    Args:
      lengths: [P, G] completion lengths; correct: [P, G] bool.
    Returns:
      [P, G] f32 rewards in [-0.5, 0.5].
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if lengths.ndim != 2 or lengths.shape != correct.shape:
        raise ValueError(f"group_length_reward: need matching [P, G] arrays, got {lengths.shape} and {correct.shape}")
    lo = lengths.min(axis=1, keepdims=True)
    span = lengths.max(axis=1, keepdims=True) - lo
    lam = np.where(span > 0, 0.5 - (lengths - lo) / np.where(span > 0, span, 1.0), 0.0)
    return np.where(correct, lam, np.minimum(0.0, lam)).astype(np.float32)
