"""The Space's handlers as plain Python (:class:`SpaceApp`): what each button computes, without Gradio.

``app.py`` lays these out in a ``gradio.Blocks`` page; tests and benchmarks call them directly.
"""

from __future__ import annotations

import html
import logging
import os
from typing import Any

import numpy as np

from hub_datasets.masks import rate_masks, realised_missing_rate, utterance_keys

from .inference import CheckpointStore, LoadedCheckpoint, Prediction, predict
from .inputs import (
    MODALITIES,
    Conversation,
    InputError,
    grid_from_mask,
    load_examples,
    mask_from_grid,
    parse_feature_files,
)
from .report import (
    coordinator_frame,
    prediction_table,
    probability_table,
    summary_markdown,
    typed_summary,
    typed_table,
)
from .settings import SpaceSettings
from .text import (
    ExtractorStore,
    conversation_from_text,
    display_model_id,
    parse_conversation_text,
    read_transcript_file,
)


__all__ = ["MAX_RATE", "SOURCE_EXAMPLE", "SOURCE_FILES", "SpaceApp", "describe_checkpoint", "fit_note"]

logger = logging.getLogger("comp_space")

#: From this rate on the ``rate`` protocol keeps exactly one modality per utterance.
MAX_RATE = 2.0 / 3.0
SOURCE_EXAMPLE = "Held-out synthetic example"
SOURCE_FILES = "My feature files"


