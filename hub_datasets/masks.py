"""Missing-modality protocols (the paper's rate protocol and fixed subsets): masks as data, not as RNG side effects.

Every mask is a pure function of ``(seed, role, epoch, utterance id)``, computed with a counter-based hash,
so it is identical across runs, machines, process counts and row orders:

* ``key(uid)``: the little-endian ``uint64`` of ``blake2b(uid.encode("utf-8"), digest_size=8)``; computed
  once per corpus and stored in the ``utterance_keys`` column.
* ``stream``: the ``uint64`` of ``blake2b("comp-emotion/masks/v1|seed=<seed>|role=<role>|epoch=<epoch>")``;
  ``role`` is ``"eval"`` for evaluation masks (``epoch=none``; fixed for ever) and ``"train"`` for training
  masks (one draw per epoch, see :func:`hub_datasets.redraw_training_masks`).
* ``h_j = splitmix64((key XOR stream) + (j + 1) * 0x9E3779B97F4A7C15)`` for ``j = 0..3`` (wrapping
  ``uint64`` arithmetic) and ``u_j = (h_j >> 11) / 2**53``, uniform in ``[0, 1)``.

``protocol="rate"`` (the paper's): modality ``floor(3 u_0)`` is always kept, and each other modality ``m``
is kept when ``u_{m+1} < q`` with ``q = clip((2 - 3 eta) / 2, 0, 1)``. The expected missing fraction of
(utterance, modality) cells is ``eta`` for ``eta <= 2/3``; above that exactly one modality is kept, so a
requested ``0.7`` is really ``2/3 = 0.667`` (:func:`expected_missing_rate`).

``protocol="subset"`` (MMIN/MoMKE): one fixed set of observed modalities for every utterance, e.g. ``"at"``.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from .constants import MISSING_PROTOCOLS, MODALITIES


__all__ = [
    "MASK_ALGORITHM",
    "MISSING_PROTOCOLS",
    "SUBSET_CONDITIONS",
    "compute_masks",
    "expected_missing_rate",
    "parse_modalities",
    "rate_masks",
    "realised_missing_rate",
    "stream_key",
    "subset_masks",
    "utterance_keys",
    "validate_missing_rate",
    "validate_protocol",
]

#: Name and version of the mask algorithm; stored with every dataset so results can cite it.
MASK_ALGORITHM = "comp-emotion/splitmix64-v1"
#: The six proper, non-empty observed-modality subsets of the ``subset`` protocol (MMIN/MoMKE conditions).
SUBSET_CONDITIONS = ("a", "t", "v", "at", "av", "tv")

_LETTERS = {"a": 0, "t": 1, "v": 2}
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def utterance_keys(utterance_ids: Iterable[str]) -> np.ndarray:
    """Stable 64-bit keys of utterance ids (independent of Python's hash seed and of the platform).

    Args:
        utterance_ids: Utterance ids, e.g. ``"Ses01F_impro01_F000"``.

    Returns:
        A ``uint64`` array with one key per id.
    """
    digests = b"".join(hashlib.blake2b(uid.encode("utf-8"), digest_size=8).digest() for uid in utterance_ids)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def stream_key(seed: int, role: str, epoch: int | None) -> np.uint64:
    """The 64-bit key of one mask stream.

    Args:
        seed: The mask seed (a non-negative integer).
        role: ``"eval"`` (fixed evaluation masks) or ``"train"`` (redrawn per epoch).
        epoch: The training epoch for ``role="train"``; ``None`` for evaluation masks.

    Returns:
        The stream key.
    """
    text = f"comp-emotion/masks/v1|seed={int(seed)}|role={role}|epoch={'none' if epoch is None else int(epoch)}"
    return np.frombuffer(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), dtype="<u8")[0].astype(
        np.uint64
    )


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _uniforms(keys: np.ndarray, stream: np.uint64, count: int) -> np.ndarray:
    """``count`` independent uniforms in ``[0, 1)`` per key, shape ``[len(keys), count]``."""
    base = np.asarray(keys, dtype=np.uint64) ^ stream
    out = np.empty((base.shape[0], count), dtype=np.float64)
    for j in range(count):
        h = _splitmix64(base + np.uint64((_GOLDEN * (j + 1)) % 2**64))
        out[:, j] = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out


def validate_missing_rate(missing_rate: float) -> float:
    """Check that a missing rate lies in ``[0, 1)``.

    Args:
        missing_rate: The requested missing rate ``eta``.

    Returns:
        The rate as a float.

    Raises:
        ValueError: If it is not a real number (strings and booleans are refused) or not finite in ``[0, 1)``.
    """
    if isinstance(missing_rate, (bool, np.bool_)) or not isinstance(missing_rate, numbers.Real):
        raise ValueError(
            f"missing_rate must be a number in [0, 1), got {type(missing_rate).__name__} {missing_rate!r}"
        )
    eta = float(missing_rate)
    if not math.isfinite(eta) or not 0.0 <= eta < 1.0:
        raise ValueError(
            f"missing_rate must be in [0, 1) (every utterance keeps at least one modality), got {missing_rate!r}"
        )
    return eta


def validate_protocol(protocol: str) -> str:
    """Check a protocol name.

    Args:
        protocol: ``"rate"`` or ``"subset"``.

    Returns:
        The protocol name.

    Raises:
        ValueError: For any other value.
    """
    if protocol not in MISSING_PROTOCOLS:
        raise ValueError(f"protocol must be one of {MISSING_PROTOCOLS}, got {protocol!r}")
    return protocol


def parse_modalities(modalities: str | Sequence[str]) -> str:
    """Normalise an observed-modality set such as ``"at"``, ``"ta"`` or ``["audio", "text"]`` to ``"at"``.

    Args:
        modalities: Letters from ``a`` (audio), ``t`` (text), ``v`` (video), or full modality names.

    Returns:
        The canonical letters in audio/text/video order.

    Raises:
        ValueError: For an empty set, an unknown letter/name or a repeated modality.
    """
    if isinstance(modalities, str):
        items = list(modalities.strip().lower())
    else:
        items = []
        for name in modalities:
            name = str(name).strip().lower()
            if name not in MODALITIES:
                raise ValueError(f"unknown modality {name!r} in modalities={modalities!r}; expected {MODALITIES}")
            items.append(name[0])
    if not items:
        raise ValueError("modalities must name at least one observed modality, e.g. 'at'")
    unknown = [c for c in items if c not in _LETTERS]
    if unknown:
        raise ValueError(
            f"unknown modality letter(s) {unknown} in modalities={modalities!r}; use a (audio), t (text), v (video)"
        )
    if len(set(items)) != len(items):
        raise ValueError(f"modalities={modalities!r} repeats a modality")
    return "".join(sorted(items, key=_LETTERS.__getitem__))


def expected_missing_rate(missing_rate: float) -> float:
    """The missing rate the ``rate`` protocol really produces in expectation: ``min(eta, 2/3)``.

    Args:
        missing_rate: The requested rate ``eta``.

    Returns:
        ``eta`` below 2/3; ``2/3`` at and above it (exactly one modality kept per utterance).
    """
    return min(validate_missing_rate(missing_rate), 2.0 / 3.0)


def rate_masks(
    keys: np.ndarray, missing_rate: float, *, seed: int, role: str = "eval", epoch: int | None = None
) -> np.ndarray:
    """Masks of the ``rate`` protocol for a batch of utterance keys (vectorised, no rejection loop).

    Args:
        keys: ``uint64`` utterance keys (:func:`utterance_keys`).
        missing_rate: ``eta`` in ``[0, 1)``.
        seed: Mask seed.
        role: ``"eval"`` or ``"train"``.
        epoch: Training epoch (``role="train"`` only).

    Returns:
        ``int8`` array ``[len(keys), 3]``, 1 = observed, order audio/text/video; every row has at least one 1.
    """
    eta = validate_missing_rate(missing_rate)
    keys = np.asarray(keys, dtype=np.uint64)
    if eta == 0.0:
        return np.ones((keys.shape[0], 3), dtype=np.int8)
    q = min(max((2.0 - 3.0 * eta) / 2.0, 0.0), 1.0)
    u = _uniforms(keys, stream_key(seed, role, epoch), 4)
    kept = np.minimum((u[:, 0] * 3.0).astype(np.int64), 2)
    mask = u[:, 1:] < q
    mask[np.arange(keys.shape[0]), kept] = True
    return mask.astype(np.int8)


def subset_masks(count: int, modalities: str | Sequence[str]) -> np.ndarray:
    """Masks of the ``subset`` protocol: the same observed set for every utterance.

    Args:
        count: Number of utterances.
        modalities: The observed set, e.g. ``"at"``.

    Returns:
        ``int8`` array ``[count, 3]``.
    """
    letters = parse_modalities(modalities)
    row = np.array([1 if c in letters else 0 for c in "atv"], dtype=np.int8)
    return np.tile(row, (int(count), 1))


def compute_masks(
    keys: np.ndarray,
    *,
    protocol: str,
    missing_rate: float,
    modalities: str | None,
    seed: int,
    role: str,
    epoch: int | None,
) -> np.ndarray:
    """Dispatch to :func:`rate_masks` or :func:`subset_masks`.

    Args:
        keys: ``uint64`` utterance keys.
        protocol: ``"rate"`` or ``"subset"``.
        missing_rate: ``eta`` (``rate`` protocol).
        modalities: Observed set (``subset`` protocol).
        seed: Mask seed.
        role: ``"eval"`` or ``"train"``.
        epoch: Training epoch or ``None``.

    Returns:
        ``int8`` masks ``[len(keys), 3]``.
    """
    validate_protocol(protocol)
    if protocol == "subset":
        return subset_masks(len(keys), modalities or "")
    return rate_masks(keys, missing_rate, seed=seed, role=role, epoch=epoch)


def realised_missing_rate(masks: np.ndarray) -> float:
    """The fraction of (utterance, modality) cells that are masked.

    Args:
        masks: ``[N, 3]`` masks over real utterances (no padding).

    Returns:
        ``1 - mean(masks)``; ``0.0`` for an empty array.
    """
    masks = np.asarray(masks)
    if masks.size == 0:
        return 0.0
    return float(1.0 - masks.mean())
