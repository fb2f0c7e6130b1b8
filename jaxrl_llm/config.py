"""Typed, frozen run configuration, experiment loading and ``--set a.b=value`` overrides.

A run is described by one ``Config`` (frozen dataclasses all the way down). Experiments are Python
files in ``experiments/`` whose ``get_config()`` returns a ``Config``; the CLI applies
``--set section.field=value`` overrides on top, with type checking, and validates the result
before anything runs. Unknown keys and bad values raise ``ConfigError`` naming the key.

The algorithm's own hyper-parameters live in ``Config.algo``: an instance of the algorithm
module's frozen ``Config`` (``jaxrl_llm.algorithms.get(name).Config``). ``None`` means that
module's paper defaults. Overrides such as ``--set algo.beta=0.04`` are type-checked against that
dataclass.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import importlib.util
import json
import pathlib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jaxrl_llm import algorithms


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""


@dataclass(frozen=True)
class ModelConfig:
    """Which policy to train: a built-in of ``jaxrl_llm.models.get_model`` (``"tiny"``, ``"small"``,
    ``"smollm2-135m-instruct"``; see ``jaxrl_llm.models.list_models()``) or a local Hugging Face
    checkpoint directory."""

    name: str = "small"
    # Mixed precision: the master weights and the optimizer state are always f32 (the update
    # differentiates w.r.t. them). param_dtype is the dtype of the weights the sampler reads (a
    # cast copy per rollout); compute_dtype is that of the forward passes' activations and matmuls,
    # each weight cast at use (bfloat16 + bfloat16: the update's forward reads the same bf16
    # weights the sampler does). Loss math is always f32.
    param_dtype: Literal["float32", "bfloat16"] = "float32"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    # Log-probs over chunks of this many positions, logits recomputed in the backward
    # (jaxrl_llm.models.logprobs): memory [B, chunk, V] instead of [B, T, V], one more unembedding
    # matmul. 0 = one pass
    logprob_chunk_size: int = 0
    # attention implementation (jaxrl_llm.models.attention): "auto" = cuDNN on a GPU, splash on a TPU,
    # the reference "xla" on a CPU
    attention: Literal["auto", "xla", "dot_product", "cudnn", "splash"] = "auto"
    # What the backward pass keeps of each decoder block (jaxrl_llm.models.remat): "none" everything
    # (fastest); "dots_saveable" every matmul output; "dots" the weight matmuls' outputs (attention
    # reruns: its [B, H, S, S] scores live one layer at a time); "full" only the layer's input (the
    # block reruns, ~1/3 more FLOPs). Same values and gradients up to float rounding. A policy
    # other than "none" also rolls the layer loop (as scan_layers=true).
    remat: Literal["none", "full", "dots", "dots_saveable"] = "none"
    # Training / log-prob passes run the layers as a rolled scan (one compiled layer body: compile
    # time flat in depth) instead of fully unrolled (the default: faster steps on XLA:CPU, compile
    # time grows with the number of layers).
    scan_layers: bool = False


@dataclass(frozen=True)
class TaskConfig:
    """Prompt source: ``jaxrl_llm.tasks.make_task(name, **kwargs)``."""

    name: str = "basic_arithmetic"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_prompt_len: int = 64  # prompts are left-padded to their power-of-two bucket, capped at this
    system_prompt: str = ""


@dataclass(frozen=True)
class SamplingConfig:
    """Rollout sampling (maps onto ``jaxrl_llm.sampling.SamplingConfig``)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    max_new_tokens: int = 32
    backend: str = "auto"  # decode backend (jaxrl_llm.sampling.backend): "auto", "xla", "cpu", "ragged"


@dataclass(frozen=True)
class OptimConfig:
    """optax AdamW with linear warmup then cosine (or constant) decay, global-norm clipping."""

    learning_rate: float = 1e-5
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "constant"
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of ``learning_rate``
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 disables clipping


