"""Loading ComP checkpoints and predicting one conversation, masked and with every modality.

Checkpoints load through ``transformers.AutoModel.from_pretrained`` with the ComP classes of the installed
``comp-emotion`` package (``modeling_comp`` registers them); no code stored in a checkpoint ever runs. A checkpoint
is a Hub id (``org/name``, optionally pinned as ``org/name@revision``) or, for the operator, a local folder.

Every prediction runs one conversation per forward pass, so a served prediction never depends on what else is
being served. :func:`model_inputs` is the one place where a conversation becomes model inputs.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import hf_hub_download

from hub_datasets.constants import is_hub_id

from .inputs import MAX_ABS_FEATURE, MODALITIES, Conversation, InputError, validate_for_model


__all__ = [
    "RUN_INFO_FILE",
    "CheckpointStore",
    "LoadedCheckpoint",
    "Prediction",
    "load_checkpoint",
    "model_inputs",
    "predict",
    "run_model",
    "split_revision",
]

_LOG = logging.getLogger(__name__)
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def split_revision(ref: str) -> tuple[str, str | None]:
    """Split ``org/name@revision`` into ``(org/name, revision)`` (``revision`` is ``None`` when not pinned).

    Raises:
        InputError: on an empty or malformed revision.
    """
    ref = str(ref).strip()
    if "@" not in ref:
        return ref, None
    repo, _, revision = ref.rpartition("@")
    if not _REVISION.match(revision) or ".." in revision:
        raise InputError(f"checkpoint revision {revision!r} is not a branch, tag or commit hash")
    return repo, revision


@dataclass
class LoadedCheckpoint:
    """A ComP model ready to serve.

    Attributes:
        ref: the Hub id (with ``@revision`` when pinned) or local path it was loaded from (server-side only).
        model: the model, in eval mode.
        synthetic: whether it was trained on the synthetic corpus (then the UI says so).
        run_info: the training recipe's ``comp_run.json`` (configuration, provenance, final metrics), if any.
        name: what visitors see: the Hub id, or the operator's label of a local folder (never a path).
    """

    ref: str
    model: Any
    synthetic: bool = False
    run_info: dict[str, Any] | None = None
    name: str = ""
    saved_processor: Any = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.ref if is_hub_id(split_revision(self.ref)[0]) else Path(self.ref).name

    @functools.cached_property
    def processor(self) -> Any:
        """The checkpoint's saved :class:`modeling_comp.ComPProcessor` (its ``preprocessor_config.json``), or, for a
        checkpoint saved without one, the processor derived from the model's config; either way with the Space's
        bound on feature magnitudes (the tighter of the two)."""
        from modeling_comp import ComPProcessor

        if self.saved_processor is None:
            return ComPProcessor.from_model_config(self.model.config, max_abs_value=MAX_ABS_FEATURE)
        processor = copy.deepcopy(self.saved_processor)
        if processor.max_abs_value is None or processor.max_abs_value > MAX_ABS_FEATURE:
            processor.max_abs_value = float(MAX_ABS_FEATURE)
        return processor

    @property
    def processor_origin(self) -> str:
        """Where the processor comes from: the checkpoint's saved file, or (said so) the model's config."""
        from modeling_comp.processing_comp import PROCESSOR_FILE

        if self.saved_processor is not None:
            return PROCESSOR_FILE
        return f"derived from config.json (the checkpoint has no {PROCESSOR_FILE})"

    @property
    def modality_features(self) -> dict[str, Any]:
        """The features the checkpoint was trained on, per modality (``{}`` when it records none).

        Read from ``config.modality_features``: ``{"audio"|"text"|"video": {"feature": str, "extractor":
        {"model_id", "layers", "pooling"} | None}}``.
        """
        value = getattr(self.config, "modality_features", None)
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def text_extractor(self) -> dict[str, Any] | None:
        """The recorded text extractor record (``None`` when the checkpoint records none)."""
        entry = self.modality_features.get("text")
        extractor = entry.get("extractor") if isinstance(entry, Mapping) else None
        return dict(extractor) if isinstance(extractor, Mapping) else None

    @property
    def test_metrics(self) -> dict[str, Any] | None:
        """Test metrics at the selected epoch, from ``run_info`` (``None`` when unknown)."""
        final = (self.run_info or {}).get("final")
        metrics = final.get("test") if isinstance(final, Mapping) else None
        return metrics if isinstance(metrics, Mapping) else None

    @property
    def config(self) -> Any:
        """The model's ``ComPConfig``."""
        return self.model.config

    @property
    def dims(self) -> dict[str, int]:
        """Feature dimension per modality."""
        return {m: int(getattr(self.config, f"{m}_dim")) for m in MODALITIES}

    @property
    def max_utterances(self) -> int:
        """Longest conversation the checkpoint accepts."""
        return int(self.config.max_utterances)

    @property
    def is_regression(self) -> bool:
        """Whether the checkpoint predicts a sentiment score rather than a class."""
        return getattr(self.config, "problem_type", None) == "regression"

    @property
    def label_names(self) -> list[str]:
        """Class names in class-id order (``["score"]`` for regression)."""
        if self.is_regression:
            return ["score"]
        id2label = getattr(self.config, "id2label", None) or {}
        return [str(id2label.get(i, id2label.get(str(i), f"class {i}"))) for i in range(int(self.config.num_labels))]

    @property
    def training_stage(self) -> int:
        """Stage the checkpoint was saved in (stage 1 has no coordinator)."""
        return int(getattr(self.model, "training_stage", 2))


