"""Experiment configs: YAML files validated into typed, frozen dataclasses.

Every problem is a `ConfigError` naming the file, the key and the valid choices,
raised before anything is trained or written.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from posenc_jax.nn.architecture import Architecture, make_architecture
from posenc_jax.nn.patterns import layer_pattern
from posenc_jax.schemes import context_extension_names
from posenc_jax.softmax_scale import SoftmaxScale, make_softmax_scale

__all__ = [
    "ConfigError",
    "EvalConfig",
    "ExperimentConfig",
    "MeshConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "expand_lengths",
    "learning_rates",
    "load_config",
]


class ConfigError(ValueError):
    """A config problem, with the file and key it concerns."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The tiny transformer (`posenc_jax.nn.TransformerLM` / `TransformerEncoder`).

    ``softmax_scale``: a length-scaled softmax on top of every scheme of the config
    (`posenc_jax.softmax_scale`): null, a kind name (``logn``, ``qwen``, ``ssmax``,
    ``llama4``) or a mapping with ``kind`` and its settings.

    ``layer_pattern``: per-layer overrides repeated over the depth (`posenc_jax.nn.patterns`):
    null, a list of mappings with keys among ``scheme``, ``sliding_window``,
    ``attention_chunk``, ``softmax_scale`` and ``attention_sinks``, or a preset
    ``{preset: gemma3, sliding_window: 32}`` / ``{preset: llama4, attention_chunk: 32}``.
    Layers that set no scheme take the row's scheme (and its context extensions).

    ``architecture``: null or a mapping of `posenc_jax.nn.Architecture` fields (gated
    MLP, activation, parallel residual, biases, ...) for the trained models.

    ``pretrained``: a local Hugging Face model directory (config.json, *.safetensors,
    tokenizer.json): no training; its weights are evaluated as they are, and under
    each context extension its scheme offers (`posenc_jax.nn.from_hf`). The sizes,
    scheme and architecture then come from its config.json (leave ``schemes`` out),
    and the lm task reads text with its tokenizer.
    """

    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    num_kv_heads: int | None = None
    mlp_ratio: int = 4
    norm: str = "layernorm"
    dropout: float = 0.0
    dtype: str = "float32"
    softmax_scale: Any = None
    layer_pattern: Any = None
    architecture: Any = None
    pretrained: str | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training: lengths sampled uniformly in [min_length, length] for every batch.

    ``length`` and ``min_length`` both left null take each task's reference range
    (``task.train_lengths``, see `posenc_jax.harness.plan`); ``length`` alone trains from
    length 1, ``min_length`` alone up to the reference maximum. ``learning_rate`` may be
    a list: a sweep axis like ``seeds`` (one run per rate, see `learning_rates`).

    ``randomized_positions`` N trains on randomized positions from [0, N) (Ruoss et al.
    2023); ``randomization`` says how a scheme is randomized: "positions" (sorted random
    positions, any scheme), "distances" (sorted random distances from [1, N) for the
    offsets ``k - q``, drawn per step and per layer: the reference's Toeplitz bias,
    for schemes with ``accepts_distances``: alibi, t5, kerple, shaw, deberta, xl) or
    "auto" (distances where the reference randomizes so, alibi and xl; positions
    otherwise).
    ``randomize_both_sides`` draws the distances left of the query apart from those to
    its right (the reference's option; default: mirrored).

    ``micro_batches`` M splits each step's rows into M parts whose forward and backward
    passes are independent computations in one compiled step, their gradients summed
    (the same update; XLA:CPU runs the parts side by side on the cores, which a
    small model's operations alone do not fill). "auto", on a CPU, for a step of at
    least 4096 tokens not sharded over a data axis and whose model draws no training
    randomness (dropout, Abacus offsets): the fewest parts (even, at most 8) whose
    scores take at most 16 MiB; 1 otherwise (GPU, TPU). See
    `posenc_jax.harness.train.micro_batches_for` and
    docs/performance.md.
    """

    length: int | None = None
    min_length: int | None = None
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float | tuple[float, ...] = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    randomized_positions: int | None = None
    randomization: str = "auto"
    randomize_both_sides: bool = False
    micro_batches: int | str = "auto"
    log_every: int = 50
    checkpoint_every: int = 0
    finetune_steps: int = 0
    finetune_length: int | None = None
    finetune_learning_rate: float = 1.0e-4


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation at each length of ``lengths`` (task lengths, as in the papers; items may
    be ranges ``{from: 41, to: 500, step: 1}``, see `expand_lengths`). Null: each task's
    reference test lengths (``task.eval_lengths``)."""

    lengths: tuple[int, ...] | None = None
    batch_size: int = 64
    num_batches: int = 1
    context_extensions: tuple[str, ...] = ()
    bucket: bool = True
    blockwise_threshold: int | None = 2048
    block_size: int = 512
    attention_maps: int = 256
    randomized_positions: bool = True


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh: seeds and batch rows sharded over devices (null = chosen automatically)."""

    seed: int | None = None
    data: int | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A grid: every scheme x task, each trained for all seeds together."""

    name: str = "experiment"
    schemes: tuple[Any, ...] = ("nope",)
    tasks: tuple[Any, ...] = ("reverse_string",)
    seeds: tuple[int, ...] = (0,)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    mesh: MeshConfig = MeshConfig()


NORMS = ("layernorm", "rmsnorm")
RANDOMIZATIONS = ("auto", "positions", "distances")
DTYPES = ("float32", "bfloat16")
_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "eval": EvalConfig, "mesh": MeshConfig}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Checks ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            value = [value]
        if item_tp is Any:
            return tuple(value)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where} must be {_type_name(tp)}; got {value!r}")


def build_section(cls: type, data: Any, where: str) -> Any:
    """Builds one config dataclass from a mapping, checking keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping; got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key {where + '.' if where else ''}{key}; valid keys: {sorted(fields)}"
            )
        path = f"{where}.{key}" if where else key
        if key in _SECTIONS and cls is ExperimentConfig:
            kwargs[key] = build_section(_SECTIONS[key], value, key)
        elif cls is TrainConfig and key == "learning_rate":
            kwargs[key] = _learning_rate(value, path)
        elif cls is ModelConfig and key == "softmax_scale":
            kwargs[key] = _softmax_scale(value, path)
        elif cls is ModelConfig and key == "layer_pattern":
            kwargs[key] = _layer_pattern(value, path)
        elif cls is ModelConfig and key == "architecture":
            kwargs[key] = _architecture(value, path)
        else:
            kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _learning_rate(value: Any, where: str) -> float | tuple[float, ...]:
    """A rate, or a list of rates (a sweep axis, like ``seeds``)."""
    try:
        if isinstance(value, list | tuple):
            return tuple(_coerce(v, float, f"{where}[{i}]") for i, v in enumerate(value))
        return _coerce(value, float, where)
    except ConfigError:
        raise ConfigError(
            f"{where} must be a number or a list of numbers (a sweep, e.g. "
            f"[1.0e-4, 3.0e-4, 5.0e-4]); got {value!r}"
        ) from None