@dataclass(frozen=True)
class TrainConfig:
    """The RL loop. One step = ``prompts_per_step`` prompts x ``group_size`` samples, then
    ``num_iterations`` (mu) epochs over ``num_minibatches`` optimizer updates each, each update
    accumulating gradients over micro-batches of ``micro_batch_size`` sequences inside the jit."""

    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 8
    num_iterations: int = 1  # mu: epochs of updates per rollout batch
    num_minibatches: int = 1  # optimizer updates per epoch
    # Rows per micro-batch of the update (0 = the whole minibatch in one pass), and per chunk of
    # the whole-batch forward passes before it: pi_ref, a recomputed pi_old, the critic's values
    # (``Policy.by_row_chunks``, the chunk a multiple of mesh data x fsdp; 0 = all rows at once).
    micro_batch_size: int = 0
    # Where pi_old comes from: "sampler" uses the sampler's log-probs of the unmodified policy
    # (free, exact when sampler and trainer numerics agree); "recompute" runs a forward pass with
    # the pre-update params (robust to sampler/trainer numeric mismatch, e.g. bf16 KV caches).
    old_logprobs: Literal["sampler", "recompute"] = "sampler"
    max_sampling_rounds: int = 4  # dynamic sampling: extra generation rounds to fill the batch
    # Compute each group's shared prompt once in the update and log-prob passes (the G completions
    # attend to copies of its KV cache; equal to the unshared pass up to float rounding). Applies
    # when a group's rows share one prompt and micro-batches hold whole groups; minibatches are
    # then drawn as whole groups.
    share_prompt: bool = True
    on_nonfinite: Literal["skip", "stop"] = "skip"
    # Sampler/trainer mismatch correction (``ops.rollout_correction``), from the sampler's
    # log-probs mu and pi_old: "token_tis" multiplies each token's loss term by
    # min(pi_old / mu, rollout_correction_cap) (``batch["is_weights"]``); "sequence_mis" drops whole
    # rows whose geometric-mean ratio leaves [rollout_correction_low, rollout_correction_high].
    # Meaningful with old_logprobs="recompute" (otherwise pi_old is the sampler's own policy).
    rollout_correction: Literal["off", "token_tis", "sequence_mis"] = "off"
    rollout_correction_cap: float = 2.0
    rollout_correction_low: float = 0.5
    rollout_correction_high: float = 2.0
    # The value head of methods with a critic (PPO): "separate" = a copy of the policy's trunk
    # (initialised from the policy at RL start) with a linear head; "shared" = a linear head on the
    # policy's own trunk (the value loss then also trains the policy's trunk).
    critic: Literal["separate", "shared"] = "separate"
    # Off-policy training (``jaxrl_llm/offpolicy.py``): the update at policy version t consumes the
    # rollout sampled by version t - staleness (bounded staleness k; 0 = synchronous). With k > 0,
    # pi_old is recomputed under the learner's params and ``rollout_correction`` corrects for the
    # sampler's older policy mu. partial_rollout_tokens > 0 (k > 0, ``group`` kind): every queued
    # generation advances by at most this many tokens per version, so one response's tokens come
    # from successive versions (their per-token versions are recorded).
    staleness: int = 0
    partial_rollout_tokens: int = 0
    # The rollout kind (``jaxrl_llm.rollouts``): "" = the algorithm's own (``Algorithm.rollout``);
    # another kind only where the method declares it can read that kind's rows
    # (``Algorithm.rollouts``), e.g. the multi-turn optimal token baseline on ``episode`` rollouts.
    rollout: str = ""


