"""Turning a :class:`~comp_space.inference.Prediction` into what the Space shows: tables, a summary, a plot."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from hub_datasets.masks import realised_missing_rate

from .inference import LoadedCheckpoint, Prediction
from .inputs import MODALITIES, Conversation


__all__ = [
    "MISSING_MARK",
    "column_widths",
    "typed_summary",
    "typed_table",
    "WEIGHT_COLOURS",
    "coordinator_frame",
    "is_synthetic",
    "observed_string",
    "prediction_table",
    "probability_table",
    "summary_markdown",
]

#: Appended to a modality head's prediction when that modality was missing: the head then sees the
#: cross-modal reconstruction built by knowledge propagation, not the modality's own features.
MISSING_MARK = " (missing)"
_LETTERS = ("A", "T", "V")
_COLOURS = ("#4C72B0", "#DD8452", "#55A868")


def observed_string(row: np.ndarray) -> str:
    """``"A T ·"``-style summary of one utterance's observed modalities."""
    return " ".join(letter if bool(on) else "·" for letter, on in zip(_LETTERS, row, strict=True))


def is_synthetic(prediction: Prediction) -> bool:
    """Whether the checkpoint or the conversation comes from the synthetic corpus."""
    return bool(prediction.checkpoint.synthetic or prediction.conversation.synthetic)


def _format_reference(value: Any, checkpoint: LoadedCheckpoint) -> str:
    if value is None:
        return ""
    if checkpoint.is_regression:
        try:
            return f"{float(value):+.2f}"
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        index = int(value)
        names = checkpoint.label_names
        return names[index] if 0 <= index < len(names) else str(index)
    return str(value)


def _reference_column(conversation: Conversation, synthetic: bool) -> str:
    return "reference label (synthetic)" if synthetic else "reference label"


def prediction_table(prediction: Prediction) -> Any:
    """Per-utterance predictions: both runs, each modality head and the coordinator weights.

    Args:
        prediction: the prediction.

    Returns:
        A ``pandas.DataFrame``, one row per utterance.
    """
    ckpt, conv = prediction.checkpoint, prediction.conversation
    masked, full = prediction.masked, prediction.full
    names = ckpt.label_names
    rows: dict[str, list[Any]] = {
        "#": list(range(1, conv.num_utterances + 1)),
        "utterance": list(conv.utterance_ids),
        "observed (masked)": [observed_string(r) for r in masked.modality_mask],
    }
    if conv.labels is not None:
        rows[_reference_column(conv, is_synthetic(prediction))] = [_format_reference(v, ckpt) for v in conv.labels]
    if ckpt.is_regression:
        rows["score: all modalities"] = [round(float(v), 3) for v in full.scores]
        rows["score: masked"] = [round(float(v), 3) for v in masked.scores]
        rows["change"] = [round(float(m - f), 3) for m, f in zip(masked.scores, full.scores, strict=True)]
        for j, modality in enumerate(MODALITIES):
            rows[f"{modality} head"] = [
                f"{float(masked.modality_scores[i, j]):+.2f}" + ("" if masked.modality_mask[i, j] else MISSING_MARK)
                for i in range(conv.num_utterances)
            ]
    else:
        full_top, masked_top = full.scores.argmax(-1), masked.scores.argmax(-1)
        rows["prediction: all modalities"] = [names[k] for k in full_top]
        rows["p (all)"] = [round(float(full.scores[i, k]), 3) for i, k in enumerate(full_top)]
        rows["prediction: masked"] = [names[k] for k in masked_top]
        rows["p (masked)"] = [round(float(masked.scores[i, k]), 3) for i, k in enumerate(masked_top)]
        rows["changed"] = ["yes" if a != b else "" for a, b in zip(full_top, masked_top, strict=True)]
        for j, modality in enumerate(MODALITIES):
            head_top = masked.modality_scores[:, j].argmax(-1)
            rows[f"{modality} head"] = [
                names[k] + ("" if masked.modality_mask[i, j] else MISSING_MARK) for i, k in enumerate(head_top)
            ]
    if masked.coordinator_weights is not None:
        for j, modality in enumerate(MODALITIES):
            rows[f"weight {modality}"] = [round(float(w), 3) for w in masked.coordinator_weights[:, j]]
    return pd.DataFrame(rows)


