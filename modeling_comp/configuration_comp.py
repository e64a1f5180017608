"""Configuration of ComP (Cross-modal Prompting for incomplete multimodal emotion recognition)."""

import inspect
import math
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedConfig

from .names import (  # noqa: F401 (re-exported)
    ATTENTION_MASK,
    AUDIO,
    LABELS,
    MODALITIES,
    MODALITY_MASK,
    MODEL_INPUT_NAMES,
    TEXT,
    UTTERANCE_INDEX,
    VIDEO,
)


# The Auto classes a saved checkpoint declares in `config.auto_map`, so that a process without this package
# loads it with `trust_remote_code=True` through any of them.
AUTO_MAP = {
    "AutoConfig": "configuration_comp.ComPConfig",
    "AutoModel": "modeling_comp.ComPForEmotionRecognition",
    "AutoModelForTokenClassification": "modeling_comp.ComPForEmotionRecognition",
}


# The features of the four corpora of the paper (the feature folders of the preprocessed releases), in the schema
# of `ComPConfig.modality_features`: per modality the feature name and, when the extractor is a public checkpoint,
# how to recompute it (`layers`: the hidden layers used, negative = counted from the last; `pooling`: how token
# vectors become one utterance vector; "gcnet" = the corpora's recipe: the layers summed, sub-word pieces averaged
# into words, words averaged into the utterance, special tokens left out — `hub_datasets.featurize` implements it). Audio (wav2vec-large context features) and video (MA-Net face features)
# have no public extraction recipe here, hence `extractor: None`.
_TEXT_DEBERTA = {
    "feature": "deberta-large-4-UTT",
    "extractor": {"model_id": "microsoft/deberta-large", "layers": [-4, -3, -2, -1], "pooling": "gcnet"},
}
_FOUR_CORPUS_FEATURES = {
    AUDIO: {"feature": "wav2vec-large-c-UTT", "extractor": None},
    TEXT: _TEXT_DEBERTA,
    VIDEO: {"feature": "manet_UTT", "extractor": None},
}
CORPUS_MODALITY_FEATURES = {
    corpus: {
        m: {**spec, "extractor": None if spec["extractor"] is None else {**spec["extractor"]}}
        for m, spec in _FOUR_CORPUS_FEATURES.items()
    }
    for corpus in ("iemocap4", "iemocap6", "mosi", "mosei")
}

_PROBLEM_TYPES = ("single_label_classification", "regression")
_PROTOTYPE_SCOPES = ("dialogue", "batch")

# Upper limits of the sizes a config may declare. They are checked before any module is built, so that no
# config.json (or recipe `model:` section) can make building a model cost more than reading it; together with
# `MAX_PARAMETERS` they keep the largest model buildable at about 0.4 GB of float32 weights. The paper's models
# are far below (hidden 256, depth 4, 150 utterances, features of at most 1024 dimensions).
MAX_FEATURE_DIM = 16384  # audio_dim, text_dim, video_dim
MAX_HIDDEN_SIZE = 2048
MAX_HIDDEN_LAYERS = 24
MAX_ATTENTION_HEADS = 64
MAX_PROMPT_DIM = 1024
MAX_PROTOTYPES = 1024
MAX_UTTERANCES = 1024
MAX_LABELS = 1024
MAX_PARAMETERS = 100_000_000


@dataclass(frozen=True)
class ConfigField:
    """One field of `ComPConfig`: its default and what values it accepts.

    `kind` is one of `"int"` (an integer in `[low, high]`), `"number"` (a finite real number in `[low, high]`,
    `high_open`: `high` excluded), `"bool"`, `"choice"` (one of `choices`) or `"any"` (checked elsewhere);
    `optional`: `None` is accepted too. Booleans are never accepted as numbers.
    """

    default: Any
    kind: str
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        """Raise a one-line `ValueError` naming the field, the value and what is allowed."""
        if value is None and self.optional:
            return
        where = f"ComPConfig.{name}"
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be True or False, got {value!r}")
        elif self.kind == "choice":
            if isinstance(value, bool) or value not in self.choices:
                raise ValueError(f"{where} must be one of {self.choices}, got {value!r}")
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
                raise ValueError(f"{where} must be an integer in [{self.low}, {self.high}], got {value!r}")
        elif self.kind == "number":
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if ok and self.high is not None:
                ok = value < self.high or (value == self.high and not self.high_open)
            ok = ok and value >= self.low
            if not ok:
                raise ValueError(f"{where} must be {self._number_range()}, got {value!r}")

    def _number_range(self) -> str:
        prefix = "None or " if self.optional else ""
        if self.high is not None:
            return f"{prefix}a number in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low > 0:
            return f"{prefix}a finite number > 0"
        return f"{prefix}a finite non-negative number"


