"""FIND (https://arxiv.org/abs/2407.19453, code https://github.com/vpx-ecnu/FIND) on diffusion models
trained in-repo: a 2-D 8-Gaussian ring, then scikit-learn's 8x8 digits.

For each dataset: train (or load the cached) DDPM, freeze it, then compare, at the same number of
reward queries, (a) sampling from the unchanged prior N(0, I), (b) FIND (a learned N(mu, sigma^2)
over the initial noise, prior-anchored hard clamp, value baseline), (c) fine-tuning the denoiser's
weights with the same reward, DDPO-style (REINFORCE over the eta=1 DDIM chain, Black et al.,
"Training Diffusion Models with Reinforcement Learning", https://arxiv.org/abs/2305.13301, the
"DDPO_SF" estimator, one gradient step per batch, rewards whitened over the batch). Reported: the
reward of 1000 fresh samples, their diversity (mean pairwise distance; entropy of the nearest-mode
/ predicted-class histogram), the drift ||mu||, per seed.

Command (CPU, needs the optional extra for the digits part: pip install 'jaxrl-llm[diffusion]'):
    python experiments/find.py --out experiments/results/find --seeds 3
    python experiments/find.py --out /tmp/find --seeds 1 --steps 50 --skip-digits   # smoke run

Hardware: the project's 2-core CPU machine, f32, shared with other jobs (wall times in the JSON are
load-dependent). The frozen DDPMs are cached under runs/find/.

Writes ``<out>.json`` (all numbers) and ``<out>.png`` (2-D samples, reward curves, digit samples).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from flax import nnx

from jaxrl_llm.diffusion import ddpm, find, reward

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CACHE = pathlib.Path("runs/find")


def pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of rows of ``x`` [n, D]."""
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def entropy(labels: np.ndarray, k: int) -> float:
    """Entropy (nats) of the histogram of integer ``labels`` over ``k`` classes."""
    p = np.bincount(labels, minlength=k) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def ddim_chain(eps_fn, x_T, abar, ts, eta, key, clip_x0):
    """DDIM like ``ddpm.ddim_sample`` but also returning every state ``xs`` [S+1, B, D] (the DDPO
    trajectory) and the per-step noise scales ``sigma`` [S]."""
    abar_prev, sigma = ddpm.ddim_sigmas(abar, ts, eta)
    keys = jax.random.split(key, ts.shape[0])

    def body(x, inp):
        t, a_p, s, k = inp
        x_p = ddpm.ddim_step_mean(eps_fn, x, t, abar[t], a_p, s, clip_x0) + s * jax.random.normal(k, x.shape)
        return x_p, x_p

    _, xs = jax.lax.scan(body, x_T, (ts, abar_prev, sigma, keys))
    return jnp.concatenate([x_T[None], xs]), sigma


def ddpo(graphdef, state, abar, ts, reward_fn, dim, *, steps, batch_size, lr, key, clip_x0):
    """DDPO_SF: ``grad = -mean_b A_b sum_i grad log N(x_{i+1}; mu_theta(x_i, t_i), sigma_i^2)`` over the
    stochastic steps (sigma_i > 0) of the eta=1 chain; A = whitened rewards. Returns the fine-tuned
    state and the per-step mean reward."""
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    abar_prev, _ = ddpm.ddim_sigmas(abar, ts, 1.0)

    def one(carry, k):
        st, opt_state = carry
        k_z, k_c = jax.random.split(k)
        eps_old = ddpm.eps_fn_of(graphdef, st)
        xs, sigma = ddim_chain(eps_old, jax.random.normal(k_z, (batch_size, dim)), abar, ts, 1.0, k_c, clip_x0)
        xs = jax.lax.stop_gradient(xs)
        r = reward_fn(xs[-1])  # [B]
        adv = (r - r.mean()) / (r.std() + 1e-6)  # [B]
        live = sigma > 0  # [S]

        def surrogate(p):
            eps_fn = ddpm.eps_fn_of(graphdef, p)

            def step_logp(x, t, a_p, s, x_next):
                mean = ddpm.ddim_step_mean(eps_fn, x, t, abar[t], a_p, s, clip_x0)
                return -0.5 * jnp.sum((x_next - mean) ** 2, -1) / jnp.maximum(s, 1e-8) ** 2  # [B]

            logp = jax.vmap(step_logp)(xs[:-1], ts, abar_prev, sigma, xs[1:])  # [S, B]
            logp = jnp.sum(jnp.where(live[:, None], logp, 0.0), axis=0)  # [B]
            return -jnp.mean(adv * logp)

        grads = jax.grad(surrogate)(st)
        updates, opt_state = opt.update(grads, opt_state, st)
        return (optax.apply_updates(st, updates), opt_state), r.mean()

    (state, _), rewards = jax.jit(lambda s, ks: jax.lax.scan(one, (s, opt.init(s)), ks))(
        state, jax.random.split(key, steps)
    )
    return state, np.asarray(rewards)


