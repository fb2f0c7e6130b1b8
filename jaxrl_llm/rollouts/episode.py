"""``episode``: multi-turn episodes of the policy in a text environment, tools inside its turns.

Each step draws ``P = train.prompts_per_step`` environment seeds and plays ``G = train.group_size``
copies of each environment from its seed (a GiGPO group: the copies start in the same state):
``P * G`` episodes, stepped together. A turn: the policy samples at most
``sampling.max_new_tokens`` tokens from the whole conversation so far; if its text completes a
tool's closing tag (``env.tools``) the turn is cut there, the tool runs and its result is
appended, and the policy resumes (at most ``env.max_tool_calls`` times a turn); otherwise the
turn's text is the action, ``env.step(action)`` answers, and the observation is appended as the
next user message. An episode ends when the environment says done, after ``env.max_turns``
steps, or when the next turn would not fit the token budget ``env.max_episode_tokens``.

Sampling (``env.kv_cache``): ``"grow"`` (default, one-device meshes) keeps each episode's KV cache
across turns (``sampling.cached``): the first prompts are prefilled once, each turn decodes from
the cache, a turn cut at a tool's closing tag is truncated there, and observations and tool
results are prefilled on top (only the new tokens run through the model). ``"reprefill"`` (and
any mesh of several devices) samples each turn with ``policy.generate`` from the whole
conversation, left-padded to one width per run (one compiled sampler).

The token stream is the truth: the conversation is kept as token ids, never decoded and
re-encoded. The policy's tokens are appended exactly as sampled; each environment message
(the end of the assistant turn, the observation as a user message with the next generation
prompt, a tool result) is rendered once with the tokenizer's chat template and encoded once, so
the rows the trainer scores are, token for token, the contexts the policy acted in.
``loss_mask`` is 1 on the policy's tokens only.

Pictures (GUI screens, ``envs.base``: an environment whose ``screen()`` returns one): each
observation's picture goes into its user message as ``num_patches`` placeholder ids (first, then
the observation's text), and the episode keeps its pictures in order. Every turn is sampled from
the whole conversation with all its pictures so far (``env.kv_cache="reprefill"``; ``"grow"``
raises: the cached sampler's prefill and extend take no soft tokens): ``images`` [B, N, H, W, C]
with ``N = env.max_turns`` (the first screen plus one per step that goes on), zero-padded, and an
``image_mask`` naming the slots the ENVIRONMENT wrote. A placeholder id the policy samples is in
no mask, so it stays an ordinary token when the sampler and the trainer read it back. The rows
carry ``images`` [B, N, H, W, C] and ``image_mask`` [B, Sp + T] (``types.Rollout``): the trainer
places the pictures where the mask says, in the prompt or the completion, and its log-probs
equal the sampler's.

Rows (``env.rows``):

* ``"episode"``: one row per episode, ``B = P * G``: ``prompt_tokens`` the first prompt
  (instructions + first observation), ``tokens`` [B, T = env.max_episode_tokens] everything after
  it; ``rewards`` the episode return ``sum_t r_t``. Extras: ``step_ids`` [B, T] (the step a
  policy token belongs to, -1 elsewhere), ``step_rewards`` [B, K = env.max_turns],
  ``anchor_ids`` [B, K] (equal ids: the same anchor state within a group; -1 after the last step),
  ``episode_ids`` [B], ``num_steps`` [B], ``success`` [B].
* ``"step"``: one row per (episode, step), ``B = P * G * K`` (steps an episode did not take are
  rows with an empty ``loss_mask``): ``prompt_tokens`` [B, Sp + T] the whole context before the
  step's turn, ``tokens`` [B, W] the turn (policy tokens and tool results), ``W`` the turn's
  static bound. ``rewards`` the step reward; extras ``episode_ids``, ``step_index``,
  ``anchor_ids`` [B], ``episode_return`` [B], ``step_valid`` [B].

Shapes are static (T, K and the bounds come from the config; prompt widths are bucketed), so a
run compiles in its first steps only. GiGPO: Feng et al. 2025, "Group-in-Group Policy
Optimization for LLM Agent Training", https://arxiv.org/abs/2505.10978
(https://github.com/langfengQ/verl-agent).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import envs as envs_lib
from jaxrl_llm import errors, models
from jaxrl_llm.envs import tools as tools_lib
from jaxrl_llm.policy import left_pad, right_pad
from jaxrl_llm.rollouts import token_stats
from jaxrl_llm.rollouts.base import Context, Kind
from jaxrl_llm.rollouts.group import rollout_metrics
from jaxrl_llm.sampling import SamplingConfig, bucket_length, cached
from jaxrl_llm.types import Rollout

_SENTINEL = "\u2063ACTION\u2063"
_IMAGE = "\u2063IMAGE\u2063"  # where an observation's picture goes in its rendered message
EVAL_SEED_BASE = 1 << 30  # training seeds are drawn below it, held-out episodes use seeds above


@dataclasses.dataclass
class Episode:
    """One episode as token ids (host lists, filled turn by turn)."""

    prompt: list[int]
    prompt_slots: list[bool] = dataclasses.field(default_factory=list)  # per prompt token: an image slot
    images: list[np.ndarray] = dataclasses.field(default_factory=list)  # the pictures shown, [H, W, C] each
    tokens: list[int] = dataclasses.field(default_factory=list)
    policy: list[bool] = dataclasses.field(default_factory=list)  # per token: the policy chose it
    logprobs: list[float] = dataclasses.field(default_factory=list)  # sampler log q, 0 off-policy
    policy_logprobs: list[float] = dataclasses.field(default_factory=list)
    entropies: list[float] = dataclasses.field(default_factory=list)
    step_of: list[int] = dataclasses.field(default_factory=list)  # per token: its step, -1 if not policy
    slots: list[bool] = dataclasses.field(default_factory=list)  # per token: an image slot (environment's)
    turn_start: list[int] = dataclasses.field(default_factory=list)  # per step: first token of its turn
    rewards: list[float] = dataclasses.field(default_factory=list)  # per step
    anchors: list[Hashable] = dataclasses.field(default_factory=list)  # per step: state acted in
    invalid: list[bool] = dataclasses.field(default_factory=list)
    tool_calls: int = 0
    turn_calls: int = 0
    success: bool = False
    stop: str = ""  # "" while running, then "done", "turns" or "budget"
    action_ids: list[int] = dataclasses.field(default_factory=list)  # the current turn's last segment

    def add(self, ids, policy: bool, lp=None, plp=None, ent=None, slots=None) -> None:
        n = len(ids)
        self.slots.extend([False] * n if slots is None else slots)
        zeros = [0.0] * n
        self.tokens.extend(int(i) for i in ids)
        self.policy.extend([policy] * n)
        self.logprobs.extend(zeros if lp is None else [float(x) for x in lp])
        self.policy_logprobs.extend(zeros if plp is None else [float(x) for x in plp])
        self.entropies.extend(zeros if ent is None else [float(x) for x in ent])
        self.step_of.extend([len(self.rewards) if policy else -1] * n)


class ChatPieces:
    """The chat template cut into per-message pieces, each rendered once and encoded once.

    ``first(instructions, observation)``: the first prompt (optional system message, the user
    message, the generation prompt). ``after_action(observation, ended_with)``: what follows a
    policy turn: the end of the assistant message (less the stop token when the policy wrote it)
    and the observation as a user message with the next generation prompt. Pieces come from
    differences of renderings of a fixed conversation, so they are exactly what the template
    writes between the messages. ``image=n`` > 0 (an observation with a picture): the message
    starts with ``n`` ids ``image_token_id``, spliced in where the template put the text's start
    (the text around them is encoded apart; it must not encode to the placeholder id).
    """

    def __init__(self, tokenizer: Any, system_prompt: str = "", image_token_id: int | None = None):
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        base = self.system + [{"role": "user", "content": "u"}, {"role": "assistant", "content": _SENTINEL}]
        self._base_text = self._render(base, False)
        if _SENTINEL not in self._base_text:
            raise ValueError("the tokenizer's chat template drops the assistant message; cannot cut it into pieces")
        self.close_ids = self.encode(self._base_text[self._base_text.rindex(_SENTINEL) + len(_SENTINEL) :])
        self._base = base

    def _render(self, messages, generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_with_image(self, text: str, image: int) -> list[int]:
        """``text`` encoded, ``image`` placeholder ids in place of its ``_IMAGE`` mark (none: 0)."""
        if not image:
            return self.encode(text)
        if self.image_token_id is None:
            raise ValueError("ChatPieces: a picture needs the policy's image_token_id")
        if text.count(_IMAGE) != 1:
            raise ValueError("the chat template dropped or repeated the observation's image mark")
        before, after = (self.encode(part) for part in text.split(_IMAGE))
        if self.image_token_id in before + after:
            raise ValueError(f"an observation's text encodes to the image placeholder id {self.image_token_id}")
        return before + [self.image_token_id] * image + after

    def first(self, instructions: str, observation: str, image: int = 0) -> list[int]:
        observation = _IMAGE + observation if image else observation
        content = f"{instructions}\n\n{observation}" if instructions else observation
        return self.encode_with_image(self._render(self.system + [{"role": "user", "content": content}], True), image)

    def user_turn(self, observation: str, image: int = 0) -> list[int]:
        observation = _IMAGE + observation if image else observation
        full = self._render(self._base + [{"role": "user", "content": observation}], True)
        if not full.startswith(self._base_text):
            raise ValueError("the chat template renders earlier messages differently once a user message follows")
        return self.encode_with_image(full[len(self._base_text) :], image)

    def after_action(self, observation: str, last_token: int | None, image: int = 0) -> list[int]:
        close = self.close_ids
        if close and last_token == close[0]:  # the policy wrote the end-of-turn token itself
            close = close[1:]
        return close + self.user_turn(observation, image)


def tool_cut(tokenizer, ids: np.ndarray, tools: dict[str, Any]) -> tuple[Any, int] | None:
    """(tool, number of tokens up to and including the one completing its closing tag) of the first
    closing tag in ``ids``' text, or ``None``."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not any(tag in text for tag in tools):
        return None
    for k in range(1, len(ids) + 1):
        prefix = tokenizer.decode(ids[:k], skip_special_tokens=True)
        for tag, tool in tools.items():
            if tag in prefix:
                return tool, k
    return None


