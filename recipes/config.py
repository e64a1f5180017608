"""Configuration of the recipes: dataclasses parsed by :class:`transformers.HfArgumentParser`, YAML + CLI overrides.

A training run is a :class:`TrainConfig`, an evaluation an :class:`EvalConfig`; both start with the fields of
:class:`DataConfig` (corpus, missing-modality protocol, fold, seeds), so the data keys are declared and checked
once. Values come, in increasing priority, from the dataclass defaults, a YAML file (``--config``; training
defaults to ``recipes/configs/synthetic.yaml``) and ``--key value`` / ``--key=value`` options. ``--help`` shows
the defaults of that YAML file, i.e. what the run will use. Model hyper-parameters live under ``model:`` in
YAML and are overridden as ``--model.<name> value`` (names of :class:`modeling_comp.ComPConfig`).

YAML is read with two corrections to PyYAML's YAML 1.1 rules: ``1e-3`` is a float (as in YAML 1.2 and the
docs' notation) and a key given twice in one mapping is an error. Every bad key or value is a one-line
:class:`ConfigError` naming it. This module imports neither torch nor transformers' models, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "TRAINING_PROTOCOLS",
    "REPORTERS",
    "RELEASED",
    "RecipeError",
    "ConfigError",
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "RecipeArgumentParser",
    "load_yaml_config",
    "parse_train_args",
    "parse_eval_args",
    "model_config_keys",
    "parse_value",
    "coerce_value",
    "check_released_config",
    "resolve_released_options",
]


def _data_names():
    """:mod:`hub_datasets.constants`, the home of the corpus names, missing-data protocols and the Hub-id check;
    imported when a configuration is validated, not when this module is (``--help`` stays fast)."""
    from hub_datasets import constants

    return constants


CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "synthetic.yaml"
#: Training/evaluation protocols of ``recipes/train.py``: ours (the default) and the authors' released one. (The
#: missing-data protocols are :data:`hub_datasets.constants.MISSING_PROTOCOLS`.)
TRAINING_PROTOCOLS = ("default", "released")
#: Experiment trackers accelerate can log to (``accelerate.utils.LoggerType``), plus ``none``.
REPORTERS = ("tensorboard", "trackio", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab")
_SELECTIONS = ("validation", "test")
_PRECISIONS = ("no", "fp16", "bf16")
_SPLITS = ("train", "validation", "test")
RELEASED = "released"


class RecipeError(Exception):
    """An error the user can fix (bad config, missing data, unwritable directory); printed as one line."""


class ConfigError(RecipeError, ValueError):
    """A bad configuration value or key."""


def _help(text: str) -> dict:
    return {"help": text}


def _bad(obj: Any, name: str, expected: str) -> ConfigError:
    return ConfigError(f"{name}={getattr(obj, name)!r} is invalid: expected {expected}")


def _positive_int(obj: Any, name: str, *, optional: bool = False) -> None:
    value = getattr(obj, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(obj, name, "a positive integer" + (" or null" if optional else ""))


# ---------------------------------------------------------------------- data (shared by train / evaluate / sweep)


@dataclass
class DataConfig:
    """The corpus and its missing-modality condition: the keys shared by training, evaluation and sweeps."""

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
        default_factory=dict,
        metadata=_help("extra keyword arguments for hub_datasets.load_dataset (YAML/JSON mapping)"),
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
    seed: int = field(default=0, metadata=_help("seed of initialisation, shuffling, dropout (and masks)"))
    mask_seed: int | None = field(
        default=None, metadata=_help("seed of the missing-modality masks (when unset: seed)")
    )

    # ------------------------------------------------------------------ derived values
    @property
    def is_iemocap(self) -> bool:
        """Whether the corpus (or the synthetic corpus's shape) is IEMOCAP-like (folds apply)."""
        return self.corpus_shape in _data_names().IEMOCAP_CORPORA

    @property
    def corpus_shape(self) -> str:
        """The corpus name, or for the synthetic corpus / a Hub id, the config it imitates."""
        if self.dataset in _data_names().CORPUS_NAMES:
            return self.dataset
        shape = (self.dataset_config or "").lower().removeprefix("synthetic-")
        if self.dataset != "synthetic" and isinstance(self.dataset, str) and Path(self.dataset).expanduser().is_dir():
            from hub_datasets.publish import local_repo_corpus  # a local parquet repo records its corpus

            shape = local_repo_corpus(self.dataset, self.dataset_config) or shape
        return shape

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

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (for YAML/JSON)."""
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ validation
    def validate_data(self) -> None:
        """Checks the corpus, protocol and fold keys (one-line :class:`ConfigError`)."""
        self._validate_corpus()
        self._validate_protocol()
        self._validate_fold()

    def _validate_corpus(self) -> None:
        names = _data_names()
        if not isinstance(self.dataset, str) or (
            self.dataset not in names.DATASET_NAMES
            and not names.is_hub_id(self.dataset)
            and not Path(self.dataset).expanduser().is_dir()
        ):
            raise ConfigError(
                f"unknown corpus dataset={self.dataset!r}: expected one of {', '.join(names.DATASET_NAMES)}, a Hub "
                "id org/name or a local parquet repo folder"
            )
        if self.dataset in names.CORPUS_NAMES and self.data_dir is None:
            raise ConfigError(
                f"dataset={self.dataset!r} needs --data_dir pointing at its features (GCNet or MMSA layout); "
                "use --dataset synthetic to run without data"
            )
        if not isinstance(self.dataset_kwargs, dict):
            raise _bad(self, "dataset_kwargs", "a mapping")
        for name in ("seed", "mask_seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32):
                raise _bad(self, name, "an integer in [0, 2**32) (numpy's seed range)")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError(
                f"data_dir {str(Path(self.data_dir).expanduser())!r} does not exist or is not a directory"
            )

    def _validate_protocol(self) -> None:
        protocols = _data_names().MISSING_PROTOCOLS
        if self.missing_protocol not in protocols:
            raise _bad(self, "missing_protocol", " or ".join(protocols))
        rate = self.missing_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise _bad(self, "missing_rate", "a number in [0, 1)")
        if self.missing_protocol == "subset":
            letters = self.observed_modalities or ""
            if not letters or set(letters) - set("atv") or len(set(letters)) != len(letters):
                raise _bad(
                    self, "observed_modalities", "1 to 3 distinct letters of 'atv' with missing_protocol=subset"
                )
        elif self.observed_modalities is not None:
            raise ConfigError("observed_modalities only applies with missing_protocol=subset")

    def _validate_fold(self) -> None:
        if self.fold is None and (
            self.dataset in _data_names().IEMOCAP_CORPORA or (not self.is_synthetic and self.is_iemocap)
        ):
            raise ConfigError(f"dataset={self.dataset!r} needs --fold 1..5 (leave-one-session-out) or --fold all")
        if self.fold is None:
            return
        fold = str(self.fold).lower()
        if fold != "all" and fold not in {"1", "2", "3", "4", "5"}:
            raise _bad(self, "fold", "1, 2, 3, 4, 5 or 'all'")
        if not self.is_iemocap:
            raise ConfigError(
                f"fold={self.fold!r} only applies to IEMOCAP (iemocap4/iemocap6), not to {self.dataset!r}"
            )
        self.fold = fold


# ---------------------------------------------------------------------- training


@dataclass
class TrainConfig(DataConfig):
    """Everything that defines a training run; saved next to its outputs as ``config.yaml``."""

    # ---- model
    model: dict = field(
        default_factory=dict, metadata=_help("ComPConfig keyword arguments (override as --model.<name> value)")
    )
    # ---- optimisation
    epochs: int = field(default=300, metadata=_help("total training epochs (stage 1 + stage 2)"))
    stage1_epochs: int = field(default=150, metadata=_help("epochs of stage 1 (unimodal paths) before stage 2"))
    batch_size: int = field(default=32, metadata=_help("conversations per training batch (per process)"))
    eval_batch_size: int | None = field(
        default=None, metadata=_help("conversations per evaluation batch (when unset: the whole split in one batch)")
    )
    learning_rate: float = field(default=1e-4, metadata=_help("Adam learning rate (no schedule)"))
    weight_decay: float = field(default=1e-5, metadata=_help("Adam coupled L2 (torch.optim.Adam weight_decay)"))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("batches accumulated per optimiser step"))
    mixed_precision: str | None = field(
        default=None,
        metadata=_help("no | fp16 | bf16 (when unset: the launcher's --mixed_precision / accelerate config, else no)"),
    )
    max_grad_norm: float | None = field(default=None, metadata=_help("clip gradients to this norm (off by default)"))
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes"))
    torch_threads: int | None = field(
        default=1,
        metadata=_help("torch CPU threads per process (1 measured fastest for these small models; null: torch's)"),
    )
    keep_on_device: bool = field(
        default=False,
        metadata=_help("collate the whole corpus once and keep it on the device (no per-step collation or copy)"),
    )
    compile: bool = field(
        default=False,
        metadata=_help(
            "torch.compile the model; batches padded to max_utterances, the last smaller training batch "
            "of an epoch dropped (one training shape)"
        ),
    )
    # ---- model selection
    selection: str = field(
        default="validation",
        metadata=_help("validation: best validation epoch | test: best test epoch (the paper's, optimistic)"),
    )
    selection_metric: str | None = field(
        default=None, metadata=_help("metric that picks the epoch (when unset: accuracy / f1 for regression)")
    )
    selection_stage: int = field(
        default=2, metadata=_help("earliest stage whose epochs can be selected (2: stage-2 epochs only)")
    )
    # ---- protocol
    protocol: str = field(
        default="default",
        metadata=_help(
            "default (fixed masks, validation selection) | released: the authors' released protocol end to end "
            "(per-batch masks, best TEST epoch; OPTIMISTIC, for comparison with the paper)"
        ),
    )
    # ---- outputs
    output_dir: str | None = field(default=None, metadata=_help("run directory (when unset: runs/<corpus>-<...>)"))
    overwrite_output_dir: bool = field(default=False, metadata=_help("allow reusing a non-empty output_dir"))
    resume_from_checkpoint: str | None = field(
        default=None, metadata=_help("'latest' (in output_dir) or a checkpoint directory to continue from")
    )
    checkpoint_every: int = field(default=1, metadata=_help("checkpoint at most every N epochs (and after the last)"))
    checkpoint_interval: float = field(
        default=60.0,
        metadata=_help("seconds at least between two checkpoints (0: every checkpoint_every epochs); the last "
                       "epoch and the end of stage 1 are always saved"),
    )  # fmt: skip
    checkpoint_total_limit: int | None = field(default=2, metadata=_help("checkpoints kept (null: all)"))
    report_to: str = field(
        default="tensorboard",
        metadata=_help(f"experiment trackers, comma-separated: {', '.join(REPORTERS)}, all, or none"),
    )
    progress: bool = field(default=True, metadata=_help("show progress bars (main process)"))
    push_to_hub: str | None = field(default=None, metadata=_help("Hub repo id (org/name) to push the selected model"))
    hub_private: bool | None = field(
        default=None, metadata=_help("private Hub repo (when unset: True for IEMOCAP-trained models, else False)")
    )
    hub_token: str | None = field(default=None, metadata=_help("Hub token (when unset: the logged-in token)"))

    @property
    def reporters(self) -> list[str]:
        """The trackers of ``report_to`` as a list (empty for ``none``)."""
        names = [n.strip() for n in str(self.report_to).split(",") if n.strip()]
        return [] if names == ["none"] else names

    # ------------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Checks every value; raises :class:`ConfigError` naming the field, the value and what was expected."""
        self.validate_data()
        self._validate_schedule()
        self._validate_optimiser()
        self._validate_selection()
        self._validate_outputs()
        self._validate_model_keys()
        self._validate_training_protocol()
        return self

    def _validate_training_protocol(self) -> None:
        if self.protocol not in TRAINING_PROTOCOLS:
            raise _bad(self, "protocol", " or ".join(TRAINING_PROTOCOLS))
        if self.protocol == RELEASED:
            check_released_config(self)

    def _validate_schedule(self) -> None:
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "checkpoint_every"):
            _positive_int(self, name)
        _positive_int(self, "eval_batch_size", optional=True)
        _positive_int(self, "torch_threads", optional=True)
        if isinstance(self.stage1_epochs, bool) or not isinstance(self.stage1_epochs, int):
            raise _bad(self, "stage1_epochs", f"an integer in [0, epochs={self.epochs}]")
        if not 0 <= self.stage1_epochs <= self.epochs:
            raise _bad(self, "stage1_epochs", f"an integer in [0, epochs={self.epochs}]")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise _bad(self, "num_workers", "a non-negative integer")

    def _validate_optimiser(self) -> None:
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise _bad(self, name, "a finite non-negative number")
        if self.learning_rate == 0:
            raise _bad(self, "learning_rate", "a positive number")
        clip = self.max_grad_norm
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
            raise _bad(self, "max_grad_norm", "a positive number or null")
        if self.mixed_precision is not None and self.mixed_precision not in _PRECISIONS:
            raise _bad(self, "mixed_precision", " | ".join(_PRECISIONS) + " or null (the launcher's)")

    def _validate_selection(self) -> None:
        from recipes.metrics import KNOWN_METRICS_HELP, is_known_metric  # a training module: not at import time

        if self.selection not in _SELECTIONS:
            raise _bad(self, "selection", " or ".join(_SELECTIONS))
        if self.selection_stage not in (1, 2):
            raise _bad(self, "selection_stage", "1 or 2")
        if self.selection_stage == 2 and self.stage1_epochs == self.epochs:
            raise ConfigError(
                f"stage1_epochs={self.stage1_epochs} leaves no stage-2 epoch to select among epochs={self.epochs}: "
                "lower stage1_epochs or pass --selection_stage 1"
            )
        if self.selection_metric is not None and not is_known_metric(self.selection_metric):
            raise _bad(self, "selection_metric", KNOWN_METRICS_HELP)

    def _validate_outputs(self) -> None:
        if self.checkpoint_total_limit is not None:
            _positive_int(self, "checkpoint_total_limit")
        interval = self.checkpoint_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= 0:
            raise _bad(self, "checkpoint_interval", "a non-negative number of seconds")
        allowed = (*REPORTERS, "all")
        names = self.reporters
        if str(self.report_to).strip() != "none" and (not names or any(n not in allowed for n in names)):
            raise _bad(self, "report_to", f"comma-separated names among {', '.join(allowed)}, or none")
        if self.push_to_hub is not None and not _data_names().is_hub_id(self.push_to_hub):
            raise _bad(self, "push_to_hub", "a Hub repo id of the form org/name")

    def _validate_model_keys(self) -> None:
        if not isinstance(self.model, dict):
            raise _bad(self, "model", "a mapping of ComPConfig arguments")
        known = model_config_keys()
        for key in self.model:
            if key not in known:
                raise ConfigError(f"unknown model key model.{key}: not a ComPConfig argument")
        check_model_config(self.model)