@dataclass(frozen=True)
class SFTConfig:
    """Supervised warm start on generated demonstrations (prompt tokens masked). 0 steps = off."""

    steps: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    micro_batch_size: int = 0  # 0 = the whole batch in one pass
    # The demonstration completion of an example; ``{answer}`` is its reference answer. It must be
    # an answer the task's reward accepts (``<answer>...</answer>`` for the built-in rewards).
    template: str = "<answer>{answer}</answer>"


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: greedy accuracy and sampled pass@1 / pass@k (unbiased estimator)."""

    every: int = 0  # RL steps between evals; 0 = only before and after training
    num_examples: int = 128  # 0 disables evaluation
    k: int = 4  # samples per prompt for pass@k (0 = greedy only)
    temperature: float = 1.0
    batch_size: int = 128
    correct_threshold: float = 1.0  # a completion is correct when its reward is >= this


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 10  # RL steps between checkpoints; 0 = only at the end / on SIGINT
    max_to_keep: int = 3
    async_save: bool = True


@dataclass(frozen=True)
class MeshConfig:
    """Device mesh; -1 takes the remaining devices. Product must equal the device count."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    num_devices: int = 0  # use the first N devices (0 = all)
    # Disaggregated placement: the last N of those devices form the sampler's mesh (all on "data",
    # ``tensor`` as above), the rest the learner's; weights are pushed learner -> sampler after each
    # update (``jaxrl_llm/offpolicy.py``). 0 = the sampler runs on the learner's mesh.
    sampler_devices: int = 0


@dataclass(frozen=True)
class RewardConfig:
    num_workers: int = 2  # reward worker processes; 0 = in this process (no timeouts: debugging)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class LogConfig:
    every: int = 1
    tensorboard: bool = True
    progress: bool = True


@dataclass(frozen=True)
class EnvConfig:
    """The multi-turn environment of the ``episode`` rollout kind (``jaxrl_llm.envs``)."""

    name: str = "gridworld"  # a name in jaxrl_llm.envs.ENVS
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_turns: int = 8  # environment steps per episode (K)
    max_episode_tokens: int = 512  # token budget after the first prompt: the row width T
    system_prompt: str = ""
    invalid_penalty: float = 0.0  # subtracted from the step reward of an invalid action
    rows: Literal["episode", "step"] = "episode"  # one row per episode, or one per environment step
    tools: tuple[str, ...] = ()  # names in jaxrl_llm.envs.tools.TOOLS
    max_tool_calls: int = 2  # tool calls per turn; a further closing tag is an ordinary action
    max_tool_output_tokens: int = 64  # a tool result (with its <output> wrapper) is cut to this
    kv_cache: Literal["grow", "reprefill"] = "grow"  # grow each episode's cache across turns (1 device)


@dataclass(frozen=True)
class Config:
    """A whole run."""

    name: str = "run"
    run_dir: str = ""  # "" = runs/<name>
    seed: int = 0
    # Persistent XLA compilation cache shared by runs (""= off): a restarted or resumed run, or a
    # second process of the same shapes, loads its programs instead of compiling them again.
    compilation_cache_dir: str = ""
    algorithm: str = "grpo"
    algo: Any = None  # the algorithm module's Config instance; None = its defaults
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    log: LogConfig = field(default_factory=LogConfig)
    env: EnvConfig = field(default_factory=EnvConfig)

    @property
    def resolved_run_dir(self) -> str:
        return self.run_dir or str(pathlib.Path("runs") / self.name)


# ---------------------------------------------------------------------------------------------
# Validation

_POSITIVE = {
    "train.steps",
    "train.prompts_per_step",
    "train.group_size",
    "train.num_iterations",
    "train.num_minibatches",
    "train.max_sampling_rounds",
    "sampling.max_new_tokens",
    "env.max_turns",
    "env.max_episode_tokens",
    "task.max_prompt_len",
    "sft.batch_size",
    "eval.batch_size",
    "checkpoint.max_to_keep",
    "log.every",
}
_NON_NEGATIVE = {
    "sampling.top_k",
    "sampling.min_p",
    "optim.warmup_steps",
    "optim.weight_decay",
    "optim.max_grad_norm",
    "train.micro_batch_size",
    "sft.steps",
    "sft.warmup_steps",
    "eval.every",
    "eval.k",
    "checkpoint.every",
    "model.logprob_chunk_size",
    "sft.weight_decay",
    "sft.micro_batch_size",
    "eval.num_examples",
    "reward.num_workers",
    "mesh.num_devices",
    "mesh.sampler_devices",
    "train.staleness",
    "train.partial_rollout_tokens",
    "env.max_tool_calls",
    "env.max_tool_output_tokens",
}