def _tool_ids(pieces: ChatPieces, result: str, cap: int) -> list[int]:
    """``<output>\\n{result}\\n</output>\\n`` as ids, the result's ids cut so the whole fits ``cap``."""
    head, tail = pieces.encode(tools_lib.OUTPUT_OPEN), pieces.encode(tools_lib.OUTPUT_CLOSE)
    room = max(cap - len(head) - len(tail), 0)
    return head + pieces.encode(result)[:room] + tail


def turn_width(ctx: Context) -> int:
    """Static bound on one turn's tokens (the step rows' width): the policy's segments plus the
    tool results between them."""
    e, n = ctx.cfg.env, ctx.cfg.sampling.max_new_tokens
    calls = e.max_tool_calls if e.tools else 0
    return n * (calls + 1) + calls * e.max_tool_output_tokens


class Reprefill:
    """Each turn samples from the whole conversation so far, prefilled again (``policy.generate``),
    with the episode's pictures (``num_images`` > 0: ``images`` [B, num_images, H, W, C]) at the
    slots the environment wrote (``image_mask``, given to any vision-language policy, so that a
    placeholder id it sampled earlier stays an ordinary token)."""

    def __init__(
        self,
        policy: Any,
        width: int,
        greedy: bool,
        rule: Any,
        rule_params: Any,
        vision_cfg: Any = None,
        num_images: int = 0,
    ):
        self.policy, self.width, self.greedy, self.rule, self.rule_params = policy, width, greedy, rule, rule_params
        self.vision_cfg, self.num_images = vision_cfg, num_images

    def start(self, episodes: list[Episode]) -> None:
        pass

    def sample(self, episodes: list[Episode], active: np.ndarray, key: jax.Array) -> dict[str, np.ndarray]:
        # Every episode keeps its row (static shapes); a finished one only shows its first prompt.
        contexts = [ep.prompt + ep.tokens if act else ep.prompt for ep, act in zip(episodes, active)]
        tokens, mask = left_pad(contexts, self.width, self.policy.pad_id)
        pictures = {}
        if self.vision_cfg is not None:
            slots = [ep.prompt_slots + ep.slots if act else ep.prompt_slots for ep, act in zip(episodes, active)]
            pictures["image_mask"] = left_pad(slots, self.width, 0)[0]
            if self.num_images:
                pictures["images"] = stack_images(episodes, self.num_images, self.vision_cfg)
        return self.policy.generate(
            tokens,
            mask,
            key,
            1,
            greedy=self.greedy,
            temperature_rule=self.rule,
            temperature_rule_params=self.rule_params,
            **pictures,
        )

    def append(self, keep: list[int] | None, added: list[list[int]]) -> None:
        pass