# ---------------------------------------------------------------------- the released protocol's rules


def resolve_released_options(cfg: TrainConfig, command_line_keys: set[str]) -> TrainConfig:
    """Fills in the released protocol's own choices before validation (called by :func:`parse_train_args`).

    ``selection`` becomes ``"test"`` and ``selection_stage`` 1, and a ``dataset_kwargs.validation_fraction`` (the
    hold-out the release does not make) is dropped, unless the command line gave them (then
    :func:`check_released_config` refuses any other value): a YAML preset written for the default protocol
    (``selection: validation``, like ``recipes/configs/synthetic.yaml``) runs under ``--protocol released``
    unchanged.
    """
    changes: dict[str, Any] = {}
    if "selection" not in command_line_keys:
        changes["selection"] = "test"
    if "selection_stage" not in command_line_keys:
        changes["selection_stage"] = 1
    if "dataset_kwargs" not in command_line_keys and isinstance(cfg.dataset_kwargs, dict):
        changes["dataset_kwargs"] = {k: v for k, v in cfg.dataset_kwargs.items() if k != "validation_fraction"}
    return dataclasses.replace(cfg, **changes)


def _refuse_released(option: str, why: str) -> ConfigError:
    return ConfigError(f"--protocol released cannot honour {option}: {why}")


