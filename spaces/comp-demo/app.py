"""ComP Space: see cross-modal prompting predict emotions with modalities missing.

Run locally (from the repository root, or anywhere once ``comp-emotion`` is installed)::

    python spaces/comp-demo/app.py                      # serves the bundled synthetic checkpoint
    COMP_CHECKPOINT=org/comp-iemocap4 python spaces/comp-demo/app.py

Environment variables (all optional):

``COMP_CHECKPOINT``
    Default checkpoint: a Hub id (``org/name``, pinned as ``org/name@revision``) or a local ``save_pretrained``
    folder (default: ``checkpoint/`` next to this file, trained by our recipe on the synthetic corpus).
``COMP_CHECKPOINTS``
    More checkpoints for the selector, comma-separated, each ``ref`` or ``label=ref``.
``COMP_ALLOW_CUSTOM_CHECKPOINTS``
    ``1`` lets visitors type any Hub id ``org/name`` (or ``org/name@revision``). Default ``0``.
``COMP_EXAMPLES``
    Parquet file of example conversations (default: ``examples.parquet`` next to this file: the held-out
    test split of the synthetic corpus).
``COMP_MAX_FILE_MB``
    Size limit per uploaded file (default 16).
``COMP_CONCURRENCY``
    Predictions served at the same time (default 1: with 50 simultaneous clients on a shared 2-core CPU, limits
    2 and 4 gave no lower p95 than 1 in benchmarks/bench_space.py; further requests wait in the queue).
``COMP_TEXT_OFFLINE``
    ``1``: never download a text encoder (the "type a conversation" tab then works only with encoders already
    in the local cache). Default: follow ``HF_HUB_OFFLINE``.
``COMP_TORCH_THREADS``
    PyTorch intra-op threads (default 1: a ComP forward pass on one conversation is too small to gain from
    more, and one thread per concurrent prediction does not oversubscribe a busy CPU).
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the Space folder holds the comp_space helper package
    sys.path.insert(0, str(HERE))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from comp_space.inference import CheckpointStore, LoadedCheckpoint, Prediction, predict  # noqa: E402
from comp_space.inputs import (  # noqa: E402
    GRID_COLUMNS,
    MAX_FILE_BYTES_DEFAULT,
    MODALITIES,
    Conversation,
    InputError,
    grid_from_mask,
    load_examples,
    mask_from_grid,
    parse_feature_files,
)
from comp_space.report import (  # noqa: E402
    WEIGHT_COLOURS,
    column_widths,
    coordinator_frame,
    is_synthetic,
    prediction_table,
    probability_table,
    summary_markdown,
    typed_summary,
    typed_table,
)
from comp_space.text import (  # noqa: E402
    ExtractorStore,
    conversation_from_text,
    display_model_id,
    parse_conversation_text,
    read_transcript_file,
)

from hub_datasets.masks import rate_masks, realised_missing_rate, utterance_keys  # noqa: E402


#: From this rate on the ``rate`` protocol keeps exactly one modality per utterance.
MAX_RATE = 2.0 / 3.0


__all__ = [
    "SOURCE_EXAMPLE",
    "SOURCE_FILES",
    "SpaceApp",
    "SpaceSettings",
    "build_demo",
    "describe_checkpoint",
    "launch_options",
    "main",
]

logger = logging.getLogger("comp_space")

SOURCE_EXAMPLE = "Held-out synthetic example"
SOURCE_FILES = "My feature files"
SOURCE_TEXT = "Typed conversation"
ASSETS_FILE = "assets.json"
PREDICTIONS_LABEL = "Per-utterance predictions (masked input vs all modalities)"
PROBABILITIES_LABEL = "Probabilities / scores (masked input vs all modalities)"

INTRO = """# ComP — emotion recognition with missing modalities

ComP (*Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition*, AAAI 2026) predicts an
emotion for every utterance of a conversation from audio, text and video features, and keeps working when some
of them are missing: prompts built from the observed modalities carry knowledge into the missing ones, and a
coordinator re-weights the modalities per utterance.