class GrowCache:
    """The KV cache of every episode grows across turns (``sampling.cached``): the first prompts are
    prefilled once, each turn decodes from the cache, a tool cut truncates the row to the kept
    tokens, and observations / tool results are prefilled on top (only the new tokens run)."""

    def __init__(self, policy: Any, greedy: bool, rule: Any, rule_params: Any):
        s = policy.cfg.sampling
        self.scfg = SamplingConfig(
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            greedy=greedy,
            stop_token_ids=tuple(policy.eos_ids),
            pad_id=policy.pad_id,
            return_policy_logprobs=not greedy,
            return_entropies=not greedy,
            backend=s.backend,
        )
        params = policy.params
        if policy.cfg.model.param_dtype != "float32":
            dtype = jnp.dtype(policy.cfg.model.param_dtype)
            params = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
        self.model, self.pad_id, self.rule, self.rule_params = policy.model(params), policy.pad_id, rule, rule_params
        self.session = None

    def start(self, episodes: list[Episode]) -> None:
        prompts = [ep.prompt for ep in episodes]
        tokens, mask = left_pad(prompts, bucket_length(max(len(p) for p in prompts)), self.pad_id)
        self.session = cached.prefill(self.model, tokens, mask)

    def sample(self, episodes: list[Episode], active: np.ndarray, key: jax.Array) -> dict[str, np.ndarray]:
        out, self.session = cached.decode(
            self.model,
            self.session,
            key,
            self.scfg,
            active=active,
            temperature_rule=self.rule,
            temperature_rule_params=self.rule_params,
        )
        return {k: np.asarray(v) for k, v in vars(out).items() if isinstance(v, jax.Array)}

    def append(self, keep: list[int] | None, added: list[list[int]]) -> None:
        """Rows cut back to ``keep`` tokens (a tool cut), then ``added`` ids appended per row."""
        if keep is not None:
            self.session = cached.truncate(self.session, np.asarray(keep))
        if any(added):
            tokens, mask = right_pad(added, bucket_length(max(len(a) for a in added)), self.pad_id)
            self.session = cached.extend(self.model, self.session, tokens, mask)