def check_released_config(cfg: TrainConfig) -> None:
    """Rejects, in one line naming the option, what the released protocol cannot honour.

    What it fixes without being asked (and so never refuses at its default): every training conversation is used
    (no validation hold-out), the test masks and batches are redrawn every epoch from one random stream seeded once,
    the model runs the released forward (``reference_compat``: batch-wide prototypes, no gradient modulation).
    """
    refuse = _refuse_released
    if cfg.selection != "test":
        raise refuse(f"selection={cfg.selection!r}", "the release selects the best TEST epoch (use --selection test)")
    if cfg.selection_stage != 1:
        raise refuse(f"selection_stage={cfg.selection_stage}", "the release selects over all epochs (stage 1 too)")
    if cfg.selection_metric is not None:
        raise refuse(
            f"selection_metric={cfg.selection_metric!r}", "the release selects on F1 (CMU) / accuracy (IEMOCAP)"
        )
    if cfg.missing_protocol != "rate":
        raise refuse(f"missing_protocol={cfg.missing_protocol!r}", "the release only has the missing-rate protocol")
    if cfg.mask_seed is not None:
        raise refuse(
            f"mask_seed={cfg.mask_seed}", "fixed masks do not exist there (redrawn per batch from the seed's stream)"
        )
    for key, why in (
        ("split", "the release trains on the training split and tests on the test split"),
        ("validation_fraction", "the release holds no validation out (it trains on every training conversation)"),
    ):
        if key in cfg.dataset_kwargs:
            raise refuse(f"dataset_kwargs.{key}", why)
    if cfg.eval_batch_size is not None and cfg.eval_batch_size != cfg.batch_size:
        raise refuse(f"eval_batch_size={cfg.eval_batch_size}", "the release tests with the training batch size")
    if cfg.gradient_accumulation_steps != 1:
        raise refuse(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps}", "the release has none")
    if cfg.mixed_precision not in (None, "no"):
        raise refuse(f"mixed_precision={cfg.mixed_precision!r}", "the release trains in float32")
    if cfg.max_grad_norm is not None:
        raise refuse(f"max_grad_norm={cfg.max_grad_norm}", "the release does not clip gradients")
    if cfg.keep_on_device:
        raise refuse("keep_on_device=true", "its masks are drawn on the host for every batch, test batches included")
    if cfg.push_to_hub is not None:
        raise refuse("push_to_hub", "its numbers are optimistic; train with the default protocol to publish a model")
    released_model = {"reference_compat": True, "prototype_scope": "batch", "use_gradient_modulation": False}
    for key, value in released_model.items():
        if key in cfg.model and cfg.model[key] != value:
            raise refuse(
                f"model.{key}={cfg.model[key]!r}",
                f"the released forward runs with {key}={value!r} (drop model.{key})",
            )