def evaluate(generate, reward_fn, labels_fn, k, mean, std, key, n=1000):
    """Reward, diversity and labels of ``n`` fresh samples from noise ``N(mean, std^2)``."""
    k_z, k_g = jax.random.split(key)
    z = mean + std * jax.random.normal(k_z, (n, mean.shape[0]))
    x = generate(z, k_g)
    labels = np.asarray(labels_fn(x))
    xs = np.asarray(x)
    return {
        "reward": float(jnp.mean(reward_fn(x))),
        "pairwise_distance": pairwise_distance(xs[:500]),
        "label_entropy": entropy(labels, k),
    }, xs


def noise_sensitivity(samplers, dim, key, n=1000, scale=0.5):
    """Median of ``||x_0(z + d) - x_0(z)|| / ||d||`` over ``n`` noises (same chain noise for both):
    how much the initial noise, FIND's only lever, still moves the sample under each sampler."""
    k_z, k_d, k_c = jax.random.split(key, 3)
    z, d = jax.random.normal(k_z, (n, dim)), scale * jax.random.normal(k_d, (n, dim))
    out = {}
    for eta, gen in samplers.items():
        r = jnp.linalg.norm(gen(z + d, k_c) - gen(z, k_c), axis=1) / jnp.linalg.norm(d, axis=1)
        out[f"eta={eta:g}"] = float(jnp.median(r))
    return out


def run_find(cfg, dim, generate, reward_fn, steps, key, context=None):
    init, step = find.make(cfg, dim, generate, reward_fn, context)
    k_init, k_run = jax.random.split(key)
    state, metrics = jax.jit(lambda s, ks: jax.lax.scan(step, s, ks))(init(k_init), jax.random.split(k_run, steps))
    return state, {k: np.asarray(v) for k, v in metrics.items()}