def probability_table(prediction: Prediction) -> Any:
    """Class probabilities (or sentiment scores) of both runs, one row per utterance.

    Args:
        prediction: the prediction.

    Returns:
        A ``pandas.DataFrame`` with a ``<class> (masked)`` and a ``<class> (all)`` column per class.
    """
    ckpt, conv = prediction.checkpoint, prediction.conversation
    rows: dict[str, list[Any]] = {"#": list(range(1, conv.num_utterances + 1))}
    if ckpt.is_regression:
        rows["score (masked)"] = [round(float(v), 4) for v in prediction.masked.scores]
        rows["score (all)"] = [round(float(v), 4) for v in prediction.full.scores]
    else:
        for k, name in enumerate(ckpt.label_names):
            rows[f"{name} (masked)"] = [round(float(v), 4) for v in prediction.masked.scores[:, k]]
            rows[f"{name} (all)"] = [round(float(v), 4) for v in prediction.full.scores[:, k]]
    return pd.DataFrame(rows)


def summary_markdown(prediction: Prediction) -> str:
    """A few lines saying what was predicted and how much dropping modalities changed it."""
    ckpt, conv = prediction.checkpoint, prediction.conversation
    masked, full = prediction.masked, prediction.full
    n = conv.num_utterances
    lines = []
    trained = " — trained on the **synthetic** corpus (made-up data, not real emotions)" if ckpt.synthetic else ""
    task = "sentiment regression" if ckpt.is_regression else f"{len(ckpt.label_names)} classes"
    lines.append(f"**Checkpoint** `{ckpt.name}`{trained}; {task}; training stage {ckpt.training_stage}.")
    source = conv.source + (" (synthetic data)" if conv.synthetic and "synthetic" not in conv.source else "")
    dropped = int((~masked.modality_mask & conv.available).sum())
    lines.append(
        f"**Conversation**: {source}, {n} utterances. The masked input drops {dropped} of "
        f"{int(conv.available.sum())} available modality slots (missing rate {realised_missing_rate(masked.modality_mask):.1%} "
        "of all slots)."
    )
    if ckpt.is_regression:
        delta = np.abs(masked.scores - full.scores)
        flips = int((np.sign(masked.scores) != np.sign(full.scores)).sum())
        lines.append(
            f"**Effect of the missing modalities**: mean |change in score| = {float(delta.mean()):.3f}; "
            f"the sign (positive/negative) flips on {flips} of {n} utterances."
        )
    else:
        changed = int((masked.scores.argmax(-1) != full.scores.argmax(-1)).sum())
        lines.append(f"**Effect of the missing modalities**: {changed} of {n} predictions change.")
        if conv.labels is not None:
            refs = [_format_reference(v, ckpt) for v in conv.labels]
            names = ckpt.label_names
            hits_full = sum(names[k] == r for k, r in zip(full.scores.argmax(-1), refs, strict=True))
            hits_masked = sum(names[k] == r for k, r in zip(masked.scores.argmax(-1), refs, strict=True))
            kind = "synthetic reference labels" if is_synthetic(prediction) else "reference labels"
            lines.append(f"Agreement with the {kind}: all modalities {hits_full}/{n}, masked {hits_masked}/{n}.")
    if masked.coordinator_weights is None:
        lines.append("This checkpoint has no coordinator (stage-1 checkpoint or coordinator ablated): no weights.")
    return "\n\n".join(lines)


def coordinator_frame(prediction: Prediction, run: str) -> Any:
    """Coordinator weights of one run in long form, for a stacked bar chart.

    Args:
        prediction: the prediction.
        run: ``"masked"`` or ``"all"``.

    Returns:
        A ``pandas.DataFrame`` with columns ``utterance`` (zero-padded string, so that it sorts), ``modality``
        and ``weight``: six rows per utterance, ``"audio"`` ... carrying the weight where the modality was
        observed and ``"audio (missing)"`` ... where it was not (the other variant has weight 0). Empty when
        the checkpoint has no coordinator.

    Raises:
        ValueError: if ``run`` is neither ``"masked"`` nor ``"all"``.
    """
    if run not in ("masked", "all"):
        raise ValueError(f"run must be 'masked' or 'all', got {run!r}")
    result = prediction.masked if run == "masked" else prediction.full
    columns = ["utterance", "modality", "weight"]
    if result.coordinator_weights is None:
        return pd.DataFrame(columns=columns)
    n = prediction.conversation.num_utterances
    width = len(str(n))
    # Both variants of every modality appear for every utterance (the one that does not apply with weight 0),
    # so that every chart has the same six colour categories whatever the mask: the browser chart fixes its
    # colour domain from the data it receives and would otherwise drop categories that appear later.
    records = [
        (str(i + 1).zfill(width), modality + suffix, float(result.coordinator_weights[i, j]) if applies else 0.0)
        for i in range(n)
        for j, modality in enumerate(MODALITIES)
        for suffix, applies in (("", bool(result.modality_mask[i, j])), (MISSING_MARK, not result.modality_mask[i, j]))
    ]
    return pd.DataFrame.from_records(records, columns=columns)


