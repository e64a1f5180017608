"""Run configuration of the recipes: YAML files plus command-line overrides, validated in one place.

A run is described by a :class:`TrainConfig`. Values come, in increasing priority, from the dataclass
defaults, a YAML file (``--config``, default ``recipes/configs/synthetic.yaml``) and ``--key value`` /
``--key=value`` options on the command line. Model hyper-parameters live under ``model:`` in YAML and are
overridden as ``--model.<name> value``; their names are those of :class:`modeling_comp.ComPConfig`. Any
unknown key, in a file or on the command line, is a one-line error naming it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


__all__ = [
    "CONFIG_DIR",
    "CORPORA",
    "IEMOCAP_CORPORA",
    "CMU_CORPORA",
    "DEFAULT_CONFIG",
    "RecipeError",
    "ConfigError",
    "TrainConfig",
    "load_yaml_config",
    "parse_train_args",
    "config_help",
    "model_config_keys",
    "parse_value",
    "coerce_value",
    "split_options",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "synthetic.yaml"
IEMOCAP_CORPORA = ("iemocap4", "iemocap6")
CMU_CORPORA = ("mosi", "mosei")
CORPORA = ("synthetic", *IEMOCAP_CORPORA, *CMU_CORPORA)
_SELECTIONS = ("validation", "test")
_PROTOCOLS = ("rate", "subset")
_PRECISIONS = ("no", "fp16", "bf16")
_REPORTERS = ("tensorboard", "none")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class RecipeError(Exception):
    """An error the user can fix (bad config, missing data, unwritable directory); printed as one line."""


class ConfigError(RecipeError, ValueError):
    """A bad configuration value or key."""


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved next to its outputs as ``config.yaml``."""

    # ---- data
    dataset: str = field(
        default="synthetic",
        metadata=_help(
            "corpus: synthetic | iemocap4 | iemocap6 | mosi | mosei, or a Hub dataset id (org/name) of "
            "comp-emotion parquet features"
        ),
    )
    dataset_config: str | None = field(
        default=None,
        metadata=_help("synthetic: which corpus shape to imitate (e.g. iemocap4, mosi); Hub id: the config name"),
    )
    data_dir: str | None = field(
        default=None, metadata=_help("folder of the raw features (GCNet or MMSA layout) for a real corpus")
    )
    dataset_kwargs: dict = field(
        default_factory=dict, metadata=_help("extra keyword arguments for hub_datasets.load_dataset (YAML mapping)")
    )
    missing_protocol: str = field(default="rate", metadata=_help("rate (the paper's) | subset (MMIN/MoMKE)"))
    missing_rate: float = field(
        default=0.0, metadata=_help("rate protocol: fraction of missing (utterance, modality) pairs, in [0, 1)")
    )
    observed_modalities: str | None = field(
        default=None, metadata=_help("subset protocol: the observed modalities, letters of 'atv' (e.g. 'at')")
    )
    fold: str | None = field(
        default=None,
        metadata=_help("IEMOCAP leave-one-session-out fold 1..5, or 'all' (mean ± std over the five folds)"),
    )
    mask_seed: int | None = field(default=None, metadata=_help("seed of the missing-modality masks (default: seed)"))
    # ---- model
    model: dict = field(
        default_factory=dict, metadata=_help("ComPConfig keyword arguments (override as --model.<name> value)")
    )
    # ---- optimisation
    epochs: int = field(default=300, metadata=_help("total training epochs (stage 1 + stage 2)"))
    stage1_epochs: int = field(default=150, metadata=_help("epochs of stage 1 (unimodal paths) before stage 2"))
    batch_size: int = field(default=32, metadata=_help("conversations per training batch (per process)"))
    eval_batch_size: int | None = field(default=None, metadata=_help("conversations per evaluation batch"))
    learning_rate: float = field(default=1e-4, metadata=_help("Adam learning rate (no schedule)"))
    weight_decay: float = field(default=1e-5, metadata=_help("Adam coupled L2 (torch.optim.Adam weight_decay)"))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("batches accumulated per optimiser step"))
    mixed_precision: str = field(default="no", metadata=_help("no | fp16 | bf16 (accelerate autocast)"))
    max_grad_norm: float | None = field(default=None, metadata=_help("clip gradients to this norm (off by default)"))
    seed: int = field(default=0, metadata=_help("seed of initialisation, shuffling, dropout (and masks)"))
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes"))
    # ---- model selection
    selection: str = field(
        default="validation",
        metadata=_help("validation: best validation epoch | test: best test epoch (the paper's, optimistic)"),
    )
    selection_metric: str | None = field(
        default=None, metadata=_help("metric that picks the epoch (default: accuracy / f1 for regression)")
    )
    selection_stage: int = field(
        default=2, metadata=_help("earliest stage whose epochs can be selected (2: stage-2 epochs only)")
    )
    # ---- protocol (released-protocol block: begin)
    protocol: str = field(
        default="default",
        metadata=_help(
            "default (fixed masks, validation selection) | released: the authors' released protocol end to end "
            "(per-batch masks, best TEST epoch; OPTIMISTIC, for comparison with the paper)"
        ),
    )
    # ---- protocol (released-protocol block: end)
    # ---- outputs
    output_dir: str | None = field(default=None, metadata=_help("run directory (default: runs/<corpus>-<...>)"))
    overwrite_output_dir: bool = field(default=False, metadata=_help("allow reusing a non-empty output_dir"))
    resume_from_checkpoint: str | None = field(
        default=None, metadata=_help("'latest' (in output_dir) or a checkpoint directory to continue from")
    )
    checkpoint_every: int = field(default=1, metadata=_help("save_state every N epochs (and after the last)"))
    checkpoint_total_limit: int | None = field(default=2, metadata=_help("checkpoints kept (None: all)"))
    report_to: str = field(default="tensorboard", metadata=_help("tensorboard | none"))
    progress: bool = field(default=True, metadata=_help("show progress bars (main process)"))
    push_to_hub: str | None = field(default=None, metadata=_help("Hub repo id (org/name) to push the selected model"))
    hub_private: bool | None = field(
        default=None, metadata=_help("private Hub repo (default: True for IEMOCAP-trained models, else False)")
    )
    hub_token: str | None = field(default=None, metadata=_help("Hub token (default: the logged-in token)"))

    # ------------------------------------------------------------------ derived values
    @property
    def is_iemocap(self) -> bool:
        """Whether the corpus (or the synthetic corpus's shape) is IEMOCAP-like (folds apply)."""
        return self.corpus_shape in IEMOCAP_CORPORA

    @property
    def corpus_shape(self) -> str:
        """The corpus name, or for the synthetic corpus / a Hub id, the config it imitates."""
        if self.dataset in CORPORA and self.dataset != "synthetic":
            return self.dataset
        return (self.dataset_config or "").lower()

    @property
    def is_synthetic(self) -> bool:
        """True for the built-in synthetic corpus."""
        return self.dataset == "synthetic"

    def folds(self) -> list[int | None]:
        """The folds this config runs: ``[None]`` when folds do not apply."""
        if self.fold is None:
            return [None]
        if str(self.fold).lower() == "all":
            return [1, 2, 3, 4, 5]
        return [int(self.fold)]

    @property
    def resolved_mask_seed(self) -> int:
        """Seed of the masks: ``mask_seed`` or ``seed``."""
        return self.seed if self.mask_seed is None else self.mask_seed

    # ------------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Checks every value; raises :class:`ConfigError` naming the field, the value and what was expected."""

        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r} is invalid: expected {expected}")

        if self.dataset not in CORPORA and not _HUB_ID.match(self.dataset):
            raise ConfigError(
                f"unknown corpus dataset={self.dataset!r}: expected one of {', '.join(CORPORA)} or a Hub id org/name"
            )
        if self.dataset in CORPORA and self.dataset != "synthetic" and self.data_dir is None:
            raise ConfigError(
                f"dataset={self.dataset!r} needs --data_dir pointing at its features (GCNet or MMSA layout); "
                "use --dataset synthetic to run without data"
            )
        if not isinstance(self.dataset_kwargs, dict):
            raise bad("dataset_kwargs", "a mapping")
        if self.missing_protocol not in _PROTOCOLS:
            raise bad("missing_protocol", " or ".join(_PROTOCOLS))
        if not (isinstance(self.missing_rate, (int, float)) and 0.0 <= self.missing_rate < 1.0):
            raise bad("missing_rate", "a number in [0, 1)")
        if self.missing_protocol == "subset":
            letters = self.observed_modalities or ""
            if not letters or set(letters) - set("atv") or len(set(letters)) != len(letters):
                raise bad("observed_modalities", "1 to 3 distinct letters of 'atv' with missing_protocol=subset")
        elif self.observed_modalities is not None:
            raise ConfigError("observed_modalities only applies with missing_protocol=subset")
        if self.dataset in IEMOCAP_CORPORA and self.fold is None:
            raise ConfigError(f"dataset={self.dataset!r} needs --fold 1..5 (leave-one-session-out) or --fold all")
        if self.fold is not None:
            fold = str(self.fold).lower()
            if fold != "all" and fold not in {"1", "2", "3", "4", "5"}:
                raise bad("fold", "1, 2, 3, 4, 5 or 'all'")
            if not self.is_iemocap:
                raise ConfigError(
                    f"fold={self.fold!r} only applies to IEMOCAP (iemocap4/iemocap6), not to {self.dataset!r}"
                )
            self.fold = fold
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "a positive integer")
        if self.eval_batch_size is not None and (
            not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1
        ):
            raise bad("eval_batch_size", "a positive integer or null")
        if not isinstance(self.stage1_epochs, int) or not 0 <= self.stage1_epochs <= self.epochs:
            raise bad("stage1_epochs", f"an integer in [0, epochs={self.epochs}]")
        if self.selection_stage not in (1, 2):
            raise bad("selection_stage", "1 or 2")
        if self.selection_stage == 2 and self.stage1_epochs == self.epochs:
            raise ConfigError(
                f"stage1_epochs={self.stage1_epochs} leaves no stage-2 epoch to select among epochs={self.epochs}: "
                "lower stage1_epochs or pass --selection_stage 1"
            )
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or not math.isfinite(value):
                raise bad(name, "a finite non-negative number")
        if self.learning_rate == 0:
            raise bad("learning_rate", "a positive number")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0
        ):
            raise bad("max_grad_norm", "a positive number or null")
        if self.mixed_precision not in _PRECISIONS:
            raise bad("mixed_precision", " | ".join(_PRECISIONS))
        if self.selection not in _SELECTIONS:
            raise bad("selection", " or ".join(_SELECTIONS))
        if self.report_to not in _REPORTERS:
            raise bad("report_to", " or ".join(_REPORTERS))
        if self.num_workers < 0:
            raise bad("num_workers", "a non-negative integer")
        if self.checkpoint_total_limit is not None and self.checkpoint_total_limit < 1:
            raise bad("checkpoint_total_limit", "a positive integer or null")
        if self.push_to_hub is not None and not _HUB_ID.match(self.push_to_hub):
            raise bad("push_to_hub", "a Hub repo id of the form org/name")
        if not isinstance(self.model, dict):
            raise bad("model", "a mapping of ComPConfig arguments")
        known = model_config_keys()
        for key in self.model:
            if key not in known:
                raise ConfigError(f"unknown model key model.{key}: not a ComPConfig argument")
        # ---- released-protocol block: begin
        from recipes.released_protocol import PROTOCOLS, check_released_config

        if self.protocol not in PROTOCOLS:
            raise bad("protocol", " or ".join(PROTOCOLS))
        if self.protocol == "released":
            check_released_config(self)
        # ---- released-protocol block: end
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (for YAML/JSON)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- model keys