def dataset_block(name, data, ddpm_cfg, train_steps, reward_fn, labels_fn, k, args, find_cfgs, clip_x0=None):
    """Everything for one dataset: the frozen model, the prior, FIND variants, DDPO; per seed."""
    t0 = time.time()
    model = ddpm.load_or_train(CACHE / f"ddpm_{name}.safetensors", ddpm_cfg, data, steps=train_steps, seed=0)
    graphdef, frozen = nnx.split(model)
    abar = ddpm.alphas_bar(ddpm_cfg.num_steps, ddpm_cfg.schedule)
    ts = ddpm.ddim_timesteps(ddpm_cfg.num_steps, args.sample_steps)
    eps_fn = ddpm.eps_fn_of(graphdef, frozen)
    samplers = {
        eta: jax.jit(lambda z, key, eta=eta: ddpm.ddim_sample(eps_fn, z, abar, ts, eta=eta, key=key, clip_x0=clip_x0))
        for eta in (0.0, 1.0)
    }
    dim = ddpm_cfg.dim
    out = {"ddpm_seconds": time.time() - t0, "runs": {}, "curves": {}, "samples": {}}
    zeros, ones = jnp.zeros(dim), jnp.ones(dim)
    out["noise_sensitivity"] = noise_sensitivity(samplers, dim, jax.random.key(7))
    print(f"[{name}] noise sensitivity {out['noise_sensitivity']}", flush=True)
    for seed in range(args.seeds):
        key = jax.random.key(1000 + seed)
        k_eval, k_find, k_ddpo = jax.random.split(key, 3)
        for eta in (0.0, 1.0):
            res, xs = evaluate(samplers[eta], reward_fn, labels_fn, k, zeros, ones, k_eval)
            out["runs"].setdefault(f"prior eta={eta:g}", []).append(res)
            out["samples"].setdefault(f"prior eta={eta:g}", xs[:400].tolist())
        for label, (cfg, eta) in find_cfgs.items():
            t1 = time.time()
            state, metrics = run_find(cfg, dim, samplers[eta], reward_fn, args.steps, k_find)
            res, xs = evaluate(
                samplers[eta], reward_fn, labels_fn, k, state.params["mean"], state.params["std"], k_eval
            )
            res.update(
                mu_norm=float(jnp.linalg.norm(state.params["mean"])),
                std_mean=float(jnp.mean(state.params["std"])),
                final_clip_frac=float(np.mean(metrics["clip_frac"][-10:])),
                seconds=time.time() - t1,
                trainable_params=2 * dim,
            )
            out["runs"].setdefault(label, []).append(res)
            out["curves"].setdefault(label, []).append(metrics["reward/mean"].tolist())
            out["samples"].setdefault(label, xs[:400].tolist())
        if not args.skip_ddpo:
            t1 = time.time()
            tuned, curve = ddpo(
                graphdef,
                frozen,
                abar,
                ts,
                reward_fn,
                dim,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.ddpo_lr,
                key=k_ddpo,
                clip_x0=clip_x0,
            )
            eps_tuned = ddpm.eps_fn_of(graphdef, tuned)
            gen = jax.jit(lambda z, key: ddpm.ddim_sample(eps_tuned, z, abar, ts, eta=1.0, key=key, clip_x0=clip_x0))
            res, xs = evaluate(gen, reward_fn, labels_fn, k, zeros, ones, k_eval)
            res.update(seconds=time.time() - t1, trainable_params=int(sum(x.size for x in jax.tree.leaves(frozen))))
            out["runs"].setdefault("DDPO weights eta=1", []).append(res)
            out["curves"].setdefault("DDPO weights eta=1", []).append(curve.tolist())
            out["samples"].setdefault("DDPO weights eta=1", xs[:400].tolist())
        print(f"[{name}] seed {seed} done ({time.time() - t0:.0f}s)", flush=True)
    return out


def summary(block):
    rows = {}
    for label, runs in block["runs"].items():
        rows[label] = {
            key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs]))) for key in runs[0]
        }
    return rows


