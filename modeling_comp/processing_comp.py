"""`ComPProcessor`: conversations (per-utterance feature arrays, any modality possibly missing) -> ComP inputs.

This file is copied next to the weights of every checkpoint saved with its processor, so it imports only
numpy, transformers and the sibling `configuration_comp.py` and `names.py`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .configuration_comp import ATTENTION_MASK, LABELS, MODALITIES, MODALITY_MASK
from .names import CONVERSATION_INDEX, DIALOG_ID, UTTERANCE_IDS


#: The file `save_pretrained` writes and `from_pretrained` reads.
PROCESSOR_FILE = "preprocessor_config.json"

#: Bounds on the processor's size fields, checked before anything is allocated (a tampered
#: `preprocessor_config.json` must not be able to ask for gigabytes of padding).
MAX_FEATURE_DIM = 1 << 16
MAX_UTTERANCES = 1 << 16
#: Most float values one padded batch (`batch x utterances x (audio + text + video dims)`) may hold: 1 GiB.
MAX_BATCH_VALUES = 1 << 28
#: Largest `conversation_index` (an int64 tensor holds it).
_MAX_INDEX = (1 << 63) - 1

_PAD_TO = ("longest", "max_utterances")
_PROBLEM_TYPES = ("single_label_classification", "regression")
_AUTO_MAP = {
    "AutoFeatureExtractor": "processing_comp.ComPProcessor",
    "AutoProcessor": "processing_comp.ComPProcessor",
}
#: Keys `save_pretrained` writes beside the constructor's arguments (anything else in the file is refused, so that
#: a key cannot shadow one of the processor's own attributes such as `model_input_names`).
_SERIALISATION_KEYS = ("feature_extractor_type", "auto_map", "processor_class", "_processor_class")
_NUMERIC_KINDS = "biuf"


def _to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (other values unchanged), without importing torch when it is absent."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def _to_float_numpy(value: Any) -> Any:
    """A torch tensor as a float32 numpy array (bfloat16 has no numpy dtype); other values through `np.asarray`."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().float().cpu().numpy()
    return None if value is None else np.asarray(value)


