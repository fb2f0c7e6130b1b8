"""The shared vocabulary of every objective: pure, batch-first, masked array functions.

Modules (import the module, call ``kl.k3(...)``):

* ``masked``      masked sum / mean / var / std / max / min, whitening
* ``advantages``  group-normalized, group-centered, leave-one-out, batch-normalized, returns, GAE
* ``ratios``      token ratio, GSPO sequence ratio and its token form
* ``clipping``    asymmetric clipped surrogate, dual-clip, clip masks
* ``kl``          k1, k2, k3 and straight-through k1+ / k3+
* ``entropy``     entropy from logits, sampled estimate
* ``aggregation`` token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm,
                  seq-sum-token-mean, all with global normalizers
* ``rollout_correction`` truncated / masked importance weights (token and sequence level)
* ``diagnostics`` shared metric keys (clip fractions, ratio stats) and ``finalize`` (loss = policy
                  + beta * KL (+ extra), with ``loss``, ``loss/policy``, ``kl``, ``loss/kl``, ``entropy``)
* ``inputs``      validation and f32 upcast of a loss's batch
* ``clipped_terms`` the terms around a PPO-clip policy term shared by verl's ``vanilla`` losses
* ``covariance``  token covariance of advantage and log-prob, top-n token selection (Clip-Cov, KL-Cov)
* ``kl_controller`` the adaptive (target-KL) coefficient schedule of PPO for language models
* ``sequence``    sequence log-probs and pairwise log-ratio differences (DPO family, P3O, REFUEL)
* ``token_baseline`` the optimal token baseline (a per-token baseline weighted by the path's score norm)
* ``replay``      a fixed-shape per-slot FIFO of rows (ARPO's per-task buffer of successful episodes)

A method's ``loss`` writes its equation with these, one named call a line (see ``algorithms/grpo.py``)::

    x = inputs.policy_inputs(logprobs, batch, NAME, ref=cfg.beta > 0)
    ratio = ratios.token_ratio(x["logprobs"], x["old_logprobs"], mask)                    # rho  [B, T]
    per_token = clipping.clipped_surrogate(ratio, adv, cfg.eps_low, cfg.eps_high)        # [B, T]
    policy = aggregation.aggregate(per_token * x["is_weights"], mask, cfg.aggregation, nt, ns)
    kl_term = kl.penalty(x["logprobs"], x["ref_logprobs"], mask, ...) if cfg.beta > 0 else None
    metrics = diagnostics.ratio_metrics(ratio, adv, mask, nt, cfg.eps_low, cfg.eps_high)
    return diagnostics.finalize(metrics, policy, batch, mask, nt, kl_term, cfg.beta)

Sign: every per-token "loss" here is to be MINIMIZED. Masked entries (``mask == 0``) never affect a
value or a gradient. Global normalizers are passed in, never computed from a local mask.
"""
