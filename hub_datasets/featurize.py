"""Text featurization: transcripts to utterance feature vectors, computed the way the corpora's text features were.

The four corpora's text features (``deberta-large-4-UTT``, 1024-d) come from the GCNet / MER feature toolkit run on
``microsoft/deberta-large``. :func:`featurize_texts` reproduces that recipe (``pooling="gcnet"``):

1. the transcript is lower-cased and split into words at spaces and ``, . ! ?``; ``. ! ?`` end a sentence and are
   dropped, commas stay as words, characters other than ``a-z 0-9 , . ' ! ?`` are removed, empty words dropped;
2. every sentence is encoded on its own (words passed pre-split to the tokenizer);
3. the token vectors are the **sum** of the last four hidden states (``hidden_states[-4:]``);
4. the special tokens (``[CLS]``/``[SEP]``) are left out; the sub-word tokens of a word are averaged into a word
   vector, and the utterance vector is the mean of the word vectors of all its sentences;
5. an utterance without any word after step 1 gets a zero vector.

``docs/featurize.md`` says which of these steps were checked against the toolkit's public description and which
were inferred. Other poolings (``token-mean``, ``token-mean-special``, ``cls``; a ``+l2`` suffix L2-normalises) use
the **mean** of the chosen layers and encode the whole utterance at once; ``token-mean-special+l2`` on
``layers=[-1]`` is what sentence-transformers models such as all-MiniLM-L6-v2 compute.

Command line: ``python -m hub_datasets featurize --help``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

import datasets
import numpy as np
from huggingface_hub import constants, try_to_load_from_cache
from tqdm.auto import tqdm

from .atomic import atomic_write_bytes, make_temp_dir
from .constants import is_hub_id
from .errors import DatasetFormatError, short_repr
from .loading import load_dataset
from .safe_pickle import TextBudget, safe_load_pickle


__all__ = [
    "DEFAULT_TEXT_EXTRACTOR",
    "POOLINGS",
    "TextExtractor",
    "TextExtractorSpec",
    "add_featurize_arguments",
    "check_file_ids",
    "featurize_dataset",
    "featurize_gcnet_corpus",
    "featurize_texts",
    "gcnet_transcripts",
    "gcnet_words",
    "read_transcripts_csv",
    "run_featurize",
]

#: Pooling names understood by :class:`TextExtractorSpec` (an optional ``+l2`` suffix L2-normalises the result).
POOLINGS: tuple[str, ...] = ("gcnet", "token-mean", "token-mean-special", "cls")
_L2 = "+l2"
_SPLIT = re.compile(r"([ ,.!?])")
_NOT_KEPT = re.compile(r"[^a-zA-Z0-9,.'!?]+")
_SENTENCE_END = frozenset({".", "!", "?"})
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TextExtractorSpec:
    """Which encoder, which hidden layers and which pooling turn a transcript into a feature vector.

    This is what a checkpoint records as its text extractor (``{"model_id", "layers", "pooling"}``).

    Attributes:
        model_id: Hub id or local folder of a transformers encoder (with its tokenizer).
        layers: indices into ``hidden_states`` (``0`` = embeddings, ``-1`` = last layer).
        pooling: one of :data:`POOLINGS`, optionally with ``+l2``. ``gcnet`` sums the layers; the others
            average them.
        revision: optional Hub revision pin of ``model_id``.
    """

    model_id: str = "microsoft/deberta-large"
    layers: tuple[int, ...] = (-4, -3, -2, -1)
    pooling: str = "gcnet"
    revision: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise ValueError(f"text extractor model_id must be a non-empty string, got {self.model_id!r}")
        try:
            layers = tuple(int(i) for i in self.layers)
        except (TypeError, ValueError):
            raise ValueError(f"text extractor layers must be a list of integers, got {self.layers!r}") from None
        if not layers or any(isinstance(i, bool) for i in self.layers):
            raise ValueError(f"text extractor layers must be a non-empty list of integers, got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        base = self.pooling[: -len(_L2)] if str(self.pooling).endswith(_L2) else self.pooling
        if base not in POOLINGS:
            raise ValueError(
                f"text extractor pooling {self.pooling!r} is not one of {', '.join(POOLINGS)} (optionally +l2)"
            )

    @property
    def base_pooling(self) -> str:
        """The pooling without its ``+l2`` suffix."""
        return self.pooling[: -len(_L2)] if self.pooling.endswith(_L2) else self.pooling

    @property
    def l2_normalize(self) -> bool:
        """Whether the utterance vectors are L2-normalised."""
        return self.pooling.endswith(_L2)

    def to_dict(self) -> dict[str, Any]:
        """The ``{"model_id", "layers", "pooling"}`` record a checkpoint config stores (``revision`` if pinned)."""
        out: dict[str, Any] = {"model_id": self.model_id, "layers": list(self.layers), "pooling": self.pooling}
        if self.revision:
            out["revision"] = self.revision
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | None, *, where: str = "text extractor") -> TextExtractorSpec:
        """Read a record written by :meth:`to_dict` (as stored in a checkpoint's ``modality_features``).

        Raises:
            ValueError: naming ``where`` and the bad field.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"{where}: expected a mapping with model_id, layers, pooling; got {record!r}")
        missing = [key for key in ("model_id", "layers", "pooling") if key not in record]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}; expected model_id, layers, pooling")
        try:
            return cls(
                model_id=record["model_id"],
                layers=tuple(record["layers"]) if not isinstance(record["layers"], (str, bytes)) else record["layers"],
                pooling=str(record["pooling"]),
                revision=record.get("revision"),
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None


#: The recipe of the corpora's ``deberta-large-4-UTT`` features.
DEFAULT_TEXT_EXTRACTOR = TextExtractorSpec()


def gcnet_words(text: str) -> list[list[str]]:
    """Split a transcript into sentences of cleaned, lower-cased words, as the corpora's feature toolkit did.

    Args:
        text: one utterance's transcript.

    Returns:
        A list of sentences, each a non-empty list of words (commas are words; ``. ! ?`` end sentences).
    """
    sentences: list[list[str]] = []
    current: list[str] = []
    for piece in _SPLIT.split(str(text).strip()):
        word = piece.strip().lower()
        if not word:
            continue
        if word in _SENTENCE_END:
            if current:
                sentences.append(current)
                current = []
            continue
        word = _NOT_KEPT.sub("", word)
        if word:
            current.append(word)
    if current:
        sentences.append(current)
    return sentences


@dataclass
class _Segment:
    owner: int  # utterance index
    words: list[str] | None = None  # pre-split words (gcnet) ...
    text: str | None = None  # ... or raw text (other poolings)
    length: int = 0


@dataclass
class TextExtractor:
    """A loaded text encoder that featurizes transcripts (see :func:`featurize_texts`).

    Build one with :meth:`from_pretrained`, or pass an already-built ``model`` and ``tokenizer`` (tests do).

    Attributes:
        spec: what it computes.
        model: a transformers encoder returning ``hidden_states``.
        tokenizer: its *fast* tokenizer (``word_ids`` is needed for word pooling).
        device: where the model runs.
    """

    spec: TextExtractorSpec
    model: Any
    tokenizer: Any
    device: Any = None
    max_length: int = 512
    _checked: bool = field(default=False, repr=False)

    @classmethod
    def from_pretrained(
        cls,
        spec: TextExtractorSpec | Mapping[str, Any] | None = None,
        *,
        device: str | None = None,
        local_files_only: bool = False,
        dtype: Any = None,
    ) -> TextExtractor:
        """Load the encoder and tokenizer named by ``spec`` (GPU when present unless ``device`` says otherwise).

        Raises:
            OSError: when the weights cannot be loaded (offline, unknown id); the message names the model id.
        """
        if not isinstance(spec, TextExtractorSpec):
            spec = DEFAULT_TEXT_EXTRACTOR if spec is None else TextExtractorSpec.from_dict(spec)
        location = _model_location(spec.model_id)  # checked before torch/transformers are even imported
        tokenizer = model = None
        if location == "folder" or _in_hub_cache(spec):
            try:  # a local folder, or a Hub id already in the cache: no network at all
                tokenizer, model = _load_encoder(spec, local_files_only=True, dtype=dtype)
            except Exception as err:  # noqa: BLE001 -- missing, corrupt, incomplete ...: one message naming it
                if location == "folder":
                    raise OSError(
                        f"cannot load the text encoder from the folder {spec.model_id!r}: {_first_line(err)}"
                    ) from None
        if model is None:
            if local_files_only or hub_offline():
                why = "--local-files-only" if local_files_only else "HF_HUB_OFFLINE is set"
                raise OSError(
                    f"the text encoder {spec.model_id!r} is not in the local Hugging Face cache ({why}); pass "
                    "--model <local folder holding the encoder and its tokenizer>, or download it once with network"
                )
            unreachable = hub_unreachable(HUB_PROBE_SECONDS)
            if unreachable is not None:
                raise OSError(
                    f"the text encoder {spec.model_id!r} is not in the local cache and the Hub cannot be reached "
                    f"({unreachable}); pass --model <local folder holding the encoder and its tokenizer>, or set "
                    "HF_HUB_OFFLINE=1 to use the cache only"
                )
            try:
                tokenizer, model = _load_encoder(spec, local_files_only=False, dtype=dtype)
            except Exception as err:  # noqa: BLE001 -- unknown id, gated, interrupted ...
                raise OSError(f"cannot load the text encoder {spec.model_id!r}: {_first_line(err)}") from None
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device).eval()
        limit = getattr(tokenizer, "model_max_length", 512)
        return cls(spec=spec, model=model, tokenizer=tokenizer, device=torch.device(device), max_length=_cap(limit))

    @property
    def dim(self) -> int:
        """Width of the produced vectors (the encoder's hidden size)."""
        return int(self.model.config.hidden_size)

    def _check(self) -> None:
        if self._checked:
            return
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(
                f"the tokenizer of {self.spec.model_id!r} is not a fast tokenizer; word pooling needs word_ids()"
            )
        num_hidden = int(getattr(self.model.config, "num_hidden_layers", 0)) + 1
        bad = [i for i in self.spec.layers if not -num_hidden <= i < num_hidden]
        if bad:
            raise ValueError(
                f"layers {bad} do not exist in {self.spec.model_id!r}: hidden_states has {num_hidden} entries "
                f"(indices {-num_hidden}..{num_hidden - 1})"
            )
        self._checked = True

    def _segments(self, texts: Sequence[str]) -> list[_Segment]:
        segments: list[_Segment] = []
        for i, text in enumerate(texts):
            if self.spec.base_pooling == "gcnet":
                for words in gcnet_words(text):
                    segments.append(_Segment(owner=i, words=words, length=sum(len(w) + 1 for w in words)))
            else:
                text = str(text).strip()
                if text:
                    segments.append(_Segment(owner=i, text=text, length=len(text)))
        return segments

    def __call__(self, texts: Sequence[str], *, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """Featurize utterances.

        Args:
            texts: one transcript per utterance.
            batch_size: sequences per forward pass.
            progress: show a progress bar (tqdm) over the batches.

        Returns:
            float32 ``[len(texts), dim]``.
        """
        import torch

        self._check()
        if isinstance(texts, str):
            raise TypeError("featurize a list of transcripts, not a single string (wrap it in a list)")
        texts = [_as_text(t, i) for i, t in enumerate(texts)]
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        spec = self.spec
        gcnet = spec.base_pooling == "gcnet"
        segments = self._segments(texts)
        dim = self.dim
        sums = np.zeros((len(texts), dim), dtype=np.float64)
        counts = np.zeros(len(texts), dtype=np.int64)
        order = sorted(range(len(segments)), key=lambda k: segments[k].length)  # similar lengths share a batch
        batches = [order[k : k + int(batch_size)] for k in range(0, len(order), int(batch_size))]
        iterator: Iterable[list[int]] = batches
        if progress:
            iterator = tqdm(batches, desc=f"featurizing with {spec.model_id}", unit="batch")
        device = self.device if self.device is not None else next(self.model.parameters()).device
        with torch.inference_mode():
            for batch in iterator:
                items = [segments[k] for k in batch]
                if gcnet:
                    enc = self.tokenizer(
                        [s.words for s in items],
                        is_split_into_words=True,
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    )
                else:
                    enc = self.tokenizer(
                        [s.text for s in items],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                        return_special_tokens_mask=True,
                    )
                special = enc.pop("special_tokens_mask", None)
                inputs = {k: v.to(device) for k, v in enc.items() if k in _MODEL_INPUTS}
                hidden = self.model(**inputs, output_hidden_states=True).hidden_states
                stacked = torch.stack([hidden[i] for i in spec.layers]).float()
                tokens = (stacked.sum(0) if gcnet else stacked.mean(0)).cpu().numpy()  # [B, T, D]
                attention = enc["attention_mask"].numpy().astype(bool)
                for b, segment in enumerate(items):
                    if gcnet:
                        word_ids = enc.word_ids(b)
                        groups: dict[int, list[int]] = {}
                        for t, w in enumerate(word_ids):
                            if w is not None:  # special tokens and padding have no word
                                groups.setdefault(w, []).append(t)
                        for positions in groups.values():
                            sums[segment.owner] += tokens[b, positions].mean(axis=0)
                            counts[segment.owner] += 1
                    else:
                        keep = attention[b].copy()
                        if spec.base_pooling == "token-mean" and special is not None:
                            keep &= ~special[b].numpy().astype(bool)
                        if spec.base_pooling == "cls":
                            vector = tokens[b, 0]
                        elif keep.any():
                            vector = tokens[b, keep].mean(axis=0)
                        else:
                            continue
                        sums[segment.owner] += vector
                        counts[segment.owner] += 1
        out = np.zeros((len(texts), dim), dtype=np.float64)
        have = counts > 0
        out[have] = sums[have] / counts[have, None]
        if spec.l2_normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = np.divide(out, np.maximum(norms, 1e-12))
        return out.astype(np.float32)


#: Seconds the one reachability check of the Hub may take before loading an encoder gives up.
HUB_PROBE_SECONDS = 4.0


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for the local cache only."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_unreachable(timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """``None`` when a TCP connection to the Hub endpoint (``HF_ENDPOINT``, or the HTTP(S) proxy configured for
    it) opens within ``timeout`` seconds, otherwise why not. Name resolution is included in the time limit (it
    runs in a helper thread)."""
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return f"HF_ENDPOINT {constants.ENDPOINT!r} has no host"
    proxy = getproxies().get(url.scheme)
    if proxy and not proxy_bypass(host):  # behind a proxy, the proxy is what must answer
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_url.hostname:
            host, port = proxy_url.hostname, proxy_url.port or (443 if proxy_url.scheme == "https" else 80)
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = ""
        except OSError as err:
            outcome["error"] = f"{constants.ENDPOINT}: {err}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if "ok" in outcome:
        return None
    return outcome.get("error", f"{constants.ENDPOINT}: no answer within {timeout:g} s")


def _model_location(model_id: str) -> str:
    """``"folder"`` for an existing local folder, ``"hub"`` for a Hub id; a path that does not exist is an error."""
    path = Path(model_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise OSError(f"--model {model_id!r} is a file; expected a model folder (config.json, weights, tokenizer)")
        if not (path / "config.json").is_file():
            raise OSError(
                f"the model folder {str(path)!r} has no config.json; expected a transformers encoder saved with "
                "save_pretrained (config.json, weights, tokenizer files)"
            )
        return "folder"
    looks_like_path = model_id.startswith((".", "/", "~")) or "\\" in model_id or os.path.isabs(model_id)
    if looks_like_path or not is_hub_id(model_id, owner_optional=True):
        raise OSError(
            f"the model folder {model_id!r} does not exist; pass --model <existing folder holding the encoder and "
            "its tokenizer> or a Hub id such as microsoft/deberta-large"
        )
    return "hub"


def _in_hub_cache(spec: TextExtractorSpec) -> bool:
    """Whether the Hub id's ``config.json`` is in the local Hugging Face cache (looked up without network)."""
    try:
        found = try_to_load_from_cache(spec.model_id, "config.json", revision=spec.revision)
    except Exception:  # noqa: BLE001 -- a malformed id or revision: not cached
        return False
    return isinstance(found, str)


def _load_encoder(spec: TextExtractorSpec, *, local_files_only: bool, dtype: Any = None):
    from transformers import AutoModel, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    if spec.revision:
        kwargs["revision"] = spec.revision
    # Words go to the tokenizer pre-split; byte-level BPE tokenizers (DeBERTa, RoBERTa) then need the space
    # before each word that a sentence would have had.
    tok_kwargs = {"add_prefix_space": True} if spec.base_pooling == "gcnet" else {}
    tokenizer = AutoTokenizer.from_pretrained(spec.model_id, **kwargs, **tok_kwargs)
    model = AutoModel.from_pretrained(spec.model_id, **kwargs, **({"dtype": dtype} if dtype else {}))
    return tokenizer, model


def _cap(limit: Any) -> int:
    try:
        value = int(limit)
    except (TypeError, ValueError, OverflowError):
        return 512
    return 512 if value <= 0 or value > 100_000 else value


def _as_text(value: Any, index: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        raise TypeError(f"transcript {index} is a {type(value).__name__} ({value!r}), expected a string")
    return value


def featurize_texts(
    texts: Sequence[str],
    extractor: TextExtractor | TextExtractorSpec | Mapping[str, Any] | None = None,
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Featurize transcripts, one vector per utterance.

    Args:
        texts: one transcript per utterance.
        extractor: a loaded :class:`TextExtractor`, or a spec (loaded here; default: the corpora's recipe).
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Returns:
        float32 ``[len(texts), dim]``.
    """
    if not isinstance(extractor, TextExtractor):
        extractor = TextExtractor.from_pretrained(extractor)
    return extractor(texts, batch_size=batch_size, progress=progress)


def read_transcripts_csv(
    path: str | os.PathLike[str], *, text_column: str = "sentence", id_column: str | None = "name"
) -> tuple[list[str], list[str]]:
    """Read ``(ids, transcripts)`` from a CSV (the toolkit's transcription files have ``name,sentence``).

    Raises:
        DatasetFormatError: if the file or a column is missing, or the file is not UTF-8 CSV, naming them.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such transcript CSV file")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if text_column not in columns:
                raise DatasetFormatError(f"{path}: no column {text_column!r} (columns: {', '.join(columns)})")
            if id_column is not None and id_column not in columns:
                raise DatasetFormatError(f"{path}: no id column {id_column!r} (columns: {', '.join(columns)})")
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except csv.Error as err:
        raise DatasetFormatError(f"{path}: not a readable CSV file ({err})") from None
    ids = [(row[id_column] or "") if id_column else str(i) for i, row in enumerate(rows)]
    return ids, [row[text_column] or "" for row in rows]


#: Longest utterance id usable as a file name (``<id>.npy`` must fit the usual 255-byte limit).
_MAX_ID_BYTES = 250


def check_file_ids(ids: Sequence[str], source: str, *, where: Sequence[str] | None = None) -> None:
    """Check that every id can name its own ``<id>.npy`` file and that no two ids share one.

    Args:
        ids: The utterance ids.
        source: The file (or option) they come from, named in errors.
        where: Optional position of each id in ``source`` (``"row 3"``), named in errors.

    Raises:
        DatasetFormatError: For the first id that is empty, not a string, holds a path separator or a control
            character, is too long, or repeats an earlier id (also when they differ only in letter case, which is
            one file on case-insensitive file systems). Nothing has been written when this is raised.
    """
    seen: dict[str, int] = {}
    for k, uid in enumerate(ids):
        at = where[k] if where is not None else f"entry {k}"
        if not isinstance(uid, str):
            raise DatasetFormatError(f"{source}: the id at {at} is a {type(uid).__name__}, not a string")
        bad = (
            uid.strip() in ("", ".", "..")
            or any(c in uid for c in "/\\")
            or any(ord(c) < 32 or ord(c) == 127 for c in uid)
            or len(uid.encode("utf-8", "surrogatepass")) > _MAX_ID_BYTES
        )
        if bad:
            raise DatasetFormatError(
                f"{source}: the id {short_repr(uid)} at {at} cannot name a file (empty, a path separator, a control "
                f"character or over {_MAX_ID_BYTES} bytes)"
            )
        key = uid.casefold()
        if key in seen:
            first = seen[key]
            first_at = where[first] if where is not None else f"entry {first}"
            same = "repeats" if ids[first] == uid else f"differs only in letter case from {short_repr(ids[first])} at"
            raise DatasetFormatError(
                f"{source}: the id {short_repr(uid)} at {at} {same} {first_at}: two utterances would share one "
                "file; ids must be unique"
            )
        seen[key] = k


def gcnet_transcripts(label_pickle: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """``(utterance ids, transcripts)`` of a GCNet label pickle (``videoIDs`` and ``videoSentence``), checked.

    Raises:
        DatasetFormatError: a malformed pickle, naming the field; ids that cannot name files or repeat.
    """
    label_pickle = Path(label_pickle)
    obj = safe_load_pickle(label_pickle)
    if not isinstance(obj, (list, tuple)) or len(obj) < 4:
        raise DatasetFormatError(
            f"{label_pickle}: expected a list starting videoIDs, videoLabels, videoSpeakers, videoSentence"
        )
    ids, sentences = obj[0], obj[3]
    if not isinstance(ids, Mapping) or not isinstance(sentences, Mapping):
        raise DatasetFormatError(f"{label_pickle}: videoIDs and videoSentence must be dicts keyed by dialogue id")
    budget = TextBudget(label_pickle)
    uids: list[str] = []
    texts: list[str] = []
    where: list[str] = []
    for vid in sorted(ids, key=str):
        if vid not in sentences:
            raise DatasetFormatError(f"{label_pickle}: videoSentence has no entry for dialogue {short_repr(vid)}")
        these_ids = budget.strings(ids[vid], f"{label_pickle}: videoIDs[{short_repr(vid)}]")
        these_texts = budget.strings(sentences[vid], f"{label_pickle}: videoSentence[{short_repr(vid)}]")
        if len(these_ids) != len(these_texts):
            raise DatasetFormatError(
                f"{label_pickle}: videoSentence[{short_repr(vid)}] has {len(these_texts)} entries, videoIDs has "
                f"{len(these_ids)}"
            )
        uids += these_ids
        texts += these_texts
        where += [f"videoIDs[{short_repr(vid)}][{j}]" for j in range(len(these_ids))]
    check_file_ids(uids, str(label_pickle), where=where)
    return uids, texts


def _check_feature_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise DatasetFormatError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise DatasetFormatError(
            f"{folder}: already holds features; pass overwrite=True (--overwrite) to replace them"
        )


def _write_feature_folder(folder: Path, ids: Sequence[str], features: np.ndarray) -> None:
    """Write ``<id>.npy`` files into a staging folder, then swap it in: all of them appear, or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = make_temp_dir(folder.parent, f".{folder.name}.tmp-")
    old = None
    try:
        for uid, vector in zip(ids, features, strict=True):
            np.save(staged / f"{uid}.npy", vector)
        if folder.exists():
            old = make_temp_dir(folder.parent, f".{folder.name}.old-")
            os.replace(folder, old / folder.name)
        os.replace(staged, folder)
    except BaseException:
        if old is not None and not folder.exists():
            os.replace(old / folder.name, folder)  # put the previous features back
        shutil.rmtree(staged, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def featurize_gcnet_corpus(
    label_pickle: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    extractor: TextExtractor | TextExtractorSpec | Mapping[str, Any] | None = None,
    *,
    feature_name: str = "deberta-large-4-UTT",
    batch_size: int = 16,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Featurize a GCNet-layout corpus's own transcripts (``videoSentence``) into ``features/<name>/<utt>.npy``.

    Everything is checked (the pickle, every id, the output folder) before the encoder runs; the files are written
    to a staging folder and swapped in together, so a failure leaves the previous folder (or none) untouched.

    Args:
        label_pickle: the corpus's label pickle (read with the restricted unpickler).
        output_dir: the corpus folder to write ``features/<feature_name>/`` into.
        extractor: encoder (default: the corpora's recipe).
        feature_name: folder name of the feature.
        batch_size: sequences per forward pass.
        progress: show a progress bar.
        overwrite: replace an existing folder of that feature.

    Returns:
        The feature folder.

    Raises:
        DatasetFormatError: a malformed pickle (naming the field), an id that cannot name a file or repeats, or
            an existing feature folder.
    """
    uids, texts = gcnet_transcripts(label_pickle)
    folder = Path(output_dir) / "features" / feature_name
    _check_feature_folder(folder, overwrite)
    features = featurize_texts(texts, extractor, batch_size=batch_size, progress=progress)
    _write_feature_folder(folder, uids, features)
    return folder


def featurize_dataset(
    dataset: Any,
    extractor: TextExtractor | TextExtractorSpec | Mapping[str, Any] | None = None,
    *,
    transcript_column: str = "transcripts",
    feature_column: str = "text",
    batch_size: int = 16,
    progress: bool = True,
) -> Any:
    """Featurize the transcripts of a ``hub_datasets`` dataset (one row per conversation) into a feature column.

    Args:
        dataset: a ``datasets.Dataset`` or ``DatasetDict`` with a list-of-strings column ``transcript_column``.
        extractor: encoder (default: the corpora's recipe).
        transcript_column: the column holding one transcript per utterance.
        feature_column: the column to write (``[utterances, dim]`` per row; replaced if present).
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Returns:
        The dataset with ``feature_column`` replaced.
    """
    if not isinstance(extractor, TextExtractor):
        extractor = TextExtractor.from_pretrained(extractor)
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {
                name: featurize_dataset(
                    split,
                    extractor,
                    transcript_column=transcript_column,
                    feature_column=feature_column,
                    batch_size=batch_size,
                    progress=progress,
                )
                for name, split in dataset.items()
            }
        )
    if transcript_column not in dataset.column_names:
        raise DatasetFormatError(
            f"the dataset has no column {transcript_column!r} (columns: {', '.join(dataset.column_names)})"
        )
    conversations = dataset[transcript_column]
    flat = [t for conv in conversations for t in conv]
    features = extractor(flat, batch_size=batch_size, progress=progress)
    rows, start = [], 0
    for conv in conversations:
        rows.append(features[start : start + len(conv)].tolist())
        start += len(conv)
    if feature_column in dataset.column_names:
        dataset = dataset.remove_columns(feature_column)
    return dataset.add_column(feature_column, rows)


# ------------------------------------------------------------------------------------------------ command line
def add_featurize_arguments(parser: Any) -> None:
    """Options of ``python -m hub_datasets featurize`` (use ``argparse.ArgumentDefaultsHelpFormatter``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a transcript (repeat for several utterances)")
    source.add_argument("--csv", help="CSV of transcripts (columns --id-column, --text-column)")
    source.add_argument("--gcnet-pickle", help="a GCNet-layout label pickle: featurize its videoSentence(s)")
    source.add_argument("--dataset", help="a hub_datasets corpus (name or parquet folder): featurize its transcripts")
    parser.add_argument("--config", default=None, help="config of --dataset")
    parser.add_argument("--data-dir", default=None, help="raw corpus folder of --dataset")
    parser.add_argument("--text-column", default="sentence", help="--csv column holding the transcripts")
    parser.add_argument("--id-column", default="name", help="--csv column holding the utterance ids (unique)")
    parser.add_argument(
        "--output",
        required=True,
        help="--text/--csv: OUT.npz (arrays ids, features) or a folder (GCNet layout: features/NAME/<id>.npy); "
        "--gcnet-pickle: the corpus folder to write features/NAME/ into; --dataset: a save_to_disk folder",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_TEXT_EXTRACTOR.model_id,
        help="encoder: a local folder (config.json, weights, tokenizer) or a Hub id; a Hub id is taken from the "
        "local cache first and downloaded only when the Hub answers within a few seconds",
    )
    parser.add_argument("--revision", default=None, help="Hub revision pin of --model")
    parser.add_argument("--layers", default="-4,-3,-2,-1", help="hidden_states indices, comma-separated")
    parser.add_argument("--pooling", default="gcnet", help=f"one of {', '.join(POOLINGS)} (optionally +l2)")
    parser.add_argument("--feature-name", default="deberta-large-4-UTT", help="feature folder name (GCNet layout)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...; unset: a GPU when present")
    parser.add_argument(
        "--local-files-only", action="store_true", help="never contact the Hub (as HF_HUB_OFFLINE=1 does)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_output_free(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise DatasetFormatError(f"{output}: already exists; pass --overwrite to replace it")


def _save_dataset(dataset: Any, output: Path) -> None:
    """``save_to_disk`` into a staging folder, then swap it in (all or nothing)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = make_temp_dir(output.parent, f".{output.name}.tmp-")
    try:
        dataset.save_to_disk(str(staged / "data"))
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        os.replace(staged / "data", output)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def run_featurize(args: Any) -> int:
    """Run ``python -m hub_datasets featurize`` with parsed ``args``; returns the exit status.

    The inputs, every id and the output are checked before the encoder is loaded; the output is written only once
    every feature is computed, all at once (a staging folder or a temporary file renamed into place).
    """
    output = Path(args.output)
    progress = not args.no_progress
    try:
        try:
            layers = tuple(int(v) for v in str(args.layers).split(","))
        except ValueError:
            raise ValueError(f"--layers expects comma-separated integers, got {args.layers!r}") from None
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        spec = TextExtractorSpec(model_id=args.model, layers=layers, pooling=args.pooling, revision=args.revision)
        # 1. read and check the inputs and the output (nothing loaded, nothing written yet)
        dsd = folder = None
        ids: list[str] = []
        texts: list[str] = []
        if args.gcnet_pickle:
            ids, texts = gcnet_transcripts(args.gcnet_pickle)
            folder = output / "features" / args.feature_name
            _check_feature_folder(folder, args.overwrite)
        elif args.dataset:
            dsd = load_dataset(args.dataset, args.config, data_dir=args.data_dir)
            _check_output_free(output, args.overwrite)
        else:
            if args.csv:
                ids, texts = read_transcripts_csv(args.csv, text_column=args.text_column, id_column=args.id_column)
                source, header = str(args.csv), 2  # row numbers as a spreadsheet shows them (the header is row 1)
                where = [f"row {k + header}" for k in range(len(ids))]
            else:
                texts = list(args.text)
                ids = [str(i) for i in range(len(texts))]
                source, where = "--text", None
            check_file_ids(ids, source, where=where)
            if output.suffix == ".npz":
                _check_output_free(output, args.overwrite)
            else:
                folder = output / "features" / args.feature_name
                _check_feature_folder(folder, args.overwrite)
        # 2. the encoder (a local folder, the cache, or one quick attempt at the Hub)
        extractor = TextExtractor.from_pretrained(spec, device=args.device, local_files_only=args.local_files_only)
        # 3. compute everything, then write it at once
        if dsd is not None:
            out = featurize_dataset(dsd, extractor, batch_size=args.batch_size, progress=progress)
            _save_dataset(out, output)
            print(f"wrote the featurized dataset to {output}")
            return 0
        features = extractor(texts, batch_size=args.batch_size, progress=progress)
        if folder is None:
            buffer = io.BytesIO()
            np.savez(buffer, ids=np.array(ids), features=features)
            atomic_write_bytes(output, buffer.getvalue())
            print(f"wrote {len(ids)} x {features.shape[1]} features to {output}")
            return 0
        _write_feature_folder(folder, ids, features)
        print(f"wrote {len(ids)} utterance features to {folder}")
        return 0
    except (DatasetFormatError, OSError, TypeError, ValueError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