def _walk(obj: Any, prefix: str = ""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _walk(value, key + ".")
        else:
            yield key, value


# the decode backends a config may name (``jaxrl_llm.sampling.backend``; "cpu" and "ragged" are
# registered by ``jaxrl_llm.kernels``)
DECODE_BACKENDS = ("auto", "xla", "cpu", "ragged")


# The rollout kinds whose step is exactly prompts_per_step x group_size rows: ``validate`` checks
# train.num_minibatches and train.micro_batch_size against that count before anything runs. Other
# kinds produce other counts (pairs, refuel_pairs, latent_space: 2 rows a prompt; pref_groups: the
# on-policy rows plus static groups; tree: the edges that train plus replay), known only once
# collected; the update checks every kind's real count where it splits the rows (update.check_rows).
PROMPT_GROUP_KINDS = frozenset(
    {
        "group",
        "greedy_baseline",
        "budgeted",
        "single_stream",
        "self_judged",
        "rubric",
        "chain",
        "reset",
        "window",
        "episode",
        "replay_episode",
        "tool_tree",
        "dialogue_tree",
    }
)


def validate(cfg: Config) -> Config:
    """Checks ranges, literal choices and cross-field constraints; raises ``ConfigError``."""
    if not isinstance(cfg, Config):
        raise ConfigError(f"expected a jaxrl_llm.config.Config, got {type(cfg).__name__}")
    hints_cache: dict[type, dict[str, Any]] = {}
    for key, value in _walk(cfg):
        if key.startswith("algo."):
            continue
        section, _, name = key.rpartition(".")
        owner = _resolve(cfg, section) if section else cfg
        hints = hints_cache.setdefault(type(owner), typing.get_type_hints(type(owner)))
        _check_type(key, value, hints[name])
        if key in _POSITIVE and not value > 0:
            raise ConfigError(f"{key} must be > 0, got {value!r}")
        if key in _NON_NEGATIVE and not value >= 0:
            raise ConfigError(f"{key} must be >= 0, got {value!r}")
    s, t = cfg.sampling, cfg.train
    if s.temperature <= 0:
        raise ConfigError(f"sampling.temperature must be > 0, got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"sampling.top_p must be in (0, 1], got {s.top_p}")
    if s.backend not in DECODE_BACKENDS:
        raise ConfigError(f"sampling.backend must be one of {list(DECODE_BACKENDS)}, got {s.backend!r}")
    if cfg.optim.learning_rate <= 0 or cfg.sft.learning_rate <= 0:
        raise ConfigError("optim.learning_rate and sft.learning_rate must be > 0")
    if t.rollout_correction_cap <= 0 or not 0 <= t.rollout_correction_low < t.rollout_correction_high:
        raise ConfigError(
            "train.rollout_correction_cap must be > 0 and 0 <= rollout_correction_low < "
            f"rollout_correction_high, got {t.rollout_correction_cap}, {t.rollout_correction_low}, "
            f"{t.rollout_correction_high}"
        )
    if t.partial_rollout_tokens and not t.staleness:
        raise ConfigError(
            f"train.partial_rollout_tokens={t.partial_rollout_tokens} needs train.staleness > 0 (a generation is "
            "cut only at a version boundary, and with staleness 0 none falls inside it)"
        )
    if not cfg.algorithm:
        raise ConfigError("algorithm must name a registered algorithm")
    if cfg.algo is not None and not dataclasses.is_dataclass(cfg.algo):
        raise ConfigError(f"algo must be the algorithm's Config dataclass or None, got {type(cfg.algo).__name__}")
    resolved = resolve_algo(cfg)
    algo = algorithms.get(cfg.algorithm)
    if t.rollout and t.rollout not in algo.rollouts:
        raise ConfigError(
            f"train.rollout={t.rollout!r}: algorithm {cfg.algorithm!r} reads the rows of the kinds "
            f"{list(algo.rollouts)} only (its module's ROLLOUTS)"
        )
    if (t.rollout or algo.rollout) in PROMPT_GROUP_KINDS:  # the kind's row count is known now
        batch = t.prompts_per_step * t.group_size
        if batch % t.num_minibatches:
            raise ConfigError(
                f"train.num_minibatches={t.num_minibatches} must divide the rollout batch "
                f"prompts_per_step*group_size={batch}"
            )
        minibatch = batch // t.num_minibatches
        if t.micro_batch_size and minibatch % t.micro_batch_size:
            raise ConfigError(f"train.micro_batch_size={t.micro_batch_size} must divide the minibatch size {minibatch}")
    reason = algo.check_config(resolved)
    if reason:
        raise ConfigError(f"algorithm {cfg.algorithm!r} cannot run this config: {reason}")
    return cfg


def fit_to_task(cfg: Config, num_train: int) -> Config:
    """Checks the algorithm config against the task; fills ``num_prompts``.

    A per-prompt state (``algo.num_prompts``) indexes the task's training examples by
    ``prompt_ids``: 0 (unset) becomes ``num_train``; a method that draws its own prompts
    (``select_prompts``) covers the first ``num_prompts <= num_train`` examples; any other method
    needs ``num_prompts == num_train``. Raises ``ConfigError`` naming the field otherwise.
    """
    cfg = resolve_algo(cfg)
    a = cfg.algo
    names = {f.name for f in dataclasses.fields(a)}
    if "num_prompts" not in names:
        return cfg
    n = a.num_prompts
    draws_own = "select_prompts" in algorithms.get(cfg.algorithm).hooks
    if n == 0:
        return dataclasses.replace(cfg, algo=dataclasses.replace(a, num_prompts=num_train))
    if draws_own and n > num_train:
        raise ConfigError(
            f"algo.num_prompts={n} > the {num_train} training examples of task {cfg.task.name!r}: "
            f"{cfg.algorithm} draws prompt indices in [0, num_prompts); lower it"
        )
    if not draws_own and n != num_train:
        raise ConfigError(
            f"algo.num_prompts={n} != the {num_train} training examples of task {cfg.task.name!r}: "
            f"{cfg.algorithm}'s per-prompt state is indexed by the example index; set it to {num_train} or 0"
        )
    return cfg


def _check_type(key: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if hint is Any:
        return
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key} must be one of {list(typing.get_args(hint))}, got {value!r}")
        return
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                _check_type(key, value, arg)
                return
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} does not match {hint}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{key} must be None, got {value!r}")
        return
    if origin in (cabc.Mapping, dict) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}")
        return
    if origin in (tuple, cabc.Sequence, list):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{key} must be a sequence, got {type(value).__name__}")
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a float, got {value!r}")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an int, got {value!r}")
        return
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{key} must be {hint.__name__}, got {type(value).__name__} {value!r}")