#: File the training recipe writes next to the weights (configuration, data provenance, final metrics).
RUN_INFO_FILE = "comp_run.json"
_RUN_INFO_MAX_BYTES = 1 << 20


def _says_synthetic(value: Any) -> bool:
    """Whether a provenance record (or any record nested in it) marks its data as synthetic."""
    if isinstance(value, Mapping):
        if value.get("synthetic") is True:
            return True
        for key in ("corpus_label", "corpus", "dataset"):
            label = value.get(key)
            if isinstance(label, str) and label.lower().startswith("synthetic"):
                return True
        return any(_says_synthetic(v) for v in value.values() if isinstance(v, Mapping))
    return False


def _read_run_info(ref: str, local_dir: Path | None, revision: str | None = None) -> dict[str, Any] | None:
    """The checkpoint's ``comp_run.json`` if it has one (``None`` otherwise or when unreadable)."""
    path: Path | None = None
    if local_dir is not None:
        path = local_dir / RUN_INFO_FILE
    else:
        try:
            path = Path(hf_hub_download(ref, RUN_INFO_FILE, revision=revision))
        except Exception:  # noqa: BLE001 -- optional file: absent, offline, gated ... all mean "no run info"
            return None
    try:
        if not path.is_file() or path.stat().st_size > _RUN_INFO_MAX_BYTES:
            return None
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def load_checkpoint(ref: str, *, name: str | None = None, local_files_only: bool | None = None) -> LoadedCheckpoint:
    """Load a ComP checkpoint by Hub id (``org/name`` or ``org/name@revision``) or local folder.

    Args:
        ref: Hub repo id, optionally with ``@revision``, or a local directory written by ``save_pretrained``.
        name: what visitors see instead of ``ref`` (default: the Hub id, or the folder's base name).
        local_files_only: passed to ``from_pretrained``.

    Returns:
        The loaded checkpoint, in eval mode.

    Raises:
        InputError: if the checkpoint cannot be found or read, or is not a ComP model. Messages name the
            checkpoint by ``name``, never by a server-side path.
    """
    from transformers import AutoConfig, AutoModel  # the model stack loads on first use, with modeling_comp below

    ref = str(ref).strip()
    if not ref:
        raise InputError("no checkpoint given; choose one in the checkpoint selector")
    try:
        import modeling_comp  # noqa: F401 -- registers the ComP Auto classes
    except ImportError:
        raise InputError(
            "the comp-emotion package is not installed on this server (see the Space's requirements.txt)"
        ) from None
    local_dir = Path(ref).expanduser() if not is_hub_id(ref.partition("@")[0]) else None
    if local_dir is not None and not local_dir.is_dir():
        local_dir = None
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    if local_dir is not None:
        target = str(local_dir)
        shown = name or local_dir.name
    else:
        target, revision = split_revision(ref)
        if revision:
            kwargs["revision"] = revision
        shown = name or ref
    try:
        config = AutoConfig.from_pretrained(target, **kwargs)
    except Exception as err:  # noqa: BLE001 -- report any loading failure to the visitor
        raise InputError(f"cannot load checkpoint {shown!r} ({_reason(err, target)})") from None
    if getattr(config, "model_type", None) != "comp":
        raise InputError(
            f"checkpoint {shown!r} is a {getattr(config, 'model_type', 'unknown')!r} model, not a ComP ('comp') model"
        )
    from modeling_comp import load_comp_checkpoint

    try:
        # strict: a checkpoint missing a tensor (from_pretrained would initialise it afresh and serve noise) or
        # holding unexpected or mis-shaped ones is refused, naming the keys
        model = load_comp_checkpoint(target, model_class=AutoModel, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"cannot load the weights of checkpoint {shown!r} ({_reason(err, target)})") from None
    model.eval()
    saved_processor = _load_saved_processor(target, shown, kwargs)
    run_info = _read_run_info(target, local_dir, kwargs.get("revision"))
    synthetic = _says_synthetic(run_info) or any(
        _says_synthetic(getattr(config, attr, None)) for attr in ("provenance", "dataset_provenance")
    )
    loaded = LoadedCheckpoint(
        ref=ref, model=model, synthetic=synthetic, run_info=run_info, name=shown, saved_processor=saved_processor
    )
    if saved_processor is None:
        _LOG.warning("checkpoint %r: %s", shown, loaded.processor_origin)
    from modeling_comp.processing_comp import PROCESSOR_FILE

    try:
        loaded.processor.check_model_config(model.config)
    except ValueError as err:
        raise InputError(f"checkpoint {shown!r}: {PROCESSOR_FILE} does not fit its model ({err})") from None
    return loaded