def _size(default: int, high: int) -> ConfigField:
    return ConfigField(default, "int", low=1, high=high)


def _weight(default: float) -> ConfigField:
    return ConfigField(default, "number", low=0.0)


_TINY = 1e-300  # "> 0" for a float field: the smallest accepted value

#: The fields of `ComPConfig` (documented in its docstring), declared once: default and accepted values.
FIELDS: dict[str, ConfigField] = {
    "audio_dim": _size(512, MAX_FEATURE_DIM),
    "text_dim": _size(1024, MAX_FEATURE_DIM),
    "video_dim": _size(1024, MAX_FEATURE_DIM),
    "hidden_size": _size(256, MAX_HIDDEN_SIZE),
    "num_hidden_layers": _size(4, MAX_HIDDEN_LAYERS),
    "num_attention_heads": _size(2, MAX_ATTENTION_HEADS),
    "prompt_dim": _size(16, MAX_PROMPT_DIM),
    "num_prototypes": _size(10, MAX_PROTOTYPES),
    "max_utterances": _size(150, MAX_UTTERANCES),
    "prompt_momentum": ConfigField(0.3, "number", low=0.0, high=1.0),
    "hidden_dropout_prob": ConfigField(0.5, "number", low=0.0, high=1.0, high_open=True),
    "attention_dropout_prob": ConfigField(0.0, "number", low=0.0, high=1.0, high_open=True),
    "fused_loss_weight": _weight(1.0),
    "modality_loss_weight": _weight(2.0),
    "stage1_modality_loss_weight": _weight(1.0),
    "private_loss_weight": _weight(1.0),
    "disentangle_loss_weight": _weight(1.0),
    "reconstruction_loss_weight": _weight(1.0),
    "private_noise_std": _weight(1.5),
    "reference_compat": ConfigField(False, "bool"),
    "prototype_scope": ConfigField("dialogue", "choice", choices=_PROTOTYPE_SCOPES),
    "use_knowledge_propagation": ConfigField(True, "bool"),
    "use_prompt_generation": ConfigField(True, "bool"),
    "use_coordinator": ConfigField(True, "bool"),
    "use_gradient_modulation": ConfigField(True, "bool"),
    "modulation_eps": ConfigField(1e-6, "number", low=_TINY),
    "initializer_range": ConfigField(None, "number", low=_TINY, optional=True),
    "modality_features": ConfigField(None, "any"),  # schema: `validate_modality_features`
    "trained_stage": ConfigField(2, "choice", choices=(1, 2)),
}
_SIZE_FIELDS = [name for name, field in FIELDS.items() if field.kind == "int"]


