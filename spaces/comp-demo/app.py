"""ComP Space: see cross-modal prompting predict emotions with modalities missing.

Run locally (from the repository root, or anywhere once ``comp-emotion`` is installed)::

    python spaces/comp-demo/app.py                      # serves the bundled synthetic checkpoint
    COMP_CHECKPOINT=org/comp-iemocap4 python spaces/comp-demo/app.py

Environment variables (all optional):

``COMP_CHECKPOINT``
    Default checkpoint: a Hub id or a local ``save_pretrained`` folder (default: ``checkpoint/`` next to this
    file, trained by our recipe on the synthetic corpus).
``COMP_CHECKPOINTS``
    More checkpoints for the selector, comma-separated, each ``ref`` or ``label=ref``.
``COMP_ALLOW_CUSTOM_CHECKPOINTS``
    ``1`` lets visitors type any Hub id ``org/name`` (loaded without remote code). Default ``0``.
``COMP_TRUST_REMOTE_CODE``
    ``auto`` (default: use the installed ``modeling_comp`` package, else the code stored in the configured
    checkpoints), ``1`` or ``0``.
``COMP_EXAMPLES``
    Parquet file of example conversations (default: ``examples.parquet`` next to this file: the held-out
    test split of the synthetic corpus).
``COMP_MAX_FILE_MB``
    Size limit per uploaded file (default 16).
``COMP_CONCURRENCY``
    Predictions served at the same time (default 2; further requests wait in the queue).
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
    Conversation,
    InputError,
    grid_from_mask,
    load_examples,
    mask_from_grid,
    parse_feature_files,
)
from comp_space.masks import MAX_RATE, draw_mask, realised_missing_rate  # noqa: E402
from comp_space.report import (  # noqa: E402
    WEIGHT_COLOURS,
    coordinator_frame,
    is_synthetic,
    prediction_table,
    probability_table,
    summary_markdown,
)


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
ASSETS_FILE = "assets.json"
PREDICTIONS_LABEL = "Per-utterance predictions (masked input vs all modalities)"
PROBABILITIES_LABEL = "Probabilities / scores (masked input vs all modalities)"

INTRO = """# ComP — emotion recognition with missing modalities

ComP (*Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition*, AAAI 2026) predicts an
emotion for every utterance of a conversation from audio, text and video features, and keeps working when some
of them are missing: prompts built from the observed modalities carry knowledge into the missing ones, and a
coordinator re-weights the modalities per utterance.