def print_table(name, rows):
    keys = ["reward", "pairwise_distance", "label_entropy", "mu_norm", "std_mean", "final_clip_frac", "seconds"]
    print(f"\n## {name}\n| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for label, r in rows.items():
        cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" if k in r else "-" for k in keys]
        print(f"| {label} | " + " | ".join(cells) + " |")


def plot(results, path):
    ring = results["ring"]
    labels = list(ring["samples"])
    has_digits = "digits" in results
    fig, axes = plt.subplots(
        2 + has_digits, max(len(labels), 2), figsize=(3.2 * max(len(labels), 2), 3.2 * (2 + has_digits))
    )
    centers = reward.ring_centers()
    for ax, label in zip(axes[0], labels, strict=False):
        xs = np.asarray(ring["samples"][label])
        ax.scatter(xs[:, 0], xs[:, 1], s=3, alpha=0.5)
        ax.scatter(*centers[results["ring_target"]], marker="*", s=150, c="r")
        ax.set_title(label, fontsize=8)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    for ax, (name, block) in zip(axes[1], [(n, results[n]) for n in ("ring", "digits") if n in results], strict=False):
        for label, curves in block["curves"].items():
            c = np.asarray(curves)
            ax.plot(c.mean(0), label=label)
            ax.fill_between(np.arange(c.shape[1]), c.min(0), c.max(0), alpha=0.2)
        ax.set_title(f"{name}: batch reward per step (mean, min-max over seeds)", fontsize=8)
        ax.set_xlabel("step (one batch of reward queries)")
        ax.legend(fontsize=6)
    for ax in axes[1][2:]:
        ax.axis("off")
    if has_digits:
        dig = results["digits"]
        for ax, label in zip(axes[2], list(dig["samples"]), strict=False):
            xs = np.pad(
                np.asarray(dig["samples"][label])[:36].reshape(6, 6, 8, 8),
                ((0, 0), (0, 0), (1, 0), (1, 0)),
                constant_values=-1,
            )
            xs = xs.transpose(0, 2, 1, 3).reshape(54, 54)
            ax.imshow(xs, cmap="gray_r", vmin=-1, vmax=1)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
        for ax in axes[2][len(dig["samples"]) :]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/results/find")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200, help="FIND / DDPO iterations (batches of reward queries)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=20, help="DDIM steps of the frozen sampler")
    p.add_argument("--find-lr", type=float, default=1e-2)
    p.add_argument("--ddpo-lr", type=float, default=1e-4)
    p.add_argument("--target", type=int, default=1, help="ring mode / digit class to reward")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--skip-ddpo", action="store_true")
    args = p.parse_args()

    base = find.Config(lr=args.find_lr, batch_size=args.batch_size)
    find_cfgs = {
        "FIND eta=0 eps=0.2": (base, 0.0),
        "FIND eta=0 eps=0.8": (dataclasses.replace(base, eps=0.8), 0.0),
        "FIND eta=1 eps=0.2": (base, 1.0),
    }
    results = {"args": vars(args), "find_config": dataclasses.asdict(base), "ring_target": args.target}
    centers = jnp.asarray(reward.ring_centers())
    target = centers[args.target]
    results["ring"] = dataset_block(
        "ring",
        reward.ring_data(8192, seed=0),
        ddpm.DDPMConfig(dim=2, hidden=128, depth=3, num_steps=100),
        3000,
        lambda x: reward.mode_reward(x, target),
        lambda x: reward.nearest_mode(x, centers),
        8,
        args,
        find_cfgs,
    )
    print_table("ring", summary(results["ring"]))

    if not args.skip_digits:
        x_tr, y_tr, x_te, y_te = reward.digits_data(seed=0)
        clf = reward.train_classifier(x_tr, y_tr, seed=0)
        results["classifier_test_accuracy"] = reward.accuracy(clf, x_te, y_te)
        clf_graph, clf_state = nnx.split(clf)

        def logits(x):
            return nnx.merge(clf_graph, clf_state)(x)

        print(f"digit classifier held-out accuracy: {results['classifier_test_accuracy']:.4f} (n={len(y_te)})")
        results["digits"] = dataset_block(
            "digits",
            x_tr,
            ddpm.DDPMConfig(dim=64, hidden=256, depth=3, num_steps=100),
            4000,
            lambda x: reward.class_reward(logits(x), args.target, "prob"),
            lambda x: jnp.argmax(logits(x), axis=-1),
            10,
            args,
            find_cfgs,
            clip_x0=1.0,  # the digits live in [-1, 1]
        )
        print_table("digits", summary(results["digits"]))

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                **{k: v for k, v in results.items() if k not in ("ring", "digits")},
                **{
                    n: {k: v for k, v in results[n].items() if k != "samples"}
                    for n in ("ring", "digits")
                    if n in results
                },
                "summary": {n: summary(results[n]) for n in ("ring", "digits") if n in results},
            }
        )
    )
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