def _positive_int_or_none(name: str, value: Any, limit: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= limit:
        raise ValueError(f"ComPProcessor.{name} must be a positive integer up to {limit} or None, got {value!r}")
    return int(value)


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    """`array` unchanged when it holds real numbers; a one-line `ValueError` naming `what` otherwise (complex values
    would lose their imaginary part, strings and objects are not features)."""
    if array.dtype.kind not in _NUMERIC_KINDS:
        kind = "complex" if array.dtype.kind == "c" else f"{array.dtype}"
        raise ValueError(f"{what} holds {kind} values, expected real numbers")
    return array


def _conversation_index(value: Any, name: str) -> int:
    """A conversation's index as a Python int: an integer (Python, numpy or a 0-d integer tensor) in int64 range."""
    value = _to_numpy(value)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(
                f"conversation {name!r}: {CONVERSATION_INDEX} has shape {value.shape}, expected one integer"
            )
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= _MAX_INDEX:
        raise ValueError(
            f"conversation {name!r}: {CONVERSATION_INDEX} is {value!r}, expected an integer from 0 to 2**63 - 1"
        )
    return int(value)


@dataclass
class ComPPrediction:
    """The predictions for one conversation, padding removed (what `ComPProcessor.post_process` returns).

    Attributes:
        modality_mask: bool `[n, 3]`: the modalities (audio, text, video) the model was given per utterance.
        scores: classification: class probabilities `[n, C]`; regression: sentiment `[n]`.
        modality_scores: each modality head's view: probabilities `[n, 3, C]` or sentiment `[n, 3]`.
        coordinator_weights: the coordinator's weight per modality `[n, 3]`; `None` when the model has no
            coordinator (stage 1, or the coordinator ablated).
        label_names: class names in class-id order; `None` for regression.
    """

    modality_mask: np.ndarray
    scores: np.ndarray
    modality_scores: np.ndarray
    coordinator_weights: np.ndarray | None
    label_names: list[str] | None

    @property
    def num_utterances(self) -> int:
        """The conversation's number of utterances."""
        return int(self.modality_mask.shape[0])

    @property
    def labels(self) -> list[str] | None:
        """The fused prediction's class name per utterance (`None` for regression)."""
        if self.label_names is None:
            return None
        return [self.label_names[int(c)] for c in self.scores.argmax(-1)]

    def records(self, utterance_ids: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """One dict per utterance, as the `multimodal-emotion-recognition` pipeline returns them.

        Args:
            utterance_ids: The utterances' ids (default: their indices).

        Returns:
            Dicts with `utterance`, `observed`, `label`/`score`/`scores` (classification) or `sentiment`
            (regression), `modalities` (each head's view) and `coordinator_weights` (`None` without a coordinator).
        """
        n = self.num_utterances
        ids = list(range(n)) if utterance_ids is None else list(utterance_ids)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} utterance ids for {n} utterances")
        names, weights = self.label_names, self.coordinator_weights
        results = []
        for j in range(n):
            entry: dict[str, Any] = {
                "utterance": ids[j],
                "observed": [m for i, m in enumerate(MODALITIES) if self.modality_mask[j, i]],
            }
            if names is None:
                entry["sentiment"] = float(self.scores[j])
                entry["modalities"] = {
                    m: {"sentiment": float(self.modality_scores[j, i])} for i, m in enumerate(MODALITIES)
                }
            else:
                top = int(np.argmax(self.scores[j]))
                entry["label"] = names[top]
                entry["score"] = float(self.scores[j, top])
                entry["scores"] = {name: float(p) for name, p in zip(names, self.scores[j])}
                entry["modalities"] = {}
                for i, m in enumerate(MODALITIES):
                    head_top = int(np.argmax(self.modality_scores[j, i]))
                    entry["modalities"][m] = {
                        "label": names[head_top],
                        "score": float(self.modality_scores[j, i, head_top]),
                    }
            entry["coordinator_weights"] = (
                None if weights is None else {m: float(weights[j, i]) for i, m in enumerate(MODALITIES)}
            )
            results.append(entry)
        return results


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def _label_names(config: Any, num_labels: int) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    id2label = {int(k): str(v) for k, v in id2label.items()}
    return [id2label.get(c, f"LABEL_{c}") for c in range(num_labels)]


class ComPProcessor(FeatureExtractionMixin):
    r"""
    Turns one conversation or a batch of conversations into the padded tensors a ComP model takes.

    A conversation is a mapping with, per modality (`"audio"`, `"text"`, `"video"`), either

    - an array `[num_utterances, dim]` (numpy, torch or nested lists),
    - a list with one vector `[dim]` per utterance, `None` where that utterance lacks the modality, or
    - `None` (or no key): the modality is missing for the whole conversation.

    Optional fields: `modality_mask` `[num_utterances, 3]` (1 = observed, order audio, text, video; it may hide
    more than the `None`s do, never less), `labels` `[num_utterances]`, `dialog_id` (used in error messages) and
    `conversation_index`. Rows of a `hub_datasets` split are conversations in this sense.

    The output (a [`~transformers.BatchFeature`]) holds `audio`/`text`/`video` float32 `[batch, T, dim]` with
    zeros wherever a modality is missing or the position is padding, `modality_mask` float32 `[batch, T, 3]`,
    `attention_mask` int64 `[batch, T]` (1 = real utterance), `labels` when every conversation has them (int64
    padded with `label_pad_value` for classification, float32 padded with 0 for regression) and
    `conversation_index` int64 `[batch]` when every conversation has one. `T` is the longest conversation of the
    batch (`pad_to="longest"`) or `max_utterances`.

    Every problem is a `ValueError` of one line naming the conversation, the field and what was expected:
    feature dimensions that differ from the model's, conversations longer than `max_utterances`, masks or labels
    of the wrong length, and observed features that are NaN, infinite or larger in magnitude than
    `max_abs_value` (the first bad position is named). Features of missing modalities are never read. Complex,
    string or object values are refused, never cast; sizes are bounded (`MAX_FEATURE_DIM`, `MAX_UTTERANCES`,
    `MAX_BATCH_VALUES`) before anything is allocated.

    `post_process` goes the other way: model outputs -> one `ComPPrediction` per conversation (labels,
    probabilities or sentiment, each modality head's view, coordinator weights), never anything non-finite. The
    pipeline, the Space and the evaluation recipes all read predictions through it.

    Args:
        audio_dim (`int`, *optional*):
            The model's audio feature dimension; `None` takes it from the data (then every conversation of a
            batch must agree).
        text_dim (`int`, *optional*):
            The model's text feature dimension.
        video_dim (`int`, *optional*):
            The model's video feature dimension.
        max_utterances (`int`, *optional*):
            The model's `max_utterances`: longer conversations are refused. `None` accepts any length.
        pad_to (`str`, *optional*, defaults to `"longest"`):
            `"longest"` (the batch's longest conversation) or `"max_utterances"` (always `max_utterances`).
        label_pad_value (`int`, *optional*, defaults to -100):
            Padding of classification labels (the loss ignores it).
        problem_type (`str`, *optional*):
            `"single_label_classification"` or `"regression"`: the label dtype. `None` infers it from the labels
            (floating point = regression).
        max_abs_value (`float`, *optional*, defaults to 1e6):
            Largest magnitude accepted in an observed feature; `None` checks finiteness only.

    Example:
    ```python
    >>> import numpy as np
    >>> from modeling_comp import ComPProcessor
    >>> processor = ComPProcessor(audio_dim=4, text_dim=3, video_dim=2, max_utterances=10)
    >>> conversation = {
    ...     "audio": [np.ones(4), None, np.ones(4)],  # utterance 1 has no audio
    ...     "text": np.zeros((3, 3)),
    ...     "video": None,  # no video at all
    ... }
    >>> batch = processor(conversation)
    >>> batch["modality_mask"][0].tolist()
    [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    ```
    """

    model_input_names = [*MODALITIES, MODALITY_MASK, ATTENTION_MASK]
    # `save_pretrained` copies this file (and `configuration_comp.py`) next to `preprocessor_config.json`, so
    # `AutoProcessor` / `AutoFeatureExtractor` load it with `trust_remote_code=True` without this package.
    _auto_class = "AutoFeatureExtractor"

    def __init__(
        self,
        audio_dim: int | None = None,
        text_dim: int | None = None,
        video_dim: int | None = None,
        max_utterances: int | None = None,
        pad_to: str = "longest",
        label_pad_value: int = -100,
        problem_type: str | None = None,
        max_abs_value: float | None = 1e6,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - set(_SERIALISATION_KEYS))
        if unknown:
            raise ValueError(
                f"ComPProcessor got unknown field(s) {', '.join(map(repr, unknown))}; expected audio_dim, text_dim, "
                "video_dim, max_utterances, pad_to, label_pad_value, problem_type, max_abs_value"
            )
        kind = kwargs.get("feature_extractor_type")
        if kind is not None and kind != type(self).__name__:
            raise ValueError(f"ComPProcessor got feature_extractor_type={kind!r}, expected {type(self).__name__!r}")
        auto_map = kwargs.get("auto_map")
        if auto_map is not None and not (
            isinstance(auto_map, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in auto_map.items())
        ):
            raise ValueError(f"ComPProcessor.auto_map must map Auto class names to class paths, got {auto_map!r}")
        super().__init__(**kwargs)
        self.audio_dim = _positive_int_or_none("audio_dim", audio_dim, MAX_FEATURE_DIM)
        self.text_dim = _positive_int_or_none("text_dim", text_dim, MAX_FEATURE_DIM)
        self.video_dim = _positive_int_or_none("video_dim", video_dim, MAX_FEATURE_DIM)
        self.max_utterances = _positive_int_or_none("max_utterances", max_utterances, MAX_UTTERANCES)
        if pad_to not in _PAD_TO:
            raise ValueError(f"ComPProcessor.pad_to must be one of {_PAD_TO}, got {pad_to!r}")
        if pad_to == "max_utterances" and self.max_utterances is None:
            raise ValueError("ComPProcessor: pad_to='max_utterances' needs max_utterances")
        self.pad_to = pad_to
        if isinstance(label_pad_value, bool) or not isinstance(label_pad_value, (int, np.integer)):
            raise ValueError(f"ComPProcessor.label_pad_value must be an integer, got {label_pad_value!r}")
        self.label_pad_value = int(label_pad_value)
        if problem_type is not None and problem_type not in _PROBLEM_TYPES:
            raise ValueError(
                f"ComPProcessor.problem_type must be one of {_PROBLEM_TYPES} or None, got {problem_type!r}"
            )
        self.problem_type = problem_type
        if max_abs_value is not None and (
            isinstance(max_abs_value, bool)
            or not isinstance(max_abs_value, (int, float))
            or not math.isfinite(max_abs_value)
            or max_abs_value <= 0
        ):
            raise ValueError(
                f"ComPProcessor.max_abs_value must be a positive finite number or None, got {max_abs_value!r}"
            )
        self.max_abs_value = None if max_abs_value is None else float(max_abs_value)
        if self.pad_to == "max_utterances":
            width = sum(d for d in (self.audio_dim, self.text_dim, self.video_dim) if d is not None)
            if self.max_utterances * width > MAX_BATCH_VALUES:
                raise ValueError(
                    f"ComPProcessor: padding to max_utterances={self.max_utterances} with features of total dimension "
                    f"{width} would hold more than {MAX_BATCH_VALUES} values per conversation"
                )

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict[str, Any], **kwargs):
        """`FeatureExtractionMixin.from_dict`, refusing a malformed `preprocessor_config.json` with a one-line
        `ValueError` that names the file and the field (unknown keys included)."""
        if not isinstance(feature_extractor_dict, Mapping):
            raise ValueError(
                f"{PROCESSOR_FILE} holds a {type(feature_extractor_dict).__name__}, expected a JSON object"
            )
        try:
            return super().from_dict(dict(feature_extractor_dict), **kwargs)
        except ValueError as err:
            raise ValueError(f"{PROCESSOR_FILE}: {err}") from None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`FeatureExtractionMixin.from_pretrained`; a malformed `preprocessor_config.json` is refused with a
        one-line `ValueError` naming the file (its path when local) and the field."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except ValueError as err:
            message = str(err)
            if message.startswith(PROCESSOR_FILE) and os.path.isdir(pretrained_model_name_or_path):
                message = os.path.join(str(pretrained_model_name_or_path), message)
            elif message.startswith(PROCESSOR_FILE):
                message = f"{pretrained_model_name_or_path}/{message}"
            raise ValueError(message) from None

    @classmethod
    def from_model_config(cls, config: Any, **kwargs) -> ComPProcessor:
        """The processor matching a model's configuration (`ComPConfig` or its dict).

        Args:
            config: The model's configuration.
            kwargs: Overrides of the other arguments (`pad_to`, `max_abs_value` ...).
        """
        get = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key, None)
        values = {
            "audio_dim": get("audio_dim"),
            "text_dim": get("text_dim"),
            "video_dim": get("video_dim"),
            "max_utterances": get("max_utterances"),
            "problem_type": get("problem_type"),
        }
        return cls(**{**values, **kwargs})

    @property
    def modality_dims(self) -> dict[str, int | None]:
        """Expected feature dimension per modality (`None` = taken from the data)."""
        return {m: getattr(self, f"{m}_dim") for m in MODALITIES}

    def check_model_config(self, config: Any) -> None:
        """Raise a one-line `ValueError` when this processor does not fit a model's configuration.

        Args:
            config: The model's `ComPConfig`.
        """
        for name in (*(f"{m}_dim" for m in MODALITIES), "max_utterances"):
            mine, theirs = getattr(self, name), getattr(config, name, None)
            if mine is not None and theirs is not None and int(mine) != int(theirs):
                raise ValueError(f"the processor has {name}={mine} but the model's config has {name}={theirs}")

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """`FeatureExtractionMixin.save_pretrained`, declaring the processor for both `AutoFeatureExtractor` and
        `AutoProcessor` in `preprocessor_config.json`'s `auto_map` (the code itself is copied beside it)."""
        self.auto_map = {**(getattr(self, "auto_map", None) or {}), **_AUTO_MAP}
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    # -- the conversion ----------------------------------------------------------------------------------------
    def __call__(
        self,
        conversations: Mapping | Sequence[Mapping],
        *,
        pad_to: str | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Pad one conversation or a batch into model inputs.

        Args:
            conversations: One conversation (a mapping) or a list of them (see the class docstring).
            pad_to: Overrides `self.pad_to` for this call.
            return_tensors: `"pt"` (default), `"np"`, or `None` (numpy arrays).

        Returns:
            A `BatchFeature` with the model inputs (and `labels` / `conversation_index` when given).
        """
        if kwargs:
            raise TypeError(f"ComPProcessor got unexpected keyword arguments {sorted(kwargs)}")
        if isinstance(conversations, Mapping):
            conversations = [conversations]
        elif isinstance(conversations, (str, bytes)) or not isinstance(conversations, Sequence):
            raise ValueError(
                "ComPProcessor takes a conversation (a mapping with 'audio', 'text', 'video' features) or a list of "
                f"them, got {type(conversations).__name__}"
            )
        if len(conversations) == 0:
            raise ValueError("ComPProcessor got an empty list of conversations")
        pad_to = self.pad_to if pad_to is None else pad_to
        if pad_to not in _PAD_TO:
            raise ValueError(f"pad_to must be one of {_PAD_TO}, got {pad_to!r}")
        if pad_to == "max_utterances" and self.max_utterances is None:
            raise ValueError("pad_to='max_utterances' needs a processor with max_utterances")

        parsed = [self._parse(conversation, b) for b, conversation in enumerate(conversations)]
        dims = self._batch_dims(parsed)
        batch_size = len(parsed)
        length = self.max_utterances if pad_to == "max_utterances" else max(p["length"] for p in parsed)
        if batch_size * length * sum(dims.values()) > MAX_BATCH_VALUES:
            raise ValueError(
                f"the padded batch would hold {batch_size} x {length} x {sum(dims.values())} feature values, more than "
                f"{MAX_BATCH_VALUES}; pass fewer or shorter conversations at a time"
            )

        mask = np.zeros((batch_size, length, 3), dtype=np.float32)
        attention = np.zeros((batch_size, length), dtype=np.int64)
        features = {m: np.zeros((batch_size, length, dims[m]), dtype=np.float32) for m in MODALITIES}
        for b, p in enumerate(parsed):
            n = p["length"]
            attention[b, :n] = 1
            mask[b, :n] = p["mask"]
            everything_observed = bool(p["mask"].all())
            for i, m in enumerate(MODALITIES):
                values = p["features"][m]
                if values is None:
                    continue
                if everything_observed:
                    features[m][b, :n] = values
                else:
                    # Selection, not multiplication: a NaN at a missing position must not leak into the batch.
                    observed = p["mask"][:, i] > 0
                    features[m][b, :n][observed] = values[observed]
        # Only observed values were copied (the rest is zeros), so checking the padded arrays checks exactly the
        # observed features, in one vectorised pass per modality.
        for m in MODALITIES:
            self._check_values(features[m], m, parsed)
        data: dict[str, Any] = {m: features[m] for m in MODALITIES}
        data[MODALITY_MASK] = mask
        data[ATTENTION_MASK] = attention

        has_labels = [p["labels"] is not None for p in parsed]
        if any(has_labels):
            if not all(has_labels):
                missing = parsed[has_labels.index(False)]["name"]
                raise ValueError(f"conversation {missing!r} has no labels but other conversations of the batch do")
            data[LABELS] = self._pad_labels(parsed, length)
        if all(p["index"] is not None for p in parsed):
            data[CONVERSATION_INDEX] = np.asarray([p["index"] for p in parsed], dtype=np.int64)
        return BatchFeature(data=data, tensor_type=return_tensors)

    # -- the other direction: model outputs -> predictions ----------------------------------------------------------
    def post_process(
        self,
        outputs: Any,
        attention_mask: Any,
        modality_mask: Any,
        *,
        config: Any,
        conversation_names: Sequence[str] | None = None,
    ) -> list[ComPPrediction]:
        """Turn a batch of model outputs into one `ComPPrediction` per conversation, padding removed.

        Classification logits become probabilities (softmax over the classes) and `label_names` come from
        `config.id2label`; regression outputs are the sentiment scores themselves. Nothing that is not finite is
        ever returned.

        Args:
            outputs: A `ComPOutput`, or a mapping with `logits`, `modality_logits` and (optionally)
                `coordinator_weights` (torch tensors or numpy arrays, `[batch, T, ...]`).
            attention_mask: `[batch, T]`, 1 = a real utterance (the processor's output).
            modality_mask: `[batch, T, 3]`, the observed modalities the model was given.
            config: The model's configuration (`problem_type`, `id2label`).
            conversation_names: Names of the conversations for error messages (default: their batch index).

        Returns:
            One `ComPPrediction` per conversation of the batch.

        Raises:
            ValueError: (one line) if any output of a real utterance is NaN or infinite, naming the conversation,
                the utterance and the output; or if the shapes do not fit together.
        """
        get = outputs.get if isinstance(outputs, Mapping) else lambda key: getattr(outputs, key, None)
        logits = _to_float_numpy(get("logits"))
        modality_logits = _to_float_numpy(get("modality_logits"))
        weights = _to_float_numpy(get("coordinator_weights"))
        attention = _to_float_numpy(attention_mask)
        mask = _to_float_numpy(modality_mask)
        if logits is None or modality_logits is None:
            raise ValueError("post_process needs the model's logits and modality_logits")
        if attention is None or attention.ndim != 2:
            raise ValueError(f"attention_mask must be [batch, utterances], got {getattr(attention, 'shape', None)}")
        batch, length = attention.shape
        regression = getattr(config, "problem_type", None) == "regression"
        expected = {
            "logits": (batch, length) if regression else (batch, length, None),
            "modality_logits": (batch, length, 3) if regression else (batch, length, 3, None),
            "modality_mask": (batch, length, 3),
            "coordinator_weights": (batch, length, 3),
        }
        if regression and logits.ndim == 3 and logits.shape[-1] == 1:
            logits = logits[..., 0]
        if regression and modality_logits.ndim == 4 and modality_logits.shape[-1] == 1:
            modality_logits = modality_logits[..., 0]
        for key, value in (
            ("logits", logits),
            ("modality_logits", modality_logits),
            ("modality_mask", mask),
            ("coordinator_weights", weights),
        ):
            if value is None and key == "coordinator_weights":
                continue
            want = expected[key]
            if (
                value is None
                or value.ndim != len(want)
                or any(w is not None and w != v for w, v in zip(want, value.shape))
            ):
                shown = "None" if value is None else tuple(value.shape)
                raise ValueError(
                    f"post_process: {key} has shape {shown}, expected {tuple('C' if w is None else w for w in want)}"
                )
        names = None if regression else _label_names(config, logits.shape[-1])
        predictions = []
        for b in range(batch):
            n = int((attention[b] > 0).sum())
            if not (attention[b, :n] > 0).all():
                raise ValueError(f"post_process: attention_mask of conversation {b} is not left-aligned (1s then 0s)")
            name = f"{b}" if conversation_names is None else f"{b} ({conversation_names[b]!r})"
            views = {"prediction": logits[b, :n], "modality heads": modality_logits[b, :n]}
            if weights is not None:
                views["coordinator weights"] = weights[b, :n]
            for what, values in views.items():
                finite = np.isfinite(values.reshape(n, -1)).all(axis=-1)
                if not finite.all():
                    j = int(np.argmin(finite))
                    raise ValueError(
                        f"conversation {name}, utterance {j}: the model's {what} output is not finite (NaN or "
                        "infinite); the input features are far outside what the model was trained on"
                    )
            if regression:
                scores, modality_scores = logits[b, :n].astype(np.float32), modality_logits[b, :n].astype(np.float32)
            else:
                scores, modality_scores = _softmax(logits[b, :n]), _softmax(modality_logits[b, :n])
            predictions.append(
                ComPPrediction(
                    modality_mask=mask[b, :n] > 0,
                    scores=scores,
                    modality_scores=modality_scores,
                    coordinator_weights=None if weights is None else weights[b, :n].astype(np.float32),
                    label_names=names,
                )
            )
        return predictions

    def _parse(self, conversation: Any, b: int) -> dict[str, Any]:
        """Validate one conversation; returns its name, length, `[n, dim]` features (or None) and `[n, 3]` mask."""
        if not isinstance(conversation, Mapping):
            raise ValueError(
                f"conversation at index {b} is a {type(conversation).__name__}, expected a mapping with 'audio', "
                "'text' and 'video' features"
            )
        name = conversation.get(DIALOG_ID)
        name = f"row {b}" if name is None else str(name)
        features: dict[str, np.ndarray | None] = {}
        present: dict[str, np.ndarray | None] = {}
        for m in MODALITIES:
            features[m], present[m] = self._modality(conversation.get(m), name, m)
        lengths = {m: f.shape[0] for m, f in features.items() if f is not None}
        if not lengths:
            raise ValueError(f"conversation {name!r} has no features: 'audio', 'text' and 'video' are all None")
        if len(set(lengths.values())) > 1:
            shapes = ", ".join(f"{m} {n}" for m, n in lengths.items())
            raise ValueError(f"conversation {name!r}: the modalities have different numbers of utterances ({shapes})")
        n = next(iter(lengths.values()))
        if n == 0:
            raise ValueError(f"conversation {name!r} has no utterances")
        if self.max_utterances is not None and n > self.max_utterances:
            raise ValueError(
                f"conversation {name!r} has {n} utterances, more than the model's max_utterances="
                f"{self.max_utterances}; use a model with a larger max_utterances or split that conversation"
            )
        for m, f in features.items():
            expected = getattr(self, f"{m}_dim")
            if f is not None and expected is not None and f.shape[1] != expected:
                raise ValueError(
                    f"conversation {name!r}: {m} features have dimension {f.shape[1]}, the model expects "
                    f"{m}_dim={expected}"
                )

        complete = all(features[m] is not None and present[m] is None for m in MODALITIES)
        if complete:
            available = None  # every modality of every utterance has features (the common case)
        else:
            available = np.stack(
                [
                    np.zeros(n, dtype=bool)
                    if features[m] is None
                    else (np.ones(n, dtype=bool) if present[m] is None else present[m])
                    for m in MODALITIES
                ],
                axis=1,
            )
        given = conversation.get(MODALITY_MASK)
        if given is None:
            mask = np.ones((n, 3), dtype=np.float32) if complete else available.astype(np.float32)
        else:
            given = np.asarray(_to_numpy(given))
            _numeric(given, f"conversation {name!r}: {MODALITY_MASK}")
            if given.shape != (n, 3):
                raise ValueError(
                    f"conversation {name!r}: {MODALITY_MASK} has shape {tuple(given.shape)}, expected ({n}, 3) "
                    "(utterances x audio/text/video)"
                )
            try:
                mask = given.astype(np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"conversation {name!r}: {MODALITY_MASK} is not numeric (0/1 or bool)") from None
            not_binary = (mask != 0) & (mask != 1)
            if not_binary.any():
                j, i = (int(x) for x in np.argwhere(not_binary)[0])
                raise ValueError(
                    f"conversation {name!r}: {MODALITY_MASK}[{j}, {i}] is {given[j, i].item()!r}, expected 0 or 1"
                )
            if available is not None:
                conflict = (mask > 0) & ~available
                if conflict.any():
                    j, i = (int(x) for x in np.argwhere(conflict)[0])
                    raise ValueError(
                        f"conversation {name!r}: {MODALITY_MASK} marks {MODALITIES[i]} observed at utterance {j} "
                        "but its features are None"
                    )
        labels = conversation.get(LABELS)
        if labels is not None:
            labels = np.asarray(_to_numpy(labels)).reshape(-1)
            if labels.dtype.kind == "c":
                _numeric(labels, f"conversation {name!r}: {LABELS}")
            if labels.shape[0] != n:
                raise ValueError(f"conversation {name!r}: {labels.shape[0]} labels for {n} utterances")
        index = conversation.get(CONVERSATION_INDEX)
        if index is not None:
            index = _conversation_index(index, name)
        return {"name": name, "length": n, "features": features, "mask": mask, "labels": labels, "index": index}

    def _modality(self, value: Any, name: str, modality: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """`[n, dim]` float32 features (`None` if absent) and `[n]` bool availability (`None` if all available)."""
        value = _to_numpy(value)
        if value is None:
            return None, None
        if isinstance(value, (list, tuple)) and any(v is None for v in value):
            if self.max_utterances is not None and len(value) > self.max_utterances:
                raise ValueError(
                    f"conversation {name!r} has {len(value)} utterances, more than the model's max_utterances="
                    f"{self.max_utterances}; use a model with a larger max_utterances or split that conversation"
                )
            rows = []
            for j, v in enumerate(value):
                if v is None:
                    rows.append(None)
                    continue
                row = np.asarray(_to_numpy(v))
                _numeric(row, f"conversation {name!r}: {modality} of utterance {j}")
                rows.append(row.astype(np.float64).reshape(-1))
            dims = {r.shape[0] for r in rows if r is not None}
            if len(dims) > 1:
                raise ValueError(f"conversation {name!r}: {modality} vectors have different dimensions {sorted(dims)}")
            if not dims:
                return None, None
            dim = dims.pop()
            if len(rows) * dim > MAX_BATCH_VALUES:
                raise ValueError(
                    f"conversation {name!r}: {modality} would hold {len(rows)} x {dim} values, more than "
                    f"{MAX_BATCH_VALUES}"
                )
            array = np.zeros((len(rows), dim), dtype=np.float32)
            available = np.zeros(len(rows), dtype=bool)
            for j, r in enumerate(rows):
                if r is not None:
                    array[j] = r
                    available[j] = True
            return array, available
        try:
            array = np.asarray(value)
            if array.dtype.kind == "c":
                _numeric(array, f"conversation {name!r}: {modality}")
            array = array.astype(np.float32, copy=False)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"conversation {name!r}: {modality} is not a numeric [utterances, dim] array "
                f"({str(err).splitlines()[0]})"
            ) from None
        if array.ndim != 2:
            raise ValueError(
                f"conversation {name!r}: {modality} has shape {tuple(array.shape)}, expected [utterances, dim]"
            )
        return array, None  # None: every utterance has it

    def _check_values(self, values: np.ndarray, modality: str, parsed: list[dict[str, Any]]) -> None:
        """Observed features (the only non-zero entries of the padded `[B, T, dim]` array) must be finite and
        within `max_abs_value`; the error names the first bad position."""
        limit = self.max_abs_value
        with np.errstate(invalid="ignore"):
            if limit is None:
                if np.isfinite(values).all():
                    return
                bad = ~np.isfinite(values)
            else:
                if np.abs(values).max(initial=0.0) <= limit:  # NaN compares False, so NaN falls through
                    return
                bad = ~(np.abs(values) <= limit)
        b, j, k = (int(x) for x in np.argwhere(bad)[0])
        value = float(values[b, j, k])
        what = "beyond max_abs_value" if math.isfinite(value) else "not finite"
        raise ValueError(
            f"conversation {parsed[b]['name']!r}: {modality} feature {k} of utterance {j} is {value:g} ({what}); "
            "observed features must be finite" + (f" and within ±{limit:g}" if limit is not None else "")
        )

    def _batch_dims(self, parsed: list[dict[str, Any]]) -> dict[str, int]:
        dims = {}
        for m in MODALITIES:
            expected = getattr(self, f"{m}_dim")
            if expected is not None:
                dims[m] = expected
                continue
            seen = {p["features"][m].shape[1] for p in parsed if p["features"][m] is not None}
            if len(seen) > 1:
                raise ValueError(f"{m} features of one batch have different dimensions {sorted(seen)}")
            if not seen:
                raise ValueError(
                    f"{m} is missing from every conversation of the batch and the processor has no {m}_dim: "
                    f"build it with ComPProcessor.from_model_config(model.config)"
                )
            dims[m] = seen.pop()
        return dims

    def _pad_labels(self, parsed: list[dict[str, Any]], length: int) -> np.ndarray:
        problem_type = self.problem_type
        if problem_type is None:
            problem_type = "regression" if parsed[0]["labels"].dtype.kind == "f" else "single_label_classification"
        regression = problem_type == "regression"
        try:
            values = np.concatenate([p["labels"] for p in parsed]).astype(np.float64)
        except (TypeError, ValueError):
            bad = next(p for p in parsed if p["labels"].dtype.kind not in "biuf")
            raise ValueError(
                f"conversation {bad['name']!r}: labels are not numbers ({bad['labels'][:3].tolist()!r})"
            ) from None
        invalid = ~np.isfinite(values)
        if not regression:
            with np.errstate(invalid="ignore"):
                invalid |= values != np.round(values)
        if invalid.any():
            position = int(np.argwhere(invalid)[0][0])
            for p in parsed:
                if position < p["length"]:
                    break
                position -= p["length"]
            value = float(p["labels"].astype(np.float64)[position])
            expected = "not finite" if not math.isfinite(value) else "classification labels must be integer class ids"
            raise ValueError(f"conversation {p['name']!r}: label of utterance {position} is {value!r}; {expected}")
        if regression:
            padded = np.zeros((len(parsed), length), dtype=np.float32)
        else:
            padded = np.full((len(parsed), length), self.label_pad_value, dtype=np.int64)
        offset = 0
        for b, p in enumerate(parsed):
            n = p["length"]
            padded[b, :n] = values[offset : offset + n]
            offset += n
        return padded


__all__ = [
    "CONVERSATION_INDEX",
    "DIALOG_ID",
    "MAX_BATCH_VALUES",
    "MAX_FEATURE_DIM",
    "MAX_UTTERANCES",
    "PROCESSOR_FILE",
    "UTTERANCE_IDS",
    "ComPPrediction",
    "ComPProcessor",
]
