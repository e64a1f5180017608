"""``ComPDataCollator``: conversation rows -> the model's batch dict (DESIGN §2, docs/interfaces.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from modeling_comp.configuration_comp import ATTENTION_MASK, LABELS, MODALITIES, MODALITY_MASK

from .schema import CONVERSATION_INDEX


__all__ = ["ComPDataCollator"]


def _array(value, dtype=None) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


class ComPDataCollator:
    """Pad conversations into a batch and zero the features the mask hides.

    Output (all tensors): ``audio``/``text``/``video`` float32 ``[B, T, dim]`` (zeros where masked or padded),
    ``modality_mask`` float32 ``[B, T, 3]``, ``attention_mask`` long ``[B, T]``, ``labels`` (long with ``-100``
    padding for classification, float32 with 0 padding for regression; absent when rows carry no labels) and
    ``conversation_index`` long ``[B]``.

    Args:
        max_utterances: The model's ``max_utterances``; longer conversations raise a ``ValueError`` that names
            them. ``None`` accepts any length.
        pad_to: ``"longest"`` (the batch's longest conversation, default) or ``"max_utterances"`` (always
            ``max_utterances``, as the released code's fixed ``seq_len`` padding).
        label_pad_value: Padding of classification labels.
        task: ``"classification"`` or ``"regression"``; default: inferred from the labels' dtype.
    """

    def __init__(
        self,
        max_utterances: int | None = None,
        *,
        pad_to: str = "longest",
        label_pad_value: int = -100,
        task: str | None = None,
    ) -> None:
        if max_utterances is not None and (isinstance(max_utterances, bool) or int(max_utterances) < 1):
            raise ValueError(f"max_utterances must be a positive integer or None, got {max_utterances!r}")
        if pad_to not in ("longest", "max_utterances"):
            raise ValueError(f"pad_to must be 'longest' or 'max_utterances', got {pad_to!r}")
        if pad_to == "max_utterances" and max_utterances is None:
            raise ValueError("pad_to='max_utterances' needs max_utterances")
        if task not in (None, "classification", "regression"):
            raise ValueError(f"task must be 'classification', 'regression' or None, got {task!r}")
        self.max_utterances = None if max_utterances is None else int(max_utterances)
        self.pad_to = pad_to
        self.label_pad_value = int(label_pad_value)
        self.task = task

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_utterances={self.max_utterances}, pad_to={self.pad_to!r}, "
            f"label_pad_value={self.label_pad_value}, task={self.task!r})"
        )

    def _task(self, labels: np.ndarray) -> str:
        if self.task is not None:
            return self.task
        return "regression" if labels.dtype.kind == "f" else "classification"

    def __call__(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        """Collate a list of rows (as returned by indexing a :func:`~hub_datasets.load_dataset` split).

        Args:
            rows: Conversation rows with ``audio``, ``text``, ``video`` ``[n, dim]``, ``conversation_index``, and
                optionally ``modality_mask`` ``[n, 3]`` (default: all observed) and ``labels`` ``[n]``.

        Returns:
            The batch dict.
        """
        if not rows:
            raise ValueError("cannot collate an empty list of conversations")
        feats = {m: [_array(row[m], np.float32) for row in rows] for m in MODALITIES}
        lengths = [f.shape[0] for f in feats[MODALITIES[0]]]
        for b, row in enumerate(rows):
            name = row.get("dialog_id", f"row {b}")
            for m in MODALITIES:
                f = feats[m][b]
                if f.ndim != 2 or f.shape[0] != lengths[b]:
                    raise ValueError(
                        f"conversation {name!r}: {m} has shape {f.shape}, expected [{lengths[b]}, dim] like audio"
                    )
            if self.max_utterances is not None and lengths[b] > self.max_utterances:
                raise ValueError(
                    f"conversation {name!r} has {lengths[b]} utterances, more than the model's max_utterances="
                    f"{self.max_utterances}; use a model with a larger max_utterances or drop that conversation"
                )
            if CONVERSATION_INDEX not in row:
                raise ValueError(
                    f"conversation {name!r} has no {CONVERSATION_INDEX!r} field; collate rows of a split returned "
                    "by hub_datasets.load_dataset"
                )
        batch_size = len(rows)
        length = self.max_utterances if self.pad_to == "max_utterances" else max(lengths)
        mask = np.zeros((batch_size, length, 3), dtype=np.float32)
        attention = np.zeros((batch_size, length), dtype=np.int64)
        for b, row in enumerate(rows):
            n = lengths[b]
            attention[b, :n] = 1
            if row.get(MODALITY_MASK) is None:
                mask[b, :n] = 1.0
            else:
                m_arr = _array(row[MODALITY_MASK], np.float32)
                if m_arr.shape != (n, 3):
                    raise ValueError(f"row {b}: {MODALITY_MASK} has shape {m_arr.shape}, expected ({n}, 3)")
                mask[b, :n] = m_arr
        out: dict[str, torch.Tensor] = {}
        for i, m in enumerate(MODALITIES):
            dims = {f.shape[1] for f in feats[m]}
            if len(dims) != 1:
                raise ValueError(f"{m} features of one batch have different dimensions {sorted(dims)}")
            padded = np.zeros((batch_size, length, dims.pop()), dtype=np.float32)
            for b, f in enumerate(feats[m]):
                padded[b, : lengths[b]] = f
            padded *= mask[:, :, i : i + 1]
            out[m] = torch.from_numpy(padded)
        out[MODALITY_MASK] = torch.from_numpy(mask)
        out[ATTENTION_MASK] = torch.from_numpy(attention)
        has_labels = [row.get(LABELS) is not None for row in rows]
        if any(has_labels):
            if not all(has_labels):
                raise ValueError("some rows of the batch have labels and others do not")
            labels = [_array(row[LABELS]).reshape(-1) for row in rows]
            task = self._task(labels[0])
            if task == "classification":
                padded_labels = np.full((batch_size, length), self.label_pad_value, dtype=np.int64)
            else:
                padded_labels = np.zeros((batch_size, length), dtype=np.float32)
            for b, lab in enumerate(labels):
                if lab.shape[0] != lengths[b]:
                    raise ValueError(f"row {b}: {lab.shape[0]} labels for {lengths[b]} utterances")
                padded_labels[b, : lengths[b]] = lab
            out[LABELS] = torch.from_numpy(padded_labels)
        out[CONVERSATION_INDEX] = torch.tensor([int(row[CONVERSATION_INDEX]) for row in rows], dtype=torch.long)
        return out