# ---------------------------------------------------------------------------------------------
# Overrides


def _resolve(cfg: Any, dotted: str) -> Any:
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _parse_value(key: str, text: str, hint: Any) -> Any:
    """Parses the string ``text`` into the type ``hint`` of field ``key``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if origin is Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ConfigError(f"{key} must be one of {list(choices)}, got {text!r}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse_value(key, text, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: cannot parse {text!r} as {hint} ({'; '.join(errors)})")
    if hint is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be a bool (true/false), got {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key} must be an int, got {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} must be a float, got {text!r}") from None
    if hint is str:
        return text
    if origin in (cabc.Mapping, dict, tuple, list, cabc.Sequence):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"{key} must be JSON ({hint}), got {text!r}") from None
        if origin in (tuple, Sequence):
            value = tuple(value)
        _check_type(key, value, hint)
        return value
    raise ConfigError(f"{key}: overriding fields of type {hint} is not supported")


def _algo_config_class(algorithm: str):
    try:
        return algorithms.get(algorithm).Config
    except KeyError:
        raise ConfigError(f"algorithm {algorithm!r} is not registered; known: {sorted(algorithms.REGISTRY)}") from None


def resolve_algo(cfg: Config) -> Config:
    """Fills ``cfg.algo`` with the algorithm's default ``Config`` when it is ``None`` and checks
    that a given ``algo`` is an instance of the algorithm's ``Config``."""
    cls = _algo_config_class(cfg.algorithm)
    if cfg.algo is None:
        return dataclasses.replace(cfg, algo=cls())
    if not isinstance(cfg.algo, cls):
        raise ConfigError(
            f"algo is a {type(cfg.algo).__module__}.{type(cfg.algo).__name__} but algorithm "
            f"{cfg.algorithm!r} expects {cls.__module__}.{cls.__name__}"
        )
    return cfg