PLAYING_KINDS = ("episode", "replay_episode")  # the rollout kinds that play ``cfg.env``


def make_env(e: Any) -> Any:
    """A fresh environment of ``e`` (an ``EnvConfig``); an unknown name or a keyword argument the
    environment refuses is a ``UserError`` naming ``env.name`` and ``env.kwargs``."""
    try:
        return envs_lib.make(e.name, **dict(e.kwargs))
    except ValueError as err:
        raise errors.UserError(f"env.name={e.name!r}, env.kwargs={dict(e.kwargs)}: {err}") from None


def play(
    ctx: Context,
    seeds: list[int],
    key: jax.Array,
    state: Any = None,
    greedy: bool = False,
) -> tuple[list[Episode], dict[str, float]]:
    """Plays one episode per entry of ``seeds`` (module docstring); returns the episodes and the
    time spent sampling (``time/sample``) and in the environments and tools (``time/env``)."""
    e, policy = ctx.cfg.env, ctx.policy
    T, n_new = e.max_episode_tokens, ctx.cfg.sampling.max_new_tokens
    if T < n_new:
        raise ValueError(f"env.max_episode_tokens={T} < sampling.max_new_tokens={n_new}: no turn fits")
    tools = tools_lib.make(tuple(e.tools))
    vc = getattr(policy, "vision_cfg", None)  # None: a text-only policy (or a scripted stand-in)
    pieces = ChatPieces(policy.tokenizer, e.system_prompt, None if vc is None else vc.image_token_id)
    rule, rule_params = ctx.algo.temperature(ctx.algo_cfg, state) if not greedy else (None, None)
    t_env = time.perf_counter()
    games = [make_env(e) for _ in seeds]
    episodes = []
    for game, seed in zip(games, seeds):
        text = game.reset(int(seed))
        pixels = picture(game, ctx)
        prompt = pieces.first(game.instructions, text, 0 if pixels is None else vc.num_patches)
        episodes.append(
            Episode(
                prompt=prompt,
                prompt_slots=_slots(prompt, pixels is not None, pieces),
                images=[] if pixels is None else [pixels],
            )
        )
    num_images = e.max_turns if any(ep.images for ep in episodes) else 0
    env_time, sample_time = time.perf_counter() - t_env, 0.0
    if grow_cache(ctx):
        if num_images:
            raise NotImplementedError(
                f"environment {e.name!r} shows pictures, which env.kv_cache='grow' does not take yet (the "
                "cached sampler's prefill and extend have no soft tokens); set env.kv_cache='reprefill'"
            )
        sampler = GrowCache(policy, greedy, rule, rule_params)
    else:  # one context width for every turn (first prompt's bucket + budget): one compiled sampler
        sampler = Reprefill(
            policy, bucket_length(max(len(ep.prompt) for ep in episodes)) + T, greedy, rule, rule_params, vc, num_images
        )
    t0 = time.perf_counter()
    sampler.start(episodes)
    sample_time += time.perf_counter() - t0
    call = 0
    while True:
        for ep in episodes:
            if not ep.stop and len(ep.tokens) + n_new > T:
                ep.stop = "budget"
        active = [i for i, ep in enumerate(episodes) if not ep.stop]
        if not active:
            break
        t0 = time.perf_counter()
        out = sampler.sample(episodes, np.asarray([not ep.stop for ep in episodes]), jax.random.fold_in(key, call))
        sample_time += time.perf_counter() - t0
        call += 1
        t0 = time.perf_counter()
        before = [len(ep.tokens) for ep in episodes]
        keep, cut_any = (
            [len(ep.prompt) + len(ep.tokens) + int(out["lengths"][i]) for i, ep in enumerate(episodes)],
            False,
        )
        for i, ep in enumerate(episodes):
            if i not in active:
                keep[i] = len(ep.prompt) + len(ep.tokens)
        for i in active:
            ep, n = episodes[i], int(out["lengths"][i])
            ids = np.asarray(out["tokens"][i, :n])
            cut = tool_cut(policy.tokenizer, ids, tools) if tools and ep.turn_calls < e.max_tool_calls else None
            if cut is not None:
                n = cut[1]
                ids = ids[:n]
                keep[i], cut_any = len(ep.prompt) + len(ep.tokens) + n, True
            if not ep.turn_calls:
                ep.turn_start.append(len(ep.tokens))
            ep.add(ids, True, *_sampled(out, i, n))
            if cut is not None:
                text = policy.tokenizer.decode(ids, skip_special_tokens=True)
                result = _tool_ids(pieces, tools_lib.run_call(cut[0], text), e.max_tool_output_tokens)
                ep.turn_calls += 1
                ep.tool_calls += 1
                if len(ep.tokens) + len(result) + n_new > T:
                    ep.stop = "budget"  # the turn ends at its tool call, with no environment step
                else:
                    ep.add(result, False)
                continue
            ep.turn_calls = 0
            anchor = games[i].anchor
            step = games[i].step(policy.tokenizer.decode(ids, skip_special_tokens=True))
            invalid = bool(step.info.get("invalid", False))
            ep.rewards.append(float(step.reward) - (e.invalid_penalty if invalid else 0.0))
            ep.anchors.append(anchor)
            ep.invalid.append(invalid)
            if step.done:
                ep.stop, ep.success = "done", bool(step.info.get("success", step.reward > 0))
            elif len(ep.rewards) >= e.max_turns:
                ep.stop = "turns"
            else:
                pixels = picture(games[i], ctx)
                obs = pieces.after_action(
                    step.observation, int(ids[-1]) if len(ids) else None, 0 if pixels is None else vc.num_patches
                )
                if len(ep.tokens) + len(obs) + n_new > T:
                    ep.stop = "budget"
                else:
                    ep.add(obs, False, slots=_slots(obs, pixels is not None, pieces))
                    if pixels is not None:
                        ep.images.append(pixels)
        env_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        added = [ep.tokens[before[i] :][sum(ep.policy[before[i] :]) :] for i, ep in enumerate(episodes)]
        sampler.append(keep if cut_any else None, [a if not ep.stop else [] for a, ep in zip(added, episodes)])
        sample_time += time.perf_counter() - t0
    return episodes, {"time/sample": sample_time, "time/env": env_time}


