"""Seeded missing-modality masks for the Space's "missing rate" slider.

The protocol is the paper's ``rate`` protocol (COMP_SPEC C.5): for every utterance one modality, chosen
uniformly, is always kept; each of the two others is kept independently with probability
``q = clip((2 - 3 * rate) / 2, 0, 1)``. The expected observed fraction is ``1 - rate`` for ``rate <= 2/3``;
from ``2/3`` on exactly one modality is kept per utterance, so a requested rate of 0.7 realises 0.667.

:func:`draw_mask` uses ``hub_datasets.masks.rate_masks`` when the ``comp-emotion`` package is installed: the
mask is then a function of ``(seed, utterance id)`` and is bit-identical to the evaluation mask the datasets
package gives the same utterances for the same seed and rate. Without the package it falls back to
:func:`draw_rate_mask`, the same protocol drawn from a plain seeded NumPy generator (same distribution, other
bits); the returned method name says which one ran.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


__all__ = ["MAX_RATE", "draw_mask", "draw_rate_mask", "keep_probability", "realised_missing_rate"]

#: From this rate on the protocol keeps exactly one of the three modalities per utterance.
MAX_RATE = 2.0 / 3.0
#: Method names returned by :func:`draw_mask`.
METHOD_DATASETS = "hub_datasets.masks.rate_masks (evaluation masks, keyed by utterance id)"
METHOD_LOCAL = "numpy.random.default_rng(seed) (the comp-emotion package is not installed)"


def keep_probability(rate: float) -> float:
    """Probability of keeping each non-forced modality for a requested missing rate.

    Args:
        rate: requested missing rate in ``[0, 1)``.

    Returns:
        ``clip((2 - 3 * rate) / 2, 0, 1)``.

    Raises:
        ValueError: if ``rate`` is not a finite number in ``[0, 1)``.
    """
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"missing rate must be a number in [0, 1), got {rate!r}") from None
    if not np.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"missing rate must be a number in [0, 1), got {rate!r}")
    return float(np.clip((2.0 - 3.0 * value) / 2.0, 0.0, 1.0))


def draw_rate_mask(num_utterances: int, rate: float, seed: int) -> np.ndarray:
    """Draw a ``[num_utterances, 3]`` mask with the ``rate`` protocol from a seeded NumPy generator.

    Args:
        num_utterances: number of rows (utterances); must be positive.
        rate: requested missing rate in ``[0, 1)``.
        seed: seed of the generator (a non-negative integer).

    Returns:
        A boolean array, ``True`` = observed, columns (audio, text, video); every row has at least one ``True``.

    Raises:
        ValueError: on a non-positive ``num_utterances``, a negative seed or a rate outside ``[0, 1)``.
    """
    if int(num_utterances) < 1:
        raise ValueError(f"num_utterances must be >= 1, got {num_utterances!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    q = keep_probability(rate)
    rng = np.random.default_rng(int(seed))
    n = int(num_utterances)
    forced = rng.integers(0, 3, size=n)
    keep = rng.random((n, 3)) < q
    keep[np.arange(n), forced] = True
    return keep


def draw_mask(utterance_ids: Sequence[str], rate: float, seed: int) -> tuple[np.ndarray, str]:
    """Draw the slider's mask for a conversation (see the module docstring for the two methods).

    Args:
        utterance_ids: one id per utterance.
        rate: requested missing rate in ``[0, 1)``.
        seed: mask seed (a non-negative integer).

    Returns:
        ``(mask, method)``: a bool ``[n, 3]`` mask (every row keeps a modality) and the method used.

    Raises:
        ValueError: on a rate outside ``[0, 1)``, a negative seed or no utterances.
    """
    keep_probability(rate)  # validates
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if len(utterance_ids) < 1:
        raise ValueError("the conversation has no utterances")
    try:
        from hub_datasets.masks import rate_masks, utterance_keys
    except ImportError:
        return draw_rate_mask(len(utterance_ids), rate, seed), METHOD_LOCAL
    keys = utterance_keys([str(u) for u in utterance_ids])
    return rate_masks(keys, float(rate), seed=int(seed), role="eval").astype(bool), METHOD_DATASETS


def realised_missing_rate(mask: np.ndarray) -> float:
    """Fraction of (utterance, modality) slots that are missing in ``mask``.

    Args:
        mask: ``[n, 3]`` array, truthy = observed.

    Returns:
        ``1 - mean(mask)`` as a float (0.0 for an empty mask).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return 0.0
    return float(1.0 - mask.mean())