_COMP_CONFIG_EXTRA = ("num_labels", "problem_type", "id2label", "label2id")


def model_config_keys() -> set[str]:
    """Names accepted under ``model:``: ``ComPConfig.__init__`` arguments (plus the label fields)."""
    from modeling_comp import ComPConfig

    params = inspect.signature(ComPConfig.__init__).parameters
    names = {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    return names | set(_COMP_CONFIG_EXTRA)


# ---------------------------------------------------------------------- parsing helpers


def parse_value(text: str) -> Any:
    """Parses a command-line value as YAML scalar/collection (``0.5`` → float, ``true`` → bool, ``null``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def coerce_value(name: str, value: Any, annotation: Any, source: str) -> Any:
    """Converts ``value`` to the field's type; raises ConfigError naming the source and field."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value in ("null", "None", "~"))):
            return None
        inner = [a for a in args if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else annotation
        if len(inner) != 1:
            return value
    if isinstance(value, str) and annotation is not str:
        value = parse_value(value)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if annotation is int:
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                raise TypeError
            return int(value)
        if annotation is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if annotation is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
        if annotation is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        kind = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{source}: {name}={value!r} is not a valid {kind}") from None
    return value


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Reads a recipe YAML file into a dict of known keys (unknown keys → ConfigError naming file and key)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    types_ = _field_types()
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types_:
            raise ConfigError(f"{path}: unknown key {key!r} (see `--help` for the accepted keys)")
        out[key] = coerce_value(key, value, types_[key], str(path))
    return out


def config_help() -> str:
    """Text of ``--help``: every key with its default and description."""
    lines = [
        "usage: train.py [--config FILE.yaml] [--KEY VALUE ...] [--model.NAME VALUE ...]",
        "",
        f"Defaults come from the config file (default {DEFAULT_CONFIG.relative_to(CONFIG_DIR.parent.parent)}),",
        "then from command-line options. Values are parsed as YAML scalars (0.5, true, null).",
        "",
    ]
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  --{f.name:<28} {f.metadata.get('help', '')} (default: {default!r})")
    lines.append("  --model.NAME                   any ComPConfig argument, e.g. --model.hidden_size 64")
    return "\n".join(lines)


def parse_train_args(argv: Sequence[str] | None = None, defaults: dict[str, Any] | None = None) -> TrainConfig:
    """Builds a validated :class:`TrainConfig` from ``--config`` and command-line overrides.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when None.
        defaults: values applied between the YAML file and the command line (used by the sweep).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unknown option/key, malformed value, or invalid configuration.
        SystemExit: after printing help for ``-h``/``--help``.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(config_help())
        raise SystemExit(0)
    pairs = split_options(argv)
    config_path: str | None = None
    rest: list[tuple[str, str | None]] = []
    for key, value in pairs:
        if key == "config":
            if value is None:
                raise ConfigError("--config needs a file path")
            config_path = value
        else:
            rest.append((key, value))
    values = load_yaml_config(config_path or DEFAULT_CONFIG)
    values.setdefault("model", {})
    values["model"] = dict(values["model"])
    for key, value in (defaults or {}).items():
        if key == "model":
            values["model"].update(value)
        else:
            values[key] = value
    types_ = _field_types()
    for key, value in rest:
        if key.startswith("model."):
            name = key[len("model.") :]
            if name not in model_config_keys():
                raise ConfigError(f"unknown option --{key}: {name!r} is not a ComPConfig argument")
            if value is None:
                raise ConfigError(f"option --{key} needs a value")
            values["model"][name] = parse_value(value)
            continue
        if key not in types_:
            raise ConfigError(f"unknown option --{key} (see --help)")
        if value is None:
            if types_[key] is bool or types_[key] == (bool | None):
                value = "true"
            else:
                raise ConfigError(f"option --{key} needs a value")
        values[key] = coerce_value(key, value, types_[key], "command line")
    # ---- released-protocol block: begin
    if values.get("protocol") == "released":
        from recipes.released_protocol import resolve_released_options

        values = resolve_released_options(values, [key for key, _ in rest])
    # ---- released-protocol block: end
    return TrainConfig(**values).validate()


def split_options(argv: list[str]) -> list[tuple[str, str | None]]:
    """``--a 1 --b=2 --flag`` → ``[("a", "1"), ("b", "2"), ("flag", None)]``; anything else is an error."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}: options look like --key value or --key=value")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            pairs.append((key.replace("-", "_"), value))
            i += 1
            continue
        key = key.replace("-", "_")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            pairs.append((key, argv[i + 1]))
            i += 2
        else:
            pairs.append((key, None))
            i += 1
    return pairs
