"""The `multimodal-emotion-recognition` pipeline: a conversation in, one prediction per utterance out.

This file is copied next to the weights of checkpoints saved with `save_with_processor_and_pipeline`, and
`config.json` declares it under `custom_pipelines`, so

    pipeline("multimodal-emotion-recognition", model="<folder or hub id>", trust_remote_code=True)

works in a process that does not have comp-emotion. It imports only numpy, torch, transformers and the sibling
checkpoint files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import Pipeline
from transformers.utils import logging

from .configuration_comp import MODALITIES
from .modeling_comp import load_comp_checkpoint
from .processing_comp import DIALOG_ID, PROCESSOR_FILE, UTTERANCE_IDS, ComPProcessor


logger = logging.get_logger(__name__)


#: The task name under which the pipeline is registered and declared in checkpoints.
PIPELINE_TASK = "multimodal-emotion-recognition"


class MultimodalEmotionRecognitionPipeline(Pipeline):
    r"""
    Per-utterance emotion (or sentiment) of a conversation whose utterances may lack any of audio, text and video.

    Input: one conversation, or a list of them. A conversation is a mapping with per-modality features (an array
    `[num_utterances, dim]`, a list with one vector per utterance and `None` where it is missing, or `None` for a
    modality missing throughout), optionally `modality_mask`, `utterance_ids` and `dialog_id`; rows of a
    `hub_datasets` split work as they are. See `ComPProcessor` for the exact rules and errors.

    Output, per conversation, a list with one dict per utterance:

    - `utterance`: its id (from `utterance_ids`) or its index,
    - `observed`: the modalities the model saw for it,
    - classification: `label` and `score` (the fused prediction's top class and probability) and `scores`
      (every class's probability); regression: `sentiment` (the fused score),
    - `modalities`: each modality head's view (`label`/`score` or `sentiment`), also for modalities the
      utterance lacks (the head then reads what the other modalities' prompts carried into that stream),
    - `coordinator_weights`: the coordinator's weight per modality (`None` for a stage-1 model, which has none).

    By default each conversation runs through the model alone (`batch_size=1`), so a prediction never depends on
    what else is passed. `batch_size=n` pads n conversations together (zeros on the right, as the processor
    does); with the default `prototype_scope="dialogue"` the predictions are the same up to float rounding, while
    `reference_compat` / `prototype_scope="batch"` models then mix the conversations of a batch.

    Example:
    ```python
    >>> from transformers import pipeline
    >>> classifier = pipeline("multimodal-emotion-recognition", model="path/to/checkpoint", trust_remote_code=True)
    >>> classifier({"audio": audio_features, "text": text_features, "video": None})
    [{'utterance': 0, 'observed': ['audio', 'text'], 'label': 'neu', 'score': 0.71, ...}, ...]
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_tokenizer = False
    # The checkpoint's `preprocessor_config.json` when it has one; otherwise the processor is derived from the
    # model's config (checkpoints saved before the processor existed).
    _load_feature_extractor = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.model.config
        if getattr(config, "model_type", None) != "comp":
            raise ValueError(
                f"the {PIPELINE_TASK!r} pipeline needs a ComP model (model_type 'comp'), got "
                f"{getattr(config, 'model_type', None)!r}"
            )
        source = _checkpoint_source(self.model)
        if source is not None:
            _check_weights_strictly(self.model, source)
        if self.feature_extractor is None:
            self.feature_extractor = _load_processor(source, config)
        elif not callable(getattr(self.feature_extractor, "post_process", None)):
            raise ValueError(
                f"the {PIPELINE_TASK!r} pipeline needs a ComPProcessor, got {type(self.feature_extractor).__name__}"
            )
        self.feature_extractor.check_model_config(config)
        if hasattr(self.model, "set_training_stage"):
            self.model.set_training_stage(2)  # inference always runs the full model

    def __call__(self, inputs: Any, *args, **kwargs):
        """Predict one conversation (a mapping) or a list of them (or a dataset / generator of them, as every
        pipeline takes); a string, a number, `None` or an empty list is refused in one line."""
        if inputs is None or isinstance(inputs, (str, bytes, int, float, complex)):
            raise ValueError(
                f"the {PIPELINE_TASK!r} pipeline takes a conversation (a mapping with 'audio', 'text', 'video') or a "
                f"list of them, got {type(inputs).__name__}"
            )
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            raise ValueError(f"the {PIPELINE_TASK!r} pipeline got an empty list of conversations")
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        if kwargs:
            raise TypeError(f"the {PIPELINE_TASK!r} pipeline takes no parameters, got {sorted(kwargs)}")
        return {}, {}, {}

    def preprocess(self, conversation: Mapping) -> dict[str, Any]:
        if not isinstance(conversation, Mapping):
            raise ValueError(
                f"the {PIPELINE_TASK!r} pipeline takes a conversation (a mapping with 'audio', 'text', 'video') or "
                f"a list of them, got {type(conversation).__name__}"
            )
        inputs = self.feature_extractor(conversation, return_tensors="pt")
        length = int(inputs["attention_mask"].sum())
        ids = _utterance_ids(conversation.get(UTTERANCE_IDS), length)
        model_inputs = {name: inputs[name] for name in self.feature_extractor.model_input_names}
        model_inputs[UTTERANCE_IDS] = ids
        model_inputs[DIALOG_ID] = conversation.get(DIALOG_ID)
        return model_inputs

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        ids = model_inputs.pop(UTTERANCE_IDS)
        name = model_inputs.pop(DIALOG_ID)
        dtype = self.model.dtype
        inputs = {k: v.to(dtype) if k in MODALITIES else v for k, v in model_inputs.items()}
        outputs = self.model(**inputs, return_dict=True)
        return {
            UTTERANCE_IDS: ids,
            DIALOG_ID: name,
            "attention_mask": model_inputs["attention_mask"],
            "modality_mask": model_inputs["modality_mask"],
            "logits": outputs.logits,
            "modality_logits": outputs.modality_logits,
            "coordinator_weights": outputs.coordinator_weights,
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        name = model_outputs[DIALOG_ID]
        (prediction,) = self.feature_extractor.post_process(
            model_outputs,
            model_outputs["attention_mask"],
            model_outputs["modality_mask"],
            config=self.model.config,
            conversation_names=None if name is None else [str(name)],
        )
        return prediction.records(model_outputs[UTTERANCE_IDS])


def _utterance_ids(ids: Any, length: int) -> list[Any]:
    """The utterances' ids as given (strings or integers, one per utterance, no repeats), or their indices."""
    if ids is None:
        return list(range(length))
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):
        ids = ids.tolist()  # a numpy array or tensor of ids
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
        raise ValueError(f"{UTTERANCE_IDS} must be a list with one id per utterance, got {type(ids).__name__}")
    if len(ids) != length:
        raise ValueError(f"{UTTERANCE_IDS} has {len(ids)} entries for {length} utterances")
    for j, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"{UTTERANCE_IDS}[{j}] is {value!r}, expected a string or an integer")
    if len(set(map(str, ids))) != len(ids):
        seen: set[str] = set()
        repeated = next(v for v in map(str, ids) if v in seen or seen.add(v))
        raise ValueError(f"{UTTERANCE_IDS} names utterance {repeated!r} more than once")
    return [str(i) for i in ids]


def _checkpoint_source(model: Any) -> str | None:
    """The folder or Hub id the model was loaded from (`None` for a model built in memory)."""
    source = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    if not source:
        return None
    source = str(source)
    if os.path.isdir(source):
        return source if os.path.isfile(os.path.join(source, "config.json")) else None
    # a Hub checkpoint records the commit it was downloaded at; anything else is not a checkpoint we can re-read
    return source if getattr(model.config, "_commit_hash", None) else None


def _hub_kwargs(config: Any, source: str) -> dict[str, Any]:
    """Pin a Hub checkpoint to the commit the model came from (a local folder needs nothing)."""
    commit = getattr(config, "_commit_hash", None)
    return {} if os.path.isdir(source) or not commit else {"revision": commit}


def _check_weights_strictly(model: Any, source: str) -> None:
    """Refuse a checkpoint whose weights do not match the model exactly: `pipeline(...)` builds its model with
    `from_pretrained`, which initialises a missing tensor afresh and only logs it."""
    try:
        load_comp_checkpoint(source, strict=True, model_class=type(model), **_hub_kwargs(model.config, source))
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__) from None


def _load_processor(source: str | None, config: Any) -> ComPProcessor:
    """The checkpoint's saved processor; derived from the model's config only when the checkpoint has none."""
    has_file = False
    if source is not None and os.path.isdir(source):
        has_file = os.path.isfile(os.path.join(source, PROCESSOR_FILE))
    elif source is not None:
        from transformers.utils import cached_file

        found = cached_file(
            source, PROCESSOR_FILE, _raise_exceptions_for_missing_entries=False, **_hub_kwargs(config, source)
        )
        has_file = found is not None
    if has_file:
        # pipeline() loads the processor softly (any error -> none at all); loading it here refuses a malformed file
        return ComPProcessor.from_pretrained(source, **_hub_kwargs(config, source))
    if source is not None:  # a model built in memory has no checkpoint: its config is all there is
        logger.warning(
            f"the checkpoint {source} has no {PROCESSOR_FILE}: the processor is derived from the model's config "
            "(feature dimensions, max_utterances, problem_type) with the default max_abs_value"
        )
    return ComPProcessor.from_model_config(config)


class ComPHasNoTokenizer:
    """Stands for a tokenizer in `AutoTokenizer`'s mapping for ComP configs, so that a text pipeline
    (`pipeline("token-classification", model=<ComP checkpoint>)`) fails with a message that says what to use
    instead of an unrelated tokenizer-conversion error."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any = None, *args, **kwargs):
        raise ValueError(
            f"{pretrained_model_name_or_path!r} is a ComP checkpoint: it has no tokenizer because it takes "
            "per-utterance audio/text/video feature vectors, not text. Use "
            f"pipeline({PIPELINE_TASK!r}, model=..., trust_remote_code=True) or ComPProcessor to prepare inputs"
        )


def register_pipeline() -> None:
    """Register the `multimodal-emotion-recognition` task in this process (`transformers.pipeline` then finds it
    without `trust_remote_code` for checkpoints that do not declare it themselves)."""
    from transformers import AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    if PIPELINE_TASK in PIPELINE_REGISTRY.get_supported_tasks():
        impl = PIPELINE_REGISTRY.supported_tasks[PIPELINE_TASK]["impl"]
        if impl is MultimodalEmotionRecognitionPipeline:
            return
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=MultimodalEmotionRecognitionPipeline, pt_model=AutoModel, type="multimodal"
    )


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` entry a checkpoint's `config.json` carries to declare the task."""
    return {
        PIPELINE_TASK: {
            "impl": f"{Path(__file__).stem}.{MultimodalEmotionRecognitionPipeline.__name__}",
            "pt": ["AutoModel"],
            "type": "multimodal",
        }
    }


def save_with_processor_and_pipeline(
    model: Any, processor: ComPProcessor | None, save_directory: str | os.PathLike, **save_kwargs
) -> list[str]:
    """Save a ComP checkpoint with everything `AutoProcessor` and `pipeline(...)` need, also without this package.

    Writes the model (`config.json` with `auto_map` and `custom_pipelines`, weights, `configuration_comp.py`,
    `modeling_comp.py`), the processor (`preprocessor_config.json` with its `auto_map`, `processing_comp.py`) and
    `pipeline_comp.py`.

    Args:
        model: A `ComPForEmotionRecognition`.
        processor: Its `ComPProcessor`; `None` derives one from `model.config`.
        save_directory: The checkpoint folder (created if needed).
        save_kwargs: Passed to `model.save_pretrained` (e.g. `safe_serialization`, `max_shard_size`).

    Returns:
        The names of the files in the folder afterwards, sorted.
    """
    processor = ComPProcessor.from_model_config(model.config) if processor is None else processor
    processor.check_model_config(model.config)
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    previous = getattr(model.config, "custom_pipelines", None)
    model.config.custom_pipelines = {**(previous or {}), **custom_pipelines_entry()}
    try:
        model.save_pretrained(folder, **save_kwargs)
    finally:
        if previous is None:
            del model.config.custom_pipelines
        else:
            model.config.custom_pipelines = previous
    processor.save_pretrained(folder)
    from transformers.dynamic_module_utils import get_relative_import_files

    for source in (__file__, *get_relative_import_files(__file__)):
        shutil.copyfile(source, folder / Path(source).name)
    return sorted(os.listdir(folder))


__all__ = [
    "PIPELINE_TASK",
    "ComPHasNoTokenizer",
    "MultimodalEmotionRecognitionPipeline",
    "custom_pipelines_entry",
    "register_pipeline",
    "save_with_processor_and_pipeline",
]