Pick a conversation, untick modalities in the grid (or draw a seeded mask at a chosen missing rate), and
compare the prediction on the masked input with the prediction from every modality.
"""

SYNTHETIC_NOTE = """**Synthetic data.** The bundled checkpoint was trained by our recipe on the built-in **synthetic**
corpus, and the bundled examples are its held-out synthetic test split: randomly generated features with
planted structure, *not* recordings of people. Its predictions show how the model behaves, not real
emotions. Load a checkpoint trained on real features (IEMOCAP, CMU-MOSI/MOSEI) to use your own data."""


WEIGHTS_LEGEND = """Coordinator weights per utterance (each bar sums to 1): **blue = audio, orange = text, green =
video**; a pale segment is a modality that is *missing* in the masked input — the coordinator is then weighting
the cross-modal reconstruction that knowledge propagation built for it from the observed modalities."""


@dataclass
class SpaceSettings:
    """What the Space serves; :meth:`from_env` reads the environment variables of the module docstring."""

    checkpoints: dict[str, str]
    examples_path: Path | None
    synthetic_refs: set[str] = field(default_factory=set)
    allow_custom_checkpoints: bool = False
    trust_remote_code: bool | None = None
    max_file_bytes: int = MAX_FILE_BYTES_DEFAULT
    concurrency: int = 2
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
        checkpoints = {label: default}
        for item in filter(None, (part.strip() for part in env.get("COMP_CHECKPOINTS", "").split(","))):
            name, _, ref = item.partition("=") if "=" in item else (item, "", item)
            if not ref.strip():
                raise ValueError(f"COMP_CHECKPOINTS: entry {item!r} has an empty reference; expected ref or label=ref")
            checkpoints[name.strip()] = ref.strip()
        examples = env.get("COMP_EXAMPLES", "").strip()
        examples_path = Path(examples) if examples else HERE / str(assets.get("examples", "examples.parquet"))

        def flag(name: str, default: str) -> str:
            value = env.get(name, default).strip().lower()
            if value not in ("0", "1", "true", "false", "auto", "yes", "no"):
                raise ValueError(f"{name}={value!r}: expected 0/1 (or auto)")
            return value

        trust = flag("COMP_TRUST_REMOTE_CODE", "auto")
        trust_remote_code = None if trust == "auto" else trust in ("1", "true", "yes")

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
            trust_remote_code=trust_remote_code,
            max_file_bytes=int(positive("COMP_MAX_FILE_MB", "16") * 2**20),
            concurrency=int(positive("COMP_CONCURRENCY", "2")),
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
            raise gr.Error(html.escape(f"unexpected error ({type(err).__name__}): {err}", quote=False)) from None

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
            trust_remote_code=settings.trust_remote_code,
            synthetic=settings.synthetic_refs,
        )
        self.examples: dict[str, Conversation] = {}
        self.examples_error = ""
        if settings.examples_path is not None:
            try:
                self.examples = load_examples(settings.examples_path, synthetic=True)
            except InputError as err:
                self.examples_error = str(err)
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
            drawn, method = draw_mask(conv.utterance_ids, rate, int(seed_value))
        except ValueError as err:
            raise InputError(str(err)) from None
        mask = drawn & conv.available
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:  # uploaded data lacking modalities: keep the first available one of such rows
            mask[empty, conv.available[empty].argmax(axis=1)] = True
        note = (
            f"Mask: requested rate {float(rate):.2f}, realised {realised_missing_rate(mask):.3f}, seed "
            f"{int(seed_value)}; drawn by {method}."
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
        f"`{ckpt.ref}` — dims audio {ckpt.dims['audio']}, text {ckpt.dims['text']}, video {ckpt.dims['video']}; "
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
    checkpoint_choices = [(label, ref) for label, ref in settings.checkpoints.items()]

    with gr.Blocks(title="ComP — incomplete multimodal emotion recognition", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(SYNTHETIC_NOTE, elem_id="synthetic-note")
        with gr.Row():
            checkpoint = gr.Dropdown(
                choices=checkpoint_choices,
                value=checkpoint_choices[0][1],
                allow_custom_value=settings.allow_custom_checkpoints,
                label="Checkpoint",
                info="Hub id or bundled folder"
                + (" — you may type another Hub id (org/name)" if settings.allow_custom_checkpoints else ""),
                elem_id="checkpoint",
                scale=3,
            )
            checkpoint_md = gr.Markdown(elem_id="checkpoint-info")
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
                value=0.5,
                step=0.05,
                label="Missing rate (≥ 0.667 keeps exactly one modality)",
                elem_id="rate",
            )
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
            draw_btn = gr.Button("Draw seeded mask", elem_id="draw-btn")
            all_btn = gr.Button("All present", elem_id="all-btn")
        mask_md = gr.Markdown(elem_id="mask-info")
        predict_btn = gr.Button("Predict", variant="primary", elem_id="predict-btn")
        summary = gr.Markdown(elem_id="summary")
        table = gr.Dataframe(
            label=PREDICTIONS_LABEL,
            interactive=False,
            elem_id="predictions",
            wrap=True,
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
                    height=320,
                )
                for run, elem in (("all modalities", "weights-all"), ("masked input", "weights-masked"))
            )
        gr.Markdown(WEIGHTS_LEGEND, elem_id="weights-legend")
        probs = gr.Dataframe(label=PROBABILITIES_LABEL, interactive=False, elem_id="probabilities")

        predict_inputs = [checkpoint, source, example, files, grid]
        predict_outputs = [summary, table, weights_all, weights_masked, probs]

        def predict_ui(checkpoint: Any, source: Any, example: Any, files: Any, grid: Any) -> tuple[Any, ...]:
            prediction = app.run(checkpoint, source, example, files, grid)
            summary_text, table_value, all_frame, masked_frame, probs_value = app.outputs(prediction)
            tag = " (synthetic)" if is_synthetic(prediction) else ""
            return (
                summary_text,
                gr.Dataframe(value=table_value, label=f"{PREDICTIONS_LABEL}{tag}"),
                gr.BarPlot(value=all_frame, title=f"Coordinator weights — all modalities{tag}"),
                gr.BarPlot(value=masked_frame, title=f"Coordinator weights — masked input{tag}"),
                gr.Dataframe(value=probs_value, label=f"{PROBABILITIES_LABEL}{tag}"),
            )

        predict_fn = _guard(predict_ui)

        def pick_example(choice: str | None) -> str:
            return SOURCE_EXAMPLE

        def picked_files(paths: Any) -> str:
            return SOURCE_FILES if paths else SOURCE_EXAMPLE

        checkpoint.change(_guard(app.checkpoint_info), checkpoint, checkpoint_md, api_name="checkpoint_info").success(
            predict_fn, predict_inputs, predict_outputs, api_name=False
        )
        load_fn = _guard(app.load)
        example.input(pick_example, example, source, api_name=False).then(
            load_fn, [checkpoint, source, example, files], [grid, conversation_md], api_name=False
        ).success(predict_fn, predict_inputs, predict_outputs, api_name=False)
        files.upload(picked_files, files, source, api_name=False).then(
            load_fn, [checkpoint, source, example, files], [grid, conversation_md], api_name=False
        ).success(predict_fn, predict_inputs, predict_outputs, api_name=False)

        def switch_source(ckpt: Any, src: Any, ex: Any, paths: Any) -> tuple[Any, Any]:
            if (src == SOURCE_FILES and not paths) or (src == SOURCE_EXAMPLE and not ex):
                return gr.skip(), gr.skip()  # nothing to load yet: no error for merely switching
            return load_fn(ckpt, src, ex, paths)

        source.input(switch_source, [checkpoint, source, example, files], [grid, conversation_md], api_name=False)
        draw_btn.click(
            _guard(app.draw_mask), [source, example, files, rate, seed], [grid, mask_md], api_name="draw_mask"
        ).success(predict_fn, predict_inputs, predict_outputs, api_name=False)
        all_btn.click(_guard(app.all_present), [source, example, files], grid, api_name="all_present").success(
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
        # API-only endpoints (hidden buttons): plain values, no display updates. `/load` reads a conversation
        # into its grid (the UI does that on selection/upload); `/predict` is the Predict button's computation.
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
        )
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
