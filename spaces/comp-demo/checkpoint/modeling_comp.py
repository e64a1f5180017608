"""PyTorch ComP: Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition.

He, Zhu & Zhang, AAAI 2026 (https://arxiv.org/abs/2512.11239). The network keeps the decomposition of the
authors' released code (per-modality input projections, shared/private encoders and decoders, two
knowledge-propagation stages of masked self-attention, prototype-based prompt generators, a coordinator and a
residual fusion tail) so that released checkpoints convert one-to-one (see `convert_original_checkpoint.py`).

By default the model implements the paper's method with the released code's defects fixed; each fix is a
config switch and `ComPConfig.reference_compat=True` restores the released evaluation forward. Every place
where the two differ carries a comment starting with "Deviation".

This file and `configuration_comp.py` are copied into every saved checkpoint for `trust_remote_code` users:
they must not import anything from the rest of the project.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_comp import AUDIO, AUTO_MAP, MODALITIES, TEXT, VIDEO, ComPConfig


try:  # transformers >= 5: initialisers that respect the "already loaded" flags of from_pretrained
    from transformers import initialization as _init
except ImportError:  # pragma: no cover - older transformers
    _init = None

# The pairs of the disentanglement loss, in the released order: (a, t), (a, v), (t, v).
_MODALITY_PAIRS = ((AUDIO, TEXT), (AUDIO, VIDEO), (TEXT, VIDEO))


def _others(modality: str) -> tuple[str, str]:
    """The two other modalities, in `MODALITIES` order (the prompts a modality receives)."""
    return tuple(m for m in MODALITIES if m != modality)  # type: ignore[return-value]


@dataclass
class ComPModelOutput(ModelOutput):
    """Output of [`ComPModel`].

    Args:
        fused_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3 * hidden_size)`):
            The fused representation handed to the fusion tail: the coordinator-weighted concatenation of the
            three streams (stage 2), or their plain concatenation with missing/padded rows zeroed (stage 1).
        modality_hidden_states (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3, hidden_size)`):
            The output `Z̄^u` of each modality's last propagation stage (audio, text, video).
        coordinator_weights (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
            The coordinator's per-utterance modality weights (stage 2 only).
        projected_features, reconstructed_features, shared_features, private_features (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3, hidden_size)`):
            Inputs projections, their decoder reconstructions, and the shared / private encoder outputs
            (used by the reconstruction and disentanglement losses).
        modality_mask (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3)`):
            The effective mask: observed modality of a real utterance.
        attention_mask (`torch.FloatTensor` of shape `(batch_size, num_utterances)`):
            Real utterances.
    """

    fused_hidden_state: torch.FloatTensor | None = None
    modality_hidden_states: torch.FloatTensor | None = None
    coordinator_weights: torch.FloatTensor | None = None
    projected_features: torch.FloatTensor | None = None
    reconstructed_features: torch.FloatTensor | None = None
    shared_features: torch.FloatTensor | None = None
    private_features: torch.FloatTensor | None = None
    modality_mask: torch.FloatTensor | None = None
    attention_mask: torch.FloatTensor | None = None


@dataclass
class ComPOutput(ModelOutput):
    """Output of [`ComPForEmotionRecognition`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
            The loss of the current training stage (see `ComPConfig.training_stage`).
        logits (`torch.FloatTensor` of shape `(batch_size, num_utterances, num_labels)`):
            Fused predictions; `(batch_size, num_utterances)` sentiment scores for regression.
        modality_logits (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3, num_labels)`):
            Each modality head's predictions (audio, text, video); `(batch_size, num_utterances, 3)` for
            regression.
        coordinator_weights (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
            Per-utterance modality weights of the coordinator (stage 2; `None` in stage 1, which has none).
        loss_terms (`dict[str, torch.FloatTensor]`, *optional*):
            Each weighted loss term, detached, for logging.
        hidden_states (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3 * hidden_size)`):
            The fused representation after the residual fusion tail.
        modulation_weights (`torch.FloatTensor` of shape `(3, num_utterances)`, *optional*):
            The gradient modulator's per-position weights for the prototype layers of audio, text and video
            (stage-2 training only).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    modality_logits: torch.FloatTensor | None = None
    coordinator_weights: torch.FloatTensor | None = None
    loss_terms: dict | None = None
    hidden_states: torch.FloatTensor | None = None
    modulation_weights: torch.FloatTensor | None = None


class ComPDropout(nn.Dropout):
    """Inverted dropout (same distribution and scaling as `nn.Dropout`) drawn as `rand >= p`.

    On CPU this is several times faster than `torch.nn.functional.dropout`, whose Bernoulli sampling was a
    quarter of a training step at the released sizes; there are ~70 dropout calls per stage-2 step.
    """

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return hidden
        keep = torch.rand_like(hidden) >= self.p
        return hidden * keep.to(hidden.dtype) * (1.0 / (1.0 - self.p))


