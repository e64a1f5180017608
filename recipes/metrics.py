"""Evaluation metrics of ComP (the paper's: WA/UA/weighted F1 for IEMOCAP, Acc-2/F1/Acc-7/MAE/correlation for CMU), computed with scikit-learn.

Two tasks, one entry point (:func:`compute_metrics`), also served as an ``evaluate`` metric module
(``recipes/comp_metric``, loaded from the installed package by :func:`evaluate_metrics`, which the recipes use):

* **classification** (IEMOCAP-4/6): weighted accuracy ``accuracy`` (WA, plain accuracy over utterances),
  unweighted accuracy ``unweighted_accuracy`` (UA, mean per-class recall over the classes present in the
  references), ``weighted_f1``, ``macro_f1``, per-class F1 ``f1_<label>``, and the accuracy of each
  unimodal head ``accuracy_<modality>``.
* **regression** (CMU-MOSI/MOSEI sentiment in [-3, 3]):
  ``acc2`` / ``f1`` — binary accuracy and weighted F1 of ``y > 0`` vs ``ŷ > 0`` on **non-zero** references
  (the paper's numbers); ``acc2_has0`` / ``f1_has0`` — ``y >= 0`` vs ``ŷ >= 0`` on all references;
  ``acc7`` / ``acc5`` — accuracy after clipping to [-3, 3] / [-2, 2] and rounding to the nearest integer
  (``numpy.round``: halves go to the even integer); ``mae`` and Pearson ``corr`` on **all** references
  (the released code used non-zero ones only); ``acc2_<modality>`` for each unimodal head (non-zero
  references).

All values are fractions in [0, 1] (MAE and r in their own units); a value that is undefined for the given
inputs (no non-zero reference, constant predictions for r) is ``None``. Inputs are flat: one entry per real
utterance, padding already removed (see :func:`select_real_utterances`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score

from hub_datasets.constants import MODALITIES as MODALITY_NAMES


__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "TASKS",
    "MODALITY_NAMES",
    "classification_metrics",
    "regression_metrics",
    "compute_metrics",
    "select_real_utterances",
    "default_selection_metric",
    "higher_is_better",
    "metric_names",
    "is_known_metric",
    "KNOWN_METRICS_HELP",
    "metric_module_path",
    "load_metric",
    "evaluate_metrics",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


def _as_array(values: Any, name: str, dtype: Any | None = None) -> np.ndarray:
    """Converts lists, numpy arrays and torch tensors to a numpy array, with a readable error."""
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        values = values.detach().cpu().float().numpy() if values.is_floating_point() else values.cpu().numpy()
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` could not be read as a numeric array: {err}") from None
    if array.dtype == object:
        raise ValueError(f"`{name}` must be numeric, got values of mixed types")
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"`{name}` contains {bad} NaN/inf value(s); expected finite numbers")


def _to_class_ids(values: Any, name: str, num_samples: int | None = None) -> np.ndarray:
    """Class ids from ids ``[N]`` or from logits ``[N, C]`` (argmax over the last axis)."""
    array = _as_array(values, name)
    _check_finite(array, name)
    if array.ndim == 2:
        array = array.argmax(axis=-1)
    elif array.ndim != 1:
        raise ValueError(f"`{name}` must have shape [N] (class ids) or [N, C] (logits), got {list(array.shape)}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(array == np.round(array)):
        raise ValueError(f"`{name}` holds non-integer values; expected class ids or [N, C] logits")
    array = array.astype(np.int64)
    if num_samples is not None and array.shape[0] != num_samples:
        raise ValueError(f"`{name}` has {array.shape[0]} entries but `references` has {num_samples}")
    return array


def _float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _modality_columns(modality_predictions: Any, num_samples: int, regression: bool) -> list[tuple[str, np.ndarray]]:
    """Splits per-modality predictions ``[N, 3]`` (ids or scores) or ``[N, 3, C]`` (logits) into columns."""
    array = _as_array(modality_predictions, "modality_predictions")
    _check_finite(array, "modality_predictions")
    expected = "[N, 3]" if regression else "[N, 3] (class ids) or [N, 3, C] (logits)"
    if array.ndim < 2 or array.shape[0] != num_samples or array.shape[1] != len(MODALITY_NAMES):
        raise ValueError(
            f"`modality_predictions` must have shape {expected} with N = {num_samples}, got {list(array.shape)}"
        )
    if regression and array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if regression and array.ndim != 2:
        raise ValueError(f"`modality_predictions` must have shape [N, 3] for regression, got {list(array.shape)}")
    if not regression and array.ndim not in (2, 3):
        raise ValueError(f"`modality_predictions` must have shape {expected}, got {list(array.shape)}")
    return [(name, array[:, i]) for i, name in enumerate(MODALITY_NAMES)]


def _classification_arrays(predictions: Any, references: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked class ids ``(predictions, references)``, each ``[N]`` (logits ``[N, C]`` become their argmax)."""
    refs = _to_class_ids(references, "references")
    if refs.shape[0] == 0:
        raise ValueError("`references` is empty: no real utterance to evaluate")
    return _to_class_ids(predictions, "predictions", refs.shape[0]), refs


