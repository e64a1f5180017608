"""ComP for incomplete multimodal emotion recognition, as a transformers model.

Importing this package registers `ComPConfig` / `ComPForEmotionRecognition` with `AutoConfig`, `AutoModel` and
`AutoModelForTokenClassification` (an utterance of a conversation plays the role of a token: one prediction per
position), so `AutoModel.from_pretrained(path)` works without `trust_remote_code` when the package is installed.
"""

import contextlib

from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from .configuration_comp import (
    ATTENTION_MASK,
    AUDIO,
    AUTO_MAP,
    CORPUS_MODALITY_FEATURES,
    LABELS,
    MODALITIES,
    MODALITY_MASK,
    MODEL_INPUT_NAMES,
    TEXT,
    UTTERANCE_INDEX,
    VIDEO,
    ComPConfig,
)
from .modeling_comp import (
    ComPForEmotionRecognition,
    ComPGradientModulator,
    ComPModel,
    ComPModelOutput,
    ComPOutput,
    ComPPreTrainedModel,
    checkpoint_layout_state_dict,
    load_comp_checkpoint,
    model_layout_state_dict,
    utterance_index_from_attention_mask,
)


__version__ = "0.1.0"


def _register() -> None:
    with contextlib.suppress(ValueError):  # already registered (module reloaded)
        AutoConfig.register(ComPConfig.model_type, ComPConfig)
    for auto_class in (AutoModel, AutoModelForTokenClassification):
        with contextlib.suppress(ValueError):
            auto_class.register(ComPConfig, ComPForEmotionRecognition)
    # `save_pretrained` copies the two model files into the checkpoint; the auto_map lists every Auto class.
    ComPConfig.register_for_auto_class("AutoConfig")
    ComPForEmotionRecognition.register_for_auto_class("AutoModel")


_register()

__all__ = [
    "ATTENTION_MASK",
    "AUDIO",
    "AUTO_MAP",
    "CORPUS_MODALITY_FEATURES",
    "LABELS",
    "MODALITIES",
    "MODALITY_MASK",
    "MODEL_INPUT_NAMES",
    "TEXT",
    "UTTERANCE_INDEX",
    "VIDEO",
    "ComPConfig",
    "ComPForEmotionRecognition",
    "ComPGradientModulator",
    "ComPModel",
    "ComPModelOutput",
    "ComPOutput",
    "ComPPreTrainedModel",
    "checkpoint_layout_state_dict",
    "load_comp_checkpoint",
    "model_layout_state_dict",
    "utterance_index_from_attention_mask",
]


# -- processor and pipeline ------------------------------------------------------------------------------------
# `ComPProcessor` is registered with `AutoFeatureExtractor` / `AutoProcessor`, and the
# `multimodal-emotion-recognition` task with `transformers.pipeline`, in this process; checkpoints saved with
# `save_with_processor_and_pipeline` declare both themselves for `trust_remote_code=True` users.
from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer  # noqa: E402

from .data_collator import ComPDataCollator  # noqa: E402
from .pipeline_comp import (  # noqa: E402
    PIPELINE_TASK,
    ComPHasNoTokenizer,
    MultimodalEmotionRecognitionPipeline,
    register_pipeline,
    save_with_processor_and_pipeline,
)
from .processing_comp import CONVERSATION_INDEX, ComPPrediction, ComPProcessor  # noqa: E402


def _register_processing() -> None:
    for auto_class in (AutoFeatureExtractor, AutoProcessor):
        auto_class.register(ComPConfig, ComPProcessor, exist_ok=True)
    # Text pipelines look for a tokenizer; ComP has none, and this says so instead of a conversion error.
    AutoTokenizer.register(ComPConfig, tokenizer_class=ComPHasNoTokenizer, exist_ok=True)
    register_pipeline()


_register_processing()

__all__ += [
    "CONVERSATION_INDEX",
    "PIPELINE_TASK",
    "ComPDataCollator",
    "ComPPrediction",
    "ComPProcessor",
    "MultimodalEmotionRecognitionPipeline",
    "save_with_processor_and_pipeline",
]
