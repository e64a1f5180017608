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

import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_bytes
from .errors import DatasetFormatError


__all__ = [
    "DEFAULT_TEXT_EXTRACTOR",
    "POOLINGS",
    "TextExtractor",
    "TextExtractorSpec",
    "add_featurize_arguments",
    "featurize_dataset",
    "featurize_gcnet_corpus",
    "featurize_texts",
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
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not isinstance(spec, TextExtractorSpec):
            spec = DEFAULT_TEXT_EXTRACTOR if spec is None else TextExtractorSpec.from_dict(spec)
        kwargs: dict[str, Any] = {"local_files_only": local_files_only}
        if spec.revision:
            kwargs["revision"] = spec.revision
        try:
            # Words go to the tokenizer pre-split; byte-level BPE tokenizers (DeBERTa, RoBERTa) then need the
            # space before each word that a sentence would have had.
            tok_kwargs = {"add_prefix_space": True} if spec.base_pooling == "gcnet" else {}
            tokenizer = AutoTokenizer.from_pretrained(spec.model_id, **kwargs, **tok_kwargs)
            model = AutoModel.from_pretrained(spec.model_id, **kwargs, **({"dtype": dtype} if dtype else {}))
        except Exception as err:  # noqa: BLE001 -- offline, missing, gated ...: one message naming the model
            raise OSError(
                f"cannot load the text encoder {spec.model_id!r}: {type(err).__name__}: {str(err).splitlines()[0]}"
            ) from None
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
            from tqdm.auto import tqdm

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
        DatasetFormatError: if the file or a column is missing, naming them.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such transcript CSV file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if text_column not in columns:
            raise DatasetFormatError(f"{path}: no column {text_column!r} (columns: {', '.join(columns)})")
        if id_column is not None and id_column not in columns:
            raise DatasetFormatError(f"{path}: no id column {id_column!r} (columns: {', '.join(columns)})")
        rows = list(reader)
    ids = [row[id_column] if id_column else str(i) for i, row in enumerate(rows)]
    return ids, [row[text_column] or "" for row in rows]


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

    Args:
        label_pickle: the corpus's label pickle (read with the restricted unpickler).
        output_dir: the corpus folder to write ``features/<feature_name>/`` into.
        extractor: encoder (default: the corpora's recipe).
        feature_name: folder name of the feature.
        batch_size: sequences per forward pass.
        progress: show a progress bar.
        overwrite: replace existing files of that feature.

    Returns:
        The feature folder.

    Raises:
        DatasetFormatError: a malformed pickle (naming the field) or an existing feature folder.
    """
    from .safe_pickle import safe_load_pickle

    label_pickle = Path(label_pickle)
    obj = safe_load_pickle(label_pickle)
    if not isinstance(obj, (list, tuple)) or len(obj) < 4:
        raise DatasetFormatError(
            f"{label_pickle}: expected a list starting videoIDs, videoLabels, videoSpeakers, videoSentence"
        )
    ids, sentences = obj[0], obj[3]
    if not isinstance(ids, Mapping) or not isinstance(sentences, Mapping):
        raise DatasetFormatError(f"{label_pickle}: videoIDs and videoSentence must be dicts keyed by dialogue id")
    uids: list[str] = []
    texts: list[str] = []
    for vid in sorted(ids, key=str):
        if vid not in sentences:
            raise DatasetFormatError(f"{label_pickle}: videoSentence has no entry for dialogue {vid!r}")
        these_ids, these_texts = list(ids[vid]), [str(s) for s in list(sentences[vid])]
        if len(these_ids) != len(these_texts):
            raise DatasetFormatError(
                f"{label_pickle}: videoSentence[{vid!r}] has {len(these_texts)} entries, videoIDs has {len(these_ids)}"
            )
        uids += [str(u) for u in these_ids]
        texts += these_texts
    folder = Path(output_dir) / "features" / feature_name
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise DatasetFormatError(f"{folder}: already holds features; pass overwrite=True (--overwrite) to replace")
    for uid in uids:  # checked before anything is encoded or written
        if "/" in uid or uid in ("", ".", ".."):
            raise DatasetFormatError(f"{label_pickle}: utterance id {uid!r} cannot be a file name")
    features = featurize_texts(texts, extractor, batch_size=batch_size, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    for uid, vector in zip(uids, features, strict=True):
        buffer = io.BytesIO()
        np.save(buffer, vector)
        atomic_write_bytes(folder / f"{uid}.npy", buffer.getvalue())
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
    import datasets

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
    """Options of ``python -m hub_datasets featurize``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a transcript (repeat for several utterances)")
    source.add_argument("--csv", help="CSV of transcripts (columns --id-column, --text-column)")
    source.add_argument("--gcnet-pickle", help="a GCNet-layout label pickle: featurize its videoSentence(s)")
    source.add_argument("--dataset", help="a hub_datasets corpus (name or parquet folder): featurize its transcripts")
    parser.add_argument("--config", default=None, help="config of --dataset")
    parser.add_argument("--data-dir", default=None, help="raw corpus folder of --dataset")
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--id-column", default="name")
    parser.add_argument(
        "--output",
        required=True,
        help="--text/--csv: OUT.npz (arrays ids, features) or a folder (GCNet layout: features/NAME/<id>.npy); "
        "--gcnet-pickle: the corpus folder to write features/NAME/ into; --dataset: a save_to_disk folder",
    )
    parser.add_argument("--model", default=DEFAULT_TEXT_EXTRACTOR.model_id, help="encoder Hub id or local folder")
    parser.add_argument("--revision", default=None, help="Hub revision pin of --model")
    parser.add_argument("--layers", default="-4,-3,-2,-1", help="hidden_states indices, comma-separated")
    parser.add_argument("--pooling", default="gcnet", help=f"one of {', '.join(POOLINGS)} (optionally +l2)")
    parser.add_argument("--feature-name", default="deberta-large-4-UTT", help="feature folder name (GCNet layout)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU when present)")
    parser.add_argument("--local-files-only", action="store_true", help="never download the encoder")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def run_featurize(args: Any) -> int:
    """Run ``python -m hub_datasets featurize`` with parsed ``args``; returns the exit status."""
    import sys

    try:
        layers = tuple(int(v) for v in str(args.layers).split(","))
    except ValueError:
        print(f"error: --layers expects comma-separated integers, got {args.layers!r}", file=sys.stderr)
        return 2
    try:
        spec = TextExtractorSpec(model_id=args.model, layers=layers, pooling=args.pooling, revision=args.revision)
        extractor = TextExtractor.from_pretrained(spec, device=args.device, local_files_only=args.local_files_only)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    output = Path(args.output)
    try:
        if args.gcnet_pickle:
            folder = featurize_gcnet_corpus(
                args.gcnet_pickle,
                output,
                extractor,
                feature_name=args.feature_name,
                batch_size=args.batch_size,
                progress=progress,
                overwrite=args.overwrite,
            )
            print(f"wrote {sum(1 for _ in folder.glob('*.npy'))} utterance features to {folder}")
            return 0
        if args.dataset:
            from .loading import load_dataset

            dsd = load_dataset(args.dataset, args.config, data_dir=args.data_dir)
            out = featurize_dataset(dsd, extractor, batch_size=args.batch_size, progress=progress)
            if output.exists() and not args.overwrite:
                raise DatasetFormatError(f"{output}: already exists; pass --overwrite to replace it")
            out.save_to_disk(str(output))
            print(f"wrote the featurized dataset to {output}")
            return 0
        if args.csv:
            ids, texts = read_transcripts_csv(args.csv, text_column=args.text_column, id_column=args.id_column)
        else:
            texts = list(args.text)
            ids = [str(i) for i in range(len(texts))]
        features = extractor(texts, batch_size=args.batch_size, progress=progress)
        if output.suffix == ".npz":
            if output.exists() and not args.overwrite:
                raise DatasetFormatError(f"{output}: already exists; pass --overwrite to replace it")
            np.savez(output, ids=np.array(ids), features=features)
            print(f"wrote {len(ids)} x {features.shape[1]} features to {output}")
            return 0
        folder = output / "features" / args.feature_name
        if folder.exists() and any(folder.iterdir()) and not args.overwrite:
            raise DatasetFormatError(f"{folder}: already holds features; pass --overwrite to replace them")
        folder.mkdir(parents=True, exist_ok=True)
        for uid, vector in zip(ids, features, strict=True):
            if "/" in uid or uid in ("", ".", ".."):
                raise DatasetFormatError(f"{args.csv}: id {uid!r} cannot be a file name")
            np.save(folder / f"{uid}.npy", vector)
        print(f"wrote {len(ids)} utterance features to {folder}")
        return 0
    except (DatasetFormatError, TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