def picture(game: Any, ctx: Context) -> np.ndarray | None:
    """The environment's current picture (``envs.base.screen``) as float32 [H, W, C] checked
    against the policy's vision encoder, or ``None``; a picture for a text-only policy, or of the
    wrong shape, raises a ``ValueError`` naming the environment."""
    pixels = envs_lib.base.screen(game)
    if pixels is None:
        return None
    name, vc = ctx.cfg.env.name, ctx.policy.vision_cfg
    if vc is None:
        raise ValueError(
            f"environment {name!r} shows pictures but model {ctx.cfg.model.name!r} has no vision encoder; "
            f"use a vision-language model ({', '.join(models.vision_models())})"
        )
    pixels = np.asarray(pixels)
    if pixels.ndim != 3:
        raise ValueError(f"screen of environment {name!r}: expected [H, W, C] pixels, got shape {pixels.shape}")
    return models.vision.check_images(pixels[None, None], vc, f"screen of environment {name!r}")[0, 0]


def _slots(ids: list[int], shown: bool, pieces: ChatPieces) -> list[bool]:
    """Per id of an environment message: an image slot (the message shows a picture, and
    ``ChatPieces`` keeps the placeholder id out of its text)."""
    return [shown and t == pieces.image_token_id for t in ids]


def stack_images(episodes: list[Episode], num_images: int, vc: Any) -> np.ndarray:
    """The episodes' pictures as [B, num_images, H, W, C] float32, zero-padded after each one's last."""
    out = np.zeros((len(episodes), num_images, vc.image_size, vc.image_size, vc.num_channels), np.float32)
    for b, ep in enumerate(episodes):
        if len(ep.images) > num_images:
            raise ValueError(f"episode {b} shows {len(ep.images)} pictures > {num_images} (env.max_turns)")
        if ep.images:
            out[b, : len(ep.images)] = np.stack(ep.images)
    return out


