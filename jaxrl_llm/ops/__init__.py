"""The shared vocabulary of every objective: pure, batch-first, masked array functions.

Modules (import the module, call ``kl.k3(...)``):

* ``masked``      masked sum / mean / var / std / max / min, whitening
* ``advantages``  group-normalized, group-centered, leave-one-out, batch-normalized, returns, GAE
* ``ratios``      token ratio, GSPO sequence ratio and its token form
* ``clipping``    asymmetric clipped surrogate, dual-clip, clip masks
* ``kl``          k1, k2, k3 and straight-through k1+ / k3+
* ``entropy``     entropy from logits, sampled estimate
* ``aggregation`` token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm
* ``rollout_correction`` truncated / masked importance weights (token and sequence level)
* ``diagnostics`` shared metric keys (clip fractions, ratio stats)
* ``inputs``      validation and f32 upcast of a loss's batch
* ``policy_loss`` the shared PPO-clip loss: ratio, clipped surrogate, aggregation, KL, metrics

Sign: every per-token "loss" here is to be MINIMIZED. Masked entries (``mask == 0``) never affect a
value or a gradient. Global normalizers are passed in, never computed from a local mask.
"""
