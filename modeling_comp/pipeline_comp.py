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

import numpy as np
import torch
from transformers import Pipeline

from .configuration_comp import MODALITIES
from .processing_comp import UTTERANCE_IDS, ComPProcessor


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
        if self.feature_extractor is None:
            self.feature_extractor = ComPProcessor.from_model_config(config)
        elif not callable(getattr(self.feature_extractor, "check_model_config", None)):
            raise ValueError(
                f"the {PIPELINE_TASK!r} pipeline needs a ComPProcessor, got {type(self.feature_extractor).__name__}"
            )
        self.feature_extractor.check_model_config(config)
        if hasattr(self.model, "set_training_stage"):
            self.model.set_training_stage(2)  # inference always runs the full model

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
        ids = conversation.get(UTTERANCE_IDS)
        ids = list(range(length)) if ids is None else [str(i) for i in ids]
        if len(ids) != length:
            raise ValueError(f"{UTTERANCE_IDS} has {len(ids)} entries for {length} utterances")
        model_inputs = {name: inputs[name] for name in self.feature_extractor.model_input_names}
        model_inputs["utterance_ids"] = ids
        return model_inputs

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        ids = model_inputs.pop("utterance_ids")
        dtype = self.model.dtype
        inputs = {k: v.to(dtype) if k in MODALITIES else v for k, v in model_inputs.items()}
        outputs = self.model(**inputs, return_dict=True)
        weights = outputs.coordinator_weights
        return {
            "utterance_ids": ids,
            "modality_mask": model_inputs["modality_mask"],
            "logits": outputs.logits,
            "modality_logits": outputs.modality_logits,
            "coordinator_weights": None if weights is None else weights,
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        config = self.model.config
        regression = getattr(config, "problem_type", None) == "regression"
        ids = model_outputs["utterance_ids"]
        n = len(ids)
        mask = model_outputs["modality_mask"][0, :n].float().numpy() > 0
        logits = model_outputs["logits"][0, :n].float()
        modality_logits = model_outputs["modality_logits"][0, :n].float()
        weights = model_outputs["coordinator_weights"]
        weights = None if weights is None else weights[0, :n].float().numpy()
        if regression:
            fused = logits.reshape(n).numpy()
            heads = modality_logits.reshape(n, len(MODALITIES)).numpy()
        else:
            id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
            names = [id2label.get(c, f"LABEL_{c}") for c in range(logits.shape[-1])]
            fused = torch.softmax(logits, dim=-1).numpy()
            heads = torch.softmax(modality_logits, dim=-1).numpy()

        results = []
        for j in range(n):
            entry: dict[str, Any] = {
                "utterance": ids[j],
                "observed": [m for i, m in enumerate(MODALITIES) if mask[j, i]],
            }
            if regression:
                entry["sentiment"] = float(fused[j])
                entry["modalities"] = {m: {"sentiment": float(heads[j, i])} for i, m in enumerate(MODALITIES)}
            else:
                top = int(np.argmax(fused[j]))
                entry["label"] = names[top]
                entry["score"] = float(fused[j, top])
                entry["scores"] = {name: float(p) for name, p in zip(names, fused[j])}
                entry["modalities"] = {}
                for i, m in enumerate(MODALITIES):
                    head_top = int(np.argmax(heads[j, i]))
                    entry["modalities"][m] = {"label": names[head_top], "score": float(heads[j, i, head_top])}
            entry["coordinator_weights"] = (
                None if weights is None else {m: float(weights[j, i]) for i, m in enumerate(MODALITIES)}
            )
            results.append(entry)
        return results


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