def grow_cache(ctx: Context) -> bool:
    """``env.kv_cache = "grow"`` on a one-device mesh (``sampling.cached`` runs on one device);
    otherwise every turn re-prefills the conversation."""
    return ctx.cfg.env.kv_cache == "grow" and ctx.policy.mesh.size == 1


def _sampled(out: dict[str, np.ndarray], i: int, n: int):
    get = lambda k: None if out.get(k) is None else np.asarray(out[k][i, :n], np.float32)
    return get("logprobs"), get("policy_logprobs"), get("entropies")


def _anchor_ids(episodes: list[Episode], G: int) -> list[list[int]]:
    """Per episode, per step: an integer id of its anchor state, equal within a group (episodes
    ``b // G``) exactly when the anchors are equal, distinct across groups."""
    table: dict[tuple[int, Hashable], int] = {}
    return [[table.setdefault((b // G, a), len(table)) for a in ep.anchors] for b, ep in enumerate(episodes)]


def _pad_rows(values: list[list[float]], width: int, fill: float, dtype) -> np.ndarray:
    out = np.full((len(values), width), fill, dtype)
    for b, v in enumerate(values):
        out[b, : len(v)] = v[:width]
    return out


def _image_fields(
    ctx: Context, episodes: list[Episode], contexts: list[list[bool]], turns: list[list[bool]], Sp: int, T: int
) -> dict[str, np.ndarray]:
    """``images`` [B, N, H, W, C] (each row's episode's pictures; ``episodes`` one per row) and
    ``image_mask`` [B, Sp + T] f32 from the rows' context and completion slot flags; nothing for
    a run without pictures."""
    if not any(ep.images for ep in episodes):
        return {}
    mask = np.concatenate([left_pad(contexts, Sp, 0)[0], right_pad(turns, T, 0)[0]], axis=1)
    images = stack_images(episodes, ctx.cfg.env.max_turns, ctx.policy.vision_cfg)
    return {"images": images, "image_mask": mask.astype(np.float32)}


def episode_rows(ctx: Context, episodes: list[Episode], G: int) -> Rollout:
    """One row per episode (module docstring)."""
    e, pad = ctx.cfg.env, ctx.policy.pad_id
    T, K = e.max_episode_tokens, e.max_turns
    prompts = [ep.prompt for ep in episodes]
    Sp = bucket_length(max(len(p) for p in prompts))
    prompt_tokens, prompt_mask = left_pad(prompts, Sp, pad)
    tokens, mask = right_pad([ep.tokens for ep in episodes], T, pad)
    per_token = lambda f, fill=0.0, dtype=np.float32: _pad_rows([getattr(ep, f) for ep in episodes], T, fill, dtype)
    B = len(episodes)
    pictures = _image_fields(ctx, episodes, [ep.prompt_slots for ep in episodes], [ep.slots for ep in episodes], Sp, T)
    return Rollout(
        prompt_tokens=prompt_tokens,
        prompt_mask=prompt_mask,
        tokens=tokens,
        mask=mask,
        loss_mask=per_token("policy"),
        rewards=np.asarray([sum(ep.rewards) for ep in episodes], np.float32),
        group_ids=np.repeat(np.arange(B // G, dtype=np.int32), G),
        prompt_ids=np.repeat(np.arange(B // G, dtype=np.int32), G),
        lengths=np.asarray([len(ep.tokens) for ep in episodes], np.int32),
        sampler_logprobs=per_token("logprobs"),
        policy_logprobs=per_token("policy_logprobs"),
        entropies=per_token("entropies"),
        **pictures,
        extras={
            "step_ids": per_token("step_of", -1, np.int32),
            "step_rewards": _pad_rows([ep.rewards for ep in episodes], K, 0.0, np.float32),
            "anchor_ids": _pad_rows(_anchor_ids(episodes, G), K, -1, np.int32),
            "episode_ids": np.arange(B, dtype=np.int32),
            "num_steps": np.asarray([len(ep.rewards) for ep in episodes], np.int32),
            "success": np.asarray([ep.success for ep in episodes], np.float32),
        },
        group_size=G,
    )


def step_rows(ctx: Context, episodes: list[Episode], G: int) -> Rollout:
    """One row per (episode, step), ``K`` per episode (module docstring)."""
    e, pad = ctx.cfg.env, ctx.policy.pad_id
    K, W = e.max_turns, turn_width(ctx)
    Sp = bucket_length(max(len(ep.prompt) for ep in episodes)) + e.max_episode_tokens
    anchors = _anchor_ids(episodes, G)
    contexts, turns, fields = [], [], {k: [] for k in ("policy", "logprobs", "policy_logprobs", "entropies")}
    rewards, step_index, anchor_ids, valid, returns = [], [], [], [], []
    context_slots, turn_slots = [], []
    for b, ep in enumerate(episodes):
        for k in range(K):
            ok = k < len(ep.rewards)
            lo = ep.turn_start[k] if ok else 0
            # the turn ends with its last policy token (tool results sit between its segments)
            hi = max(t for t in range(lo, len(ep.tokens)) if ep.step_of[t] == k) + 1 if ok else 0
            contexts.append(ep.prompt + ep.tokens[:lo] if ok else ep.prompt)
            turns.append(ep.tokens[lo:hi])
            context_slots.append(ep.prompt_slots + ep.slots[:lo] if ok else ep.prompt_slots)
            turn_slots.append(ep.slots[lo:hi])
            for f in fields:
                fields[f].append(getattr(ep, f)[lo:hi])
            rewards.append(ep.rewards[k] if ok else 0.0)
            step_index.append(k)
            anchor_ids.append(anchors[b][k] if ok else -1)
            valid.append(ok)
            returns.append(sum(ep.rewards))
    prompt_tokens, prompt_mask = left_pad(contexts, Sp, pad)
    tokens, mask = right_pad(turns, W, pad)
    rows = lambda f: _pad_rows(fields[f], W, 0.0, np.float32)
    B = len(contexts)
    row_episodes = [ep for ep in episodes for _ in range(K)]
    pictures = _image_fields(ctx, row_episodes, context_slots, turn_slots, Sp, W)
    return Rollout(
        prompt_tokens=prompt_tokens,
        prompt_mask=prompt_mask,
        tokens=tokens,
        mask=mask,
        loss_mask=rows("policy"),
        rewards=np.asarray(rewards, np.float32),
        group_ids=np.repeat(np.arange(B // (G * K), dtype=np.int32), G * K),
        prompt_ids=np.repeat(np.arange(B // (G * K), dtype=np.int32), G * K),
        lengths=np.asarray([len(t) for t in turns], np.int32),
        sampler_logprobs=rows("logprobs"),
        policy_logprobs=rows("policy_logprobs"),
        entropies=rows("entropies"),
        **pictures,
        extras={
            "episode_ids": np.repeat(np.arange(len(episodes), dtype=np.int32), K),
            "step_index": np.asarray(step_index, np.int32),
            "anchor_ids": np.asarray(anchor_ids, np.int32),
            "episode_return": np.asarray(returns, np.float32),
            "step_valid": np.asarray(valid, np.float32),
        },
        group_size=G * K,
    )


def train_seeds(key: jax.Array, num: int) -> list[int]:
    """``num`` training environment seeds in ``[0, EVAL_SEED_BASE)`` drawn from ``key``."""
    return [int(s) for s in np.asarray(jax.random.randint(key, (num,), 0, EVAL_SEED_BASE))]


def episode_metrics(episodes: list[Episode]) -> dict[str, float]:
    """``episode/*``: success rate, steps, invalid-action rate, tool calls, how episodes ended."""
    steps = [len(ep.rewards) for ep in episodes]
    invalid = sum(sum(ep.invalid) for ep in episodes)
    out = {
        "episode/success": float(np.mean([ep.success for ep in episodes])),
        "episode/steps": float(np.mean(steps)),
        "episode/invalid_frac": invalid / max(sum(steps), 1),
        "episode/tool_calls": float(np.mean([ep.tool_calls for ep in episodes])),
    }
    for why in ("done", "turns", "budget"):
        out[f"episode/stop_{why}"] = float(np.mean([ep.stop == why for ep in episodes]))
    return out


def collect(ctx: Context, key: jax.Array, state: Any) -> tuple[Rollout, dict[str, float]]:
    """``P`` seeds x ``G`` copies, played to the end; rows per ``env.rows`` (module docstring)."""
    P, G = ctx.cfg.train.prompts_per_step, ctx.cfg.train.group_size
    seeds = [s for s in train_seeds(jax.random.fold_in(key, 1), P) for _ in range(G)]
    episodes, times = play(ctx, seeds, jax.random.fold_in(key, 2), state)
    rollout = episode_rows(ctx, episodes, G)
    metrics = rollout_metrics(rollout, ctx.cfg.eval.correct_threshold)
    metrics.update(episode_metrics(episodes))
    if ctx.cfg.env.rows == "step":
        rollout = step_rows(ctx, episodes, G)
    if "sum_pi_squared" in ctx.algo.rollout_extras:  # sum_v pi_old(v)^2 [B, T] (optimal token baseline)
        if rollout.images is not None:
            raise NotImplementedError(
                f"{ctx.algo.name}'s sum_pi_squared pass reads no pictures; use a text environment"
            )
        # at every position of the row; the estimator reads the policy's tokens (loss_mask) only
        rollout = rollout.with_items(
            sum_pi_squared=token_stats.sum_pi_squared(
                ctx.policy, rollout.prompt_tokens, rollout.prompt_mask, rollout.tokens, rollout.mask
            )
        )
    metrics.update({"time/sample": times["time/sample"], "time/reward": times["time/env"], "reward/failures": 0.0})
    return rollout, metrics


def evaluate(ctx: Context, num: int, key: jax.Array) -> dict[str, float]:
    """Greedy episodes from ``num`` held-out seeds (``EVAL_SEED_BASE + i``): ``episode/*`` metrics."""
    episodes, _ = play(ctx, [EVAL_SEED_BASE + i for i in range(num)], key, greedy=True)
    return episode_metrics(episodes)


KIND = Kind(name="episode", collect=collect)