#: Colours of the weight chart: observed modalities in full colour, missing ones in a pale shade.
WEIGHT_COLOURS: dict[str, str] = {
    **dict(zip(MODALITIES, _COLOURS, strict=True)),
    **{m + MISSING_MARK: c for m, c in zip(MODALITIES, ("#B7C7E3", "#F1CDB3", "#BBDDC3"), strict=True)},
}


def column_widths(frame: Any, *, char_px: int = 8, pad_px: int = 28, max_px: int = 260) -> list[str]:
    """Pixel widths that fit every column's header and cells on one line (so no header wraps letter by letter).

    Args:
        frame: the ``pandas.DataFrame`` about to be shown.

    Returns:
        One CSS width per column (``"123px"``).
    """
    widths = []
    for name in frame.columns:
        longest = max([len(str(name)), *(len(str(v)) for v in frame[name].tolist())])
        widths.append(f"{min(max_px, pad_px + char_px * longest)}px")
    return widths


def typed_table(prediction: Prediction, added: bool) -> Any:
    """Per-utterance results of a typed conversation: text-only prediction, heads, weights, and with the upload.

    Args:
        prediction: ``masked`` = text only, ``full`` = with the uploaded audio/video.
        added: whether audio/video were uploaded.

    Returns:
        A ``pandas.DataFrame``, one row per utterance (transcripts and speakers already HTML-escaped).
    """
    ckpt, conv = prediction.checkpoint, prediction.conversation
    masked, full = prediction.masked, prediction.full
    names = ckpt.label_names
    rows: dict[str, list[Any]] = {
        "utterance": list(conv.utterance_ids),
        "text": list(conv.transcripts or [""] * conv.num_utterances),
    }
    if ckpt.is_regression:
        rows["score: text only"] = [round(float(v), 3) for v in masked.scores]
        heads = [[f"{float(masked.modality_scores[i, j]):+.2f}" for j in range(3)] for i in range(conv.num_utterances)]
    else:
        top = masked.scores.argmax(-1)
        rows["prediction: text only"] = [names[k] for k in top]
        rows["p"] = [round(float(masked.scores[i, k]), 3) for i, k in enumerate(top)]
        heads = [[names[k] for k in masked.modality_scores[i].argmax(-1)] for i in range(conv.num_utterances)]
    for j, modality in enumerate(MODALITIES):
        rows[f"{modality} head"] = [
            heads[i][j] + ("" if masked.modality_mask[i, j] else MISSING_MARK) for i in range(conv.num_utterances)
        ]
    if masked.coordinator_weights is not None:
        for j, modality in enumerate(MODALITIES):
            rows[f"weight {modality}"] = [round(float(w), 3) for w in masked.coordinator_weights[:, j]]
    if added:
        label = "+ " + "/".join(m for j, m in enumerate(MODALITIES) if full.modality_mask[:, j].any() and m != "text")
        if ckpt.is_regression:
            rows[f"score {label}"] = [round(float(v), 3) for v in full.scores]
        else:
            top = full.scores.argmax(-1)
            rows[f"prediction {label}"] = [names[k] for k in top]
            rows[f"p ({label})"] = [round(float(full.scores[i, k]), 3) for i, k in enumerate(top)]
    return pd.DataFrame(rows)


def typed_summary(prediction: Prediction, added: bool) -> str:
    """A few lines about a typed conversation's prediction."""
    ckpt, conv = prediction.checkpoint, prediction.conversation
    n = conv.num_utterances
    trained = " — trained on the **synthetic** corpus (made-up data, not real emotions)" if ckpt.synthetic else ""
    lines = [
        f"**Checkpoint** `{ckpt.name}`{trained}.",
        f"**Conversation**: {n} typed utterances, text only (audio and video missing).",
    ]
    if added:
        if ckpt.is_regression:
            delta = float(np.abs(prediction.masked.scores - prediction.full.scores).mean())
            lines.append(f"**Adding your uploaded features** changes the score by {delta:.3f} on average.")
        else:
            changed = int((prediction.masked.scores.argmax(-1) != prediction.full.scores.argmax(-1)).sum())
            lines.append(f"**Adding your uploaded features** changes {changed} of {n} predictions.")
    if prediction.masked.coordinator_weights is None:
        lines.append("This checkpoint has no coordinator (stage-1 checkpoint or coordinator ablated): no weights.")
    lines += [f"⚠️ {html.escape(note, quote=False)}" for note in conv.notes]
    return "\n\n".join(lines)