# ---------------------------------------------------------------------- evaluation


@dataclass
class EvalConfig(DataConfig):
    """Options of ``comp-eval``: a checkpoint and the data keys of training (``seed`` seeds the masks)."""

    model: str = field(default="", metadata=_help("run directory, model folder or Hub id (required)"))
    revision: str | None = field(default=None, metadata=_help("Hub revision (branch or commit)"))
    trust_remote_code: bool = field(
        default=False, metadata=_help("load the checkpoint's own code (needed without comp-emotion installed)")
    )
    split: str = field(default="test", metadata=_help("split to evaluate: test | validation | train"))
    batch_size: int = field(default=256, metadata=_help("conversations per batch"))
    mixed_precision: str | None = field(
        default=None, metadata=_help("no | fp16 | bf16 (when unset: the launcher's, else no)")
    )
    output_file: str | None = field(default=None, metadata=_help("write the metrics and provenance as JSON"))
    progress: bool = field(default=True, metadata=_help("progress bar on the main process"))

    def validate(self) -> EvalConfig:
        """Checks every value (one-line :class:`ConfigError`)."""
        if not self.model:
            raise ConfigError("--model is required (a run directory, a model folder or a Hub id)")
        if self.fold is not None and str(self.fold).lower() == "all":
            raise ConfigError("comp-eval takes one fold at a time (--fold 1..5)")
        self.validate_data()
        if self.split not in _SPLITS:
            raise _bad(self, "split", "train, validation or test")
        _positive_int(self, "batch_size")
        if self.mixed_precision is not None and self.mixed_precision not in _PRECISIONS:
            raise _bad(self, "mixed_precision", " | ".join(_PRECISIONS))
        return self


