"""Configuration of ComP (Cross-modal Prompting for incomplete multimodal emotion recognition)."""

import math

from transformers import PreTrainedConfig

from .names import (  # noqa: F401 (re-exported)
    ATTENTION_MASK,
    AUDIO,
    LABELS,
    MODALITIES,
    MODALITY_MASK,
    MODEL_INPUT_NAMES,
    TEXT,
    UTTERANCE_INDEX,
    VIDEO,
)


# The Auto classes a saved checkpoint declares in `config.auto_map`, so that a process without this package
# loads it with `trust_remote_code=True` through any of them.
AUTO_MAP = {
    "AutoConfig": "configuration_comp.ComPConfig",
    "AutoModel": "modeling_comp.ComPForEmotionRecognition",
    "AutoModelForTokenClassification": "modeling_comp.ComPForEmotionRecognition",
}


# The features of the four corpora of the paper (the feature folders of the preprocessed releases), in the schema
# of `ComPConfig.modality_features`: per modality the feature name and, when the extractor is a public checkpoint,
# how to recompute it (`layers`: the hidden layers used, negative = counted from the last; `pooling`: how token
# vectors become one utterance vector; "gcnet" = the corpora's recipe: the layers summed, sub-word pieces averaged
# into words, words averaged into the utterance, special tokens left out — `hub_datasets.featurize` implements it). Audio (wav2vec-large context features) and video (MA-Net face features)
# have no public extraction recipe here, hence `extractor: None`.
_TEXT_DEBERTA = {
    "feature": "deberta-large-4-UTT",
    "extractor": {"model_id": "microsoft/deberta-large", "layers": [-4, -3, -2, -1], "pooling": "gcnet"},
}
_FOUR_CORPUS_FEATURES = {
    AUDIO: {"feature": "wav2vec-large-c-UTT", "extractor": None},
    TEXT: _TEXT_DEBERTA,
    VIDEO: {"feature": "manet_UTT", "extractor": None},
}
CORPUS_MODALITY_FEATURES = {
    corpus: {
        m: {**spec, "extractor": None if spec["extractor"] is None else {**spec["extractor"]}}
        for m, spec in _FOUR_CORPUS_FEATURES.items()
    }
    for corpus in ("iemocap4", "iemocap6", "mosi", "mosei")
}

_PROBLEM_TYPES = ("single_label_classification", "regression")
_PROTOTYPE_SCOPES = ("dialogue", "batch")