class SpaceApp:
    """The Space's handlers, bound to one :class:`SpaceSettings` (usable without a browser)."""

    def __init__(self, settings: SpaceSettings) -> None:
        self.settings = settings
        if settings.torch_threads is not None:  # process-wide, like any torch thread setting
            import torch

            torch.set_num_threads(settings.torch_threads)
        self.store = CheckpointStore(
            settings.checkpoints,
            allow_custom_hub_ids=settings.allow_custom_checkpoints,
            synthetic=settings.synthetic_refs,
        )
        self.extractors = ExtractorStore(local_files_only=settings.text_offline)
        self.examples: dict[str, Conversation] = {}
        self.examples_error = ""
        if settings.examples_path is not None:
            try:
                self.examples = load_examples(settings.examples_path, synthetic=True)
            except InputError as err:
                self.examples_error = "the example set could not be read"
                logger.warning("no examples: %s", err)

    # ------------------------------------------------------------------------------------- helpers
    def conversation(
        self, source: str | None, example: str | None, files: Any, ckpt: LoadedCheckpoint | None = None
    ) -> Conversation:
        """The conversation the inputs point at (uploads bounded by ``ckpt``'s ``max_utterances`` when given).

        Raises:
            InputError: no example chosen / unknown example / bad files.
        """
        if source == SOURCE_FILES:
            return self.uploaded(files, ckpt)
        if not self.examples:
            raise InputError(f"no bundled examples are available ({self.examples_error or 'none loaded'})")
        if not example:
            raise InputError("choose an example conversation first")
        if example not in self.examples:
            raise InputError(f"unknown example {example!r}; choose one from the list")
        return self.examples[example]

    def uploaded(self, files: Any, ckpt: LoadedCheckpoint | None = None) -> Conversation:
        """Read uploaded feature files; sizes are checked from headers and footers before any data is decoded.

        Raises:
            InputError: for every problem with the files (see :func:`comp_space.inputs.parse_feature_files`).
        """
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        paths = [getattr(f, "name", f) for f in (files or [])]
        return parse_feature_files(
            paths,
            max_file_bytes=self.settings.max_file_bytes,
            max_utterances=None if ckpt is None else ckpt.max_utterances,
        )

    def example_choices(self) -> list[tuple[str, str]]:
        """(label, dialog id) pairs for the example selector, labelled synthetic."""
        return [(f"{key} — {conv.num_utterances} utterances (synthetic)", key) for key, conv in self.examples.items()]

    # ------------------------------------------------------------------------------------- handlers
    def checkpoint_info(self, choice: str | None) -> str:
        """Markdown describing the selected checkpoint (loads it)."""
        ckpt = self.store.get(choice)
        return describe_checkpoint(ckpt)

    def load(self, checkpoint: str | None, source: str | None, example: str | None, files: Any) -> tuple[Any, str]:
        """Read a conversation; return its present/missing grid and a description."""
        ckpt = self.store.get(checkpoint) if checkpoint else None
        conv = self.conversation(source, example, files, ckpt)  # an upload too long for ckpt is refused here
        note = fit_note(ckpt, conv) if ckpt is not None else ""
        text = f"**{html.escape(conv.source, quote=False)}** — {conv.num_utterances} utterances."
        if conv.synthetic:
            text += " Synthetic data (features generated by the built-in synthetic corpus, not real recordings)."
        missing = [m for m, d in conv.dims.items() if d is None]
        if missing:
            text += f" No {', '.join(missing)} features given: treated as missing everywhere."
        return grid_from_mask(conv), text + note

    def draw_mask(
        self, source: str | None, example: str | None, files: Any, rate: float, seed: float
    ) -> tuple[Any, str]:
        """A seeded ``rate``-protocol mask for the current conversation: its grid and a provenance line."""
        conv = self.conversation(source, example, files)
        try:
            seed_value = float(seed)
        except (TypeError, ValueError):
            raise InputError(f"seed must be a non-negative whole number, got {seed!r}") from None
        if not np.isfinite(seed_value) or seed_value < 0 or not seed_value.is_integer():
            raise InputError(f"seed must be a non-negative whole number, got {seed!r}")
        try:
            drawn = rate_masks(utterance_keys(conv.utterance_ids), float(rate), seed=int(seed_value), role="eval")
        except (TypeError, ValueError) as err:
            raise InputError(str(err)) from None
        drawn = drawn.astype(bool)
        mask = drawn & conv.available
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:  # uploaded data lacking modalities: keep the first available one of such rows
            mask[empty, conv.available[empty].argmax(axis=1)] = True
        note = (
            f"Mask: requested rate {float(rate):.2f}, realised {realised_missing_rate(mask):.3f}, seed "
            f"{int(seed_value)}; the evaluation masks of hub_datasets for these utterance ids."
        )
        if float(rate) >= MAX_RATE:
            note += " From 0.667 on, exactly one modality is kept per utterance (0.7 realises 0.667)."
        if empty.size:
            note += f" {empty.size} utterance(s) kept their only available modality."
        return grid_from_mask(conv, mask), note

    def all_present(self, source: str | None, example: str | None, files: Any) -> Any:
        """Grid with every available modality observed."""
        conv = self.conversation(source, example, files)
        return grid_from_mask(conv, conv.available)

    def run(
        self, checkpoint: str | None, source: str | None, example: str | None, files: Any, grid: Any
    ) -> Prediction:
        """Predict the conversation with the grid's mask and with all modalities."""
        ckpt = self.store.get(checkpoint)
        conv = self.conversation(source, example, files, ckpt)
        mask = mask_from_grid(grid, conv.num_utterances)
        return predict(ckpt, conv, mask)

    def predict_outputs(
        self, checkpoint: str | None, source: str | None, example: str | None, files: Any, grid: Any
    ) -> tuple[str, Any, Any, Any, Any]:
        """What the Predict button shows: summary, predictions table, coordinator weights (all modalities, then
        masked input) and the probabilities table."""
        return self.outputs(self.run(checkpoint, source, example, files, grid))

    # ------------------------------------------------------------------------------ typed conversation
    def text_extractor(self, ckpt: LoadedCheckpoint) -> Any:
        """The loaded text extractor the checkpoint records.

        Raises:
            InputError: the checkpoint records none, it cannot be loaded here, or its width does not fit.
        """
        record = ckpt.text_extractor
        if record is None:
            raise InputError(
                f"checkpoint {ckpt.name!r} records no text extractor (config.modality_features['text']), so typed "
                "text cannot be turned into its features; choose a checkpoint trained on features of a known encoder"
            )
        extractor = self.extractors.get(record)
        if extractor.dim != ckpt.dims["text"]:
            raise InputError(
                f"the recorded text encoder gives {extractor.dim}-d features but checkpoint {ckpt.name!r} expects "
                f"text_dim = {ckpt.dims['text']}"
            )
        return extractor

    def text_status(self, checkpoint: str | None) -> str:
        """One line under the "type a conversation" tab: which encoder featurizes the text, or why none can."""
        try:
            ckpt = self.store.get(checkpoint)
            record = ckpt.text_extractor
            self.text_extractor(ckpt)
        except InputError as err:
            return f"⚠️ {html.escape(str(err), quote=False)}"
        except Exception as err:  # noqa: BLE001 -- a status line must never break the page
            logger.exception("text status")
            return f"⚠️ typing a conversation is unavailable ({type(err).__name__})"
        layers = ", ".join(str(i) for i in record.get("layers", []))
        return (
            f"Text features: `{display_model_id(record.get('model_id'))}`, hidden layers [{layers}], "
            f"pooling `{html.escape(str(record.get('pooling')), quote=False)}` — as the checkpoint was trained. "
            "Audio and video are missing unless you add their features below."
        )

    def predict_text(
        self, checkpoint: str | None, text: str | None, transcript: Any, files: Any
    ) -> tuple[Prediction, bool]:
        """Featurize a typed (or uploaded) conversation and predict it.

        Returns:
            ``(prediction, added)``: ``prediction.masked`` is the text-only run; ``prediction.full`` adds the
            uploaded audio/video (the same run when none was uploaded); ``added`` says whether any was.
        """
        ckpt = self.store.get(checkpoint)
        if transcript:
            path = getattr(transcript, "name", transcript)
            if text and str(text).strip():
                raise InputError("give the conversation either typed or as a .txt upload, not both")
            text = read_transcript_file(path)
        typed = parse_conversation_text(text, max_utterances=ckpt.max_utterances)
        uploaded = None
        if files:
            if isinstance(files, (str, os.PathLike)):
                files = [files]
            uploaded = self.uploaded(files, ckpt)
        extractor = self.text_extractor(ckpt)
        features = extractor(typed.encoder_texts or typed.texts, batch_size=32)
        conv = conversation_from_text(typed, features, uploaded=uploaded)
        text_only = np.zeros((conv.num_utterances, 3), dtype=bool)
        text_only[:, MODALITIES.index("text")] = True
        return predict(ckpt, conv, text_only), uploaded is not None

    def typed_outputs(
        self, checkpoint: str | None, text: str | None, transcript: Any, files: Any
    ) -> tuple[str, Any, Any]:
        """What the typed-conversation Predict button shows: summary, per-utterance table, coordinator weights."""
        prediction, added = self.predict_text(checkpoint, text, transcript, files)
        return (
            typed_summary(prediction, added),
            typed_table(prediction, added),
            coordinator_frame(prediction, "masked"),
        )

    @staticmethod
    def outputs(prediction: Prediction) -> tuple[str, Any, Any, Any, Any]:
        """The five displayed values of a prediction (see :meth:`predict_outputs`)."""
        return (
            summary_markdown(prediction),
            prediction_table(prediction),
            coordinator_frame(prediction, "all"),
            coordinator_frame(prediction, "masked"),
            probability_table(prediction),
        )