def _architecture(value: Any, where: str) -> Architecture | None:
    """An `Architecture` (frozen) from null or a mapping of its fields."""
    if value is None:
        return None
    try:
        return make_architecture(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _softmax_scale(value: Any, where: str) -> SoftmaxScale | None:
    """A `SoftmaxScale` (hashable, frozen) from null, a kind name or a mapping."""
    try:
        return make_softmax_scale(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _layer_pattern(value: Any, where: str) -> tuple[dict[str, Any], ...] | None:
    """The per-layer overrides (a preset expanded; each entry's scheme and softmax scale
    checked here rather than when the first model is built)."""
    try:
        return layer_pattern(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def learning_rates(tcfg: TrainConfig) -> tuple[float, ...]:
    """The learning rates of ``tcfg``: a one-element tuple unless it sweeps several."""
    lr = tcfg.learning_rate
    return tuple(lr) if isinstance(lr, tuple | list) else (lr,)


def _positive(value: int | float, key: str, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} must be {bound}; got {value}")


def _choice(value: str, key: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}; got {value!r}")


def _check_micro_batches(t: TrainConfig, m: ModelConfig) -> None:
    value = t.micro_batches
    if value == "auto":
        return
    if isinstance(value, str) or value < 1:
        raise ConfigError(f'train.micro_batches must be "auto" or an int >= 1; got {value!r}')
    if t.batch_size % value:
        raise ConfigError(
            f"train.micro_batches ({value}) must divide train.batch_size ({t.batch_size})"
        )
    if value > 1 and m.dropout > 0:
        raise ConfigError(
            f"train.micro_batches ({value}) > 1 needs a model without dropout (model.dropout "
            f"= {m.dropout}): every part would draw the same dropout masks; use 1 or auto"
        )


def validate(cfg: ExperimentConfig) -> None:
    """Checks values across a whole config (ranges, choices, consistency)."""
    m, t, e = cfg.model, cfg.train, cfg.eval
    for key in ("num_layers", "d_model", "num_heads", "mlp_ratio"):
        _positive(getattr(m, key), f"model.{key}")
    if m.num_heads > m.d_model:
        raise ConfigError(
            f"model.num_heads ({m.num_heads}) must not exceed model.d_model ({m.d_model})"
        )
    if m.d_model % m.num_heads:
        raise ConfigError(
            f"model.d_model ({m.d_model}) must be divisible by model.num_heads ({m.num_heads})"
        )
    if m.num_kv_heads is not None and (m.num_kv_heads < 1 or m.num_heads % m.num_kv_heads):
        raise ConfigError(
            f"model.num_kv_heads must divide model.num_heads ({m.num_heads}); got {m.num_kv_heads}"
        )
    _choice(m.norm, "model.norm", NORMS)
    _choice(m.dtype, "model.dtype", DTYPES)
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1); got {m.dropout}")
    for key in ("length", "min_length", "steps", "batch_size"):
        if getattr(t, key) is not None:
            _positive(getattr(t, key), f"train.{key}")
    lrs = learning_rates(t)
    if not lrs:
        raise ConfigError("train.learning_rate must be a number or a non-empty list of numbers")
    for i, lr in enumerate(lrs):
        _positive(lr, "train.learning_rate" if len(lrs) == 1 else f"train.learning_rate[{i}]")
    if len(set(lrs)) != len(lrs):
        raise ConfigError(f"train.learning_rate must list distinct rates; got {list(lrs)}")
    for key in ("warmup_steps", "weight_decay", "grad_clip", "log_every", "checkpoint_every"):
        _positive(getattr(t, key), f"train.{key}", allow_zero=True)
    _positive(t.finetune_steps, "train.finetune_steps", allow_zero=True)
    _positive(t.finetune_learning_rate, "train.finetune_learning_rate")
    if t.finetune_length is not None:
        _positive(t.finetune_length, "train.finetune_length")
    elif t.finetune_steps > 0:
        raise ConfigError(
            f"train.finetune_length must be set when train.finetune_steps > 0 "
            f"(got finetune_steps={t.finetune_steps}); it is the task length to fine-tune at"
        )
    if t.min_length is not None and t.length is not None and t.min_length > t.length:
        raise ConfigError(f"train.min_length ({t.min_length}) must be <= train.length ({t.length})")
    if t.randomized_positions is not None and t.randomized_positions < 1:
        raise ConfigError(
            f"train.randomized_positions must be null or >= 1; got {t.randomized_positions}"
        )
    if t.randomization not in RANDOMIZATIONS:
        raise ConfigError(
            f"train.randomization must be one of {list(RANDOMIZATIONS)}; got {t.randomization!r}"
        )
    if not isinstance(t.randomize_both_sides, bool):
        raise ConfigError(
            f"train.randomize_both_sides must be true or false; got {t.randomize_both_sides!r}"
        )
    _check_micro_batches(t, m)
    if e.lengths is not None and not e.lengths:
        raise ConfigError("eval.lengths must list at least one length")
    for i, length in enumerate(e.lengths or ()):
        _positive(length, f"eval.lengths[{i}]")
    _positive(e.batch_size, "eval.batch_size")
    _positive(e.num_batches, "eval.num_batches")
    _positive(e.block_size, "eval.block_size")
    _positive(e.attention_maps, "eval.attention_maps", allow_zero=True)
    for i, name in enumerate(e.context_extensions):
        _choice(name, f"eval.context_extensions[{i}]", context_extension_names())
    for key in ("seed", "data"):
        value = getattr(cfg.mesh, key)
        if value is not None:
            _positive(value, f"mesh.{key}")
    if not cfg.seeds:
        raise ConfigError("seeds must list at least one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds must be distinct; got {list(cfg.seeds)}")
    if not cfg.schemes:
        raise ConfigError("schemes must list at least one scheme")
    if not cfg.tasks:
        raise ConfigError("tasks must list at least one task")


def config_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> ExperimentConfig:
    """Validates a plain dict (as read from YAML) into an `ExperimentConfig`.

    Raises:
      ConfigError: naming ``source``, the key and the valid choices.
    """
    try:
        data = _renamed_keys(data)
        body = data.get("eval")
        if isinstance(body, Mapping) and body.get("lengths") is not None:
            data = {
                **data,
                "eval": {**body, "lengths": expand_lengths(body["lengths"], "eval.lengths")},
            }
        cfg = build_section(ExperimentConfig, data, "")
        validate(cfg)
        _check_pretrained(cfg, data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def _check_pretrained(cfg: ExperimentConfig, data: Mapping[str, Any]) -> None:
    """A pretrained model brings its scheme and is not trained: no ``schemes``, one seed,
    no fine-tuning."""
    if not cfg.model.pretrained:
        return
    if "schemes" in data:
        raise ConfigError(
            "model.pretrained takes its scheme from the checkpoint's config.json: remove "
            "schemes (eval.context_extensions lists the variants to evaluate)"
        )
    if len(cfg.seeds) != 1:
        raise ConfigError(
            f"model.pretrained evaluates one set of weights: seeds must have one entry; got "
            f"{list(cfg.seeds)}"
        )
    if cfg.train.finetune_steps:
        raise ConfigError("model.pretrained is not trained here: train.finetune_steps must be 0")
    if isinstance(cfg.train.learning_rate, tuple) and len(cfg.train.learning_rate) > 1:
        raise ConfigError(
            "model.pretrained is not trained here: train.learning_rate must not be a sweep"
        )
    other = sorted(set(data.get("model") or {}) - {"pretrained", "dtype"})
    if other:
        raise ConfigError(
            f"model.pretrained takes the model from its config.json: remove model.{other[0]} "
            "(only model.dtype may be set beside it)"
        )


def expand_lengths(value: Any, key: str) -> tuple[int, ...]:
    """Evaluation lengths from a list whose items are lengths or inclusive ranges.

    ``[12, 24, {from: 41, to: 500}]`` or ``{from: 41, to: 500, step: 1}``: a range holds
    every ``step``-th length from ``from`` to ``to`` inclusive (Deletang et al. evaluate
    every length 41..500). Order is kept; repeats are dropped.

    Raises:
      ConfigError: naming ``key`` for anything but positive integers and such ranges.
    """
    items = [value] if isinstance(value, Mapping) or not isinstance(value, list | tuple) else value
    out: list[int] = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if items is value else key
        if isinstance(item, Mapping):
            unknown = set(item) - {"from", "to", "step"}
            bounds = [item.get(k) for k in ("from", "to")] + [item.get("step", 1)]
            if unknown or any(isinstance(b, bool) or not isinstance(b, int) for b in bounds):
                raise ConfigError(
                    f"{where} must be a length or a range {{from: A, to: B, step: S}} of "
                    f"integers (step optional); got {dict(item)!r}"
                )
            start, stop, step = bounds
            if start < 1 or stop < start or step < 1:
                raise ConfigError(f"{where}: a range needs 1 <= from <= to and step >= 1")
            out += range(start, stop + 1, step)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= 1:
            out.append(item)
        else:
            raise ConfigError(f"{where} must be an integer >= 1 or a range; got {item!r}")
    if not out:
        raise ConfigError(f"{key} must list at least one length")
    return tuple(dict.fromkeys(out))


RENAMED_KEYS: dict[tuple[str, str], str] = {("eval", "rope_scalings"): "context_extensions"}
"""Keys read under their former name, with a one-line notice: (section, old) -> new."""


def _renamed_keys(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with former key names replaced by the current ones (a notice for each)."""
    out = dict(data)
    for (section, old), new in RENAMED_KEYS.items():
        body = out.get(section)
        if not isinstance(body, Mapping) or old not in body:
            continue
        if new in body:
            raise ConfigError(f"{section}.{old} is the former name of {section}.{new}; give one")
        print(f"notice: {section}.{old} is now {section}.{new}; read as such", file=sys.stderr)
        out[section] = {(new if k == old else k): v for k, v in body.items()}
    return out


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain (YAML-ready) dict of a config; `config_from_dict` inverts it."""

    def plain(x: Any) -> Any:
        if isinstance(x, tuple | list):
            return [plain(v) for v in x]
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(cfg))


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. train.steps=500); got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
    return key.strip().split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``section.key=value`` overrides (values parsed as YAML) to a config dict."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        path, value = _parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {part!r} is not a section")
            node[part] = child
            node = child
        node[path[-1]] = value
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Reads, overrides and validates a YAML experiment config.

    Raises:
      ConfigError: for a missing or malformed file, unknown keys or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    if data is None or data == {}:
        raise ConfigError(f"{path}: the file holds no settings (see configs/quick.yaml)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    try:
        data = apply_overrides(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return config_from_dict(data, source=str(path))
