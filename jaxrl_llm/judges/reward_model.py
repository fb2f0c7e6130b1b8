"""A Bradley-Terry reward model: a scalar head on a decoder, trained on preference pairs.

The score of a completion is a linear head on the decoder's final hidden state at the last real
token of ``[prompt | completion]`` (the same trunk + head layout as the critic, ``models/critic.py``):

    r_phi(x, y) = w . h_L(x, y)[last] + b
    L(phi) = E_pairs[ -log sigma(r_phi(x, y_w) - r_phi(x, y_l)) ]       (Bradley & Terry, 1952)

as the reward models of InstructGPT (Ouyang et al. 2022, https://arxiv.org/abs/2203.02155, Eq. 1)
and TRL's ``RewardTrainer`` (https://github.com/huggingface/trl). Trained in-repo (no preference
data or reward model ships offline) on pairs built from a verifiable task (``verifiable_pairs``:
the task's reference answer versus a wrong one, each labelled by the task's own verifier),
evaluated by held-out pair accuracy and by agreement with the verifiable reward, saved as
safetensors + JSON, and usable as a judge (``RewardModel.score``). A checkpoint whose tensors do
not match the model it names is a ``RewardModelError`` naming the tensor and both shapes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxrl_llm import models, tasks
from jaxrl_llm.errors import UserError
from jaxrl_llm.models import critic
from jaxrl_llm.models.logprobs import positions_from_mask
from jaxrl_llm.types import Example

Pair = tuple[Example, str, str]  # (prompt, chosen completion, rejected completion)


class RewardModelError(UserError):
    """A reward-model checkpoint that cannot be loaded (missing file, wrong tensor names or shapes)."""


def scores(graphdef: Any, params: dict[str, Any], tokens: jax.Array, attention: jax.Array) -> jax.Array:
    """``r_phi`` ``[B]`` f32 of left-padded ``[prompt | completion]`` rows ``tokens`` [B, S]: the head
    on the hidden state of the last position (the last real token)."""
    trunk = nnx.merge(graphdef, params["trunk"])
    hidden, _ = trunk.hidden_states(tokens, positions_from_mask(attention), attention)
    w, b = params["head"]["w"][...], params["head"]["b"][...]
    return hidden[:, -1].astype(jnp.float32) @ w.astype(jnp.float32) + b


def bt_loss(graphdef: Any, params: dict[str, Any], chosen: tuple, rejected: tuple) -> tuple[jax.Array, jax.Array]:
    """``mean -log sigma(r(y_w) - r(y_l))`` over a batch of pairs, and the pair accuracy."""
    margin = scores(graphdef, params, *chosen) - scores(graphdef, params, *rejected)
    return -jnp.mean(jax.nn.log_sigmoid(margin)), jnp.mean((margin > 0).astype(jnp.float32))


@dataclasses.dataclass
class RewardModel:
    """A trained BT reward model: ``model_name`` (a zoo name), its graph, params
    ``{"trunk", "head"}``, tokenizer, and the token budget ``max_len`` of ``[prompt | completion]``."""

    model_name: str
    graphdef: Any
    params: dict[str, Any]
    tokenizer: Any
    max_len: int

    def encode(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded ``[prompt | completion]`` tokens and mask [N, max_len]; longer rows keep
        their last ``max_len`` tokens (the completion's end is what is scored)."""
        rows = []
        for p, c in zip(prompts, completions):
            text = tasks.render_prompt(p, self.tokenizer) + c
            rows.append(list(self.tokenizer(text, add_special_tokens=False)["input_ids"])[-self.max_len :])
        tokens = np.zeros((len(rows), self.max_len), np.int32)
        mask = np.zeros((len(rows), self.max_len), np.int32)
        for i, r in enumerate(rows):
            tokens[i, self.max_len - len(r) :] = r
            mask[i, self.max_len - len(r) :] = 1
        return tokens, mask

    def score(self, prompts: Sequence[Example], completions: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """The judge interface: ``r_phi`` of each completion, and "reward model" as rationale."""
        if len(prompts) != len(completions):
            raise ValueError(f"RewardModel: {len(prompts)} prompts but {len(completions)} completions")
        tokens, mask = self.encode(prompts, completions)
        out = _jit_scores(self.graphdef, self.params, jnp.asarray(tokens), jnp.asarray(mask))
        return np.asarray(out, np.float32), ["reward model"] * len(completions)


_jit_scores = jax.jit(scores, static_argnums=(0,))


def create(model_name: str, max_len: int = 64, seed: int = 0) -> RewardModel:
    """An untrained reward model: the zoo decoder ``model_name`` as trunk, a zero head."""
    model, tokenizer = models.get_model(model_name, dtype="float32", seed=seed)
    graphdef, trunk = nnx.split(model)
    hidden = int(trunk["embed"][...].shape[-1])
    return RewardModel(model_name, graphdef, {"trunk": trunk, "head": critic.init_head(hidden)}, tokenizer, max_len)


def verifiable_pairs(task: Any, num_pairs: int, seed: int = 0, split: str = "train") -> list[Pair]:
    """Preference pairs from a verifiable task with numeric answers: chosen
    ``<answer>{reference}</answer>``, rejected the same with the answer moved by 1-3. Both are
    scored by the task's reward functions; a pair is kept only if the verifier prefers the chosen
    one (so the labels are the verifier's, not the construction's)."""
    rng = np.random.default_rng(seed)
    get = task.train_example if split == "train" else task.eval_example
    size = task.num_train if split == "train" else task.num_eval
    out: list[Pair] = []
    for i in rng.permutation(size):
        e = get(int(i))
        try:
            value = int(str(e.answer).strip())
        except ValueError:
            continue
        chosen = f"<answer>{value}</answer>"
        rejected = f"<answer>{value + int(rng.choice([-3, -2, -1, 1, 2, 3]))}</answer>"
        r = [sum(w * fn(c, e) for fn, w in task.reward_fns) for c in (chosen, rejected)]
        if r[0] > r[1]:
            out.append((e, chosen, rejected))
        if len(out) == num_pairs:
            break
    return out


def train(
    rm: RewardModel, pairs: Sequence[Pair], steps: int, batch_size: int = 16, learning_rate: float = 1e-3, seed: int = 0
) -> list[dict[str, float]]:
    """Fits ``rm`` (in place) to the pairs with AdamW on the BT loss; returns per-step metrics."""
    if not pairs:
        raise ValueError("reward_model.train: no preference pairs")
    chosen = rm.encode([p for p, _, _ in pairs], [c for _, c, _ in pairs])
    rejected = rm.encode([p for p, _, _ in pairs], [r for _, _, r in pairs])
    tx = optax.adamw(learning_rate)
    opt_state = tx.init(rm.params)
    graphdef = rm.graphdef

    @jax.jit
    def step(params, opt_state, idx):
        c = tuple(jnp.asarray(x)[idx] for x in chosen)
        r = tuple(jnp.asarray(x)[idx] for x in rejected)
        (loss, acc), grads = jax.value_and_grad(lambda p: bt_loss(graphdef, p, c, r), has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    rng = np.random.default_rng(seed)
    history = []
    for s in range(steps):
        idx = jnp.asarray(rng.choice(len(pairs), size=min(batch_size, len(pairs)), replace=False))
        rm.params, opt_state, loss, acc = step(rm.params, opt_state, idx)
        history.append({"step": s + 1, "loss": float(loss), "pair_accuracy": float(acc)})
    return history


def pair_accuracy(rm: RewardModel, pairs: Sequence[Pair]) -> float:
    """Fraction of pairs with ``r(y_w) > r(y_l)``."""
    prompts = [p for p, _, _ in pairs]
    sc, _ = rm.score(prompts, [c for _, c, _ in pairs])
    sr, _ = rm.score(prompts, [r for _, _, r in pairs])
    return float(np.mean(sc > sr))


def agreement(rm: RewardModel, prompts: Sequence[Example], completions: Sequence[str], rewards: np.ndarray) -> float:
    """Agreement with a verifiable reward: over all pairs of completions OF THE SAME PROMPT whose
    rewards differ, the fraction the reward model orders the same way (NaN when there are none)."""
    sc, _ = rm.score(prompts, completions)
    rewards = np.asarray(rewards, np.float64)
    agree = total = 0
    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            if prompts[i].id == prompts[j].id and rewards[i] != rewards[j]:
                total += 1
                agree += int((sc[i] - sc[j]) * (rewards[i] - rewards[j]) > 0)
    return agree / total if total else float("nan")


def _flat(params: dict[str, Any]) -> dict[str, np.ndarray]:
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.State(params)))[0]:
        flat[".".join(str(getattr(k, "key", k)) for k in path)] = np.asarray(jax.device_get(leaf), np.float32)
    return flat