class ComPMlp(nn.Module):
    """`fc1 -> GELU (exact erf) -> dropout -> fc2 -> dropout` (the released `Mlp`)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.dropout = ComPDropout(dropout)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(hidden)))))


class _Packer:
    """Moves between padded `[B, T, ...]` tensors and the packed rows `[N, ...]` that are actually computed.

    Every position-wise layer (projections, encoders, decoders, MLPs, heads: nearly all of the compute) runs on
    the `N` real utterances only; only the attention and the prototype layer see the `[B, T]` layout. In
    reference mode every (padded) position is a row, as in the released code, and packing is a reshape.
    """

    def __init__(self, rows: torch.Tensor | None, batch: int, length: int, device: torch.device):
        self.batch, self.length = batch, length
        self.full = rows is None
        flat = torch.arange(batch * length, device=device) if rows is None else rows
        self.rows = flat
        self.position = flat % length

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        flat = padded.reshape(self.batch * self.length, *padded.shape[2:])
        return flat if self.full else flat.index_select(0, self.rows)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        shape = (self.batch, self.length, *packed.shape[1:])
        if self.full:
            return packed.reshape(shape)
        out = packed.new_zeros((self.batch * self.length, *packed.shape[1:]))
        return out.index_copy(0, self.rows, packed).view(shape)


class ComPAttention(nn.Module):
    """One masked self-attention layer of one modality (COMP_SPEC B §3.2).

    Keys of missing or padded utterances are masked, queries are not: a missing utterance receives context from
    the observed utterances of the same modality in its conversation. A conversation with no observed key gets
    zeros. There is no output projection and no LayerNorm; the layer returns `O + MLP(O)` and the caller adds
    the residual.
    """

    def __init__(self, config: ComPConfig):
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = dim // self.num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.mlp = ComPMlp(dim, dim, dim, config.hidden_dropout_prob)
        self.attention_dropout = config.attention_dropout_prob

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor, packer: _Packer) -> torch.Tensor:
        """`hidden`: packed rows `[N, D]`; `key_mask`: `[B, T]` observed keys. Returns packed `[N, D]`."""
        batch, length = key_mask.shape

        # q, k and v in one matrix product and one scatter to the [B, T] layout (the parameters stay separate, as
        # in the released checkpoints)
        weight = torch.cat([self.q.weight, self.k.weight, self.v.weight])
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        qkv = packer.unpack(F.linear(hidden, weight, bias)).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # Conversations without any observed key: the released code's softmax gives NaN, then 0. We let every
        # key through for them (so the kernel sees no empty row) and zero their output afterwards.
        has_key = key_mask.any(dim=-1)
        safe_mask = key_mask | ~has_key[:, None]
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=safe_mask[:, None, None, :],
            dropout_p=self.attention_dropout if self.training else 0.0,
            scale=self.head_dim**-0.5,
        )
        attended = attended * has_key[:, None, None, None].to(attended.dtype)
        attended = packer.pack(attended.transpose(1, 2).reshape(batch, length, -1))
        return attended + self.mlp(attended)


class ComPAttentionLayer(nn.Module):
    """One attention layer holding an independent attention module per modality."""

    def __init__(self, config: ComPConfig):
        super().__init__()
        self.modalities = nn.ModuleDict({m: ComPAttention(config) for m in MODALITIES})


class ComPPropagationStack(nn.Module):
    """`num_layers // 2` residual attention layers per modality (the released `block1` / `block2`)."""

    def __init__(self, config: ComPConfig):
        super().__init__()
        self.layers = nn.ModuleList([ComPAttentionLayer(config) for _ in range(config.num_layers // 2)])

    def forward(self, hidden: torch.Tensor, modality: str, key_mask: torch.Tensor, packer: _Packer) -> torch.Tensor:
        for layer in self.layers:
            hidden = hidden + layer.modalities[modality](hidden, key_mask, packer)
        return hidden


class _ScaleColumnsGrad(torch.autograd.Function):
    """Identity whose backward multiplies the gradient of a `[K, T]` weight column-wise by `holder['scale']`.

    The scale is filled in after the forward has produced the unimodal predictions it depends on (the gradient
    modulator of Eq. 10-11); if it was never filled the gradient passes unchanged.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, holder: dict) -> torch.Tensor:
        ctx.holder = holder
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scale = ctx.holder.get("scale")
        if scale is not None:
            grad = grad * scale.to(grad.dtype)[None, :]
        return grad, None


