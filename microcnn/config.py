"""Typed experiment configuration: YAML (or a dict) in, :class:`ExperimentConfig` out.

Every section is a dataclass whose fields are the options with their defaults; ``model`` and ``loss`` are
free mappings ``{name, **kwargs}`` that their builders check (``build_model``, the loss registry). Unknown
keys raise :class:`~microcnn.errors.ConfigError` naming the dotted path and the closest known key; values
are type-checked and coerced (``"1e-3"`` -> 0.001, ``1`` -> 1.0, a scalar -> a one-item list is *not*
done: lists must be lists). No ``_target_``, no expressions: YAML is read with ``yaml.safe_load``.

Relative paths (``data.source``, ``data.split``, ``data.cache_dir``, ``output_dir``) resolve against the
current working directory, not the config file's folder: run ``microcnn train configs/uhcs.yaml`` from the
repository root and ``../shared/data/...`` points next to the checkout.

Example:
    >>> cfg = load_config({"task": "segmentation", "model": {"name": "unet"}}, overrides=["train.epochs=3"])
    >>> cfg.train.epochs, cfg.optim.name
    (3, 'adamw')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microcnn.errors import ConfigError
from microcnn.registry import suggest

TASKS = ("classification", "segmentation", "regression")
# closed choices, checked at load time: dotted field path -> allowed values
CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASKS,
    "optim.name": ("sgd", "adam", "adamw", "rmsprop", "adagrad"),
    "schedule.name": ("none", "step", "multistep", "cosine", "onecycle", "plateau"),
    "train.nan_policy": ("stop", "skip"),
    "train.amp": ("auto", "off", "bf16", "fp16"),
    "train.dtype": ("float32", "float64"),
    "train.early_stopping.mode": ("auto", "min", "max"),
}


@dataclass
class SynthConfig:
    """Parameters of ``data.source: synthetic`` (see ``microcnn synth``); generated once into a cache."""

    n: int = 24
    size: int = 64
    seed: int = 0
    kinds: list[str] | None = None
    targets: list[str] | None = None  # regression targets; None = porosity, tortuosity, deff_ratio
    info_bar: bool = False


@dataclass
class DataConfig:
    """Where the images come from and how they are split and fed."""

    source: str = "synthetic"  # a dataset folder, an .h5 archive, or "synthetic"
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    cache_dir: str = "runs/.synth-cache"
    patch_size: int | None = None  # training crops (px); None = whole images
    patches_per_image: int = 1
    val_fraction: float = 0.2
    split: str | None = None  # a split.json (save_split); None = make_splits(seed)
    samples_csv: str | None = None
    group_column: str = "sample_id"
    pixel_size_column: str = "pixel_size_um"
    class_names: list[str] | None = None
    target_names: list[str] | None = None
    target_units: list[str] | None = None
    num_workers: int = 0
    pin_memory: bool = True  # used on CUDA only
    persistent_workers: bool = True  # used when num_workers > 0


@dataclass
class OptimConfig:
    """Optimizer. ``weight_decay`` goes to the optimizer (decoupled for AdamW); ``l1``/``l2`` are explicit
    penalties ``l1 * sum|w| + l2/2 * sum w^2`` over weights (not biases or norm parameters) added to the
    loss."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw
    eps: float = 1e-8
    alpha: float = 0.99  # rmsprop smoothing
    l1: float = 0.0
    l2: float = 0.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule; ``step``/``multistep``/``plateau`` step per epoch, ``onecycle`` and ``cosine``
    (its warm-up and its annealing) per optimizer step."""

    name: str = "none"
    step_size: int = 10  # step: epochs between decays
    milestones: list[int] = field(default_factory=lambda: [30, 60])  # multistep: epochs
    gamma: float = 0.1  # step, multistep
    warmup_epochs: float = 0.0  # cosine: linear warm-up length
    min_lr: float = 0.0  # cosine: final lr
    max_lr: float | None = None  # onecycle: peak lr (None = optim.lr)
    pct_start: float = 0.3  # onecycle
    factor: float = 0.1  # plateau
    patience: int = 5  # plateau (epochs)


@dataclass
class EarlyStoppingConfig:
    """Stop when ``metric`` has not improved for ``patience`` epochs (0 = never stop early). The same metric
    picks the best epoch whose weights go to ``model.safetensors``."""

    metric: str = "val_loss"
    patience: int = 0
    mode: str = "auto"  # auto = min for losses and errors (loss, mae, rmse), max otherwise
    min_delta: float = 0.0


@dataclass
class TrainConfig:
    """The training loop. ``batch_size`` is the global batch: with N processes each takes batch_size / N."""

    epochs: int = 10
    batch_size: int = 8
    eval_batch_size: int | None = None  # None = batch_size
    accumulate: int = 1  # gradient accumulation (batches per optimizer step)
    clip_grad_norm: float | None = None
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    # wall-clock budget (minutes) for training + validation: no epoch is started that would end past it, and
    # a cosine schedule anneals over the time (not the steps) of the budget; train.epochs stays the maximum
    max_minutes: float | None = None
    amp: str = "auto"  # auto = bf16 on CUDA where supported, else fp16 + GradScaler; never on CPU
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "float32"
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    nan_policy: str = "stop"  # stop | skip (the step is dropped and logged)
    min_batch_size: int = 1  # floor when CUDA out-of-memory halves the batch
    balanced_sampling: bool = False  # classification: sample classes equally often
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise-reproducible on CPU)
    checkpoint_every_steps: int = 0  # also write last.pt every N optimizer steps (0 = per epoch only)


@dataclass
class ExperimentConfig:
    """One experiment: data, model, augmentation, optimizer, schedule, loss and loop settings."""

    task: str = "segmentation"
    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "unet"})
    augment: list[dict[str, Any]] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "auto"})

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists (what :func:`save_config` writes and :func:`load_config` reads back)."""
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("true", "yes", "on")
    raise TypeError