Pick a conversation, untick modalities in the grid (or draw a seeded mask at a chosen missing rate), and
compare the prediction on the masked input with the prediction from every modality. Or type a conversation
(second tab): it is predicted from its text alone, with audio and video missing.
"""

SYNTHETIC_NOTE = """**Synthetic data.** The bundled checkpoint was trained by our recipe on the built-in **synthetic**
corpus, and the bundled examples are its held-out synthetic test split: randomly generated features with
planted structure, *not* recordings of people. Its predictions show how the model behaves, not real
emotions. Load a checkpoint trained on real features (IEMOCAP, CMU-MOSI/MOSEI) to use your own data."""


WEIGHTS_LEGEND = """Coordinator weights per utterance (each bar sums to 1); a pale segment is a modality that is
*missing* in the masked input — the coordinator is then weighting the cross-modal reconstruction that knowledge
propagation built for it from the observed modalities."""


def weights_legend_html() -> str:
    """The weight charts' legend: one colour swatch per modality, observed and missing."""
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="display:inline-block;width:14px;height:14px;margin-right:5px;background:{colour};'
        f'border:1px solid #888"></span>{html.escape(name)}</span>'
        for name, colour in WEIGHT_COLOURS.items()
    )
    return f'<div class="weights-legend-swatches" style="font-size:14px">{items}</div>'


@dataclass
class SpaceSettings:
    """What the Space serves; :meth:`from_env` reads the environment variables of the module docstring."""

    checkpoints: dict[str, str]
    examples_path: Path | None
    synthetic_refs: set[str] = field(default_factory=set)
    allow_custom_checkpoints: bool = False
    text_offline: bool | None = None
    max_file_bytes: int = MAX_FILE_BYTES_DEFAULT
    concurrency: int = 1
    torch_threads: int | None = None
    assets: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SpaceSettings:
        """Settings from environment variables (see the module docstring).

        Raises:
            ValueError: on a malformed variable, naming it and its value.
        """
        env = dict(os.environ if environ is None else environ)
        assets: dict[str, Any] = {}
        assets_path = HERE / ASSETS_FILE
        if assets_path.is_file():
            try:
                assets = json.loads(assets_path.read_text())
            except ValueError as err:
                raise ValueError(f"{assets_path}: not valid JSON ({err})") from None
        bundled = HERE / str(assets.get("checkpoint", "checkpoint"))
        default = env.get("COMP_CHECKPOINT", "").strip() or str(bundled)
        synthetic: set[str] = set()
        if default == str(bundled) and assets.get("synthetic", True):
            label = "bundled: ComP trained on the synthetic corpus (synthetic)"
            synthetic.add(default)
        else:
            label = default
            if label == default and Path(default).expanduser().is_dir():
                label = f"local: {Path(default).name}"  # never show a server-side path
        checkpoints = {label: default}
        for item in filter(None, (part.strip() for part in env.get("COMP_CHECKPOINTS", "").split(","))):
            name, _, ref = item.partition("=") if "=" in item else (item, "", item)
            if not ref.strip():
                raise ValueError(f"COMP_CHECKPOINTS: entry {item!r} has an empty reference; expected ref or label=ref")
            name = name.strip()
            if name == ref.strip() and Path(name).expanduser().is_dir():
                name = f"local: {Path(name).name}"
            checkpoints[name] = ref.strip()
        examples = env.get("COMP_EXAMPLES", "").strip()
        examples_path = Path(examples) if examples else HERE / str(assets.get("examples", "examples.parquet"))

        def flag(name: str, default: str) -> str:
            value = env.get(name, default).strip().lower()
            if value not in ("0", "1", "true", "false", "auto", "yes", "no"):
                raise ValueError(f"{name}={value!r}: expected 0/1 (or auto)")
            return value

        offline = flag("COMP_TEXT_OFFLINE", "auto")
        text_offline = None if offline == "auto" else offline in ("1", "true", "yes")

        def positive(name: str, default: str) -> float:
            raw = env.get(name, default)
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a positive number") from None
            if not value > 0:
                raise ValueError(f"{name}={raw!r}: expected a positive number")
            return value

        return cls(
            checkpoints=checkpoints,
            examples_path=examples_path,
            synthetic_refs=synthetic,
            allow_custom_checkpoints=flag("COMP_ALLOW_CUSTOM_CHECKPOINTS", "0") in ("1", "true", "yes"),
            text_offline=text_offline,
            max_file_bytes=int(positive("COMP_MAX_FILE_MB", "16") * 2**20),
            concurrency=int(positive("COMP_CONCURRENCY", "1")),
            torch_threads=int(positive("COMP_TORCH_THREADS", "1")),
            assets=assets,
        )