def _load_saved_processor(target: str, shown: str, kwargs: dict[str, Any]) -> Any:
    """The checkpoint's ``preprocessor_config.json`` as a processor; ``None`` when it has none (a malformed one is
    refused: :class:`InputError` naming the field)."""
    from modeling_comp import ComPProcessor
    from modeling_comp.processing_comp import PROCESSOR_FILE

    local = Path(target)
    if local.is_dir():
        if not (local / PROCESSOR_FILE).is_file():
            return None
    else:
        from transformers.utils import cached_file

        hub = {k: v for k, v in kwargs.items() if k in ("revision", "local_files_only")}
        try:
            found = cached_file(target, PROCESSOR_FILE, _raise_exceptions_for_missing_entries=False, **hub)
        except OSError:  # unreachable or gated: treated as absent (the weights loaded already), and logged
            _LOG.warning("checkpoint %r: could not look for %s", shown, PROCESSOR_FILE)
            found = None
        if found is None:
            return None
    try:
        return ComPProcessor.from_pretrained(
            target, **{k: v for k, v in kwargs.items() if k in ("revision", "local_files_only")}
        )
    except Exception as err:  # noqa: BLE001 -- report any malformed processor file to the visitor
        raise InputError(f"cannot load the processor of checkpoint {shown!r} ({_reason(err, target)})") from None


def _reason(err: BaseException, target: str) -> str:
    """The first line of an exception, with the server-side location removed."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = text.replace(target, "<checkpoint>")
    text = re.sub(r"(/[^\s'\"]+)+", "<path>", text)
    return f"{type(err).__name__}: {text[:300]}"


class CheckpointStore:
    """The checkpoints a Space serves, loaded on first use and kept in a small LRU cache.

    Args:
        configured: display name -> Hub id or local path, chosen by the operator; the first is the default.
        allow_custom_hub_ids: whether visitors may type another Hub id (``org/name`` or ``org/name@revision``;
            never a local path).
        synthetic: refs known to be trained on the synthetic corpus (labelled so even without provenance).
        max_cached: how many models to keep in memory.
    """

    def __init__(
        self,
        configured: Mapping[str, str],
        *,
        allow_custom_hub_ids: bool = False,
        synthetic: set[str] | frozenset[str] = frozenset(),
        max_cached: int = 3,
    ) -> None:
        self.configured = dict(configured)
        self.allow_custom_hub_ids = allow_custom_hub_ids
        self.synthetic = set(synthetic)
        self.max_cached = max(1, int(max_cached))
        self._cache: OrderedDict[str, LoadedCheckpoint] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    @property
    def choices(self) -> list[str]:
        """Display names, default first."""
        return list(self.configured)

    def resolve(self, choice: str | None) -> tuple[str, bool]:
        """Map a selector value to ``(ref, configured)``.

        Raises:
            InputError: if the value is neither a configured name/ref nor an allowed Hub id.
        """
        choice = (choice or "").strip()
        if not choice:
            if not self.configured:
                raise InputError("no checkpoint configured; set COMP_CHECKPOINT")
            return next(iter(self.configured.values())), True
        if choice in self.configured:
            return self.configured[choice], True
        if choice in self.configured.values():
            return choice, True
        if not self.allow_custom_hub_ids:
            raise InputError(
                f"checkpoint {choice!r} is not one this Space serves; choose one of: {', '.join(self.configured)}"
            )
        if not is_hub_id(split_revision(choice)[0]):
            raise InputError(f"checkpoint {choice!r} is not a Hub model id of the form 'org/name' (or org/name@rev)")
        return choice, False

    def get(self, choice: str | None) -> LoadedCheckpoint:
        """Return the loaded checkpoint for a selector value (loading it on first use).

        Raises:
            InputError: if it cannot be resolved or loaded.
        """
        ref, configured = self.resolve(choice)
        with self._lock:
            if ref in self._cache:
                self._cache.move_to_end(ref)
                return self._cache[ref]
            loading = self._loading.setdefault(ref, threading.Lock())
        with loading:  # one load per ref even under concurrent requests
            with self._lock:
                if ref in self._cache:
                    return self._cache[ref]
            label = next((k for k, v in self.configured.items() if v == ref), None) if configured else None
            loaded = load_checkpoint(ref, name=label)
            if ref in self.synthetic:
                loaded.synthetic = True
            with self._lock:
                self._cache[ref] = loaded
                while len(self._cache) > self.max_cached:
                    self._cache.popitem(last=False)
        return loaded


if TYPE_CHECKING:
    from modeling_comp import ComPPrediction


def __getattr__(name: str) -> Any:
    # `ComPPrediction` (what one forward pass on one conversation gives, the library's inference contract; also
    # under its former name `ModelRun`), imported on first use: `import modeling_comp` happens in `load_checkpoint`,
    # which says in one line when the package is missing.
    if name in ("ComPPrediction", "ModelRun"):
        from modeling_comp import ComPPrediction

        return ComPPrediction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Prediction:
    """A conversation predicted twice: with the visitor's mask and with every available modality."""

    checkpoint: LoadedCheckpoint
    conversation: Conversation
    masked: ComPPrediction
    full: ComPPrediction


