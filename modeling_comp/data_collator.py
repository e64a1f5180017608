"""``ComPDataCollator``: conversation rows -> the model's batch dict, through :class:`modeling_comp.ComPProcessor`.

It lives beside the processor it drives; ``hub_datasets.ComPDataCollator`` is the same class (re-exported).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .configuration_comp import UTTERANCE_INDEX
from .modeling_comp import utterance_index_from_attention_mask
from .processing_comp import CONVERSATION_INDEX, DIALOG_ID, ComPProcessor


__all__ = ["ComPDataCollator"]

_TASK_TO_PROBLEM_TYPE = {None: None, "classification": "single_label_classification", "regression": "regression"}


class ComPDataCollator:
    """Pad conversations into a batch and zero the features the mask hides.

    The padding, masking and validation are :class:`~modeling_comp.ComPProcessor`'s (the same code prepares the
    inputs of the pipeline, the Space and the evaluation); the collator adds what training needs: every row must
    carry its ``conversation_index``, which comes back as a ``[B]`` tensor.

    Output (all tensors): ``audio``/``text``/``video`` float32 ``[B, T, dim]`` (zeros where masked or padded),
    ``modality_mask`` float32 ``[B, T, 3]``, ``attention_mask`` long ``[B, T]``, ``labels`` (long with ``-100``
    padding for classification, float32 with 0 padding for regression; absent when rows carry no labels) and
    ``conversation_index`` long ``[B]``. Observed features that are NaN, infinite or beyond ``max_abs_value``
    raise a ``ValueError`` naming the conversation, modality and position.

    Args:
        max_utterances: The model's ``max_utterances``; longer conversations raise a ``ValueError`` that names
            them. ``None`` accepts any length.
        pad_to: ``"longest"`` (the batch's longest conversation, default) or ``"max_utterances"`` (always
            ``max_utterances``, as the released code's fixed ``seq_len`` padding; ``utterance_index`` then lists
            every position, so that the model's shapes do not depend on the batch: static shapes for
            ``torch.compile``).
        label_pad_value: Padding of classification labels.
        task: ``"classification"`` or ``"regression"``; default: inferred from the labels' dtype.
        processor: A configured :class:`~modeling_comp.ComPProcessor` (e.g. ``ComPProcessor.from_model_config``,
            which also checks the feature dimensions); when given, the other arguments must be left at their
            defaults.
    """

    def __init__(
        self,
        max_utterances: int | None = None,
        *,
        pad_to: str = "longest",
        label_pad_value: int = -100,
        task: str | None = None,
        processor: ComPProcessor | None = None,
    ) -> None:
        if pad_to not in ("longest", "max_utterances"):
            raise ValueError(f"pad_to must be 'longest' or 'max_utterances', got {pad_to!r}")
        if pad_to == "max_utterances" and max_utterances is None and processor is None:
            raise ValueError("pad_to='max_utterances' needs max_utterances")
        if task not in _TASK_TO_PROBLEM_TYPE:
            raise ValueError(f"task must be 'classification', 'regression' or None, got {task!r}")
        if processor is None:
            processor = ComPProcessor(
                max_utterances=max_utterances,  # validated (a bounded positive integer) by the processor
                pad_to=pad_to,
                label_pad_value=label_pad_value,
                problem_type=_TASK_TO_PROBLEM_TYPE[task],
            )
        elif max_utterances is not None or pad_to != "longest" or label_pad_value != -100 or task is not None:
            raise ValueError("pass either a processor or max_utterances/pad_to/label_pad_value/task, not both")
        self.processor = processor

    @property
    def max_utterances(self) -> int | None:
        """Longest conversation accepted (``None``: any)."""
        return self.processor.max_utterances

    @property
    def pad_to(self) -> str:
        """``"longest"`` or ``"max_utterances"``."""
        return self.processor.pad_to

    @property
    def label_pad_value(self) -> int:
        """Padding of classification labels."""
        return self.processor.label_pad_value

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"regression"`` or ``None`` (inferred from the labels)."""
        problem_type = self.processor.problem_type
        return None if problem_type is None else ("regression" if problem_type == "regression" else "classification")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_utterances={self.max_utterances}, pad_to={self.pad_to!r}, "
            f"label_pad_value={self.label_pad_value}, task={self.task!r})"
        )

    def __call__(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        """Collate a list of rows (as returned by indexing a :func:`~hub_datasets.load_dataset` split).

        Args:
            rows: Conversation rows with ``audio``, ``text``, ``video`` ``[n, dim]``, ``conversation_index``, and
                optionally ``modality_mask`` ``[n, 3]`` (default: all observed) and ``labels`` ``[n]``.

        Returns:
            The batch dict.
        """
        if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
            raise ValueError(f"the collator takes a list of conversation rows, got {type(rows).__name__}")
        if not rows:
            raise ValueError("cannot collate an empty list of conversations")
        for b, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"row {b} is a {type(row).__name__}, expected a conversation row (a mapping)")
            if CONVERSATION_INDEX not in row:
                name = row.get(DIALOG_ID, f"row {b}")
                raise ValueError(
                    f"conversation {name!r} has no {CONVERSATION_INDEX!r} field; collate rows of a split returned "
                    "by hub_datasets.load_dataset"
                )
        batch = dict(self.processor(list(rows), return_tensors="pt"))
        # Which flat positions hold real utterances, computed here on the host so that the model's forward and
        # backward need no host synchronisation to find them (pass it on as `utterance_index=`). Padded to
        # max_utterances (static shapes, for torch.compile), every position: the model computes the padded ones too.
        batch[UTTERANCE_INDEX] = utterance_index_from_attention_mask(
            batch["attention_mask"], every_position=self.pad_to == "max_utterances"
        )
        return batch
