"""IGPO: Inpainting-Guided Policy Optimization for masked-diffusion LMs.

Citation: Siyan Zhao, Mengchen Liu, Jing Huang, Miao Liu, Chenyu Wang, Bo Liu, Yuandong Tian,
Guan Pang, Sean Bell, Aditya Grover, Feiyu Chen, "Inpainting-Guided Policy Optimization for
Diffusion Large Language Models", 2025, https://arxiv.org/abs/2509.10396; official code
https://github.com/facebookresearch/igpo (``trainer_igpo.py``, ``utils/generate.py``). Log-prob
estimation follows d1 (Zhao et al., "d1: Scaling Reasoning in Diffusion Large Language Models via
Reinforcement Learning", https://arxiv.org/abs/2504.12216, https://github.com/dllm-reasoning/d1).

Objective (minimized), for a group of ``G`` canvases ``o_i`` of one prompt ``q``, PPO iteration
``mu`` with its random mask ``M^mu`` over completion positions:

    log pi(o_{i,k})  ~=  log p_theta(o_{i,k} | q~, o~_i)   (one denoising step; o~: o_i with the
                                                           positions of M^mu set to [MASK], q~: q
                                                           with a fraction p_mask_prompt masked)
    s_i   = exp( (1/L) sum_{k=1..L} (log pi_theta - log pi_old)(o_{i,k}) )   (GSPO ratio over the
                                                                            whole canvas, code)
    l_ik  = -min(s_i A_i, clip(s_i, 1-eps, 1+eps) A_i) + beta * k3(pi_theta, pi_ref)_{ik}
    L     = sum_{i,k} F_{ik} l_ik / sum_{i,k} F_{ik}
    A_i   = R_i - mean_g R_g                                          (no std division, code)

``F = M^mu`` restricted, on hint (inpainted) positions, to the top ``entropy_keep_ratio`` of them by
predictive entropy (at least one); self-generated positions are all kept.

Inpainting (the rollout side, ``hint_canvas`` / ``replace_with_inpainted``): for a group whose G
samples are all wrong, draw ``eta_g ~ U[eta_low, eta_high]`` (sorted), reveal a fraction ``eta_g``
of the reference trace as chunks of ``chunk_min..chunk_max`` tokens fixed in the canvas
(``inpaint_mask``), sample the rest, and put the correct inpainted samples into slots 0, 1, ... of
the group (at most ``max_replacements``).

Differs from GRPO in:
  1. The policy is a masked-diffusion LM: token log-probs are one-step denoising estimates under a
     fresh random mask per PPO iteration, and only masked positions enter the loss.
  2. All-wrong groups are resampled with ground-truth hint chunks inpainted; correct inpainted
     samples replace originals, so the group gets a nonzero advantage.
  3. Hint tokens are off-policy: only their highest-entropy fraction is kept in the loss.
  4. Advantage ``R - mean(R)`` (no std); sequence-level (GSPO) ratio averaged over the whole
     canvas; ``beta = 0.01`` k3 KL to the reference.

Ambiguities resolved here (see the paper's code): the sequence ratio averages over all completion
positions, masked or not (``use_gspo``, ``sum / size(1)``); hint tokens CAN be masked by the
log-prob mask (the code's forward process masks every completion position alike; otherwise the
entropy filter would have nothing to filter); the prompt is left unmasked by default
(``p_mask_prompt = 0``, the IGPO code; d1 uses 0.15); the chunk subset is a random order of
consecutive chunks taken until ``eta`` of the trace is covered.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.mdlm import sampler
from jaxrl_llm.mdlm.model import token_logprobs
from jaxrl_llm.ops import advantages as adv_ops
from jaxrl_llm.ops import clipping, entropy, kl
from jaxrl_llm.types import Array, Metrics

NAME = "igpo"
PAPER = "Inpainting-Guided Policy Optimization for Diffusion Large Language Models"
PAPER_URL = "https://arxiv.org/abs/2509.10396"


@dataclasses.dataclass(frozen=True)
class Config:
    eps: float = 0.2  # epsilon of the clip
    beta: float = 0.01  # KL weight (k3 against the reference)
    ratio: str = "sequence"  # "sequence": GSPO ratio over the canvas (run_igpo.sh use_gspo=true); "token"
    entropy_keep_ratio: float = 0.2  # entropy_clipping_ratio_inpaint; 1.0 keeps every masked hint token
    num_iterations: int = 4  # mu, PPO iterations (each with its own random mask)
    d1_masking: bool = True  # every iteration masks all completion positions (mask ratio 1)
    p_mask_prompt: float = 0.0  # fraction of prompt tokens masked for log-prob estimation (d1: 0.15)
    eta_low: float = 0.2  # inpaint_chunk_ratio_low
    eta_high: float = 0.6  # inpaint_chunk_high_initial_ratio
    chunk_min: int = 5  # hint chunk sizes in [chunk_min, chunk_max]
    chunk_max: int = 10
    reserve_tail: int = 30  # canvas positions kept free after the trace
    max_scale: float = 1.5  # cap of the spacing scale s = clip((L - reserve) / |trace|, 1, max_scale)
    max_replacements: int = 4  # at most this many originals replaced per all-wrong group

    def __post_init__(self):
        if self.ratio not in ("sequence", "token"):
            raise ValueError(f"igpo.Config: ratio={self.ratio!r}, expected 'sequence' or 'token'")
        if not 0.0 < self.entropy_keep_ratio <= 1.0:
            raise ValueError(f"igpo.Config: entropy_keep_ratio={self.entropy_keep_ratio} must be in (0, 1]")
        if not 0.0 <= self.eta_low <= self.eta_high <= 1.0:
            raise ValueError(f"igpo.Config: need 0 <= eta_low={self.eta_low} <= eta_high={self.eta_high} <= 1")
        if not 1 <= self.chunk_min <= self.chunk_max:
            raise ValueError(f"igpo.Config: need 1 <= chunk_min={self.chunk_min} <= chunk_max={self.chunk_max}")


# ----------------------------------------------------------------------------- advantages


def advantages(rewards: Array, group_size: int) -> Array:
    """``A_i = R_i - mean_g R_g`` over each group of ``group_size`` consecutive rows. ``[B] -> [B]``."""
    return adv_ops.group_centered(rewards, group_size)


def all_wrong_groups(correct: Array, group_size: int) -> Array:
    """``[B] bool -> [B / group_size] bool``: groups with no correct sample."""
    return ~jnp.any(correct.reshape(-1, group_size), axis=1)


# ----------------------------------------------------------------------------- inpainting


def inpaint_ratios(rng: np.random.Generator, group_size: int, cfg: Config) -> np.ndarray:
    """``eta_g ~ U[eta_low, eta_high]``, sorted ascending. ``[G]``."""
    return np.sort(rng.uniform(cfg.eta_low, cfg.eta_high, size=group_size))


def hint_canvas(
    trace: np.ndarray, canvas_len: int, eta: float, rng: np.random.Generator, cfg: Config
) -> tuple[np.ndarray, np.ndarray]:
    """Hint chunks of the reference ``trace`` (token ids) placed on an answer canvas.

    The trace is truncated to ``canvas_len - reserve_tail`` tokens and cut into consecutive chunks
    of random sizes in ``[chunk_min, chunk_max]``; chunks are taken in a random order until at
    least ``eta * |trace|`` tokens are revealed (none when ``eta == 0``). Trace position ``j`` goes
    to canvas position ``floor(j * s)``, ``s = clip((canvas_len - reserve_tail) / |trace|, 1,
    max_scale)``. Returns ``(tokens [L] int32, inpaint_mask [L] bool)``.
    """
    L = canvas_len
    budget = max(L - cfg.reserve_tail, 0)
    trace = np.asarray(trace)[:budget]
    tokens, mask = np.zeros(L, np.int32), np.zeros(L, bool)
    n = len(trace)
    if n == 0 or eta <= 0:
        return tokens, mask
    scale = min(max(budget / n, 1.0), cfg.max_scale)
    bounds, start = [], 0
    while start < n:
        size = int(rng.integers(cfg.chunk_min, cfg.chunk_max + 1))
        bounds.append((start, min(start + size, n)))
        start += size
    target = math.ceil(eta * n)
    revealed = 0
    for c in rng.permutation(len(bounds)):
        if revealed >= target:
            break
        a, b = bounds[c]
        pos = np.minimum(np.floor(np.arange(a, b) * scale).astype(int), L - 1)
        tokens[pos] = trace[a:b]
        mask[pos] = True
        revealed += b - a
    return tokens, mask


def replace_with_inpainted(
    tokens: Array,
    rewards: Array,
    correct: Array,
    inp_tokens: Array,
    inp_rewards: Array,
    inp_correct: Array,
    inp_mask: Array,
    group_size: int,
    max_replacements: int,
) -> tuple[Array, Array, Array, Array, Array]:
    """IGPO's replacement rule, per group of ``group_size`` consecutive rows.

    In a group whose originals are all wrong, original slot ``j`` (``j = 0, 1, ...``) takes the
    ``j``-th correct inpainted sample, for ``j < min(#correct inpainted, max_replacements)``.
    Other groups and slots are unchanged.

    Args: ``tokens``/``inp_tokens`` [B, L]; ``rewards``/``inp_rewards`` [B]; ``correct``/
    ``inp_correct`` [B] bool; ``inp_mask`` [B, L] bool, the hint positions of the inpainted rows.

    Returns ``(tokens [B, L], rewards [B], correct [B], inpaint_mask [B, L], replaced [B] bool)``.
    """
    B, L = tokens.shape
    P, G = B // group_size, group_size
    wrong = all_wrong_groups(correct, G)  # [P]
    inp_ok = inp_correct.reshape(P, G)
    src = jnp.argsort(~inp_ok, axis=1, stable=True)  # correct inpainted samples first, in order
    n_ok = jnp.minimum(jnp.sum(inp_ok, axis=1), max_replacements)  # [P]
    replaced = wrong[:, None] & (jnp.arange(G)[None] < n_ok[:, None])  # [P, G]

    def take(x):
        xg = x.reshape(P, G, *x.shape[1:])
        picked = jnp.take_along_axis(xg, src.reshape(P, G, *([1] * (x.ndim - 1))), axis=1)
        return picked.reshape(x.shape)

    r = replaced.reshape(B)
    r2 = r[:, None]
    return (
        jnp.where(r2, take(inp_tokens), tokens),
        jnp.where(r, take(inp_rewards), rewards),
        jnp.where(r, take(inp_correct), correct),
        jnp.where(r2, take(inp_mask), False),
        r,
    )


# ----------------------------------------------------------------------------- log-probs


def mask_ratios(key: Array, cfg: Config) -> Array:
    """Completion mask ratio of each PPO iteration ``[mu]``: all 1 with ``d1_masking``; otherwise
    ``t_0 ~ U(0, 1)`` then ``mu - 1`` ratios evenly spaced from ``t_0`` up to 1 (the IGPO code's
    structured timesteps)."""
    mu = cfg.num_iterations
    if cfg.d1_masking or mu == 1:
        return jnp.ones((mu,)) if cfg.d1_masking else jax.random.uniform(key, (1,))
    t0 = jax.random.uniform(key, ())
    return jnp.concatenate([t0[None], t0 + (1.0 - t0) * jnp.arange(1, mu) / (mu - 1)])


def estimation_mask(
    key: Array, prompt: Array, completion: Array, mask_ratio: Array, p_mask_prompt: float, mask_id: int
) -> tuple[Array, Array]:
    """The noisy input of one log-prob estimate.

    Each completion position is masked with probability ``mask_ratio`` (all of them at 1), each
    prompt position with probability ``p_mask_prompt``. ``prompt`` [B, P], ``completion`` [B, L].
    Returns ``(noisy [B, P + L], masked [B, L] bool)``: the model input and the completion
    positions whose log-probs are estimated.
    """
    k_p, k_c = jax.random.split(key)
    masked = jax.random.uniform(k_c, completion.shape) < mask_ratio
    prompt_masked = jax.random.uniform(k_p, prompt.shape) < p_mask_prompt
    noisy = jnp.concatenate([jnp.where(prompt_masked, mask_id, prompt), jnp.where(masked, mask_id, completion)], axis=1)
    return noisy, masked


def completion_logprobs(logits: Array, completion: Array) -> tuple[Array, Array]:
    """One-step denoising log-probs and entropies of the completion. ``logits`` [B, P + L, V] of the
    noisy input, ``completion`` [B, L]. Returns ``(logprobs [B, L], entropies [B, L])``."""
    L = completion.shape[1]
    c_logits = logits[:, -L:]
    # [MASK]'s logit is -inf; entropy.from_logits handles it (p = 0, no 0 * log 0).
    finite = jnp.where(jnp.isfinite(c_logits), c_logits, -1e30)
    return token_logprobs(c_logits, completion), entropy.from_logits(finite)


def entropy_filter(masked: Array, inpaint_mask: Array, entropies: Array, keep_ratio: float) -> Array:
    """Loss positions ``F [B, L]``: every masked self-generated position, and of the masked hint
    positions of each row (``n`` of them) the ``max(1, floor(n * keep_ratio))`` with the highest
    entropy (none when ``n = 0``)."""
    hint = masked & inpaint_mask
    n = jnp.sum(hint, axis=1)
    k = jnp.where(n > 0, jnp.maximum(1, jnp.floor(n * keep_ratio).astype(jnp.int32)), 0)
    keep = sampler.select_top_k(jnp.where(hint, entropies, -jnp.inf), k)
    return (masked & ~inpaint_mask) | keep


# ----------------------------------------------------------------------------- loss


def loss(logprobs: Array, batch, cfg: Config) -> tuple[Array, Metrics]:
    """The IGPO loss of the module docstring (a scalar to minimize) and its metrics.

    ``logprobs`` [B, L]: one-step log-probs under this iteration's mask. ``batch`` (a mapping):
      ``old_logprobs`` [B, L] (same mask, behaviour policy), ``ref_logprobs`` [B, L] (needed when
      ``beta > 0``), ``advantages`` [B], ``mask`` [B, L] (the filtered loss positions ``F``),
      ``canvas_mask`` [B, L] (positions the sequence ratio averages over: the whole canvas),
      ``num_tokens`` (``sum F`` over the whole optimization batch: the global normalizer).
    """
    mask = batch["mask"].astype(jnp.float32)
    old = batch["old_logprobs"]
    adv = batch["advantages"][:, None]  # [B, 1]
    num_tokens = batch["num_tokens"]
    if cfg.ratio == "sequence":
        canvas = batch["canvas_mask"].astype(jnp.float32)
        log_s = jnp.sum((logprobs - old) * canvas, axis=1) / jnp.maximum(jnp.sum(canvas, axis=1), 1.0)  # [B]
        ratio = jnp.broadcast_to(jnp.exp(log_s)[:, None], logprobs.shape)  # [B, L]
    else:
        ratio = jnp.exp(logprobs - old)  # [B, L]
    policy_tok = clipping.clipped_surrogate(ratio, adv, cfg.eps, cfg.eps)  # [B, L]
    policy = jnp.sum(policy_tok * mask) / num_tokens
    total = policy
    metrics: Metrics = {"loss/policy": policy}
    if cfg.beta > 0:
        kl_tok = kl.k3(logprobs, batch["ref_logprobs"])  # [B, L]
        kl_mean = jnp.sum(kl_tok * mask) / num_tokens
        total = total + cfg.beta * kl_mean
        metrics["kl"] = kl_mean
    clipped = (jnp.abs(ratio - 1.0) > cfg.eps).astype(jnp.float32)
    metrics["clip_frac"] = jnp.sum(clipped * mask) / num_tokens
    metrics["loss"] = total
    return total, metrics
