"""Epoch selection with sensible tie-breaking (the default protocol's validation selection).

A small validation split makes the selection metric coarse: MOSI's official validation split has 10 videos
(229 utterances, 216 with a non-zero label), so Acc-2 moves in steps of about 0.46 points and F1 in similar
steps, and several epochs routinely share the best value. Picking the *earliest* of them (a plain ``>``
comparison) systematically prefers the least-trained model. Ties are therefore broken by

1. the lower validation loss — a continuous measurement of the same predictions, not quantised to whole
   utterances, so it still tells the tied epochs apart;
2. then the later epoch — the model that has trained longer (no schedule, far from convergence at lr 1e-4),
   when even the loss cannot decide (equal, or not recorded).
"""

from __future__ import annotations

import math
from typing import Any

from recipes.metrics import higher_is_better


__all__ = ["selection_loss", "selection_improves"]


def selection_loss(record: dict[str, Any], split: str) -> float | None:
    """The loss recorded for ``split`` in an epoch record (None when absent or NaN)."""
    value = (record.get(split) or {}).get("loss")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def selection_improves(value: float, record: dict[str, Any], best: dict[str, Any], split: str, metric: str) -> bool:
    """Whether an epoch with selection value ``value`` (and epoch ``record``) replaces ``best``.

    Args:
        value: the epoch's selection metric on ``split``.
        record: the epoch's record (its ``split`` entry may hold a ``loss``).
        best: ``{"value", "loss"?}`` of the current best epoch (``value`` None before the first).
        split: the selection split (``"validation"`` or ``"test"``).
        metric: the selection metric's name (sets the direction).

    Returns:
        True if strictly better on the metric, or tied on it and (lower loss, or equal/unknown loss: later epoch).
    """
    current = best.get("value")
    if current is None:
        return True
    if value != current:
        return value > current if higher_is_better(metric) else value < current
    loss, best_loss = selection_loss(record, split), best.get("loss")
    if loss is not None and best_loss is not None and loss != best_loss:
        return loss < best_loss
    return True  # equal or unknown loss: the later epoch