def save(rm: RewardModel, out_dir: str | pathlib.Path) -> pathlib.Path:
    """``reward_model.safetensors`` (flattened names, e.g. ``head.w``) and ``reward_model.json``
    (the zoo model's name and ``max_len``) in ``out_dir``; returns the directory."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(_flat(rm.params), str(out_dir / "reward_model.safetensors"))
    (out_dir / "reward_model.json").write_text(json.dumps({"model": rm.model_name, "max_len": rm.max_len}))
    return out_dir


def load(directory: str | pathlib.Path) -> RewardModel:
    """A saved reward model. ``RewardModelError`` (one line, naming the file, the tensor and the
    shapes) when a file is missing or a tensor is absent, extra, or of another shape."""
    directory = pathlib.Path(directory)
    meta_path, weights_path = directory / "reward_model.json", directory / "reward_model.safetensors"
    for p in (meta_path, weights_path):
        if not p.exists():
            raise RewardModelError(f"{p}: no such file (a reward-model checkpoint needs both .json and .safetensors)")
    meta = json.loads(meta_path.read_text())
    rm = create(meta["model"], int(meta["max_len"]))
    expected = _flat(rm.params)
    found = load_file(str(weights_path))
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise RewardModelError(
            f"{weights_path}: tensors do not match model {meta['model']!r}: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, value in expected.items():
        if found[name].shape != value.shape:
            raise RewardModelError(
                f"{weights_path}: tensor {name!r} has shape {found[name].shape}, model {meta['model']!r} needs {value.shape}"
            )
    pure = nnx.to_pure_dict(nnx.State(rm.params))
    leaves_with_path = jax.tree_util.tree_flatten_with_path(pure)
    names = [".".join(str(getattr(k, "key", k)) for k in path) for path, _ in leaves_with_path[0]]
    restored = jax.tree_util.tree_unflatten(leaves_with_path[1], [jnp.asarray(found[n]) for n in names])
    state = nnx.State(rm.params)
    nnx.replace_by_pure_dict(state, restored)
    rm.params = {"trunk": state["trunk"], "head": state["head"]}
    return rm