def _regression_arrays(predictions: Any, references: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked finite float64 ``(predictions, references)``, each ``[N]`` (``[N, 1]`` predictions are flattened)."""
    refs = _as_array(references, "references", np.float64)
    preds = _as_array(predictions, "predictions", np.float64)
    if preds.ndim == 2 and preds.shape[1] == 1:
        preds = preds[:, 0]
    for array, name in ((refs, "references"), (preds, "predictions")):
        if array.ndim != 1:
            raise ValueError(f"`{name}` must have shape [N] for regression, got {list(array.shape)}")
        _check_finite(array, name)
    if refs.shape[0] == 0:
        raise ValueError("`references` is empty: no real utterance to evaluate")
    if preds.shape[0] != refs.shape[0]:
        raise ValueError(f"`predictions` has {preds.shape[0]} entries but `references` has {refs.shape[0]}")
    return preds, refs


def classification_metrics(
    predictions: Any,
    references: Any,
    *,
    num_labels: int | None = None,
    label_names: Sequence[str] | Mapping[int, str] | None = None,
    modality_predictions: Any | None = None,
) -> dict[str, Any]:
    """Emotion-classification metrics (IEMOCAP protocol).

    Args:
        predictions: class ids ``[N]`` or logits ``[N, C]``.
        references: true class ids ``[N]``.
        num_labels: number of classes C (defaults to ``len(label_names)``, else to the largest id + 1).
        label_names: class names, a sequence indexed by id or a ``{id: name}`` mapping (``config.id2label``);
            used to name the per-class F1 keys ``f1_<name>`` (ids are used when missing).
        modality_predictions: per-modality class ids ``[N, 3]`` or logits ``[N, 3, C]``, order audio, text,
            video (the unimodal heads); adds ``accuracy_audio``, ``accuracy_text``, ``accuracy_video``.

    Returns:
        A flat dict of Python floats/ints: ``accuracy`` (WA), ``unweighted_accuracy`` (UA), ``weighted_f1``,
        ``macro_f1``, ``f1_<label>`` per class, ``accuracy_<modality>``, ``num_samples``.

    Raises:
        ValueError: on empty inputs, mismatched lengths, non-integer ids or ids outside ``[0, C)``.
    """
    preds, refs = _classification_arrays(predictions, references)
    if isinstance(label_names, Mapping):
        names = {int(k): str(v) for k, v in label_names.items()}
    elif label_names is not None:
        names = dict(enumerate(str(v) for v in label_names))
    else:
        names = {}
    if num_labels is None:
        num_labels = len(names) if names else int(max(refs.max(), preds.max())) + 1
    for array, name in ((refs, "references"), (preds, "predictions")):
        if array.min() < 0 or array.max() >= num_labels:
            bad = array[(array < 0) | (array >= num_labels)][0]
            raise ValueError(f"`{name}` holds class id {int(bad)}; expected ids in [0, {num_labels})")
    all_labels = list(range(num_labels))
    present = sorted(int(c) for c in np.unique(refs))
    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(refs, preds)),
        "unweighted_accuracy": float(recall_score(refs, preds, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(refs, preds, labels=all_labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(refs, preds, labels=present, average="macro", zero_division=0)),
    }
    per_class = f1_score(refs, preds, labels=all_labels, average=None, zero_division=0)
    for class_id, value in zip(all_labels, per_class, strict=True):
        result[f"f1_{names.get(class_id, class_id)}"] = float(value)
    if modality_predictions is not None:
        for name, column in _modality_columns(modality_predictions, refs.shape[0], regression=False):
            ids = _to_class_ids(column, f"modality_predictions[{name}]", refs.shape[0])
            result[f"accuracy_{name}"] = float(accuracy_score(refs, ids))
    result["num_samples"] = int(refs.shape[0])
    return result


def _binary_scores(truth: np.ndarray, pred: np.ndarray) -> tuple[float | None, float | None]:
    if truth.shape[0] == 0:
        return None, None
    return float(accuracy_score(truth, pred)), float(f1_score(truth, pred, average="weighted", zero_division=0))


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.shape[0] < 2:
        return None
    xc, yc = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.dot(xc, xc)) * float(np.dot(yc, yc)))
    if denom == 0.0:
        return None
    return float(np.dot(xc, yc) / denom)


def regression_metrics(
    predictions: Any,
    references: Any,
    *,
    modality_predictions: Any | None = None,
) -> dict[str, Any]:
    """Sentiment-regression metrics (CMU-MOSI/MOSEI protocol).

    Args:
        predictions: predicted sentiment ``[N]`` (or ``[N, 1]``).
        references: true sentiment ``[N]`` in [-3, 3].
        modality_predictions: per-modality predictions ``[N, 3]``, order audio, text, video; adds
            ``acc2_audio``, ``acc2_text``, ``acc2_video`` (non-zero references).

    Returns:
        A flat dict: ``acc2``, ``f1`` (non-zero references), ``acc2_has0``, ``f1_has0``, ``acc7``, ``acc5``,
        ``mae``, ``corr``, ``acc2_<modality>``, ``num_samples``, ``num_nonzero``. Undefined values are ``None``.

    Raises:
        ValueError: on empty inputs, mismatched lengths or non-finite values.
    """
    preds, refs = _regression_arrays(predictions, references)
    nonzero = refs != 0
    acc2, f1 = _binary_scores(refs[nonzero] > 0, preds[nonzero] > 0)
    acc2_has0, f1_has0 = _binary_scores(refs >= 0, preds >= 0)
    result: dict[str, Any] = {
        "acc2": acc2,
        "f1": f1,
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
        "acc7": float(np.mean(np.round(np.clip(preds, -3, 3)) == np.round(np.clip(refs, -3, 3)))),
        "acc5": float(np.mean(np.round(np.clip(preds, -2, 2)) == np.round(np.clip(refs, -2, 2)))),
        "mae": float(np.mean(np.abs(preds - refs))),
        "corr": _pearson(preds, refs),
    }
    if modality_predictions is not None:
        for name, column in _modality_columns(modality_predictions, refs.shape[0], regression=True):
            result[f"acc2_{name}"], _ = _binary_scores(refs[nonzero] > 0, column.astype(np.float64)[nonzero] > 0)
    result["num_samples"] = int(refs.shape[0])
    result["num_nonzero"] = int(nonzero.sum())
    return result


def compute_metrics(
    task: str,
    predictions: Any,
    references: Any,
    *,
    modality_predictions: Any | None = None,
    num_labels: int | None = None,
    label_names: Sequence[str] | Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Dispatches to :func:`classification_metrics` or :func:`regression_metrics`.

    Args:
        task: ``"classification"`` or ``"regression"``.
        predictions: see the task's function.
        references: see the task's function.
        modality_predictions: see the task's function.
        num_labels: classification only.
        label_names: classification only.

    Returns:
        The task's flat metric dict.

    Raises:
        ValueError: for an unknown task or bad inputs.
    """
    if task == CLASSIFICATION:
        return classification_metrics(
            predictions,
            references,
            num_labels=num_labels,
            label_names=label_names,
            modality_predictions=modality_predictions,
        )
    if task == REGRESSION:
        return regression_metrics(predictions, references, modality_predictions=modality_predictions)
    raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")


def select_real_utterances(values: Any, attention_mask: Any) -> np.ndarray:
    """Keeps the entries of real utterances: ``values[attention_mask == 1]``.

    Args:
        values: an array ``[B, T, ...]`` (numpy or torch).
        attention_mask: ``[B, T]``, 1 = real utterance, 0 = padding.

    Returns:
        A numpy array ``[N, ...]`` with N the number of real utterances, in row-major order.
    """
    array = _as_array(values, "values")
    mask = _as_array(attention_mask, "attention_mask").astype(bool)
    if array.shape[: mask.ndim] != mask.shape:
        raise ValueError(
            f"`values` of shape {list(array.shape)} does not start with the attention mask's shape {list(mask.shape)}"
        )
    return array[mask]


def default_selection_metric(task: str) -> str:
    """The metric used to pick the best epoch: WA for classification, non-zero weighted F1 for regression.

    These follow the released code's choice (accuracy for IEMOCAP, F1 for CMU).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    return "accuracy" if task == CLASSIFICATION else "f1"


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (False only for ``mae`` and loss-like names)."""
    return not (metric == "mae" or metric.startswith("mae_") or metric.endswith("loss"))


_CLASSIFICATION_NAMES = ("accuracy", "unweighted_accuracy", "weighted_f1", "macro_f1")
_REGRESSION_NAMES = ("acc2", "f1", "acc2_has0", "f1_has0", "acc7", "acc5", "mae", "corr")
KNOWN_METRICS_HELP = (
    "a metric of the run: accuracy, unweighted_accuracy, weighted_f1, macro_f1, f1_<label>, accuracy_<modality> "
    "(classification); acc2, f1, acc2_has0, f1_has0, acc7, acc5, mae, corr, acc2_<modality> (regression); or loss"
)


def metric_names(task: str, label_names: Sequence[str] | None = None) -> list[str]:
    """The metric keys an evaluation of ``task`` reports (per-class F1 keys need ``label_names``), plus ``loss``."""
    if task == CLASSIFICATION:
        names = [*_CLASSIFICATION_NAMES, *(f"accuracy_{m}" for m in MODALITY_NAMES)]
        names += [f"f1_{label}" for label in (label_names or [])]
    elif task == REGRESSION:
        names = [*_REGRESSION_NAMES, *(f"acc2_{m}" for m in MODALITY_NAMES)]
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    return [*names, "loss"]


def is_known_metric(name: str) -> bool:
    """Whether ``name`` can be a metric of some task (``f1_<label>`` accepted for any label)."""
    if name in metric_names(CLASSIFICATION) or name in metric_names(REGRESSION):
        return True
    return name.startswith("f1_") and len(name) > 3


def metric_module_path() -> Path:
    """The folder of the ``evaluate`` metric module ``comp_metric`` inside the installed package.

    ``evaluate.load(str(metric_module_path()), "classification")`` (or ``"regression"``) loads it from any working
    directory; its ``compute`` calls :func:`compute_metrics`.
    """
    return Path(str(files("recipes").joinpath("comp_metric")))


@functools.cache
def load_metric(task: str):
    """The ``comp_metric`` ``evaluate`` module of ``task`` (loaded once per process, kept in memory: nothing is
    written to disk when it computes)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    import evaluate

    return evaluate.load(str(metric_module_path()), task, keep_in_memory=True)


def evaluate_metrics(
    task: str,
    predictions: Any,
    references: Any,
    *,
    modality_predictions: Any | None = None,
    num_labels: int | None = None,
    label_names: Sequence[str] | Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """:func:`compute_metrics` computed through the ``evaluate`` module ``comp_metric`` (the recipes' path).

    Arguments, result and errors as :func:`compute_metrics`: the inputs are checked (and logits reduced to class
    ids) before the module stores them in its typed columns, so nothing is cast silently.
    """
    metric = load_metric(task)
    kwargs: dict[str, Any] = {"modality_predictions": modality_predictions}
    if task == CLASSIFICATION:
        predictions, references = _classification_arrays(predictions, references)
        kwargs.update(num_labels=num_labels, label_names=label_names)
    else:
        predictions, references = _regression_arrays(predictions, references)
    return metric.compute(predictions=predictions, references=references, **kwargs)