class ComPConfig(PreTrainedConfig):
    r"""
    Configuration of a ComP model ([Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion
    Recognition](https://arxiv.org/abs/2512.11239), He, Zhu & Zhang, AAAI 2026).

    The defaults are those of the only command released with the authors' code (CMU-MOSI: hidden 256,
    depth 4, 2 heads, dropout 0.5, λ = 0.3) with IEMOCAP-4's label space and padded length 150. Every
    behaviour that deliberately deviates from the released code is a named switch below, so it can be
    ablated; `reference_compat=True` turns all of them back to the released evaluation forward.

    Args:
        audio_dim (`int`, *optional*, defaults to 512):
            Dimension of the per-utterance audio features (wav2vec-large context features in the paper).
        text_dim (`int`, *optional*, defaults to 1024):
            Dimension of the per-utterance text features (DeBERTa-large in the paper).
        video_dim (`int`, *optional*, defaults to 1024):
            Dimension of the per-utterance face features (MA-Net in the paper).
        hidden_size (`int`, *optional*, defaults to 256):
            Width `D` of every per-modality stream (the released `--hidden`).
        num_hidden_layers (`int`, *optional*, defaults to 4):
            The released `--depth`: the two knowledge-propagation stages each hold `num_hidden_layers // 2` masked
            self-attention layers per modality. Must be even.
        num_layers (`int`, *optional*):
            Former name of `num_hidden_layers` (version 0.1), still accepted (and read from older config.json
            files); `config.num_layers` reads `num_hidden_layers`. It is not saved.
        num_attention_heads (`int`, *optional*, defaults to 2):
            Attention heads; must divide `hidden_size`.
        prompt_dim (`int`, *optional*, defaults to 16):
            Width `p` of the cross-modal prompts.
        num_prototypes (`int`, *optional*, defaults to 10):
            Number `K` of prototypes a conversation's utterances are compressed into (per modality).
        max_utterances (`int`, *optional*, defaults to 150):
            The released `seq_len` (65 for CMU-MOSI, 150 otherwise): the prototype layer maps this many
            utterance positions to `num_prototypes`, so it is part of the checkpoint. Conversations may be
            shorter (dynamic padding) but never longer.
        prompt_momentum (`float`, *optional*, defaults to 0.3):
            λ of the momentum update `P = λ·P̄ + (1 − λ)·P_new`, in [0, 1].
        hidden_dropout_prob (`float`, *optional*, defaults to 0.5):
            Dropout of every projection, MLP, the coordinator and the fusion tail (the released
            `--drop_rate`).
        attention_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities (the released `--attn_drop_rate`).
        num_labels (`int`, *optional*, defaults to 4):
            Number of emotion classes; 1 for sentiment regression.
        problem_type (`str`, *optional*, defaults to `"single_label_classification"`):
            `"single_label_classification"` (cross-entropy, IEMOCAP) or `"regression"` (MSE, CMU-MOSI/MOSEI).
        fused_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the fused-head task loss (stage 2).
        modality_loss_weight (`float`, *optional*, defaults to 2.0):
            Weight of each unimodal task loss in stage 2 (the released code counts them twice).
        stage1_modality_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of each unimodal task loss in stage 1.
        private_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the stage-1 private-branch terms (anti-label cross-entropy, or regression to noise).
        disentangle_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the shared/private disentanglement loss (both stages).
        reconstruction_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the decoder reconstruction loss (stage 2).
        private_noise_std (`float`, *optional*, defaults to 1.5):
            Regression only: standard deviation of the noise target of the private heads (clamped to ±3).
        reference_compat (`bool`, *optional*, defaults to `False`):
            Reproduce the released code's forward exactly (batch-wide prototype softmax, padding fed to the
            prototype layer, no masking of missing rows before the prototypes, the text and video private
            branches fed audio's private features, inputs internally padded to `max_utterances`). Used to
            prove faithfulness with converted checkpoints; not recommended for serving because a prediction
            then depends on the rest of the batch.
        prototype_scope (`str`, *optional*, defaults to `"dialogue"`):
            `"dialogue"`: each utterance attends to its own conversation's prototypes only. `"batch"`: the
            released behaviour (softmax over the prototypes of every conversation in the batch).
        use_knowledge_propagation (`bool`, *optional*, defaults to `True`):
            Ablation "w/o KP": no prompts enter the attention stacks and no prompt generation or coordinator
            is used; the encoder outputs are concatenated and classified.
        use_prompt_generation (`bool`, *optional*, defaults to `True`):
            Ablation "w/o PG": prompts are not built from prototypes (only the residual projection of the
            features forms them).
        use_coordinator (`bool`, *optional*, defaults to `True`):
            Ablation "w/o Cr": modalities are fused with equal weights (1/3 each).
        use_gradient_modulation (`bool`, *optional*, defaults to `True`):
            Ablation "w/o GM": the dynamic gradient modulator of Eq. 10-11 is not applied.
        modulation_eps (`float`, *optional*, defaults to 1e-6):
            Guard of the modulator: a relative-error sum with magnitude below this (times `max(1, Σ|w|)`) gives
            weight 1. Finite and > 0.
        initializer_range (`float`, *optional*, defaults to `None`):
            If set, linear weights are drawn from N(0, initializer_range); `None` keeps PyTorch's default
            `nn.Linear` initialisation, as the released code does.
        modality_features (`dict`, *optional*, defaults to `None`):
            Which features the checkpoint was trained on, so that a user can compute matching inputs: `None`
            (unknown), or a dict with keys `"audio"`, `"text"`, `"video"`, each `{"feature": str, "extractor":
            dict | None}`, where `extractor` is `{"model_id": str, "layers": list[int], "pooling": str}` (the
            feature extractor's checkpoint, the hidden layers used, and the pooling over an utterance's frames or
            tokens). `CORPUS_MODALITY_FEATURES` holds the value for each corpus of the paper.

        trained_stage (`int`, *optional*, defaults to 2):
            Provenance of the weights, written by `save_pretrained`: the training stage the model was in when it was
            saved (1: only the unimodal paths are trained, the prompts and the coordinator are not). A model built
            from this config starts in that stage. (Version 0.1 configs call it `training_stage`.)

    The training stage in use (1: unimodal paths; 2: the full model, also used for inference) is runtime state held
    by the model (`ComPForEmotionRecognition.set_training_stage`), not by the config.

    Example:
    ```python
    >>> from modeling_comp import ComPConfig, ComPForEmotionRecognition
    >>> config = ComPConfig(audio_dim=512, text_dim=1024, video_dim=1024, num_labels=4)
    >>> model = ComPForEmotionRecognition(config)
    ```
    """

    model_type = "comp"
    attribute_map = {"num_layers": "num_hidden_layers"}

    def __init__(
        self,
        audio_dim: int = 512,
        text_dim: int = 1024,
        video_dim: int = 1024,
        hidden_size: int = 256,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 2,
        prompt_dim: int = 16,
        num_prototypes: int = 10,
        max_utterances: int = 150,
        prompt_momentum: float = 0.3,
        hidden_dropout_prob: float = 0.5,
        attention_dropout_prob: float = 0.0,
        fused_loss_weight: float = 1.0,
        modality_loss_weight: float = 2.0,
        stage1_modality_loss_weight: float = 1.0,
        private_loss_weight: float = 1.0,
        disentangle_loss_weight: float = 1.0,
        reconstruction_loss_weight: float = 1.0,
        private_noise_std: float = 1.5,
        reference_compat: bool = False,
        prototype_scope: str = "dialogue",
        use_knowledge_propagation: bool = True,
        use_prompt_generation: bool = True,
        use_coordinator: bool = True,
        use_gradient_modulation: bool = True,
        modulation_eps: float = 1e-6,
        initializer_range: float | None = None,
        modality_features: dict | None = None,
        trained_stage: int = 2,
        num_layers: int | None = None,
        **kwargs,
    ):
        model_type = kwargs.pop("model_type", self.model_type)
        if model_type != self.model_type:
            raise ValueError(
                f"ComPConfig: this config has model_type {model_type!r}; a ComP config.json has model_type 'comp'"
            )
        if num_layers is not None:  # the field's name in version 0.1 (its configs and callers)
            if num_hidden_layers not in (4, num_layers):
                raise ValueError(
                    f"ComPConfig: num_layers={num_layers!r} (the former name of num_hidden_layers) and "
                    f"num_hidden_layers={num_hidden_layers!r} disagree; pass num_hidden_layers only"
                )
            num_hidden_layers = num_layers
        legacy_stage = kwargs.pop("training_stage", None)  # version 0.1's name for the stage the weights were saved in
        if legacy_stage is not None and trained_stage == 2:
            trained_stage = legacy_stage
        if "num_labels" not in kwargs and "id2label" not in kwargs:  # a saved config stores only id2label
            kwargs["num_labels"] = 4
        kwargs.setdefault("problem_type", "single_label_classification")
        super().__init__(**kwargs)
        self.audio_dim = audio_dim
        self.text_dim = text_dim
        self.video_dim = video_dim
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.prompt_dim = prompt_dim
        self.num_prototypes = num_prototypes
        self.max_utterances = max_utterances
        self.prompt_momentum = prompt_momentum
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_dropout_prob = attention_dropout_prob
        self.fused_loss_weight = fused_loss_weight
        self.modality_loss_weight = modality_loss_weight
        self.stage1_modality_loss_weight = stage1_modality_loss_weight
        self.private_loss_weight = private_loss_weight
        self.disentangle_loss_weight = disentangle_loss_weight
        self.reconstruction_loss_weight = reconstruction_loss_weight
        self.private_noise_std = private_noise_std
        self.reference_compat = reference_compat
        self.prototype_scope = prototype_scope
        self.use_knowledge_propagation = use_knowledge_propagation
        self.use_prompt_generation = use_prompt_generation
        self.use_coordinator = use_coordinator
        self.use_gradient_modulation = use_gradient_modulation
        self.modulation_eps = modulation_eps
        self.initializer_range = initializer_range
        self.modality_features = modality_features
        self.trained_stage = trained_stage
        self.validate()

    @property
    def is_regression(self) -> bool:
        """Whether the task is sentiment regression (one output per utterance)."""
        return self.problem_type == "regression"

    @property
    def modality_dims(self) -> dict[str, int]:
        """Input feature dimension per modality, in `MODALITIES` order."""
        return {AUDIO: self.audio_dim, TEXT: self.text_dim, VIDEO: self.video_dim}

    def validate(self, **kwargs) -> None:
        """Check every ComP hyper-parameter; raise `ValueError` quoting the offending value.

        Runs the base class validators first (transformers calls `validate` again at save time).
        """
        super().validate()

        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ComPConfig.{name} must be a positive integer, got {value!r}")

        for name in (
            "audio_dim",
            "text_dim",
            "video_dim",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "prompt_dim",
            "num_prototypes",
            "max_utterances",
        ):
            positive_int(name)
        if self.num_hidden_layers % 2:
            raise ValueError(
                f"ComPConfig.num_hidden_layers must be even (two propagation stages of num_hidden_layers // 2 "
                f"attention layers each), got {self.num_hidden_layers!r}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ComPConfig.hidden_size ({self.hidden_size!r}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads!r})"
            )
        for name in ("prompt_momentum", "hidden_dropout_prob", "attention_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:  # NaN fails
                raise ValueError(f"ComPConfig.{name} must be a number in [0, 1], got {value!r}")
        if self.hidden_dropout_prob == 1.0 or self.attention_dropout_prob == 1.0:
            raise ValueError("ComPConfig dropout probabilities must be < 1 (1.0 would zero every activation)")
        for name in (
            "fused_loss_weight",
            "modality_loss_weight",
            "stage1_modality_loss_weight",
            "private_loss_weight",
            "disentangle_loss_weight",
            "reconstruction_loss_weight",
            "private_noise_std",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"ComPConfig.{name} must be a finite non-negative number, got {value!r}")
        eps = self.modulation_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"ComPConfig.modulation_eps must be a finite number > 0, got {eps!r}")
        stage = getattr(self, "trained_stage", 2)
        if isinstance(stage, bool) or stage not in (1, 2):
            raise ValueError(f"ComPConfig.trained_stage must be 1 or 2, got {stage!r}")
        if self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"ComPConfig.problem_type must be one of {_PROBLEM_TYPES}, got {self.problem_type!r}")
        if self.problem_type == "regression" and self.num_labels != 1:
            raise ValueError(f"ComPConfig: regression needs num_labels=1, got num_labels={self.num_labels!r}")
        if self.problem_type == "single_label_classification" and self.num_labels < 2:
            raise ValueError(f"ComPConfig: classification needs num_labels >= 2, got {self.num_labels!r}")
        if self.prototype_scope not in _PROTOTYPE_SCOPES:
            raise ValueError(
                f"ComPConfig.prototype_scope must be one of {_PROTOTYPE_SCOPES}, got {self.prototype_scope!r}"
            )
        for name in (
            "reference_compat",
            "use_knowledge_propagation",
            "use_prompt_generation",
            "use_coordinator",
            "use_gradient_modulation",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ComPConfig.{name} must be True or False, got {getattr(self, name)!r}")
        std = self.initializer_range
        if std is not None and (
            isinstance(std, bool) or not isinstance(std, (int, float)) or not (math.isfinite(std) and std > 0)
        ):
            raise ValueError(f"ComPConfig.initializer_range must be None or a finite number > 0, got {std!r}")
        validate_modality_features(self.modality_features)


def validate_modality_features(value) -> None:
    """Check the schema of `ComPConfig.modality_features`; raise a one-line `ValueError` naming the bad entry."""
    if value is None:
        return
    where = "ComPConfig.modality_features"
    if not isinstance(value, dict) or set(value) != set(MODALITIES):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"{where} must be None or a dict with keys {list(MODALITIES)}, got {got!r}")
    for modality in MODALITIES:
        entry = value[modality]
        if not isinstance(entry, dict) or set(entry) != {"feature", "extractor"}:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{where}[{modality!r}] must be a dict with keys ['extractor', 'feature'], got {got!r}")
        if not isinstance(entry["feature"], str) or not entry["feature"]:
            raise ValueError(f"{where}[{modality!r}]['feature'] must be a non-empty string, got {entry['feature']!r}")
        extractor = entry["extractor"]
        if extractor is None:
            continue
        if not isinstance(extractor, dict) or set(extractor) != {"model_id", "layers", "pooling"}:
            got = sorted(extractor) if isinstance(extractor, dict) else type(extractor).__name__
            raise ValueError(
                f"{where}[{modality!r}]['extractor'] must be None or a dict with keys "
                f"['layers', 'model_id', 'pooling'], got {got!r}"
            )
        if not isinstance(extractor["model_id"], str) or not extractor["model_id"]:
            raise ValueError(
                f"{where}[{modality!r}]['extractor']['model_id'] must be a non-empty string, got "
                f"{extractor['model_id']!r}"
            )
        layers = extractor["layers"]
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
        ):
            raise ValueError(
                f"{where}[{modality!r}]['extractor']['layers'] must be a non-empty list of integers, got {layers!r}"
            )
        if not isinstance(extractor["pooling"], str) or not extractor["pooling"]:
            raise ValueError(
                f"{where}[{modality!r}]['extractor']['pooling'] must be a non-empty string, got "
                f"{extractor['pooling']!r}"
            )


__all__ = [
    "AUTO_MAP",
    "CORPUS_MODALITY_FEATURES",
    "AUDIO",
    "ATTENTION_MASK",
    "LABELS",
    "MODALITIES",
    "MODALITY_MASK",
    "MODEL_INPUT_NAMES",
    "TEXT",
    "UTTERANCE_INDEX",
    "VIDEO",
    "ComPConfig",
    "validate_modality_features",
]