# ---------------------------------------------------------------------- model keys


_COMP_CONFIG_EXTRA = ("num_labels", "problem_type", "id2label", "label2id")


#: ``model:`` keys that the corpus decides (checked against it when it is loaded, not before).
_DATA_MODEL_KEYS = ("audio_dim", "text_dim", "video_dim", "modality_features", *_COMP_CONFIG_EXTRA)


def model_config_keys() -> set[str]:
    """Names accepted under ``model:``: ``ComPConfig.__init__`` arguments (plus the label fields)."""
    # Deferred: the model package imports torch and transformers' models (seconds), which `--help` does without.
    from modeling_comp import ComPConfig

    params = inspect.signature(ComPConfig.__init__).parameters
    names = {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    return names | set(_COMP_CONFIG_EXTRA)


def model_config_error(err: Exception, model: dict[str, Any]) -> ConfigError:
    """A ComPConfig ``ValueError``/``TypeError`` as one line naming ``model.<field>`` (and its value) when it can."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    match = re.search(r"ComPConfig\.(\w+)", text) or re.search(r"\b(\w+)=", text)
    name = match.group(1) if match else None
    if name is not None and name in model:
        return ConfigError(f"model.{name}={model[name]!r} rejected: {text}")
    if name is not None:
        return ConfigError(f"model configuration rejected (model.{name}): {text}")
    return ConfigError(f"model configuration rejected: {text}")


def check_model_config(model: dict[str, Any]) -> None:
    """Builds a ComPConfig from the ``model:`` keys the corpus does not decide, so that a bad or oversized value is a
    one-line ConfigError naming ``model.<field>`` before any folder is created or any data is read."""
    from modeling_comp import ComPConfig  # deferred with model_config_keys (torch, transformers)

    own = {k: v for k, v in model.items() if k not in _DATA_MODEL_KEYS}
    try:
        ComPConfig(**own)
    except (ValueError, TypeError, OverflowError) as err:
        raise model_config_error(err, model) from None


# ---------------------------------------------------------------------- YAML


class _DuplicateKeyError(yaml.YAMLError):
    pass


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` as a float and refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            merges = 0
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merges += 1
                    if merges > 1:
                        raise _DuplicateKeyError(
                            f"merge key '<<' is given twice (line {key_node.start_mark.line + 1}); merge several "
                            "mappings with one key: '<<: [*a, *b]'"
                        )
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, typing.Hashable) and key in seen:
                    raise _DuplicateKeyError(f"key {key!r} is given twice (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_MAX_DEPTH = 32  # nesting levels a configuration value may have (the deepest real one, model.modality_features, has 4)


class _TooDeepError(yaml.YAMLError):
    pass


def _yaml_load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise _TooDeepError(f"a value is nested more than {_MAX_DEPTH} levels deep") from None


def _depth(value: Any, limit: int = _MAX_DEPTH) -> int:
    """Nesting depth of lists/dicts in ``value``, counted up to ``limit + 1`` (no recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            level += 1
            deepest = max(deepest, level)
            if level > limit:
                return level
            stack.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_value(text: str) -> Any:
    """Parses a command-line value as a YAML scalar/collection (``0.5``, ``1e-4`` → float, ``true``, ``null``)."""
    try:
        return _yaml_load(text)
    except _TooDeepError as err:
        raise ConfigError(f"command line: a value {err}") from None
    except yaml.YAMLError:
        return text


def coerce_value(name: str, value: Any, annotation: Any, source: str) -> Any:
    """Converts ``value`` to the field's type; raises ConfigError naming the source and field."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args and (value is None or (isinstance(value, str) and value in ("null", "None", "~"))):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            return value
        annotation = inner[0]
    if isinstance(value, str) and annotation is not str:
        value = parse_value(value)
    if _depth(value) > _MAX_DEPTH:
        raise ConfigError(f"{source}: {name} is nested more than {_MAX_DEPTH} levels deep")
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


def load_yaml_config(path: str | Path, config_class: type = None) -> dict[str, Any]:
    """Reads a recipe YAML file into a dict of known keys (unknown keys → ConfigError naming file and key)."""
    config_class = config_class or TrainConfig
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = _yaml_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
        ) from None
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror or type(err).__name__}") from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(config_class)
    names = {f.name for f in dataclasses.fields(config_class)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{path}: unknown key {key!r} (see `--help` for the accepted keys)")
        out[key] = coerce_value(key, value, hints[key], str(path))
    return out


# ---------------------------------------------------------------------- command line


class RecipeArgumentParser:
    """:class:`transformers.HfArgumentParser` over the recipe dataclasses, with the recipes' conventions.

    * ``--config FILE`` is read first; its values become the parser's defaults, so ``--help`` shows what the
      run will use;
    * ``--model.<name> value`` options (training) are collected into the ``model`` mapping;
    * values are parsed as YAML scalars with the field's type; any bad option is a one-line ConfigError.
    """

    def __init__(
        self,
        dataclass_types: Sequence[type],
        *,
        prog: str,
        description: str,
        default_config: Path | None = None,
        model_overrides: bool = False,
        epilog: str | None = None,
    ):
        self.dataclass_types = list(dataclass_types)
        self.prog = prog
        self.description = description
        self.default_config = default_config
        self.model_overrides = model_overrides
        self.epilog = epilog

    def _build(self, defaults: dict[str, Any], config_note: str):
        from transformers import HfArgumentParser  # ~1 s: the modules that only need this one's errors skip it

        class _Parser(HfArgumentParser):
            def error(self, message):  # argparse would print usage and exit
                raise ConfigError(message.replace("\n", " "))

        parser = _Parser(
            self.dataclass_types,
            prog=self.prog,
            description=f"{self.description}\n\n{config_note}",
            epilog=self.epilog,
            allow_abbrev=False,
        )
        parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of defaults (read before the options)")
        hints: dict[str, Any] = {}
        for dtype in self.dataclass_types:
            hints.update(typing.get_type_hints(dtype))
        for action in parser._actions:
            if action.dest in hints and any(o.startswith("--no_") for o in action.option_strings):
                # HfArgumentParser's complement of a boolean option: it repeats the option's own help
                action.help = f"turn --{action.dest} off (the same as --{action.dest} false)"
                action.default = argparse.SUPPRESS
                continue
            if action.dest in hints:
                action.type = _argument_type(action.dest, hints[action.dest])
                if action.dest in defaults:
                    value = defaults[action.dest]
                    action.default = dict(value) if isinstance(value, dict) else value
        return parser

    def parse(self, argv: Sequence[str] | None = None, extra_defaults: dict[str, Any] | None = None) -> tuple:
        """Parses ``argv`` into one instance per dataclass (not yet validated)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        config_path, model, rest = self._extract(argv)
        main_class = self.dataclass_types[-1]
        source = config_path or self.default_config
        values = load_yaml_config(source, main_class) if source is not None else {}
        values.update(extra_defaults or {})
        if model:
            values["model"] = {**values.get("model", {}), **model}
        if source is not None:
            note = (
                f"Defaults shown are those of {_display(source)} (a value it does not set comes from the "
                "recipe's dataclass); options on the command line override them."
            )
        else:
            note = "Options on the command line override the defaults shown."
        parser = self._build(values, note)
        if "-h" in rest or "--help" in rest:
            parser.print_help()
            raise SystemExit(0)
        *parsed, remaining = parser.parse_args_into_dataclasses(args=rest, return_remaining_strings=True)
        objects = parsed[: len(self.dataclass_types)]  # a trailing namespace holds `config`
        if remaining:
            token = remaining[0]
            if token.startswith("--"):
                raise ConfigError(f"unknown option {token.split('=', 1)[0]} (see --help)")
            raise ConfigError(f"unexpected argument {token!r}: options look like --key value or --key=value")
        if model:
            for obj in objects:
                if isinstance(getattr(obj, "model", None), dict):
                    obj.model = {**obj.model, **model}
        return tuple(objects)

    def _extract(self, argv: list[str]) -> tuple[str | None, dict[str, Any], list[str]]:
        """Pulls ``--config`` and ``--model.<name>`` out of ``argv``; the rest goes to argparse."""
        config_path: str | None = None
        model: dict[str, Any] = {}
        rest: list[str] = []
        i = 0
        while i < len(argv):
            token = argv[i]
            key, has_value, value = token.partition("=")
            if key == "--config" or (self.model_overrides and key.startswith("--model.")):
                if not has_value:
                    if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                        raise ConfigError(f"option {key} needs a value")
                    value = argv[i + 1]
                    i += 1
                if key == "--config":
                    config_path = value
                else:
                    name = key[len("--model.") :].replace("-", "_")
                    if name not in model_config_keys():
                        raise ConfigError(f"unknown option {key}: {name!r} is not a ComPConfig argument")
                    model[name] = parse_value(value)
            else:
                rest.append(token)
            i += 1
        return config_path, model, rest


def _display(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _argument_type(name: str, annotation: Any):
    def convert(text: str) -> Any:
        try:
            return coerce_value(name, text, annotation, "command line")
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name
    return convert


_TRAIN_PARSER = RecipeArgumentParser(
    [TrainConfig],
    prog="comp-train",
    description="Train ComP with accelerate (two-stage schedule, per-epoch evaluation, model selection).",
    default_config=DEFAULT_CONFIG,
    model_overrides=True,
    epilog="--model.NAME VALUE   any ComPConfig argument, e.g. --model.hidden_size 64 (YAML: under model:)",
)


def parse_train_args(argv: Sequence[str] | None = None, defaults: dict[str, Any] | None = None) -> TrainConfig:
    """Builds a validated :class:`TrainConfig` from ``--config`` and command-line overrides.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when None.
        defaults: values applied between the YAML file and the command line.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unknown option/key, malformed value, or invalid configuration.
        SystemExit: after printing help for ``-h``/``--help``.
    """
    (cfg,) = _TRAIN_PARSER.parse(argv, defaults)
    if cfg.protocol == RELEASED:
        # the released protocol's own choices, unless the command line asks for something (then refused)
        tokens = list(sys.argv[1:] if argv is None else argv)
        given = {t[2:].split("=", 1)[0].replace("-", "_") for t in tokens if t.startswith("--")}
        cfg = resolve_released_options(cfg, given)
    return cfg.validate()


def parse_eval_args(argv: Sequence[str] | None = None) -> EvalConfig:
    """``--key value`` options (and an optional ``--config`` YAML of the same keys) → validated EvalConfig."""
    parser = RecipeArgumentParser(
        [EvalConfig],
        prog="comp-eval",
        description="Evaluate a ComP checkpoint on a corpus at a missing-modality condition.",
    )
    (cfg,) = parser.parse(argv)
    return cfg.validate()
