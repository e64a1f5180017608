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
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the Space folder holds the comp_space helper package
    sys.path.insert(0, str(HERE))

import gradio as gr  # noqa: E402
from comp_space.inputs import GRID_COLUMNS, InputError  # noqa: E402
from comp_space.report import WEIGHT_COLOURS, column_widths, is_synthetic  # noqa: E402
from comp_space.service import SOURCE_EXAMPLE, SOURCE_FILES, SpaceApp, describe_checkpoint  # noqa: E402
from comp_space.settings import SpaceSettings, launch_options  # noqa: E402
from comp_space.ui_text import (  # noqa: E402
    INTRO,
    PREDICTIONS_LABEL,
    PROBABILITIES_LABEL,
    SYNTHETIC_NOTE,
    WEIGHTS_LEGEND,
    weights_legend_html,
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
ALL_PRESENT_NOTE = "Mask: every available modality present (missing rate 0)."


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


def _weights_chart(title: str, label: str, elem_id: str) -> gr.BarPlot:
    return gr.BarPlot(
        x="utterance",
        y="weight",
        color="modality",
        color_map=WEIGHT_COLOURS,
        y_lim=[0, 1],
        y_aggregate="sum",
        sort="x",
        title=title,
        label=label,
        elem_id=elem_id,
        height=380,
        colors_in_legend=[],  # the chart library clips its own legend: weights_legend_html() shows it
    )


def _feature_files(label: str, elem_id: str) -> gr.File:
    return gr.File(
        file_count="multiple", file_types=[".npy", ".npz", ".parquet"], type="filepath", label=label, elem_id=elem_id
    )


def _checkpoint_row(settings: SpaceSettings) -> SimpleNamespace:
    """The checkpoint selector and its description (labels only: refs, maybe server paths, stay on the server)."""
    labels = list(settings.checkpoints)
    custom = " — you may type another Hub id (org/name or org/name@revision)"
    with gr.Row():
        checkpoint = gr.Dropdown(
            choices=labels,
            value=labels[0],
            allow_custom_value=settings.allow_custom_checkpoints,
            label="Checkpoint",
            info="Hub id or bundled checkpoint" + (custom if settings.allow_custom_checkpoints else ""),
            elem_id="checkpoint",
            scale=3,
        )
        info = gr.Markdown(elem_id="checkpoint-info")
    return SimpleNamespace(checkpoint=checkpoint, info=info)


def _features_tab(app: SpaceApp) -> SimpleNamespace:
    """The "Example or feature files" tab's components."""
    choices = app.example_choices()
    ui = SimpleNamespace()
    ui.source = gr.Radio(
        [SOURCE_EXAMPLE, SOURCE_FILES],
        value=SOURCE_EXAMPLE if choices else SOURCE_FILES,
        label="Conversation",
        elem_id="source",
    )
    with gr.Row():
        ui.example = gr.Dropdown(
            choices=choices,
            value=choices[0][1] if choices else None,
            label="Held-out synthetic conversation (synthetic test split)",
            elem_id="example",
        )
        ui.files = _feature_files(
            "Your features: audio/text/video .npy|.npz ([utterances, dim]) or one .npz/.parquet", "files"
        )
    ui.conversation = gr.Markdown(elem_id="conversation-info")
    ui.grid = gr.Dataframe(
        headers=list(GRID_COLUMNS),
        datatype=["number", "str", "bool", "bool", "bool"],
        static_columns=[0, 1],
        interactive=True,
        label="Present / missing per utterance (ticked = observed)",
        elem_id="grid",
        max_height=420,
    )
    with gr.Row():
        ui.rate = gr.Slider(
            0.0,
            0.7,
            value=0.0,  # the first grid has every modality present: the slider says so
            step=0.05,
            label="Missing rate of the next drawn mask (≥ 0.667 keeps exactly one modality)",
            elem_id="rate",
        )
        ui.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
        ui.draw = gr.Button("Draw seeded mask", elem_id="draw-btn")
        ui.all_present = gr.Button("All present", elem_id="all-btn")
    ui.mask = gr.Markdown("Mask: every available modality present (missing rate 0).", elem_id="mask-info")
    ui.predict = gr.Button("Predict", variant="primary", elem_id="predict-btn")
    ui.summary = gr.Markdown(elem_id="summary")
    ui.table = gr.Dataframe(
        label=PREDICTIONS_LABEL, interactive=False, elem_id="predictions", wrap=False, max_height=520
    )
    with gr.Row():
        ui.weights_all = _weights_chart(
            "Coordinator weights — all modalities", "Coordinator weights, all modalities", "weights-all"
        )
        ui.weights_masked = _weights_chart(
            "Coordinator weights — masked input", "Coordinator weights, masked input", "weights-masked"
        )
    gr.HTML(weights_legend_html(), elem_id="weights-swatches")
    gr.Markdown(WEIGHTS_LEGEND, elem_id="weights-legend")
    ui.probs = gr.Dataframe(
        label=PROBABILITIES_LABEL, interactive=False, elem_id="probabilities", wrap=False, max_height=520
    )
    return ui


def _text_tab() -> SimpleNamespace:
    """The "Type a conversation" tab's components."""
    ui = SimpleNamespace()
    ui.status = gr.Markdown(elem_id="text-status")
    ui.typed = gr.Textbox(
        lines=8,
        max_lines=40,
        label="Conversation: one utterance per line, optionally prefixed 'speaker:'",
        placeholder="A: I can't believe you did that.\nB: I'm sorry, I didn't mean to.\nA: Whatever.",
        elem_id="typed",
    )
    with gr.Row():
        ui.transcript = gr.File(
            file_types=[".txt"],
            type="filepath",
            label="…or upload the transcript (.txt, one utterance per line)",
            elem_id="transcript-file",
        )
        ui.files = _feature_files(
            "Optional: audio/video features of the same utterances (added back to the text)", "typed-files"
        )
    ui.predict = gr.Button("Predict from text", variant="primary", elem_id="typed-btn")
    ui.summary = gr.Markdown(elem_id="typed-summary")
    ui.table = gr.Dataframe(
        label="Per-utterance predictions from the typed text",
        interactive=False,
        elem_id="typed-predictions",
        wrap=False,
        max_height=520,
    )
    ui.weights = _weights_chart(
        "Coordinator weights — typed text (audio, video missing)", "Coordinator weights, typed text", "typed-weights"
    )
    gr.HTML(weights_legend_html(), elem_id="typed-weights-swatches")
    return ui


def _wire_features(app: SpaceApp, settings: SpaceSettings, top: SimpleNamespace, ui: SimpleNamespace) -> Callable:
    """Events of the features tab; returns the guarded predict function (the first page uses it too).

    Predictions share one queue (``concurrency_id="model"``, ``COMP_CONCURRENCY`` at a time); reading uploads and
    drawing masks share another, so a visitor's prediction never waits behind other visitors' uploads. Each
    request's own cost is bounded where its input is read (``comp_space.inputs`` / ``comp_space.text``).
    """
    heavy = {"concurrency_limit": settings.concurrency, "concurrency_id": "model"}
    reading = {"concurrency_limit": settings.concurrency, "concurrency_id": "read"}
    predict_inputs = [top.checkpoint, ui.source, ui.example, ui.files, ui.grid]
    predict_outputs = [ui.summary, ui.table, ui.weights_all, ui.weights_masked, ui.probs]
    conversation_inputs = [top.checkpoint, ui.source, ui.example, ui.files]
    load_outputs = [ui.grid, ui.conversation, ui.rate, ui.mask]

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
    load_fn = _guard(app.load)

    def cleared() -> tuple[Any, ...]:
        """Empty results: a failed load or prediction never leaves the previous conversation's on the page."""
        return ("", None, None, None, None)

    def load_ui(ckpt: Any, src: Any, ex: Any, paths: Any) -> tuple[Any, ...]:
        grid_value, text = load_fn(ckpt, src, ex, paths)
        return grid_value, text, 0.0, ALL_PRESENT_NOTE

    def switch_source(ckpt: Any, src: Any, ex: Any, paths: Any) -> tuple[Any, ...]:
        if (src == SOURCE_FILES and not paths) or (src == SOURCE_EXAMPLE and not ex):
            return (gr.skip(),) * len(load_outputs)  # nothing to load yet: no error for merely switching
        return load_ui(ckpt, src, ex, paths)

    def all_present_ui(src: Any, ex: Any, paths: Any) -> tuple[Any, ...]:
        return _guard(app.all_present)(src, ex, paths), 0.0, ALL_PRESENT_NOTE

    def reload_and_predict(trigger: Any) -> None:
        trigger.then(cleared, None, predict_outputs, api_name=False).then(
            load_ui, conversation_inputs, load_outputs, api_name=False, **reading
        ).success(predict_fn, predict_inputs, predict_outputs, api_name=False, **heavy)

    top.checkpoint.change(_guard(app.checkpoint_info), top.checkpoint, top.info, api_name="checkpoint_info").then(
        cleared, None, predict_outputs, api_name=False
    ).then(predict_fn, predict_inputs, predict_outputs, api_name=False, **heavy)
    reload_and_predict(ui.example.input(lambda _: SOURCE_EXAMPLE, ui.example, ui.source, api_name=False))
    reload_and_predict(
        ui.files.upload(lambda p: SOURCE_FILES if p else SOURCE_EXAMPLE, ui.files, ui.source, api_name=False)
    )
    ui.source.input(cleared, None, predict_outputs, api_name=False).then(
        switch_source, conversation_inputs, load_outputs, api_name=False, **reading
    )
    ui.draw.click(
        _guard(app.draw_mask),
        [ui.source, ui.example, ui.files, ui.rate, ui.seed],
        [ui.grid, ui.mask],
        api_name="draw_mask",
        **reading,
    ).success(predict_fn, predict_inputs, predict_outputs, api_name=False, **heavy)
    ui.all_present.click(
        all_present_ui, [ui.source, ui.example, ui.files], [ui.grid, ui.rate, ui.mask], api_name=False, **reading
    ).success(predict_fn, predict_inputs, predict_outputs, api_name=False, **heavy)
    ui.predict.click(predict_fn, predict_inputs, predict_outputs, api_name=False, **heavy)
    # API-only endpoints (hidden buttons): plain values, no display updates.
    gr.Button(visible=False).click(
        load_fn, conversation_inputs, [ui.grid, ui.conversation], api_name="load", **reading
    )
    gr.Button(visible=False).click(
        _guard(app.predict_outputs), predict_inputs, predict_outputs, api_name="predict", **heavy
    )
    gr.Button(visible=False).click(
        _guard(app.all_present), [ui.source, ui.example, ui.files], ui.grid, api_name="all_present", **reading
    )
    return predict_fn


def _wire_text(app: SpaceApp, settings: SpaceSettings, top: SimpleNamespace, ui: SimpleNamespace) -> None:
    """Events of the typed-conversation tab (the UI button and the ``/predict_text`` endpoint)."""
    heavy = {"concurrency_limit": settings.concurrency, "concurrency_id": "model"}
    inputs = [top.checkpoint, ui.typed, ui.transcript, ui.files]
    outputs = [ui.summary, ui.table, ui.weights]

    def typed_ui(ckpt: Any, text: Any, transcript: Any, paths: Any) -> tuple[Any, ...]:
        summary_text, frame, weights = app.typed_outputs(ckpt, text, transcript, paths)
        return summary_text, gr.Dataframe(value=frame, column_widths=column_widths(frame)), weights

    ui.predict.click(lambda: ("", None, None), None, outputs, api_name=False).then(
        _guard(typed_ui), inputs, outputs, api_name=False, **heavy
    )
    top.checkpoint.change(app.text_status, top.checkpoint, ui.status, api_name=False)
    gr.Button(visible=False).click(_guard(app.typed_outputs), inputs, outputs, api_name="predict_text", **heavy)


def build_demo(settings: SpaceSettings | None = None) -> gr.Blocks:
    """Build the Space's ``gr.Blocks`` (not launched).

    Args:
        settings: what to serve (default: :meth:`SpaceSettings.from_env`).

    Returns:
        The demo; call ``demo.launch(**launch_options(settings))``.
    """
    settings = settings or SpaceSettings.from_env()
    app = SpaceApp(settings)
    with gr.Blocks(title="ComP — incomplete multimodal emotion recognition", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(SYNTHETIC_NOTE, elem_id="synthetic-note")
        top = _checkpoint_row(settings)
        with gr.Tabs():
            with gr.Tab("Example or feature files", id="features-tab"):
                features = _features_tab(app)
            with gr.Tab("Type a conversation", id="text-tab"):
                text = _text_tab()
        predict_fn = _wire_features(app, settings, top, features)
        _wire_text(app, settings, top, text)
        first_outputs = [features.summary, features.table, features.weights_all, features.weights_masked]
        first_outputs.append(features.probs)

        def first_page(ckpt: str | None, src: str | None, ex: str | None) -> tuple[Any, ...]:
            info = _guard(app.checkpoint_info)(ckpt)
            if src != SOURCE_EXAMPLE or not ex:
                return (info, *[gr.skip()] * (2 + len(first_outputs)))
            grid_value, conv_text = _guard(app.load)(ckpt, src, ex, None)
            return (info, grid_value, conv_text, *predict_fn(ckpt, src, ex, None, grid_value))

        demo.load(
            first_page,
            [top.checkpoint, features.source, features.example],
            [top.info, features.grid, features.conversation, *first_outputs],
            api_name=False,
        ).then(app.text_status, top.checkpoint, text.status, api_name=False)
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