class ComPConfig(PreTrainedConfig):
    r"""
    Configuration of a ComP model ([Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion
    Recognition](https://arxiv.org/abs/2512.11239), He, Zhu & Zhang, AAAI 2026).

    The defaults are those of the only command released with the authors' code (CMU-MOSI: hidden 256,
    depth 4, 2 heads, dropout 0.5, λ = 0.3) with IEMOCAP-4's label space and padded length 150. Every
    behaviour that deliberately deviates from the released code is a named switch below, so it can be
    ablated; `reference_compat=True` turns all of them back to the released evaluation forward.

    Args:
        audio_dim (`int`, *optional*, defaults to 512):
            Dimension of the per-utterance audio features (wav2vec-large context features in the paper).
        text_dim (`int`, *optional*, defaults to 1024):
            Dimension of the per-utterance text features (DeBERTa-large in the paper).
        video_dim (`int`, *optional*, defaults to 1024):
            Dimension of the per-utterance face features (MA-Net in the paper).
        hidden_size (`int`, *optional*, defaults to 256):
            Width `D` of every per-modality stream (the released `--hidden`).
        num_hidden_layers (`int`, *optional*, defaults to 4):
            The released `--depth`: the two knowledge-propagation stages each hold `num_hidden_layers // 2` masked
            self-attention layers per modality. Must be even.
        num_layers (`int`, *optional*):
            Former name of `num_hidden_layers` (version 0.1), still accepted (and read from older config.json
            files); `config.num_layers` reads `num_hidden_layers`. It is not saved.
        num_attention_heads (`int`, *optional*, defaults to 2):
            Attention heads; must divide `hidden_size`.
        prompt_dim (`int`, *optional*, defaults to 16):
            Width `p` of the cross-modal prompts.
        num_prototypes (`int`, *optional*, defaults to 10):
            Number `K` of prototypes a conversation's utterances are compressed into (per modality).
        max_utterances (`int`, *optional*, defaults to 150):
            The released `seq_len` (65 for CMU-MOSI, 150 otherwise): the prototype layer maps this many
            utterance positions to `num_prototypes`, so it is part of the checkpoint. Conversations may be
            shorter (dynamic padding) but never longer.
        prompt_momentum (`float`, *optional*, defaults to 0.3):
            λ of the momentum update `P = λ·P̄ + (1 − λ)·P_new`, in [0, 1].
        hidden_dropout_prob (`float`, *optional*, defaults to 0.5):
            Dropout of every projection, MLP, the coordinator and the fusion tail (the released
            `--drop_rate`).
        attention_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities (the released `--attn_drop_rate`).
        num_labels (`int`, *optional*, defaults to 4):
            Number of emotion classes; 1 for sentiment regression.
        problem_type (`str`, *optional*, defaults to `"single_label_classification"`):
            `"single_label_classification"` (cross-entropy, IEMOCAP) or `"regression"` (MSE, CMU-MOSI/MOSEI).
        fused_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the fused-head task loss (stage 2).
        modality_loss_weight (`float`, *optional*, defaults to 2.0):
            Weight of each unimodal task loss in stage 2 (the released code counts them twice).
        stage1_modality_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of each unimodal task loss in stage 1.
        private_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the stage-1 private-branch terms (anti-label cross-entropy, or regression to noise).
        disentangle_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the shared/private disentanglement loss (both stages).
        reconstruction_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the decoder reconstruction loss (stage 2).
        private_noise_std (`float`, *optional*, defaults to 1.5):
            Regression only: standard deviation of the noise target of the private heads (clamped to ±3).
        reference_compat (`bool`, *optional*, defaults to `False`):
            Reproduce the released code's forward exactly (batch-wide prototype softmax, padding fed to the
            prototype layer, no masking of missing rows before the prototypes, the text and video private
            branches fed audio's private features, inputs internally padded to `max_utterances`). Used to
            prove faithfulness with converted checkpoints; not recommended for serving because a prediction
            then depends on the rest of the batch.
        prototype_scope (`str`, *optional*, defaults to `"dialogue"`):
            `"dialogue"`: each utterance attends to its own conversation's prototypes only. `"batch"`: the
            released behaviour (softmax over the prototypes of every conversation in the batch).
        use_knowledge_propagation (`bool`, *optional*, defaults to `True`):
            Ablation "w/o KP": no prompts enter the attention stacks and no prompt generation or coordinator
            is used; the encoder outputs are concatenated and classified.
        use_prompt_generation (`bool`, *optional*, defaults to `True`):
            Ablation "w/o PG": prompts are not built from prototypes (only the residual projection of the
            features forms them).
        use_coordinator (`bool`, *optional*, defaults to `True`):
            Ablation "w/o Cr": modalities are fused with equal weights (1/3 each).
        use_gradient_modulation (`bool`, *optional*, defaults to `True`):
            Ablation "w/o GM": the dynamic gradient modulator of Eq. 10-11 is not applied.
        modulation_eps (`float`, *optional*, defaults to 1e-6):
            Guard of the modulator: a relative-error sum with magnitude below this (times `max(1, Σ|w|)`) gives
            weight 1. Finite and > 0.
        initializer_range (`float`, *optional*, defaults to `None`):
            If set, linear weights are drawn from N(0, initializer_range); `None` keeps PyTorch's default
            `nn.Linear` initialisation, as the released code does.
        modality_features (`dict`, *optional*, defaults to `None`):
            Which features the checkpoint was trained on, so that a user can compute matching inputs: `None`
            (unknown), or a dict with keys `"audio"`, `"text"`, `"video"`, each `{"feature": str, "extractor":
            dict | None}`, where `extractor` is `{"model_id": str, "layers": list[int], "pooling": str}` (the
            feature extractor's checkpoint, the hidden layers used, and the pooling over an utterance's frames or
            tokens). `CORPUS_MODALITY_FEATURES` holds the value for each corpus of the paper.

        trained_stage (`int`, *optional*, defaults to 2):
            Provenance of the weights, written by `save_pretrained`: the training stage the model was in when it was
            saved (1: only the unimodal paths are trained, the prompts and the coordinator are not). A model built
            from this config starts in that stage. (Version 0.1 configs call it `training_stage`.)

    Every field is checked when the config is made (and again before a model is built from it), each with a
    one-line `ValueError` naming the field, the value and what is allowed: booleans are never numbers, sizes are
    integers between 1 and an upper limit (`MAX_FEATURE_DIM` = 16384 for the three feature dimensions,
    `MAX_HIDDEN_SIZE` = 2048, `MAX_HIDDEN_LAYERS` = 24, `MAX_ATTENTION_HEADS` = 64, `MAX_PROMPT_DIM` = 1024,
    `MAX_PROTOTYPES` = 1024, `MAX_UTTERANCES` = 1024, `MAX_LABELS` = 1024), and the sizes together may not make
    a model of more than `MAX_PARAMETERS` = 100 million parameters. `FIELDS` declares every field once.

    The training stage in use (1: unimodal paths; 2: the full model, also used for inference) is runtime state held
    by the model (`ComPForEmotionRecognition.set_training_stage`), not by the config.

    Example:
    ```python
    >>> from modeling_comp import ComPConfig, ComPForEmotionRecognition
    >>> config = ComPConfig(audio_dim=512, text_dim=1024, video_dim=1024, num_labels=4)
    >>> model = ComPForEmotionRecognition(config)
    ```
    """

    model_type = "comp"
    attribute_map = {"num_layers": "num_hidden_layers"}

    def __init__(self, **kwargs):
        model_type = kwargs.pop("model_type", self.model_type)
        if model_type != self.model_type:
            raise ValueError(
                f"ComPConfig: this config has model_type {model_type!r}; a ComP config.json has model_type 'comp'"
            )
        num_layers = kwargs.pop("num_layers", None)
        if num_layers is not None:  # the field's name in version 0.1 (its configs and callers)
            depth = kwargs.get("num_hidden_layers", FIELDS["num_hidden_layers"].default)
            if depth not in (FIELDS["num_hidden_layers"].default, num_layers):
                raise ValueError(
                    f"ComPConfig: num_layers={num_layers!r} (the former name of num_hidden_layers) and "
                    f"num_hidden_layers={depth!r} disagree; pass num_hidden_layers only"
                )
            kwargs["num_hidden_layers"] = num_layers
        legacy_stage = kwargs.pop("training_stage", None)  # version 0.1's name for the stage the weights were saved in
        if legacy_stage is not None and kwargs.get("trained_stage", 2) == 2:
            kwargs["trained_stage"] = legacy_stage
        # Every ComP field is read and checked before the base class runs: a hostile size (num_labels included,
        # which the base class expands into a label map) is refused before it costs anything.
        values = {name: kwargs.pop(name, field.default) for name, field in FIELDS.items()}
        for name, value in values.items():
            FIELDS[name].check(name, value)
        _check_labels(kwargs)
        if "num_labels" not in kwargs and "id2label" not in kwargs:  # a saved config stores only id2label
            kwargs["num_labels"] = 4
        kwargs.setdefault("problem_type", "single_label_classification")
        super().__init__(**kwargs)
        for name, value in values.items():
            setattr(self, name, value)
        self.validate()

    @property
    def is_regression(self) -> bool:
        """Whether the task is sentiment regression (one output per utterance)."""
        return self.problem_type == "regression"

    @property
    def modality_dims(self) -> dict[str, int]:
        """Input feature dimension per modality, in `MODALITIES` order."""
        return {AUDIO: self.audio_dim, TEXT: self.text_dim, VIDEO: self.video_dim}

    def num_parameters_estimate(self) -> int:
        """The number of parameters of a `ComPForEmotionRecognition` built from this config, computed from the
        sizes alone (no module is built)."""
        return _parameter_count(self)

    def validate(self, **kwargs) -> None:
        """Check every ComP field (type, range, and the relations between them); raise a one-line `ValueError`
        naming the field, the value and what is allowed.

        Runs the base class validators first where the installed transformers has them (transformers calls
        `validate` again at save time); `ComPPreTrainedModel` calls it again before building any module, so a
        field changed after construction is checked too.
        """
        base_validate = getattr(super(), "validate", None)  # transformers >= 5.4 only
        if base_validate is not None:
            base_validate()
        for name, field in FIELDS.items():
            field.check(name, getattr(self, name, field.default))
        _check_labels({"num_labels": self.num_labels})
        if self.num_hidden_layers % 2:
            raise ValueError(
                f"ComPConfig.num_hidden_layers must be even (two propagation stages of num_hidden_layers // 2 "
                f"attention layers each), got {self.num_hidden_layers!r}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ComPConfig.hidden_size ({self.hidden_size!r}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads!r})"
            )
        if self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"ComPConfig.problem_type must be one of {_PROBLEM_TYPES}, got {self.problem_type!r}")
        if self.problem_type == "regression" and self.num_labels != 1:
            raise ValueError(f"ComPConfig: regression needs num_labels=1, got num_labels={self.num_labels!r}")
        if self.problem_type == "single_label_classification" and self.num_labels < 2:
            raise ValueError(f"ComPConfig: classification needs num_labels >= 2, got {self.num_labels!r}")
        count = _parameter_count(self)
        if count > MAX_PARAMETERS:
            sizes = ", ".join(f"{name}={getattr(self, name)}" for name in _SIZE_FIELDS)
            raise ValueError(
                f"ComPConfig: these sizes make a model of {count:,} parameters, above the limit of "
                f"{MAX_PARAMETERS:,} ({sizes})"
            )
        validate_modality_features(self.modality_features)