def _to_number(kind: type) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise TypeError
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str | kind) or (kind is float and isinstance(value, int)):
            return kind(value)  # YAML 1.1 reads "1e-3" as a string; float("1e-3") is fine
        raise TypeError

    return convert


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError


_SCALARS = {bool: _to_bool, int: _to_number(int), float: _to_number(float), str: _to_str}


def _coerce_scalar(value: Any, tp: type, where: str) -> Any:
    try:
        return _SCALARS[tp](value)
    except (TypeError, ValueError, KeyError):
        raise ConfigError(
            f"'{where}' must be {_type_name(tp)}; got {value!r} ({type(value).__name__})."
        ) from None


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if value is None:
        raise ConfigError(f"'{where}' must not be empty (null); give a {_type_name(tp)}.")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' must be a list; got {value!r}. Write it as [a, b, ...].")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping (key: value); got {value!r}.")
        return dict(value)
    if tp is Any:
        return value
    return _coerce_scalar(value, tp, where)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if isinstance(raw, cls):
        raw = dataclasses.asdict(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix or 'config'}' must be a mapping (key: value); got {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(
                f"Unknown config key '{where}'.{suggest(str(key), names)} Known: {', '.join(names)}."
            )
        kwargs[key] = _coerce(value, hints[key], where)
        if where in CHOICES and kwargs[key] not in CHOICES[where]:
            raise ConfigError(
                f"Unknown value {kwargs[key]!r} for '{where}'.{suggest(str(kwargs[key]), CHOICES[where])} "
                f"Available: {', '.join(CHOICES[where])}."
            )
    return cls(**kwargs)


def _validate(cfg: ExperimentConfig) -> ExperimentConfig:
    for section, key in (("model", "model"), ("loss", "loss")):
        mapping = getattr(cfg, section)
        if "name" not in mapping or not isinstance(mapping["name"], str):
            raise ConfigError(f"'{key}' needs a 'name' string; got {mapping!r}. E.g. {key}: {{name: ...}}.")
    for i, entry in enumerate(cfg.augment):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"'augment[{i}]' must be a mapping with a 'name'; got {entry!r}.")
    positive = {
        "train.epochs": cfg.train.epochs,
        "train.batch_size": cfg.train.batch_size,
        "train.accumulate": cfg.train.accumulate,
        "train.min_batch_size": cfg.train.min_batch_size,
        "data.patches_per_image": cfg.data.patches_per_image,
    }
    for where, value in positive.items():
        if value < 1:
            raise ConfigError(f"'{where}' must be >= 1; got {value}.")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"'optim.lr' must be > 0; got {cfg.optim.lr}.")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"'data.val_fraction' must be in [0, 1); got {cfg.data.val_fraction}.")
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` -> (["train", "epochs"], 3); the value is read with ``yaml.safe_load``."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"An override must look like key.sub=value; got {text!r}.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Cannot read the value of override {text!r}: {exc}") from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b=value`` in a copy of the raw mapping (unknown keys are caught when it is built)."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"Override {text!r}: '{part}' holds {child!r}, not a mapping.")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (no tags, no code)."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"Config file '{path}' not found. The configs/ folder holds ready examples."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file '{path}' is not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping at the top; got {type(raw).__name__}.")
    return raw


def load_config(
    source: str | Path | dict[str, Any] | ExperimentConfig, *, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from a YAML path, a mapping or another config, then overrides.

    Args:
        source: path to a YAML file, a mapping with the same keys, or a config (copied).
        overrides: ``["train.epochs=3", "optim.lr=1e-4", "model.depth=3"]``; values parsed as YAML.

    Example:
        >>> load_config("configs/segment_unet_bilinear.yaml", overrides=["train.epochs=1"])  # doctest: +SKIP
    """
    if isinstance(source, ExperimentConfig):
        raw = source.to_dict()
    elif isinstance(source, dict):
        raw = source
    else:
        raw = read_yaml(source)
    defaults = ExperimentConfig()
    raw = {"model": defaults.model, "loss": defaults.loss, **raw}  # so "model.depth=3" extends the default
    raw = apply_overrides(raw, list(overrides or []))
    return _validate(_build(ExperimentConfig, raw, ""))


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML; ``load_config(path)`` gives an equal config back."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