_SHOWN_METRICS = ("accuracy", "unweighted_accuracy", "weighted_f1", "acc2", "f1", "mae", "corr")


def describe_checkpoint(ckpt: LoadedCheckpoint) -> str:
    """One paragraph about a loaded checkpoint."""
    cfg = ckpt.config
    task = "sentiment score (regression)" if ckpt.is_regression else "classes: " + ", ".join(ckpt.label_names)
    text = (
        f"`{ckpt.name}` — dims audio {ckpt.dims['audio']}, text {ckpt.dims['text']}, video {ckpt.dims['video']}; "
        f"at most {ckpt.max_utterances} utterances; {task}; hidden size {getattr(cfg, 'hidden_size', '?')}; "
        f"stage {ckpt.training_stage}."
    )
    if ckpt.synthetic:
        text += " **Trained on the synthetic corpus** — its outputs are not real emotion predictions."
    metrics = ckpt.test_metrics
    if metrics:
        shown = [
            f"{name.replace('_', ' ')} {100 * float(metrics[name]):.1f} %"
            if name not in ("mae", "corr")
            else f"{name} {float(metrics[name]):.3f}"
            for name in _SHOWN_METRICS
            if isinstance(metrics.get(name), (int, float))
        ]
        config = (ckpt.run_info or {}).get("config") or {}
        rate = config.get("missing_rate")
        where = "synthetic test split" if ckpt.synthetic else "test split"
        if shown:
            text += (
                f" Recipe's {where} metrics at the selected epoch"
                + (f" (missing rate {rate})" if rate is not None else "")
                + ": "
                + ", ".join(shown)
                + "."
            )
    return text


def fit_note(ckpt: LoadedCheckpoint, conv: Conversation) -> str:
    problems = [
        f"{m} has {d} dims (checkpoint: {ckpt.dims[m]})"
        for m, d in conv.dims.items()
        if d is not None and d != ckpt.dims[m]
    ]
    if conv.num_utterances > ckpt.max_utterances:
        problems.append(f"{conv.num_utterances} utterances (checkpoint: at most {ckpt.max_utterances})")
    if problems:
        return " **Does not fit the selected checkpoint:** " + "; ".join(problems) + "."
    return ""