class ComPPromptGenerator(nn.Module):
    """Prompt generation (Eq. 6-9, COMP_SPEC B §3.4) for one modality and one propagation stage.

    The first stage's generator owns the prototype layer (`prototype_layer`, an MLP over the utterance axis
    mapping `max_utterances` positions to `num_prototypes` prototypes); the second stage reuses the first
    stage's prototypes, as the released code does.
    """

    def __init__(self, config: ComPConfig, with_prototype_layer: bool):
        super().__init__()
        self.config = config
        if with_prototype_layer:
            self.prototype_layer = ComPMlp(
                config.max_utterances, config.num_prototypes, config.num_prototypes, config.hidden_dropout_prob
            )
        self.prompt_projection = ComPMlp(
            config.hidden_size, config.prompt_dim, config.prompt_dim, config.hidden_dropout_prob
        )
        self.residual_projection = nn.Linear(config.hidden_size, config.prompt_dim)

    def prototypes(
        self, hidden: torch.Tensor, row_mask: torch.Tensor | None, holder: dict | None, packer: _Packer
    ) -> torch.Tensor:
        """Compress each conversation's utterances (packed rows `[N, D]`) into `K` prototypes `[B, K, D]`.

        Only the first `T` columns of the `[K, max_utterances]` first layer are used: with the rows of padded
        (and, by default, missing) utterances zeroed, the other columns would only ever multiply zeros.
        """
        layer = self.prototype_layer
        if row_mask is not None:
            # Deviation (default mode): missing utterances do not feed the prototypes (the intent of Eq. 7's
            # mask), and padded ones are zeros. The released code feeds both (padded rows carry the biases).
            hidden = hidden * row_mask[:, None]
        weight = layer.fc1.weight[:, : packer.length]
        if holder is not None:
            weight = _ScaleColumnsGrad.apply(weight, holder)
        transposed = packer.unpack(hidden).transpose(1, 2)  # [B, D, T]
        hidden_protos = layer.dropout(F.gelu(F.linear(transposed, weight, layer.fc1.bias)))
        protos = layer.dropout(layer.fc2(hidden_protos))  # [B, D, K]
        return protos.transpose(1, 2)

    def forward(
        self,
        hidden: torch.Tensor,
        prototypes: torch.Tensor | None,
        batch_scope: bool,
        packer: _Packer,
        released_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prompts `[N, p]` for the packed utterances `hidden` `[N, D]` given prototypes `[B, K, D]`.

        `released_mask` (`[B, T]`, reference mode only) reproduces the released code's similarity mask bit for
        bit: it is a no-op mathematically, but `cos - 10000` rounds in float32.
        """
        residual = self.residual_projection(hidden)
        if prototypes is None:  # ablation "w/o PG": the prompts are not built from prototypes
            return residual
        dim = hidden.shape[-1]
        queries = F.normalize(hidden, dim=-1)
        keys = F.normalize(prototypes, dim=-1)
        # Eq. 7's mask is constant along each row of the similarity matrix, so it cannot change a row softmax
        # (the released code's mask is a no-op as well); the default mode omits it.
        if batch_scope:
            # Released behaviour: every utterance attends to the prototypes of every conversation in the batch,
            # so a prediction depends on the rest of the batch.
            similarity = queries @ keys.reshape(-1, dim).T  # [N, B*K]
            if released_mask is not None:
                # the released mask is read in (utterance, conversation) order against (conversation, utterance)
                # rows; only its float32 rounding has an effect
                similarity = similarity + ((1.0 - released_mask.transpose(0, 1).reshape(-1)) * -10000.0)[:, None]
            aggregated = torch.softmax(similarity, dim=-1) @ prototypes.reshape(-1, dim)
        else:
            # Deviation (default, prototype_scope="dialogue"): only the conversation's own prototypes. Computed in
            # the [B, T] layout with batched products (a per-row gather of the prototypes has a slow backward).
            similarity = packer.unpack(queries) @ keys.transpose(1, 2)  # [B, T, K]
            aggregated = packer.pack(torch.softmax(similarity, dim=-1) @ prototypes)  # [N, D]
        return self.prompt_projection(aggregated) + residual


class ComPPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for ComP models."""

    config_class = ComPConfig
    config: ComPConfig
    base_model_prefix = "comp"
    main_input_name = TEXT
    input_modalities = ("audio", "text", "video")
    supports_gradient_checkpointing = False
    _no_split_modules = ["ComPAttention"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, declaring every supported Auto class in `config.auto_map` (the
        model files themselves are copied next to the weights), so the folder loads with
        `trust_remote_code=True` in a process that does not have this package."""
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default `nn.Linear` initialisation (as the released code), or N(0, initializer_range)."""
        if not isinstance(module, nn.Linear):
            return
        std = self.config.initializer_range
        if std is not None:
            self._init(module.weight, "normal", std=std)
            if module.bias is not None:
                self._init(module.bias, "zeros")
            return
        self._init(module.weight, "kaiming_uniform", a=math.sqrt(5))
        if module.bias is not None:
            bound = 1.0 / math.sqrt(module.weight.shape[1]) if module.weight.shape[1] > 0 else 0.0
            self._init(module.bias, "uniform", a=-bound, b=bound)

    @staticmethod
    def _init(tensor: torch.Tensor, kind: str, **kwargs) -> None:
        source = _init if _init is not None else nn.init
        getattr(source, f"{kind}_")(tensor, **kwargs)


@dataclass
class _PackedState:
    """Internal result of `ComPModel._forward_packed`: per-row tensors of the computed utterances."""

    packer: _Packer
    length: int  # the caller's number of utterance positions
    fused: torch.Tensor  # [N, 3D]
    streams: torch.Tensor  # [N, 3, D]
    coordinator_weights: torch.Tensor | None  # [N, 3]
    private_streams: torch.Tensor | None  # [N, 3, D]
    projected: torch.Tensor  # [N, 3, D]
    reconstructed: torch.Tensor  # [N, 3, D]
    shared: torch.Tensor  # [N, 3, D]
    private: torch.Tensor  # [N, 3, D]
    modality_mask: torch.Tensor  # [N, 3]
    real: torch.Tensor  # [N] 1 for real utterances (0 for padded rows, which exist in reference mode only)


class ComPModel(ComPPreTrainedModel):
    """The ComP backbone: from the three feature streams up to the fused (coordinator-weighted) representation.

    Shape contract (see `docs/interfaces.md`): `audio`, `text`, `video` `[batch, T, dim_m]` with
    `T <= config.max_utterances`; `modality_mask` `[batch, T, 3]` (1 = observed); `attention_mask` `[batch, T]`
    (1 = real utterance). Masked features are zeroed here, whatever the caller passed.
    """

    def __init__(self, config: ComPConfig):
        super().__init__(config)
        dim, prompt = config.hidden_size, config.prompt_dim
        drop = config.hidden_dropout_prob
        self.input_projections = nn.ModuleDict({m: nn.Linear(config.modality_dims[m], dim) for m in MODALITIES})
        self.input_dropout = ComPDropout(drop)
        self.shared_encoders = nn.ModuleDict({m: ComPMlp(dim, dim, dim, drop) for m in MODALITIES})
        self.private_encoders = nn.ModuleDict({m: ComPMlp(dim, dim, dim, drop) for m in MODALITIES})
        self.decoders = nn.ModuleDict({m: ComPMlp(2 * dim, dim, dim, drop) for m in MODALITIES})
        self.propagation_stacks = nn.ModuleList([ComPPropagationStack(config) for _ in range(2)])
        # Linear(D + 2p -> D) that fuses a stream with the two prompts it receives, before each stack.
        self.prompt_fusions = nn.ModuleList(
            [nn.ModuleDict({m: nn.Linear(dim + 2 * prompt, dim) for m in MODALITIES}) for _ in range(2)]
        )
        # After the first stack: MLP(D, D, D + 2p) that splits a stream back into features and two prompts.
        self.prompt_splits = nn.ModuleDict({m: ComPMlp(dim, dim, dim + 2 * prompt, drop) for m in MODALITIES})
        self.prompt_generators = nn.ModuleList(
            [
                nn.ModuleDict({m: ComPPromptGenerator(config, with_prototype_layer=stage == 0) for m in MODALITIES})
                for stage in range(2)
            ]
        )
        self.coordinator = ComPMlp(3 * dim, dim, 3, drop)
        self.post_init()

    def _validate_inputs(self, audio, text, video, modality_mask, attention_mask):
        features = {AUDIO: audio, TEXT: text, VIDEO: video}
        batch, length = None, None
        for name, tensor in features.items():
            if tensor is None:
                raise ValueError(f"ComP needs all three feature tensors; `{name}` is None (pass zeros and mask it)")
            if tensor.dim() != 3:
                raise ValueError(f"`{name}` must have shape [batch, utterances, dim], got {tuple(tensor.shape)}")
            if tensor.shape[-1] != self.config.modality_dims[name]:
                raise ValueError(
                    f"`{name}` has feature dimension {tensor.shape[-1]}, but this model expects "
                    f"{name}_dim={self.config.modality_dims[name]}"
                )
            if batch is None:
                batch, length = tensor.shape[:2]
            elif tuple(tensor.shape[:2]) != (batch, length):
                raise ValueError(
                    f"`{name}` has shape {tuple(tensor.shape)}, expected [{batch}, {length}, dim] like `audio`"
                )
        if length > self.config.max_utterances:
            raise ValueError(
                f"conversations of {length} utterances exceed this model's max_utterances={self.config.max_utterances}"
            )
        dtype = self.input_projections[AUDIO].weight.dtype
        device = audio.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, device=device, dtype=dtype)
        if modality_mask is None:
            modality_mask = torch.ones(batch, length, 3, device=device, dtype=dtype)
        if tuple(attention_mask.shape) != (batch, length):
            raise ValueError(
                f"`attention_mask` must have shape [{batch}, {length}], got {tuple(attention_mask.shape)}"
            )
        if tuple(modality_mask.shape) != (batch, length, 3):
            raise ValueError(
                f"`modality_mask` must have shape [{batch}, {length}, 3], got {tuple(modality_mask.shape)}"
            )
        attention_mask = (attention_mask != 0).to(dtype)
        modality_mask = (modality_mask != 0).to(dtype) * attention_mask[..., None]
        return features, modality_mask, attention_mask

    def _forward_packed(
        self,
        audio,
        text,
        video,
        modality_mask=None,
        attention_mask=None,
        training_stage=None,
        return_private=False,
        modulation_holders=None,
    ) -> _PackedState:
        config = self.config
        stage = training_stage if training_stage is not None else config.training_stage
        features, modality_mask, attention_mask = self._validate_inputs(
            audio, text, video, modality_mask, attention_mask
        )
        batch, length = attention_mask.shape
        reference = config.reference_compat
        if reference:
            # Released behaviour: every batch is padded to the fixed length `seq_len` before the model, and every
            # padded position is computed (and feeds the prototype layer); outputs are cut back afterwards.
            pad = config.max_utterances - length
            features = {m: F.pad(x, (0, 0, 0, pad)) for m, x in features.items()}
            modality_mask = F.pad(modality_mask, (0, 0, 0, pad))
            attention_mask = F.pad(attention_mask, (0, pad))
            packer = _Packer(None, batch, config.max_utterances, attention_mask.device)
        else:
            real_rows = attention_mask.reshape(-1).nonzero().squeeze(1)
            rows = None if real_rows.numel() == batch * length else real_rows
            packer = _Packer(rows, batch, length, attention_mask.device)
        key_masks = {m: modality_mask[..., i] > 0 for i, m in enumerate(MODALITIES)}
        mask_rows = packer.pack(modality_mask)  # [N, 3]
        row_masks = {m: mask_rows[:, i] for i, m in enumerate(MODALITIES)}
        # the model zeroes masked features itself
        inputs = {m: packer.pack(features[m]) * row_masks[m][:, None] for m in MODALITIES}

        projected = {m: self.input_dropout(self.input_projections[m](inputs[m])) for m in MODALITIES}
        shared = {m: self.shared_encoders[m](projected[m]) for m in MODALITIES}
        private = {m: self.private_encoders[m](projected[m]) for m in MODALITIES}
        reconstructed = {m: self.decoders[m](torch.cat([shared[m], private[m]], dim=-1)) for m in MODALITIES}

        coordinator_weights = None
        private_streams = None
        first, second = self.propagation_stacks

        def both_stacks(x: torch.Tensor, m: str) -> torch.Tensor:
            return second(first(x, m, key_masks[m], packer), m, key_masks[m], packer)

        if stage == 1 or not config.use_knowledge_propagation:
            # Stage 1 (and the "w/o KP" ablation): each stream through both stacks, no prompts; missing and
            # padded rows are zeroed before the plain concatenation.
            streams = {m: both_stacks(shared[m], m) for m in MODALITIES}
            if stage == 1 and return_private:
                # Deviation (default mode): each private branch uses its own private features. The released
                # code feeds audio's private features to the text and video branches.
                sources = {m: private[AUDIO] if reference else private[m] for m in MODALITIES}
                private_streams = torch.stack([both_stacks(sources[m], m) for m in MODALITIES], dim=1)
            fused = torch.cat([streams[m] * row_masks[m][:, None] for m in MODALITIES], dim=-1)
        else:
            streams, coordinator_weights = self._propagate(
                shared, key_masks, row_masks, modality_mask, packer, modulation_holders
            )
            stacked = torch.stack([streams[m] for m in MODALITIES], dim=1)  # [N, 3, D]
            # In stage 2 the rows of missing modalities are not zeroed (released behaviour): after knowledge
            # propagation they hold what the other modalities reconstructed for them.
            fused = (stacked * coordinator_weights[..., None]).flatten(1)

        def stack(values: dict) -> torch.Tensor:
            return torch.stack([values[m] for m in MODALITIES], dim=1)

        return _PackedState(
            packer=packer,
            length=length,
            fused=fused,
            streams=stack(streams),
            coordinator_weights=coordinator_weights,
            private_streams=private_streams,
            projected=stack(projected),
            reconstructed=stack(reconstructed),
            shared=stack(shared),
            private=stack(private),
            modality_mask=mask_rows,
            real=packer.pack(attention_mask),
        )

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        video: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        training_stage: int | None = None,
        return_dict: bool | None = None,
    ) -> ComPModelOutput | tuple:
        r"""
        Args:
            audio (`torch.FloatTensor` of shape `(batch_size, num_utterances, audio_dim)`):
                Per-utterance audio features (zeros, or anything, where missing: the model masks them).
            text (`torch.FloatTensor` of shape `(batch_size, num_utterances, text_dim)`):
                Per-utterance text features.
            video (`torch.FloatTensor` of shape `(batch_size, num_utterances, video_dim)`):
                Per-utterance face features.
            modality_mask (`torch.Tensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
                1 where a modality (audio, text, video) is observed. Defaults to all observed.
            attention_mask (`torch.Tensor` of shape `(batch_size, num_utterances)`, *optional*):
                1 for real utterances, 0 for padding. Defaults to all real.
            training_stage (`int`, *optional*):
                Overrides `config.training_stage` for this call.

        Returns:
            [`ComPModelOutput`]; padded positions hold zeros.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        state = self._forward_packed(audio, text, video, modality_mask, attention_mask, training_stage)
        unpack = _unpacker(state)
        outputs = ComPModelOutput(
            fused_hidden_state=unpack(state.fused),
            modality_hidden_states=unpack(state.streams),
            coordinator_weights=unpack(state.coordinator_weights),
            projected_features=unpack(state.projected),
            reconstructed_features=unpack(state.reconstructed),
            shared_features=unpack(state.shared),
            private_features=unpack(state.private),
            modality_mask=unpack(state.modality_mask),
            attention_mask=unpack(state.real),
        )
        return outputs if return_dict else outputs.to_tuple()

    def _propagate(self, shared, key_masks, row_masks, modality_mask, packer, modulation_holders):
        """Stage 2: prompt generation, two knowledge-propagation stages with momentum, and the coordinator."""
        config = self.config
        dim, prompt = config.hidden_size, config.prompt_dim
        batch_scope = config.reference_compat or config.prototype_scope == "batch"
        first_generators, second_generators = self.prompt_generators
        stacks = self.propagation_stacks

        prototypes = {}
        for m in MODALITIES:
            if config.use_prompt_generation:
                holder = None if modulation_holders is None else modulation_holders.get(m)
                row_mask = None if config.reference_compat else row_masks[m]
                prototypes[m] = first_generators[m].prototypes(shared[m], row_mask, holder, packer)
            else:
                prototypes[m] = None
        released = {m: modality_mask[..., i] if config.reference_compat else None for i, m in enumerate(MODALITIES)}

        def generate(generators, hidden: dict) -> dict:
            return {m: generators[m](hidden[m], prototypes[m], batch_scope, packer, released[m]) for m in MODALITIES}

        prompts = generate(first_generators, shared)

        # Knowledge propagation, stage 1: a stream is concatenated with the prompts of the two others.
        split_streams, received = {}, {}
        for m in MODALITIES:
            o1, o2 = _others(m)
            hidden = self.prompt_fusions[0][m](torch.cat([shared[m], prompts[o1], prompts[o2]], dim=-1))
            hidden = self.prompt_splits[m](stacks[0](hidden, m, key_masks[m], packer))
            split_streams[m] = hidden[..., :dim]
            received[m] = {o1: hidden[..., dim : dim + prompt], o2: hidden[..., dim + prompt :]}

        # Prompt generation, stage 2 (reusing the first stage's prototypes) and momentum updating.
        new_prompts = generate(second_generators, split_streams)
        lam = config.prompt_momentum
        streams = {}
        for m in MODALITIES:
            o1, o2 = _others(m)
            p1 = lam * received[m][o1] + (1.0 - lam) * new_prompts[o1]
            p2 = lam * received[m][o2] + (1.0 - lam) * new_prompts[o2]
            hidden = self.prompt_fusions[1][m](torch.cat([split_streams[m], p1, p2], dim=-1))
            streams[m] = stacks[1](hidden, m, key_masks[m], packer)

        if config.use_coordinator:
            weights = torch.softmax(self.coordinator(torch.cat([streams[m] for m in MODALITIES], dim=-1)), dim=-1)
        else:  # ablation "w/o Cr": equal weights
            weights = shared[AUDIO].new_full((shared[AUDIO].shape[0], 3), 1.0 / 3.0)
        return streams, weights


def _unpacker(state: _PackedState):
    """Padded `[B, T, ...]` views of packed rows, cut back to the caller's `T` (reference mode pads to L)."""

    def unpack(packed: torch.Tensor | None) -> torch.Tensor | None:
        if packed is None:
            return None
        return state.packer.unpack(packed)[:, : state.length]

    return unpack


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`Σ mask·values / Σ mask` (the released MaskedCELoss / MaskedMSELoss normalisation)."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class ComPForEmotionRecognition(ComPPreTrainedModel):
    """ComP with its unimodal heads, fusion tail and fused head: per-utterance emotion classification
    (IEMOCAP) or sentiment regression (CMU-MOSI/MOSEI), for every utterance of a conversation.

    The losses of the current training stage (COMP_SPEC B §4) are computed in `forward` when `labels` are
    given, and in stage-2 training the dynamic gradient modulator (Eq. 10-11) scales the gradient of the
    prototype layers during the following `backward()`: any training loop gets the full method.
    """

    def __init__(self, config: ComPConfig):
        super().__init__(config)
        dim, num_labels = config.hidden_size, config.num_labels
        self.comp = ComPModel(config)
        self.modality_heads = nn.ModuleDict({m: nn.Linear(dim, num_labels) for m in MODALITIES})
        self.fusion = nn.Linear(3 * dim, 3 * dim)
        self.fusion_dropout = ComPDropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(3 * dim, num_labels)
        self.post_init()

    def set_training_stage(self, stage: int) -> None:
        """Switch between stage 1 (unimodal paths) and stage 2 (the full model); stored in the config."""
        if stage not in (1, 2):
            raise ValueError(f"training stage must be 1 or 2, got {stage!r}")
        self.config.training_stage = stage
        self.comp.config.training_stage = stage

    @property
    def training_stage(self) -> int:
        return self.config.training_stage

    def _heads(self, streams: torch.Tensor) -> torch.Tensor:
        """Unimodal heads on `[N, 3, D]` -> `[N, 3, C]`."""
        return torch.stack([self.modality_heads[m](streams[:, i]) for i, m in enumerate(MODALITIES)], dim=1)

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        video: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ComPOutput | tuple:
        r"""
        Args:
            audio (`torch.FloatTensor` of shape `(batch_size, num_utterances, audio_dim)`):
                Per-utterance audio features.
            text (`torch.FloatTensor` of shape `(batch_size, num_utterances, text_dim)`):
                Per-utterance text features.
            video (`torch.FloatTensor` of shape `(batch_size, num_utterances, video_dim)`):
                Per-utterance face features.
            modality_mask (`torch.Tensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
                1 where a modality (audio, text, video) is observed; masked features are zeroed by the model.
            attention_mask (`torch.Tensor` of shape `(batch_size, num_utterances)`, *optional*):
                1 for real utterances, 0 for padding.
            labels (`torch.Tensor` of shape `(batch_size, num_utterances)`, *optional*):
                Class ids (long; -100 is ignored) or sentiment scores (float). Padded positions are ignored.

        Returns:
            [`ComPOutput`]: see its docstring for the fields and shapes; padded positions hold zeros.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        stage = config.training_stage
        want_loss = labels is not None
        modulate = (
            want_loss
            and self.training
            and torch.is_grad_enabled()
            and stage == 2
            and config.use_gradient_modulation
            and config.use_knowledge_propagation
            and config.use_prompt_generation
            and not config.reference_compat  # the released modulator is dead code
        )
        holders = {m: {} for m in MODALITIES} if modulate else None
        state = self.comp._forward_packed(
            audio,
            text,
            video,
            modality_mask=modality_mask,
            attention_mask=attention_mask,
            training_stage=stage,
            return_private=want_loss and stage == 1,
            modulation_holders=holders,
        )
        hidden = state.fused + self.fusion_dropout(F.relu(self.fusion(state.fused)))
        logits = self.classifier(hidden)  # [N, C]
        modality_logits = self._heads(state.streams)  # [N, 3, C]
        if config.is_regression:
            logits, modality_logits = logits.squeeze(-1), modality_logits.squeeze(-1)

        loss, terms, modulation = None, None, None
        if want_loss:
            targets = self._pack_labels(labels, state)
            loss, terms = self._loss(state, logits, modality_logits, targets, stage)
            if modulate:
                modulation = self._modulation_weights(modality_logits, targets, state)
                for i, m in enumerate(MODALITIES):
                    holders[m]["scale"] = modulation[i]

        unpack = _unpacker(state)
        output = ComPOutput(
            loss=loss,
            logits=unpack(logits),
            modality_logits=unpack(modality_logits),
            coordinator_weights=unpack(state.coordinator_weights),
            loss_terms=terms,
            hidden_states=unpack(hidden),
            modulation_weights=modulation,
        )
        return output if return_dict else output.to_tuple()

    # -- losses --------------------------------------------------------------------------------------------
    def _pack_labels(self, labels: torch.Tensor, state: _PackedState) -> torch.Tensor:
        config = self.config
        labels = labels.to(state.fused.device)
        if tuple(labels.shape) != (state.packer.batch, state.length):
            raise ValueError(
                f"`labels` must have shape [{state.packer.batch}, {state.length}], got {tuple(labels.shape)}"
            )
        if config.is_regression:
            labels = labels.to(state.fused.dtype)
        else:
            labels = labels.long()
        if state.packer.length > state.length:  # reference mode padded the batch to max_utterances
            labels = F.pad(labels, (0, state.packer.length - state.length), value=0 if config.is_regression else -100)
        targets = state.packer.pack(labels)
        if not config.is_regression:
            bad = (targets != -100) & ((targets < 0) | (targets >= config.num_labels)) & (state.real > 0)
            if bad.any():
                raise ValueError(
                    f"labels must be class ids in [0, {config.num_labels}) or -100, got {targets[bad][0].item()!r}"
                )
        return targets

    def _valid_rows(self, targets: torch.Tensor, state: _PackedState) -> torch.Tensor:
        valid = state.real > 0
        if not self.config.is_regression:
            valid = valid & (targets != -100)
        return valid.to(state.fused.dtype)

    def _task_loss(self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.config.is_regression:
            return _masked_mean((prediction - target) ** 2, valid)
        nll = -torch.log_softmax(prediction, dim=-1).gather(-1, target.clamp_min(0)[:, None]).squeeze(-1)
        return _masked_mean(nll, valid)

    def _loss(self, state: _PackedState, logits, modality_logits, targets, stage):
        config = self.config
        valid = self._valid_rows(targets, state)
        terms: dict[str, torch.Tensor] = {}
        if stage == 1:
            for i, m in enumerate(MODALITIES):
                terms[f"{m}_task"] = config.stage1_modality_loss_weight * self._task_loss(
                    modality_logits[:, i], targets, valid
                )
            private_logits = self._heads(state.private_streams)  # [N, 3, C]
            if config.is_regression:
                # The private heads regress a noise target (one draw per batch shared by the three modalities).
                noise = (config.private_noise_std * torch.randn_like(targets)).clamp(-3.0, 3.0)
                for i, m in enumerate(MODALITIES):
                    terms[f"{m}_private"] = config.private_loss_weight * self._task_loss(
                        private_logits[:, i, 0], noise, valid
                    )
            else:
                # The private heads are trained to make the true class the *lowest* logit (cross-entropy on
                # 1 - logits), pushing label information out of the private features.
                for i, m in enumerate(MODALITIES):
                    terms[f"{m}_private"] = config.private_loss_weight * self._task_loss(
                        1.0 - private_logits[:, i], targets, valid
                    )
        else:
            terms["fused_task"] = config.fused_loss_weight * self._task_loss(logits, targets, valid)
            for i, m in enumerate(MODALITIES):
                terms[f"{m}_task"] = config.modality_loss_weight * self._task_loss(
                    modality_logits[:, i], targets, valid
                )
            # Mean over every computed row: the real utterances by default (deviation: the released code also
            # averages over the padded positions, which is what reference mode, computing them, does).
            terms["reconstruction"] = (
                config.reconstruction_loss_weight * ((state.reconstructed - state.projected) ** 2).mean()
            )
        terms["disentanglement"] = config.disentangle_loss_weight * self._disentanglement(state)
        loss = sum(terms.values())
        return loss, {k: v.detach() for k, v in terms.items()}

    @staticmethod
    def _disentanglement(state: _PackedState) -> torch.Tensor:
        """DRFuse-style disentanglement: |cos| between private pairs and between shared/private of a modality
        (over real utterances), plus a Jensen-Shannon term between the sigmoid of shared pairs, summed over
        features and averaged over the computed rows (COMP_SPEC B §4)."""
        shared = {m: state.shared[:, i] for i, m in enumerate(MODALITIES)}
        private = {m: state.private[:, i] for i, m in enumerate(MODALITIES)}
        real = state.real

        def abs_cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            cos = F.cosine_similarity(x, y, dim=-1, eps=1e-8).abs()
            return (cos * real).sum() / real.sum().clamp_min(1e-6)

        def jsd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            log_p, log_q = F.logsigmoid(x), F.logsigmoid(y)
            p, q = log_p.exp(), log_q.exp()
            log_mid = torch.log(0.5 * (p + q))
            per_element = p * (log_p - log_mid) + q * (log_q - log_mid)
            return 0.5 * per_element.sum() / max(per_element.shape[0], 1)

        total = state.shared.new_zeros(())
        for m, n in _MODALITY_PAIRS:
            total = total + abs_cos(private[m], private[n]) + abs_cos(private[m], shared[m])
            total = total + abs_cos(private[n], shared[n]) + jsd(shared[m], shared[n])
        return total

    @torch.no_grad()
    def _modulation_weights(self, modality_logits, targets, state: _PackedState) -> torch.Tensor:
        """Dynamic gradient modulator (Eq. 10-11, COMP_SPEC C.2 item 3): `[3, T]` column scales.

        `E^u = 1 − softmax(z^u)_y` (classification) or `|ŷ^u − y|` (regression) over the real utterances of the
        batch; for each modality u and each other modality v, `w = E^u − E^v`, `g_i = (Σw − w_i) / Σw` (1 where
        `|Σw|` is negligible); `W^u = ½ (g(u, v1) + g(u, v2))`. The prototype layer's weight `[K, T]` is shared by
        every conversation, so the per-utterance weights are averaged per position over the batch.
        """
        valid = self._valid_rows(targets, state) > 0
        if self.config.is_regression:
            errors = (modality_logits - targets[:, None]).abs()  # [N, 3]
        else:
            probs = torch.softmax(modality_logits.float(), dim=-1)  # [N, 3, C]
            index = targets.clamp_min(0)[:, None, None].expand(-1, 3, 1)
            errors = 1.0 - probs.gather(-1, index).squeeze(-1)
        return _modulation_from_errors(
            errors[valid].float(), state.packer.position[valid], state.packer.length, self.config.modulation_eps
        )


def _modulation_from_errors(errors: torch.Tensor, positions: torch.Tensor, length: int, eps: float) -> torch.Tensor:
    """Eq. 10 on per-row errors `[N, 3]`, averaged per utterance position -> `[3, length]` (1 where no row)."""
    scales = torch.ones(3, length, device=errors.device, dtype=torch.float32)
    if errors.shape[0] == 0:
        return scales
    per_modality = []
    for u in range(3):
        pair = []
        for v in range(3):
            if v == u:
                continue
            diff = errors[:, u] - errors[:, v]
            total = diff.sum()
            if total.abs() <= eps * max(1.0, diff.abs().sum().item()):
                pair.append(torch.ones_like(diff))
            else:
                pair.append((total - diff) / total)
        per_modality.append(0.5 * (pair[0] + pair[1]))
    row_weights = torch.nan_to_num(torch.stack(per_modality), nan=1.0, posinf=1.0, neginf=1.0)  # [3, N]
    counts = torch.zeros(length, device=errors.device).index_add_(0, positions, torch.ones_like(errors[:, 0]))
    sums = torch.zeros(3, length, device=errors.device).index_add_(1, positions, row_weights)
    has = counts > 0
    scales[:, has] = sums[:, has] / counts[has]
    return scales


__all__ = [
    "ComPForEmotionRecognition",
    "ComPModel",
    "ComPModelOutput",
    "ComPOutput",
    "ComPPreTrainedModel",
]
