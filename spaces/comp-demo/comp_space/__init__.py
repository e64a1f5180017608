"""Library behind the ComP Gradio Space: input parsing, seeded masks, inference and displayed results.

The modules here do not import Gradio, so tests and benchmarks call the same functions the UI calls;
``app.py`` in the Space folder wires them into a ``gradio.Blocks`` interface.
"""

from .inference import CheckpointStore, LoadedCheckpoint, ModelRun, Prediction, load_checkpoint, predict, run_model
from .inputs import (
    MAX_FILE_BYTES_DEFAULT,
    Conversation,
    InputError,
    grid_from_mask,
    load_examples,
    mask_from_grid,
    parse_feature_files,
    validate_for_model,
)
from .masks import draw_mask, draw_rate_mask, realised_missing_rate
from .report import coordinator_frame, prediction_table, probability_table, summary_markdown


__all__ = [
    "MAX_FILE_BYTES_DEFAULT",
    "CheckpointStore",
    "Conversation",
    "InputError",
    "LoadedCheckpoint",
    "ModelRun",
    "Prediction",
    "coordinator_frame",
    "draw_mask",
    "draw_rate_mask",
    "grid_from_mask",
    "load_checkpoint",
    "load_examples",
    "mask_from_grid",
    "parse_feature_files",
    "predict",
    "prediction_table",
    "probability_table",
    "realised_missing_rate",
    "run_model",
    "summary_markdown",
    "validate_for_model",
]