def _mapping_value(text: str) -> Any:
    """A mapping entry's value from ``--set``: JSON when it parses (``2``, ``true``, ``[1, 2]``,
    ``"2"``), else the text itself (``rg:chain_sum``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set(obj: Any, parts: list[str], text: str, path: str) -> Any:
    name = parts[0]
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"{path}: {'.'.join(path.split('.')[: -len(parts)])} is not a config section")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        section = path[: len(path) - len(".".join(parts))].rstrip(".") or "<root>"
        raise ConfigError(
            f"unknown config key {path!r}: section {section} has no field {name!r}; known: {sorted(fields)}"
        )
    current = getattr(obj, name)
    if len(parts) == 2 and isinstance(current, cabc.Mapping):  # one key of a mapping: task.kwargs.max_digits=2
        return dataclasses.replace(obj, **{name: {**current, parts[1]: _mapping_value(text)}})
    if len(parts) > 1:
        return dataclasses.replace(obj, **{name: _set(current, parts[1:], text, path)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(
            f"{path} is a section; set one of its fields, e.g. {path}.{dataclasses.fields(current)[0].name}"
        )
    hint = typing.get_type_hints(type(obj))[name]
    return dataclasses.replace(obj, **{name: _parse_value(path, text, hint)})


def set_field(obj: Any, dotted_key: str, text: str) -> Any:
    """A copy of the (nested) config dataclass ``obj`` with the field at ``dotted_key`` (``"a.b.c"``)
    set to ``text`` parsed by the field's type hint; raises ``ConfigError`` naming an unknown key, a
    section given in place of a field, or text the type cannot parse. A key one level into a
    mapping field sets that entry (``task.kwargs.max_digits=2``, value by ``_mapping_value``),
    keeping the others. The walker behind every
    ``--set key=value`` (LLM configs here, ``jaxrl_llm.control.config`` for control runs)."""
    return _set(obj, dotted_key.split("."), text, dotted_key)


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Applies ``["a.b=value", ...]`` in order and validates. ``algo.*`` keys are checked against
    the algorithm's own ``Config``; ``algorithm=`` resets ``algo`` to the new algorithm's defaults
    unless ``algo.*`` overrides follow."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if key == "algorithm":
            _algo_config_class(text)
            cfg = dataclasses.replace(cfg, algorithm=text, algo=None)
            continue
        if parts[0] == "algo":
            if len(parts) != 2:
                raise ConfigError(f"algo overrides are algo.<field>=value, got {key!r}")
            cfg = resolve_algo(cfg)
            cfg = dataclasses.replace(cfg, algo=_set(cfg.algo, parts[1:], text, key))
            continue
        cfg = set_field(cfg, key, text)
    return validate(cfg)


# ---------------------------------------------------------------------------------------------
# Experiments and serialization

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "experiments"


def experiment_config(spec: str | None) -> Any:
    """What ``get_config()`` of an experiment returns, not yet checked or validated: ``None`` or
    ``"default"`` = the embedded default (``default_config``); otherwise a path to a ``.py`` file or
    the stem of a file in ``experiments/``. ``load_experiment`` (LLM runs) and
    ``jaxrl_llm.control.config.load_experiment`` (control runs) check and validate it."""
    if spec in (None, "", "default"):
        return default_config()
    path = pathlib.Path(spec)
    if not path.suffix:
        path = EXPERIMENTS_DIR / f"{spec}.py"
    if not path.is_file():
        known = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py")) if EXPERIMENTS_DIR.is_dir() else []
        raise ConfigError(f"experiment {spec!r} not found (looked for {path}); known: {known}")
    module_spec = importlib.util.spec_from_file_location(f"jaxrl_llm_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    # The experiment's folder is importable while it loads, as when it runs as a script: shared
    # pieces live beside it (``experiments/bases/``).
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    # Registered while it runs, as an imported module is (dataclasses defined in it look it up).
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
        sys.modules.pop(module_spec.name, None)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"experiment {path} has no get_config()")
    return module.get_config()


def load_experiment(spec: str | None) -> Config:
    """The validated ``Config`` of an experiment (``experiment_config``)."""
    cfg = experiment_config(spec)
    if not isinstance(cfg, Config):
        raise ConfigError(f"experiment {spec}: get_config() returned {type(cfg).__name__}, expected Config")
    return validate(cfg)


def to_dict(cfg: Config) -> dict[str, Any]:
    """A JSON-serializable dict of the config (the algorithm's config under ``algo``)."""
    out = dataclasses.asdict(cfg)
    out["algo"] = dataclasses.asdict(cfg.algo) if dataclasses.is_dataclass(cfg.algo) else None
    return json.loads(json.dumps(out, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, Mapping):
        return dict(x)
    if isinstance(x, (tuple, set)):
        return list(x)
    return str(x)


def from_dict(d: Mapping[str, Any]) -> Config:
    """Inverse of ``to_dict``; unknown keys raise ``ConfigError``."""
    return validate(_build(Config, dict(d), ""))


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(prefix + k for k in unknown)}")
    kwargs = {}
    for name, value in d.items():
        hint = hints[name]
        if cls is Config and name == "algo":
            continue
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = _build(hint, dict(value), f"{prefix}{name}.")
        elif typing.get_origin(hint) in (tuple, cabc.Sequence) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    obj = cls(**kwargs)
    if cls is Config and d.get("algo") is not None:
        algo_cls = _algo_config_class(obj.algorithm)
        obj = dataclasses.replace(obj, algo=_build(algo_cls, dict(d["algo"]), "algo."))
    return obj


DEFAULT_TASK_KWARGS = {
    "min_terms": 2,
    "max_terms": 2,
    "min_digits": 1,
    "max_digits": 1,
    "operators": ["+", "-"],
    "allow_parentheses": False,
    "allow_negation": False,
    "num_eval": 500,
}


def default_config() -> Config:
    """The embedded default run (``jaxrl-llm train`` with no arguments): the ``small``
    from-scratch model, an SFT warm start on generated demonstrations (the task's reference answer
    followed by the stop token), then GRPO on reasoning-gym ``basic_arithmetic`` (two one-digit
    operands, + and -). See ``experiments/default.py`` for its command, hardware, time and result."""
    return Config(
        name="default",
        algorithm="grpo",
        model=ModelConfig(name="small"),
        # The ChatML-wrapped questions are 35-36 tokens: a cap of 40 pads them to 40, not 64.
        task=TaskConfig(name="rg:basic_arithmetic", kwargs=dict(DEFAULT_TASK_KWARGS), max_prompt_len=40),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=4),
        optim=OptimConfig(learning_rate=5e-5, warmup_steps=0, max_grad_norm=1.0),
        train=TrainConfig(steps=1100, prompts_per_step=16, group_size=8),
        sft=SFTConfig(steps=120, batch_size=64, learning_rate=1e-3, warmup_steps=20, template="{answer}"),
        eval=EvalConfig(every=220, num_examples=256, k=4, batch_size=256),
        checkpoint=CheckpointConfig(every=110),
        reward=RewardConfig(num_workers=2, timeout_s=10.0),
    )