def launch_options(settings: SpaceSettings) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` that belong to the Space (not the host/port)."""
    # Gradio refuses bigger uploads outright; between the two limits the app's own check explains the problem.
    return {"max_file_size": 2 * settings.max_file_bytes, "show_error": True}


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure of a handler into a ``gr.Error`` with a readable message (HTML-escaped)."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error:
            raise
        except InputError as err:
            raise gr.Error(
                html.escape(str(err), quote=False), title="Cannot use this input", print_exception=False
            ) from None
        except Exception as err:  # noqa: BLE001 -- the server must survive anything a visitor sends
            logger.exception("unexpected error in %s", fn.__name__)
            text = re.sub(r"(/[^\s'\"]+)+", "<path>", str(err).splitlines()[0] if str(err) else "")[:300]
            raise gr.Error(html.escape(f"unexpected error ({type(err).__name__}): {text}", quote=False)) from None

    return wrapper


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
    def conversation(self, source: str | None, example: str | None, files: Any) -> Conversation:
        """The conversation the inputs point at.

        Raises:
            InputError: no example chosen / unknown example / bad files.
        """
        if source == SOURCE_FILES:
            if isinstance(files, (str, os.PathLike)):
                files = [files]
            paths = [getattr(f, "name", f) for f in (files or [])]
            return parse_feature_files(paths, max_file_bytes=self.settings.max_file_bytes)
        if not self.examples:
            raise InputError(f"no bundled examples are available ({self.examples_error or 'none loaded'})")
        if not example:
            raise InputError("choose an example conversation first")
        if example not in self.examples:
            raise InputError(f"unknown example {example!r}; choose one from the list")
        return self.examples[example]

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
        conv = self.conversation(source, example, files)
        note = ""
        if checkpoint:
            ckpt = self.store.get(checkpoint)
            note = _fit_note(ckpt, conv)
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
        conv = self.conversation(source, example, files)
        mask = mask_from_grid(grid, conv.num_utterances)
        ckpt = self.store.get(checkpoint)
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
            uploaded = parse_feature_files(
                [getattr(f, "name", f) for f in files], max_file_bytes=self.settings.max_file_bytes
            )
        extractor = self.text_extractor(ckpt)
        features = extractor(typed.texts, batch_size=32)
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


def _fit_note(ckpt: LoadedCheckpoint, conv: Conversation) -> str:
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


def build_demo(settings: SpaceSettings | None = None) -> gr.Blocks:
    """Build the Space's ``gr.Blocks`` (not launched).

    Args:
        settings: what to serve (default: :meth:`SpaceSettings.from_env`).

    Returns:
        The demo; call ``demo.launch(**launch_options(settings))``.
    """
    settings = settings or SpaceSettings.from_env()
    app = SpaceApp(settings)
    choices = app.example_choices()
    first_example = choices[0][1] if choices else None
    checkpoint_labels = list(settings.checkpoints)  # labels only: refs (maybe server paths) stay on the server

    with gr.Blocks(title="ComP — incomplete multimodal emotion recognition", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(SYNTHETIC_NOTE, elem_id="synthetic-note")
        with gr.Row():
            checkpoint = gr.Dropdown(
                choices=checkpoint_labels,
                value=checkpoint_labels[0],
                allow_custom_value=settings.allow_custom_checkpoints,
                label="Checkpoint",
                info="Hub id or bundled checkpoint"
                + (
                    " — you may type another Hub id (org/name or org/name@revision)"
                    if settings.allow_custom_checkpoints
                    else ""
                ),
                elem_id="checkpoint",
                scale=3,
            )
            checkpoint_md = gr.Markdown(elem_id="checkpoint-info")
        with gr.Tabs():
            with gr.Tab("Example or feature files", id="features-tab"):
                source = gr.Radio(
                    [SOURCE_EXAMPLE, SOURCE_FILES],
                    value=SOURCE_EXAMPLE if choices else SOURCE_FILES,
                    label="Conversation",
                    elem_id="source",
                )
                with gr.Row():
                    example = gr.Dropdown(
                        choices=choices,
                        value=first_example,
                        label="Held-out synthetic conversation (synthetic test split)",
                        elem_id="example",
                    )
                    files = gr.File(
                        file_count="multiple",
                        file_types=[".npy", ".npz", ".parquet"],
                        type="filepath",
                        label="Your features: audio/text/video .npy|.npz ([utterances, dim]) or one .npz/.parquet",
                        elem_id="files",
                    )
                conversation_md = gr.Markdown(elem_id="conversation-info")
                grid = gr.Dataframe(
                    headers=list(GRID_COLUMNS),
                    datatype=["number", "str", "bool", "bool", "bool"],
                    static_columns=[0, 1],
                    interactive=True,
                    label="Present / missing per utterance (ticked = observed)",
                    elem_id="grid",
                    max_height=420,
                )
                with gr.Row():
                    rate = gr.Slider(
                        0.0,
                        0.7,
                        value=0.0,  # the first grid has every modality present: the slider says so
                        step=0.05,
                        label="Missing rate of the next drawn mask (≥ 0.667 keeps exactly one modality)",
                        elem_id="rate",
                    )
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
                    draw_btn = gr.Button("Draw seeded mask", elem_id="draw-btn")
                    all_btn = gr.Button("All present", elem_id="all-btn")
                mask_md = gr.Markdown("Mask: every available modality present (missing rate 0).", elem_id="mask-info")
                predict_btn = gr.Button("Predict", variant="primary", elem_id="predict-btn")
                summary = gr.Markdown(elem_id="summary")
                table = gr.Dataframe(
                    label=PREDICTIONS_LABEL,
                    interactive=False,
                    elem_id="predictions",
                    wrap=False,
                    max_height=520,
                )
                with gr.Row():
                    weights_all, weights_masked = (
                        gr.BarPlot(
                            x="utterance",
                            y="weight",
                            color="modality",
                            color_map=WEIGHT_COLOURS,
                            y_lim=[0, 1],
                            y_aggregate="sum",
                            sort="x",
                            title=f"Coordinator weights — {run}",
                            label=f"Coordinator weights, {run}",
                            elem_id=elem,
                            height=380,
                            colors_in_legend=[],  # the chart library clips its own legend: weights_legend_html() shows it
                        )
                        for run, elem in (("all modalities", "weights-all"), ("masked input", "weights-masked"))
                    )
                gr.HTML(weights_legend_html(), elem_id="weights-swatches")
                gr.Markdown(WEIGHTS_LEGEND, elem_id="weights-legend")
                probs = gr.Dataframe(
                    label=PROBABILITIES_LABEL, interactive=False, elem_id="probabilities", wrap=False, max_height=520
                )
            with gr.Tab("Type a conversation", id="text-tab"):
                text_status = gr.Markdown(elem_id="text-status")
                typed = gr.Textbox(
                    lines=8,
                    max_lines=40,
                    label="Conversation: one utterance per line, optionally prefixed 'speaker:'",
                    placeholder="A: I can't believe you did that.\nB: I'm sorry, I didn't mean to.\nA: Whatever.",
                    elem_id="typed",
                )
                with gr.Row():
                    transcript_file = gr.File(
                        file_types=[".txt"],
                        type="filepath",
                        label="…or upload the transcript (.txt, one utterance per line)",
                        elem_id="transcript-file",
                    )
                    typed_files = gr.File(
                        file_count="multiple",
                        file_types=[".npy", ".npz", ".parquet"],
                        type="filepath",
                        label="Optional: audio/video features of the same utterances (added back to the text)",
                        elem_id="typed-files",
                    )
                typed_btn = gr.Button("Predict from text", variant="primary", elem_id="typed-btn")
                typed_md = gr.Markdown(elem_id="typed-summary")
                typed_results = gr.Dataframe(
                    label="Per-utterance predictions from the typed text",
                    interactive=False,
                    elem_id="typed-predictions",
                    wrap=False,
                    max_height=520,
                )
                typed_weights = gr.BarPlot(
                    x="utterance",
                    y="weight",
                    color="modality",
                    color_map=WEIGHT_COLOURS,
                    y_lim=[0, 1],
                    y_aggregate="sum",
                    sort="x",
                    title="Coordinator weights — typed text (audio, video missing)",
                    label="Coordinator weights, typed text",
                    elem_id="typed-weights",
                    height=380,
                    colors_in_legend=[],  # the chart library clips its own legend: weights_legend_html() shows it
                )
                gr.HTML(weights_legend_html(), elem_id="typed-weights-swatches")

        predict_inputs = [checkpoint, source, example, files, grid]
        predict_outputs = [summary, table, weights_all, weights_masked, probs]

        def predict_ui(checkpoint: Any, source: Any, example: Any, files: Any, grid: Any) -> tuple[Any, ...]:
            prediction = app.run(checkpoint, source, example, files, grid)
            summary_text, table_value, all_frame, masked_frame, probs_value = app.outputs(prediction)
            tag = " (synthetic)" if is_synthetic(prediction) else ""
            return (
                summary_text,
                gr.Dataframe(
                    value=table_value, label=f"{PREDICTIONS_LABEL}{tag}", column_widths=column_widths(table_value)
                ),
                gr.BarPlot(value=all_frame, title=f"Coordinator weights — all modalities{tag}"),
                gr.BarPlot(value=masked_frame, title=f"Coordinator weights — masked input{tag}"),
                gr.Dataframe(
                    value=probs_value, label=f"{PROBABILITIES_LABEL}{tag}", column_widths=column_widths(probs_value)
                ),
            )

        predict_fn = _guard(predict_ui)

        def cleared() -> tuple[Any, ...]:
            """Empty results: a failed load or prediction never leaves the previous conversation's on the page."""
            return ("", None, None, None, None)

        def pick_example(choice: str | None) -> str:
            return SOURCE_EXAMPLE

        def picked_files(paths: Any) -> str:
            return SOURCE_FILES if paths else SOURCE_EXAMPLE

        load_fn = _guard(app.load)

        def load_ui(ckpt: Any, src: Any, ex: Any, paths: Any) -> tuple[Any, ...]:
            grid_value, text = load_fn(ckpt, src, ex, paths)
            return grid_value, text, 0.0, "Mask: every available modality present (missing rate 0)."

        load_outputs = [grid, conversation_md, rate, mask_md]
        checkpoint.change(_guard(app.checkpoint_info), checkpoint, checkpoint_md, api_name="checkpoint_info").then(
            cleared, None, predict_outputs, api_name=False
        ).then(predict_fn, predict_inputs, predict_outputs, api_name=False).then(
            app.text_status, checkpoint, text_status, api_name=False
        )
        example.input(pick_example, example, source, api_name=False).then(
            cleared, None, predict_outputs, api_name=False
        ).then(load_ui, [checkpoint, source, example, files], load_outputs, api_name=False).success(
            predict_fn, predict_inputs, predict_outputs, api_name=False
        )
        files.upload(picked_files, files, source, api_name=False).then(
            cleared, None, predict_outputs, api_name=False
        ).then(load_ui, [checkpoint, source, example, files], load_outputs, api_name=False).success(
            predict_fn, predict_inputs, predict_outputs, api_name=False
        )

        def switch_source(ckpt: Any, src: Any, ex: Any, paths: Any) -> tuple[Any, ...]:
            if (src == SOURCE_FILES and not paths) or (src == SOURCE_EXAMPLE and not ex):
                return (gr.skip(),) * len(load_outputs)  # nothing to load yet: no error for merely switching
            return load_ui(ckpt, src, ex, paths)

        source.input(cleared, None, predict_outputs, api_name=False).then(
            switch_source, [checkpoint, source, example, files], load_outputs, api_name=False
        )
        draw_btn.click(
            _guard(app.draw_mask), [source, example, files, rate, seed], [grid, mask_md], api_name="draw_mask"
        ).success(predict_fn, predict_inputs, predict_outputs, api_name=False)

        def all_present_ui(src: Any, ex: Any, paths: Any) -> tuple[Any, ...]:
            return (
                _guard(app.all_present)(src, ex, paths),
                0.0,
                "Mask: every available modality present (missing rate 0).",
            )

        all_btn.click(all_present_ui, [source, example, files], [grid, rate, mask_md], api_name=False).success(
            predict_fn, predict_inputs, predict_outputs, api_name=False
        )
        predict_btn.click(
            predict_fn,
            predict_inputs,
            predict_outputs,
            api_name=False,
            concurrency_limit=settings.concurrency,
            concurrency_id="model",
        )

        typed_inputs = [checkpoint, typed, transcript_file, typed_files]
        typed_outputs = [typed_md, typed_results, typed_weights]

        def typed_ui(ckpt: Any, text: Any, transcript: Any, paths: Any) -> tuple[Any, ...]:
            summary_text, frame, weights = app.typed_outputs(ckpt, text, transcript, paths)
            return summary_text, gr.Dataframe(value=frame, column_widths=column_widths(frame)), weights

        def cleared_typed() -> tuple[Any, ...]:
            return ("", None, None)

        typed_btn.click(cleared_typed, None, typed_outputs, api_name=False).then(
            _guard(typed_ui),
            typed_inputs,
            typed_outputs,
            api_name=False,
            concurrency_limit=settings.concurrency,
            concurrency_id="model",
        )
        # API-only endpoints (hidden buttons): plain values, no display updates. `/load` reads a conversation
        # into its grid (the UI does that on selection/upload); `/predict` is the Predict button's computation;
        # `/predict_text` featurizes and predicts a typed conversation.
        gr.Button(visible=False).click(
            load_fn, [checkpoint, source, example, files], [grid, conversation_md], api_name="load"
        )
        gr.Button(visible=False).click(
            _guard(app.predict_outputs),
            predict_inputs,
            predict_outputs,
            api_name="predict",
            concurrency_limit=settings.concurrency,
            concurrency_id="model",
        )
        gr.Button(visible=False).click(
            _guard(app.typed_outputs),
            typed_inputs,
            typed_outputs,
            api_name="predict_text",
            concurrency_limit=settings.concurrency,
            concurrency_id="model",
        )
        gr.Button(visible=False).click(_guard(app.all_present), [source, example, files], grid, api_name="all_present")

        def first_page(ckpt: str | None, src: str | None, ex: str | None) -> tuple[Any, ...]:
            info = _guard(app.checkpoint_info)(ckpt)
            if src != SOURCE_EXAMPLE or not ex:
                return (info, *[gr.skip()] * (2 + len(predict_outputs)))
            grid_value, conv_text = load_fn(ckpt, src, ex, None)
            outputs = predict_fn(ckpt, src, ex, None, grid_value)
            return (info, grid_value, conv_text, *outputs)

        demo.load(
            first_page,
            [checkpoint, source, example],
            [checkpoint_md, grid, conversation_md, *predict_outputs],
            api_name=False,
        ).then(app.text_status, checkpoint, text_status, api_name=False)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=256)
    demo.comp_app = app  # handlers, for tests and benchmarks
    return demo


def main() -> None:
    """Entry point of ``python app.py`` (what a Space runs)."""
    logging.basicConfig(level=logging.INFO)
    settings = SpaceSettings.from_env()
    demo = build_demo(settings)
    demo.launch(**launch_options(settings))


if __name__ == "__main__":
    main()
