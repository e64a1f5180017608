"""The "type a conversation" path: typed or uploaded transcripts -> text features -> a conversation to predict.

The text features are computed with the extractor the checkpoint records for its text modality
(``config.modality_features["text"]["extractor"]``: model id, layers, pooling) through
``hub_datasets.featurize``, the same code that featurizes the corpora. Audio and video are missing unless the
visitor also uploads feature files for them.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hub_datasets.constants import is_hub_id

from .inputs import MODALITIES, Conversation, InputError, display_text


__all__ = [
    "MAX_LINE_CHARS",
    "MAX_TEXT_CHARS",
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
    texts: list[str] = []
    speakers: list[str] = []
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
    if max_utterances is not None and len(texts) > int(max_utterances):
        raise InputError(
            f"the conversation has {len(texts)} utterances, more than the checkpoint's max_utterances = "
            f"{int(max_utterances)}; shorten it"
        )
    return TypedConversation(texts=texts, speakers=speakers)


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
        from hub_datasets.featurize import TextExtractor, TextExtractorSpec

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
    )