def _check_labels(kwargs: dict) -> None:
    """`num_labels` / `id2label` / `label2id` (read by the base class): bounded before they are expanded."""
    if "num_labels" in kwargs:
        value = kwargs["num_labels"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LABELS:
            raise ValueError(f"ComPConfig.num_labels must be an integer in [1, {MAX_LABELS}], got {value!r}")
    for name in ("id2label", "label2id"):
        value = kwargs.get(name)
        if value is None:
            continue
        if not isinstance(value, dict) or not 1 <= len(value) <= MAX_LABELS:
            shown = f"{len(value)} entries" if isinstance(value, dict) else type(value).__name__
            raise ValueError(f"ComPConfig.{name} must be a mapping of 1 to {MAX_LABELS} labels, got {shown}")


def _parameter_count(config) -> int:
    """Parameters of `ComPForEmotionRecognition(config)`, from the sizes (checked against the built model by the
    tests)."""
    dim, prompt, labels = config.hidden_size, config.prompt_dim, config.num_labels
    protos, length = config.num_prototypes, config.max_utterances

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    def mlp(n_in: int, n_hidden: int, n_out: int) -> int:
        return linear(n_in, n_hidden) + linear(n_hidden, n_out)

    count = sum(linear(d, dim) for d in (config.audio_dim, config.text_dim, config.video_dim))
    count += 6 * mlp(dim, dim, dim) + 3 * mlp(2 * dim, dim, dim)  # shared + private encoders, decoders
    count += 3 * config.num_hidden_layers * (linear(dim, 3 * dim) + mlp(dim, dim, dim))  # both stacks
    count += 3 * (2 * linear(dim + 2 * prompt, dim) + mlp(dim, dim, dim + 2 * prompt))  # prompt fusions, split
    count += 3 * (mlp(length, protos, protos) + 2 * (mlp(dim, prompt, prompt) + linear(dim, prompt)))
    count += mlp(3 * dim, dim, 3)  # coordinator
    count += 3 * linear(dim, labels) + linear(3 * dim, 3 * dim) + linear(3 * dim, labels)  # heads, fusion tail
    return count


# `inspect.signature(ComPConfig)` lists the fields (the recipes and help texts read it); `FIELDS` is the one source.
ComPConfig.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for name, f in FIELDS.items()]
    + [
        inspect.Parameter("num_layers", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
)


def validate_modality_features(value) -> None:
    """Check the schema of `ComPConfig.modality_features`; raise a one-line `ValueError` naming the bad entry."""
    if value is None:
        return
    where = "ComPConfig.modality_features"
    if not isinstance(value, dict) or set(value) != set(MODALITIES):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"{where} must be None or a dict with keys {list(MODALITIES)}, got {got!r}")
    for modality in MODALITIES:
        entry = value[modality]
        if not isinstance(entry, dict) or set(entry) != {"feature", "extractor"}:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{where}[{modality!r}] must be a dict with keys ['extractor', 'feature'], got {got!r}")
        if not isinstance(entry["feature"], str) or not entry["feature"]:
            raise ValueError(f"{where}[{modality!r}]['feature'] must be a non-empty string, got {entry['feature']!r}")
        extractor = entry["extractor"]
        if extractor is None:
            continue
        if not isinstance(extractor, dict) or set(extractor) != {"model_id", "layers", "pooling"}:
            got = sorted(extractor) if isinstance(extractor, dict) else type(extractor).__name__
            raise ValueError(
                f"{where}[{modality!r}]['extractor'] must be None or a dict with keys "
                f"['layers', 'model_id', 'pooling'], got {got!r}"
            )
        if not isinstance(extractor["model_id"], str) or not extractor["model_id"]:
            raise ValueError(
                f"{where}[{modality!r}]['extractor']['model_id'] must be a non-empty string, got "
                f"{extractor['model_id']!r}"
            )
        layers = extractor["layers"]
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
        ):
            raise ValueError(
                f"{where}[{modality!r}]['extractor']['layers'] must be a non-empty list of integers, got {layers!r}"
            )
        if not isinstance(extractor["pooling"], str) or not extractor["pooling"]:
            raise ValueError(
                f"{where}[{modality!r}]['extractor']['pooling'] must be a non-empty string, got "
                f"{extractor['pooling']!r}"
            )


__all__ = [
    "AUTO_MAP",
    "CORPUS_MODALITY_FEATURES",
    "AUDIO",
    "FIELDS",
    "MAX_ATTENTION_HEADS",
    "MAX_FEATURE_DIM",
    "MAX_HIDDEN_LAYERS",
    "MAX_HIDDEN_SIZE",
    "MAX_LABELS",
    "MAX_PARAMETERS",
    "MAX_PROMPT_DIM",
    "MAX_PROTOTYPES",
    "MAX_UTTERANCES",
    "ATTENTION_MASK",
    "LABELS",
    "MODALITIES",
    "MODALITY_MASK",
    "MODEL_INPUT_NAMES",
    "TEXT",
    "UTTERANCE_INDEX",
    "VIDEO",
    "ComPConfig",
    "ConfigField",
    "validate_modality_features",
]
