"""Library behind the ComP Gradio Space: input parsing, seeded masks, inference and displayed results.

Masks come from ``hub_datasets.masks`` and models from ``modeling_comp`` (the installed comp-emotion package);
the modules here do not import Gradio, so tests and benchmarks call the same functions the UI calls;
``app.py`` in the Space folder wires them into a ``gradio.Blocks`` interface.
"""

from .inference import (
    CheckpointStore,
    LoadedCheckpoint,
    ModelRun,
    Prediction,
    load_checkpoint,
    model_inputs,
    predict,
    run_model,
)
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
from .report import coordinator_frame, prediction_table, probability_table, summary_markdown
from .text import ExtractorStore, conversation_from_text, parse_conversation_text, read_transcript_file


__all__ = [
    "MAX_FILE_BYTES_DEFAULT",
    "CheckpointStore",
    "Conversation",
    "ExtractorStore",
    "InputError",
    "LoadedCheckpoint",
    "ModelRun",
    "Prediction",
    "conversation_from_text",
    "coordinator_frame",
    "grid_from_mask",
    "load_checkpoint",
    "load_examples",
    "mask_from_grid",
    "model_inputs",
    "parse_conversation_text",
    "parse_feature_files",
    "predict",
    "prediction_table",
    "probability_table",
    "read_transcript_file",
    "run_model",
    "summary_markdown",
    "validate_for_model",
]