def model_inputs(checkpoint: LoadedCheckpoint, conversation: Conversation, mask: np.ndarray) -> dict[str, Any]:
    """The keyword arguments of one forward pass on one conversation (batch of one, no padding).

    This is the Space's only conversation -> tensors step, and it is the library's: the model's
    :class:`modeling_comp.ComPProcessor` pads, masks and checks (what a modality marked missing holds is never
    read, so it cannot matter).

    Args:
        checkpoint: the loaded checkpoint.
        conversation: a conversation already checked by :func:`validate_for_model`.
        mask: bool ``[n, 3]``.

    Returns:
        ``audio``/``text``/``video`` ``[1, n, dim]``, ``modality_mask`` ``[1, n, 3]``, ``attention_mask`` ``[1, n]``.

    Raises:
        InputError: the processor's one-line message when it refuses the conversation.
    """
    dtype = next(checkpoint.model.parameters()).dtype
    row: dict[str, Any] = {modality: conversation.features[modality] for modality in MODALITIES}
    row["modality_mask"] = np.asarray(mask, dtype=bool)
    try:
        batch = checkpoint.processor(row)
    except ValueError as err:
        raise InputError(str(err)) from None
    inputs: dict[str, Any] = {m: batch[m].to(dtype) for m in MODALITIES}
    inputs["modality_mask"] = batch["modality_mask"]
    inputs["attention_mask"] = batch["attention_mask"]
    return inputs


def run_model(checkpoint: LoadedCheckpoint, conversation: Conversation, mask: np.ndarray) -> ComPPrediction:
    """Run the model once on one conversation (inputs from :func:`model_inputs`).

    Args:
        checkpoint: the loaded checkpoint.
        conversation: a conversation already checked by :func:`validate_for_model`.
        mask: bool ``[n, 3]``.

    Returns:
        The processor's post-processed prediction (:class:`modeling_comp.ComPPrediction`).

    Raises:
        InputError: if the model's outputs are not finite (inputs far outside what it was trained on).
    """
    import torch

    inputs = model_inputs(checkpoint, conversation, np.asarray(mask, dtype=bool))
    with torch.inference_mode():
        out = checkpoint.model(**inputs)
    try:
        (prediction,) = checkpoint.processor.post_process(
            out, inputs["attention_mask"], inputs["modality_mask"], config=checkpoint.config
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    return prediction


def predict(checkpoint: LoadedCheckpoint, conversation: Conversation, mask: np.ndarray) -> Prediction:
    """Validate, then predict ``conversation`` with ``mask`` and with every available modality.

    Args:
        checkpoint: the loaded checkpoint.
        conversation: the conversation.
        mask: bool ``[n, 3]`` chosen by the visitor.

    Returns:
        Both runs.

    Raises:
        InputError: if the conversation or mask does not fit the checkpoint (see :func:`validate_for_model`).
    """
    validate_for_model(
        conversation,
        mask,
        dims=checkpoint.dims,
        max_utterances=checkpoint.max_utterances,
        checkpoint=f"checkpoint {checkpoint.name!r}",
    )
    masked = run_model(checkpoint, conversation, mask)
    full_mask = conversation.available
    full = (
        masked if np.array_equal(full_mask, masked.modality_mask) else run_model(checkpoint, conversation, full_mask)
    )
    return Prediction(checkpoint=checkpoint, conversation=conversation, masked=masked, full=full)
