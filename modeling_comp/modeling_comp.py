"""PyTorch ComP: Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition.

He, Zhu & Zhang, AAAI 2026 (https://arxiv.org/abs/2512.11239). The network keeps the decomposition of the
authors' released code (per-modality input projections, shared/private encoders and decoders, two
knowledge-propagation stages of masked self-attention, prototype-based prompt generators, a coordinator and a
residual fusion tail) so that released checkpoints convert one-to-one (see `convert_original_checkpoint.py`).

By default the model implements the paper's method with the released code's defects fixed; each fix is a
config switch and `ComPConfig.reference_compat=True` restores the released evaluation forward. Every place
where the two differ carries a comment starting with "Deviation".

This file holds the network. The three modalities (and, in stage 1, the shared and private branches) run as one
batched computation on the packed rows of the real utterances; the batched layers, the per-forward dropout pool,
the packing and the attention masks are in `batched_layers.py`. The model stacks the per-modality layers of one
shape; checkpoints keep one `nn.Linear` per modality (`checkpoint_layout.py` converts). Nothing in the forward
or backward synchronises with the host when the caller passes `utterance_index` (see
`utterance_index_from_attention_mask`).

This file, `configuration_comp.py`, `batched_layers.py` and `checkpoint_layout.py` are copied into every saved
checkpoint for `trust_remote_code` users: they import each other relatively and nothing else of the project.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from .batched_layers import (
    _PACKED_ATTENTION_RATIO,
    ComPDropout,
    ComPMlp,
    ComPStackedLinear,
    ComPStackedMlp,
    _AttentionMasks,
    _dropout,
    _DropoutMasks,
    _no_dropout,
    _normalize,
    _Packer,
)
from .checkpoint_layout import checkpoint_layout_state_dict, model_layout_state_dict, with_checkpoint_names
from .configuration_comp import AUDIO, AUTO_MAP, MODALITIES, TEXT, VIDEO, ComPConfig
from .names import CONVERSATION_INDEX


logger = logging.get_logger(__name__)

try:  # transformers >= 5: initialisers that respect the "already loaded" flags of from_pretrained
    from transformers import initialization as _init
except ImportError:  # pragma: no cover - older transformers
    _init = None

try:  # the keyword arguments transformers' Trainer and layers may pass to any model's forward
    from transformers.utils.generic import TransformersKwargs as _TransformersKwargs

    _PASS_THROUGH_KWARGS = frozenset(_TransformersKwargs.__annotations__) | {"num_items_in_batch"}
except ImportError:  # pragma: no cover - transformers without the typed kwargs
    _PASS_THROUGH_KWARGS = frozenset({"num_items_in_batch", "output_router_logits"})


# For modality m (audio, text, video), the two others in `MODALITIES` order: the prompts m receives.
# Row i of the stacked `[3, ...]` tensors is modality i; `_OTHERS` lists, for each m, its first and second other.
_OTHERS = (1, 2, 0, 2, 0, 1)


def utterance_index_from_attention_mask(attention_mask: torch.Tensor, every_position: bool = False) -> torch.Tensor:
    """The optional `utterance_index` input of the ComP models, computed on the host from `attention_mask`.

    Returns a 1-D `torch.long` tensor of the flat positions `b * T + t` (row-major over `[batch, T]`) of the real
    utterances (`attention_mask != 0`), in increasing order. A data collator computes it on the CPU batch and
    moves it to the device with the other tensors; the model then packs and unpacks rows without a host
    synchronisation (without it the model computes the same thing itself, which costs one `nonzero`).

    With `every_position=True` it lists every position (`arange(batch * T)`): the model then computes the padded
    positions too (masked out of every output and loss), so the shapes inside the model depend on `[batch, T]`
    only, not on how many utterances are real: static shapes for `torch.compile` and CUDA graphs.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"`attention_mask` must have shape [batch, utterances], got {tuple(attention_mask.shape)}")
    if every_position:
        return torch.arange(attention_mask.numel(), device=attention_mask.device)
    return torch.nonzero(attention_mask.reshape(-1) != 0).squeeze(1)


@dataclass
class ComPModelOutput(ModelOutput):
    """Output of [`ComPModel`]. Tensors are `[batch_size, num_utterances, ...]`; padded positions hold zeros.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3 * hidden_size)`):
            The fused representation handed to the fusion tail: the coordinator-weighted concatenation of the
            three streams (stage 2), or their plain concatenation with missing rows zeroed (stage 1).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            `num_hidden_layers + 1` tensors of shape `(batch_size, num_utterances, 3, hidden_size)`: the three
            modality streams entering the first attention layer (the shared features in stage 1; the
            prompt-fused features in stage 2), then the output of every attention layer (both stacks).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            `num_hidden_layers` tensors of shape `(batch_size, 3, num_attention_heads, num_utterances,
            num_utterances)`: each layer's attention probabilities per modality (keys of missing or padded
            utterances get 0).
        modality_hidden_states (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3, hidden_size)`):
            The output `Z̄^u` of each modality's last propagation stage (audio, text, video).
        coordinator_weights (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
            The coordinator's per-utterance modality weights (stage 2 only).
        projected_features, reconstructed_features, shared_features, private_features (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3, hidden_size)`):
            Inputs projections, their decoder reconstructions, and the shared / private encoder outputs.
        modality_mask (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3)`):
            The effective mask: observed modality of a real utterance.
        attention_mask (`torch.FloatTensor` of shape `(batch_size, num_utterances)`):
            Real utterances.
        packed (`ComPPackedState`, *optional*, returned when `return_packed=True`):
            The same quantities as rows of the computed utterances (used by the head's losses).
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    modality_hidden_states: torch.FloatTensor | None = None
    coordinator_weights: torch.FloatTensor | None = None
    projected_features: torch.FloatTensor | None = None
    reconstructed_features: torch.FloatTensor | None = None
    shared_features: torch.FloatTensor | None = None
    private_features: torch.FloatTensor | None = None
    modality_mask: torch.FloatTensor | None = None
    attention_mask: torch.FloatTensor | None = None
    packed: ComPPackedState | None = None

    @property
    def fused_hidden_state(self) -> torch.FloatTensor | None:
        """Former name of `last_hidden_state` (read-only alias, kept for code written against version 0.1)."""
        return self.last_hidden_state


@dataclass
class ComPOutput(ModelOutput):
    """Output of [`ComPForEmotionRecognition`]. Padded positions hold zeros.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
            The loss of the current training stage (see `ComPForEmotionRecognition.set_training_stage`).
        logits (`torch.FloatTensor` of shape `(batch_size, num_utterances, num_labels)`):
            Fused predictions; `(batch_size, num_utterances)` sentiment scores for regression.
        modality_logits (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3, num_labels)`):
            Each modality head's predictions (audio, text, video); `(batch_size, num_utterances, 3)` for
            regression.
        coordinator_weights (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
            Per-utterance modality weights of the coordinator (stage 2; `None` in stage 1, which has none).
        loss_terms (`dict[str, torch.FloatTensor]`, *optional*):
            Each weighted loss term, detached, for logging.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_utterances, 3 * hidden_size)`):
            The fused representation after the residual fusion tail (the classifier's input).
        hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*):
            The backbone's per-layer streams and attention probabilities, when `output_hidden_states=True` /
            `output_attentions=True` (see [`ComPModelOutput`]).
        modulation_weights (`torch.FloatTensor` of shape `(3, num_utterances)`, *optional*):
            The gradient modulator's per-position weights for the prototype layers of audio, text and video
            (stage-2 training with labels only).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    modality_logits: torch.FloatTensor | None = None
    coordinator_weights: torch.FloatTensor | None = None
    loss_terms: dict | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    modulation_weights: torch.FloatTensor | None = None


def _check_on_device(ok: torch.Tensor, message: str) -> None:
    """Raise `ValueError(message)` where the boolean tensor `ok` is False, without a host synchronisation: on the
    CPU the check runs at once; on an accelerator it is a device-side assertion (it fails the next synchronising
    call)."""
    try:
        torch._assert_async(ok, message)
    except RuntimeError:
        raise ValueError(message) from None


def _refuse_unknown_kwargs(model: nn.Module, kwargs: dict) -> None:
    """A keyword argument `forward` does not know is an error (a misspelt `modality_mask` would otherwise run as
    if every modality were observed); transformers' own pass-through arguments and the collator's bookkeeping key
    `conversation_index` (so that `model(**batch)` works, as transformers' `Trainer` calls it) are accepted and
    ignored."""
    for name in kwargs:
        if name not in _PASS_THROUGH_KWARGS and name != CONVERSATION_INDEX:
            raise TypeError(f"{type(model).__name__}.forward() got an unexpected keyword argument {name!r}")


# -- layers ----------------------------------------------------------------------------------------------------
class ComPAttentionLayer(nn.Module):
    """One masked self-attention layer of the three modalities (independent parameters per modality, stacked).

    Keys of missing or padded utterances are masked, queries are not: a missing utterance receives context from
    the observed utterances of the same modality in its conversation. A conversation with no observed key gets
    zeros. There is no output projection and no LayerNorm: the layer returns `hidden + O + MLP(O)`. `qkv` holds
    each modality's query, key and value projections side by side (`[3, D, 3D]`, columns `q | k | v`).
    """

    def __init__(self, config: ComPConfig):
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.attention_dropout_prob = config.attention_dropout_prob
        self.qkv = ComPStackedLinear(len(MODALITIES), dim, 3 * dim)
        self.mlp = ComPStackedMlp(len(MODALITIES), dim, dim, dim, config.hidden_dropout_prob)

    def forward(
        self, hidden: torch.Tensor, masks: _AttentionMasks, packer: _Packer, eager: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`hidden` `[G, N, D]`: `G` groups of packed rows, a multiple of 3, modality-major (the `G / 3` groups of
        a modality are adjacent, e.g. its shared and private streams; each modality's groups are one block of rows
        for its products). Returns `hidden + O + MLP(O)` and, with `eager`, the attention probabilities
        `[G, B, H, T, T]`. The MLP's dropout is the forward's pool (`packer.attention_dropout`) or its own."""
        groups, dim = hidden.shape[0], hidden.shape[-1]
        heads, blocks = self.num_heads, len(MODALITIES)

        def by_module(x: torch.Tensor) -> torch.Tensor:  # [G, N, F] -> [3, G / 3 * N, F]
            return x if groups == blocks else x.reshape(blocks, -1, x.shape[-1])

        def by_group(x: torch.Tensor) -> torch.Tensor:  # the inverse
            return x if groups == blocks else x.view(groups, -1, x.shape[-1])

        qkv = by_group(self.qkv(by_module(masks.bounded_for_others(hidden))))  # [G, N, 3D]
        if masks.packed:  # [G, H, N, hd]: every row of the group at once, the mask keeps conversations apart
            qkv = qkv.view(groups, packer.rows, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        else:  # [G * B, H, T, hd]
            qkv = packer.unpack(qkv, dim=1).view(groups * packer.batch, packer.length, 3, heads, dim // heads)
            qkv = qkv.permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        attended, probs = self._attend(query, key, value, masks, eager)
        if masks.packed:
            attended = attended.transpose(1, 2).reshape(groups, packer.rows, dim)
        else:
            attended = packer.pack(attended.transpose(1, 2).reshape(groups, packer.batch, packer.length, dim), dim=1)
            probs = probs.unflatten(0, (groups, packer.batch)) if probs is not None else None
        return hidden + attended + by_group(self.mlp(by_module(attended), packer.attention_dropout)), probs

    def _attend(
        self, query, key, value, masks: _AttentionMasks, eager: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Masked attention `softmax(q k^T / sqrt(hd)) v`: eager (also returning the probabilities; always in the
        padded layout) or `scaled_dot_product_attention`."""
        dropout = self.attention_dropout_prob if self.training else 0.0
        scale = query.shape[-1] ** -0.5
        if eager:
            scores = (query @ key.transpose(-1, -2)) * scale
            probs = torch.softmax(scores.masked_fill(~masks.allowed, float("-inf")), dim=-1)
            probs = probs.masked_fill(masks.no_key, 0.0)
            return _dropout(probs, dropout, self.training) @ value, probs
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=masks.additive(query.dtype), dropout_p=dropout, scale=scale
        )
        return attended.masked_fill(masks.no_key, 0.0), None


class ComPPropagationStack(nn.Module):
    """`num_hidden_layers // 2` residual attention layers per modality (the released `block1` / `block2`)."""

    def __init__(self, config: ComPConfig):
        super().__init__()
        self.layers = nn.ModuleList([ComPAttentionLayer(config) for _ in range(config.num_hidden_layers // 2)])
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden: torch.Tensor,
        masks: _AttentionMasks,
        packer: _Packer,
        eager: bool = False,
        hidden_states: list | None = None,
        attentions: list | None = None,
    ) -> torch.Tensor:
        """`hidden` `[G, N, D]`: audio, text, video, each repeated `G / 3` times in a row (modality-major).
        `hidden_states` and `attentions`, when given, receive each layer's output and attention probabilities of
        the first group of each modality."""
        first = slice(None, None, hidden.shape[0] // len(MODALITIES))
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden, probs = self._gradient_checkpointing_func(layer.__call__, hidden, masks, packer, eager)
            else:
                hidden, probs = layer(hidden, masks, packer, eager)
            if hidden_states is not None:
                hidden_states.append(hidden[first])
            if attentions is not None:
                attentions.append(probs[first])
        return hidden


class ComPGradientModulator(nn.Module):
    """Dynamic gradient modulator (Eq. 10-11 of the paper), a submodule of [`ComPForEmotionRecognition`].

    Armed by the head's forward in stage-2 training with labels: from the unimodal predictions it computes, per
    modality u, `E^u = 1 − softmax(z^u)_y` (classification) or `|ŷ^u − y|` (regression) over the real utterances,
    for each other modality v `w = E^u − E^v`, `g_i = (Σw − w_i) / Σw` (1 where `|Σw|` is below `modulation_eps`
    times `max(1, Σ|w|)`), `W^u = ½ (g(u, v1) + g(u, v2))`, and averages `W^u` per utterance position over the
    batch (the prototype layer's weight `[K, T]` is shared by every conversation) into `scales` `[3, T]`.

    The following `backward()` multiplies the gradient of each modality's prototype-layer first weight (slice m
    of the stacked `[3, max_utterances, K]` weight) row-wise by its row of `scales`, through a gradient hook on
    that parameter (registered once by the head). Run the backward of an armed forward before the next forward of
    the head, as every training loop does: each forward of the head re-arms or disarms the modulator. All of it runs on the device, without a host
    synchronisation, and under `torch.compile` (the hooks run in the eager autograd engine).
    """

    def __init__(self, config: ComPConfig):
        super().__init__()
        self.eps = config.modulation_eps
        self.is_regression = config.is_regression
        self.scales: torch.Tensor | None = None

    def disarm(self) -> None:
        self.scales = None

    @torch.no_grad()
    def forward(
        self,
        modality_logits: torch.Tensor,
        targets: torch.Tensor,
        valid: torch.Tensor,
        positions: torch.Tensor,
        length: int,
    ) -> torch.Tensor:
        """`modality_logits` `[3, N, C]` (or `[3, N]`), `targets` `[N]`, `valid` `[N]` bool, `positions` `[N]`
        (utterance position of each row) -> `scales` `[3, length]`, kept for the next backward."""
        if self.is_regression:
            errors = (modality_logits.float() - targets.float()).abs()  # [3, N]
        else:
            probs = torch.softmax(modality_logits.float(), dim=-1)  # [3, N, C]
            index = targets.clamp_min(0)[None, :, None].expand(3, -1, 1)
            errors = 1.0 - probs.gather(-1, index).squeeze(-1)
        self.scales = _modulation_from_errors(errors.T, positions, length, self.eps, valid)
        return self.scales

    def _scale_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        scales = self.scales
        if scales is None:
            return grad
        # the weight is [3, max_utterances, K]; the forward used its first T rows
        scale = F.pad(scales, (0, grad.shape[1] - scales.shape[1]), value=1.0)
        return grad * scale.to(grad.dtype)[:, :, None]


def _modulation_from_errors(
    errors: torch.Tensor, positions: torch.Tensor, length: int, eps: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 10 on per-row errors `[N, 3]` of the `valid` rows, averaged per utterance position -> `[3, length]`
    (1 where no valid row; non-finite weights are 1). No host synchronisation."""
    errors = errors.float()
    if valid is None:
        valid = torch.ones(errors.shape[0], dtype=torch.bool, device=errors.device)
    # diff[n, u, v] = E^u - E^v on the valid rows, 0 elsewhere; total[u, v] = Σ_n diff[n, u, v]
    diff = torch.where(valid[:, None, None], errors[:, :, None] - errors[:, None, :], 0.0)
    total = diff.sum(0)  # [3, 3]
    # g_n(u, v) = (total - diff_n) / total = 1 - diff_n / total, and 1 where |total| is negligible (inverse 0);
    # the u == v pair has diff 0, so W^u_n = ½ Σ_{v≠u} g_n(u, v) = 1 − ½ Σ_v diff_n[u, v] / total[u, v]
    guard = total.abs() <= eps * diff.abs().sum(0).clamp_min(1.0)
    inverse = total.reciprocal().masked_fill_(guard, 0.0)
    ratio = (diff * inverse).sum(-1)  # [N, 3], 0 on the rows that are not valid
    # per position: mean over the valid rows of W = 1 − ½ ratio (1 where no valid row: ratio sums to 0 there)
    ratios = ratio.new_zeros(length, 3).index_add_(0, positions, ratio)
    counts = ratio.new_zeros(length, 1).index_add_(0, positions, valid.to(ratio.dtype)[:, None])
    weights = 1.0 - 0.5 * ratios / counts.clamp_min(1.0)
    return torch.nan_to_num(weights.T, nan=1.0, posinf=1.0, neginf=1.0)  # non-finite errors: no modulation


class ComPPromptGenerator(nn.Module):
    """Prompt generation (Eq. 6-9 of the paper) of the three modalities for one propagation stage (the
    parameters, stacked per modality).

    The first stage's generator owns the prototype layer (`prototype_layer`, an MLP over the utterance axis
    mapping `max_utterances` positions to `num_prototypes` prototypes, see `prototypes`); the second stage reuses
    the first stage's prototypes, as the released code does. A prompt is `prompt_projection(softmax(cos(z,
    prototypes)) · prototypes) + residual_projection(z)`.
    """

    def __init__(self, config: ComPConfig, with_prototype_layer: bool):
        super().__init__()
        groups, drop = len(MODALITIES), config.hidden_dropout_prob
        self.reference_compat = config.reference_compat
        self.batch_scope = config.reference_compat or config.prototype_scope == "batch"
        if with_prototype_layer:
            self.prototype_layer = ComPStackedMlp(
                groups, config.max_utterances, config.num_prototypes, config.num_prototypes, drop
            )
        self.prompt_projection = ComPStackedMlp(groups, config.hidden_size, config.prompt_dim, config.prompt_dim, drop)
        self.residual_projection = ComPStackedLinear(groups, config.hidden_size, config.prompt_dim)

    def prototypes(self, shared: torch.Tensor, row_missing: torch.Tensor, packer: _Packer) -> torch.Tensor:
        """Compress each conversation's utterances (rows `[3, N, D]`) into `K` prototypes `[3, B, K, D]`.

        Only the first `T` rows of the `[max_utterances, K]` first layer are used: with the rows of padded (and,
        by default, missing) utterances zeroed, the other rows would only ever multiply zeros.
        """
        layer = self.prototype_layer
        if not self.reference_compat:
            # Deviation (default mode): missing utterances do not feed the prototypes (the intent of Eq. 7's
            # mask), and padded ones are zeros. The released code feeds both (padded rows carry the biases).
            shared = shared.masked_fill(row_missing, 0.0)
        groups, dim = shared.shape[0], shared.shape[-1]
        # the utterance axis last: [3, B * D, T]
        transposed = packer.unpack(shared, dim=1).transpose(2, 3).reshape(groups, -1, packer.length)
        hidden = torch.baddbmm(layer.fc1.bias, transposed, layer.fc1.weight[:, : packer.length])
        protos = packer.dropout(layer.fc2(packer.dropout(F.gelu(hidden))))  # [3, B * D, K]
        return protos.view(groups, packer.batch, dim, -1).transpose(2, 3)  # [3, B, K, D]

    def forward(
        self,
        hidden: torch.Tensor,
        prototypes: torch.Tensor | None,
        packer: _Packer,
        released_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prompts `[3, N, p]` for the rows `hidden` `[3, N, D]` given prototypes `[3, B, K, D]` (`None`: the
        "w/o PG" ablation, only the residual projection).

        `released_mask` (`[3, B, L]`, reference mode only) reproduces the released code's similarity mask bit for
        bit: it is a no-op mathematically, but `cos - 10000` rounds in float32.
        """
        residual = self.residual_projection(hidden)
        if prototypes is None:
            return residual
        groups, _, dim = hidden.shape
        queries = _normalize(hidden)
        keys = _normalize(prototypes)
        # Eq. 7's mask is constant along each row of the similarity matrix, so it cannot change a row softmax
        # (the released code's mask is a no-op as well); the default mode omits it.
        if self.batch_scope:
            # Released behaviour: every utterance attends to the prototypes of every conversation in the batch,
            # so a prediction depends on the rest of the batch.
            similarity = queries @ keys.reshape(groups, -1, dim).transpose(1, 2)  # [3, N, B*K]
            if released_mask is not None:
                # the released mask is read in (utterance, conversation) order against (conversation, utterance)
                # rows; only its float32 rounding has an effect
                offset = (1.0 - released_mask.transpose(1, 2).reshape(groups, -1).to(similarity.dtype)) * -10000.0
                similarity = similarity + offset[..., None]
            aggregated = torch.softmax(similarity, dim=-1) @ prototypes.reshape(groups, -1, dim)
        else:
            # Deviation (default, prototype_scope="dialogue"): only the conversation's own prototypes, in the
            # [B, T] layout with batched products.
            flat = groups * packer.batch
            queries = packer.unpack(queries, dim=1).reshape(flat, packer.length, dim)
            similarity = torch.bmm(queries, keys.reshape(flat, -1, dim).transpose(1, 2))  # [3 * B, T, K]
            aggregated = torch.bmm(torch.softmax(similarity, dim=-1), prototypes.reshape(flat, -1, dim))
            aggregated = packer.pack(aggregated.view(groups, packer.batch, packer.length, dim), dim=1)  # [3, N, D]
        return self.prompt_projection(aggregated, packer.dropout) + residual


class ComPCoordinator(ComPMlp):
    """The coordinator: per utterance, softmax weights of the three modality streams from their concatenation
    (`fc1 -> GELU -> dropout -> fc2 -> dropout -> softmax`)."""

    def forward(self, hidden: torch.Tensor, dropout=None) -> torch.Tensor:
        """`hidden` `[N, 3D]` -> weights `[N, 3]`; `dropout`: the forward's pool (default: its own)."""
        dropout = dropout if dropout is not None else self.dropout
        return torch.softmax(dropout(self.fc2(dropout(F.gelu(self.fc1(hidden))))), dim=-1)


# -- models ----------------------------------------------------------------------------------------------------
class ComPPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for ComP models."""

    config_class = ComPConfig
    config: ComPConfig
    base_model_prefix = "comp"
    main_input_name = TEXT
    input_modalities = MODALITIES
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["ComPAttentionLayer"]

    def __init__(self, config: ComPConfig, *args, **kwargs):
        config.validate()  # a field changed after the config was made is checked before any module is built
        super().__init__(config, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, declaring every supported Auto class in `config.auto_map` (the
        model files themselves are copied next to the weights), so the folder loads with
        `trust_remote_code=True` in a process that does not have this package.

        When the config declares `custom_pipelines` (a checkpoint saved with its pipeline, then loaded), the
        pipeline's files are written too, taken from this package or from the folder the model was loaded from;
        where neither has them the declaration is left out of the saved config (with a warning), so that a saved
        folder never declares a pipeline it cannot load. With `push_to_hub=True` the folder is saved, then
        uploaded whole with `push_to_hub`.
        """
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        # Provenance of the weights: the stage they were saved in (a model loaded from them starts in it).
        self.config.trained_stage = int(self.training_stage)
        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "token", "private") if k in kwargs}
        declared = getattr(self.config, "custom_pipelines", None)
        sources = _pipeline_sources(self.config, declared) if declared else []
        if declared and sources is None:
            logger.warning(
                f"the config declares custom_pipelines {sorted(declared)} but their files are neither beside "
                f"{Path(__file__).name} nor in {self.config.name_or_path!r}; saving without the declaration"
            )
            del self.config.custom_pipelines
            try:
                result = super().save_pretrained(save_directory, *args, **kwargs)
            finally:
                self.config.custom_pipelines = declared
        else:
            result = super().save_pretrained(save_directory, *args, **kwargs)
            if kwargs.get("is_main_process", True):
                for source in sources:
                    target = Path(save_directory) / source.name
                    if not target.exists():
                        shutil.copyfile(source, target)
        if push:
            repo_id = hub_kwargs.pop("repo_id", Path(save_directory).name)
            self.push_to_hub(repo_id, **hub_kwargs)
        return result

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default `nn.Linear` initialisation (as the released code), or N(0, initializer_range); a
        `ComPStackedLinear` is initialised as the `nn.Linear`s it stacks."""
        if not isinstance(module, (nn.Linear, ComPStackedLinear)):
            return
        std = self.config.initializer_range
        if std is not None:
            self._init(module.weight, "normal", std=std)
            if module.bias is not None:
                self._init(module.bias, "zeros")
            return
        fan_in = module.in_features
        # kaiming_uniform_(a=sqrt(5)) of an [out, in] weight is U(-1/sqrt(in), 1/sqrt(in)), the bias's bound too
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        self._init(module.weight, "uniform", a=-bound, b=bound)
        if module.bias is not None:
            self._init(module.bias, "uniform", a=-bound, b=bound)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """`load_state_dict` accepts the checkpoint layout (one `nn.Linear` per modality) as well as the stacked
        one: the keys under `prefix` are stacked first."""
        own = {key: value for key, value in state_dict.items() if key.startswith(prefix)}
        stacked = model_layout_state_dict(own)
        if stacked.keys() != own.keys():
            for key in own:
                del state_dict[key]
            state_dict.update(stacked)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _init(tensor: torch.Tensor, kind: str, **kwargs) -> None:
        source = _init if _init is not None else nn.init
        getattr(source, f"{kind}_")(tensor, **kwargs)

    def _constant(self, values: tuple, like: torch.Tensor) -> torch.Tensor:
        """`torch.tensor(values)` on `like`'s device and dtype, made once (not a host-to-device copy per step)."""
        cache = self.__dict__.setdefault("_constants", {})
        key = (values, like.device, like.dtype)
        if key not in cache:
            cache[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
        return cache[key]

    def _attention_is_eager(self, output_attentions: bool) -> bool:
        implementation = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"ComP implements attn_implementation 'sdpa' (default) and 'eager', got {implementation!r}"
            )
        return output_attentions or implementation == "eager"


def _pipeline_sources(config: ComPConfig, declared: dict) -> list[Path] | None:
    """The files a checkpoint needs for the pipelines `declared` in its config: each `impl`'s module and its
    relative imports, from the first place that holds them all (beside this file, or the folder the model was
    loaded from), and that folder's `preprocessor_config.json` when it has one. `None` when no place has them."""
    from transformers.dynamic_module_utils import get_relative_import_files

    modules = {
        entry["impl"].split(".")[0] for entry in declared.values() if isinstance(entry, dict) and "impl" in entry
    }
    loaded_from = getattr(config, "name_or_path", None)
    loaded_from = Path(loaded_from) if loaded_from and os.path.isdir(loaded_from) else None
    for folder in [Path(__file__).parent] + ([loaded_from] if loaded_from else []):
        files = [folder / f"{module}.py" for module in sorted(modules)]
        if not all(file.is_file() for file in files):
            continue
        found = set(files)
        for file in files:
            found.update(Path(f) for f in get_relative_import_files(file))
        if loaded_from is not None and (loaded_from / "preprocessor_config.json").is_file():
            found.add(loaded_from / "preprocessor_config.json")
        return sorted(found)
    return None


@dataclass
class ComPPackedState:
    """Per-row tensors of the computed utterances (rows in `packer` order), for the head's losses.

    Stacked tensors are `[3, N, ...]` (audio, text, video first)."""

    packer: _Packer
    length: int  # the caller's number of utterance positions
    fused: torch.Tensor  # [N, 3D]
    streams: torch.Tensor  # [3, N, D]
    coordinator_weights: torch.Tensor | None  # [N, 3]
    private_streams: torch.Tensor | None  # [3, N, D]
    projected: torch.Tensor  # [3, N, D]
    reconstructed: torch.Tensor  # [3, N, D]
    shared: torch.Tensor  # [3, N, D]
    private: torch.Tensor  # [3, N, D]
    modality_mask: torch.Tensor  # [N, 3] bool
    real: torch.Tensor  # [N] bool: real utterances
    # padded rows computed in the default mode (`utterance_index` listing every position): the losses average over
    # the real rows and the outputs are zeroed at padded positions; `attention` is the caller's [B, T] mask
    masked_rows: bool = False
    attention: torch.Tensor | None = None

    def unpack(self, packed: torch.Tensor | None, dim: int = 0) -> torch.Tensor | None:
        """Padded `[B, T, ...]` view of rows (at `dim`), cut back to the caller's `T` (reference mode pads to L)."""
        if packed is None:
            return None
        padded = self.packer.unpack(packed, dim)
        padded = padded if self.packer.length == self.length else padded.narrow(dim + 1, 0, self.length)
        if self.masked_rows:
            shape = [1] * padded.dim()
            shape[dim], shape[dim + 1] = self.attention.shape
            padded = padded.masked_fill(~self.attention.view(shape), 0.0)
        return padded


class ComPModel(ComPPreTrainedModel):
    """The ComP backbone: from the three feature streams up to the fused (coordinator-weighted) representation.

    Inputs: `audio`, `text`, `video` `[batch, T, dim_m]` with `1 <= T <= config.max_utterances` (floating point;
    cast to the model's dtype); `modality_mask` `[batch, T, 3]` (non-zero = observed); `attention_mask`
    `[batch, T]` (non-zero = real utterance); optional `utterance_index` (see
    `utterance_index_from_attention_mask`). What a feature holds where it is masked (missing or padded) cannot
    change any output, even NaN or Inf: the model selects zeros there. What one conversation holds never changes
    another's outputs (a conversation with non-finite observed values gets NaN outputs itself).

    The training stage (1: unimodal paths; 2: the full model, also used for inference) is held by the model
    (`training_stage`); a new model starts in `config.trained_stage` (2 unless the weights were saved in stage 1).
    """

    def __init__(self, config: ComPConfig):
        super().__init__(config)
        dim, prompt = config.hidden_size, config.prompt_dim
        drop = config.hidden_dropout_prob
        self.training_stage = int(getattr(config, "trained_stage", 2))
        self.gradient_checkpointing = False
        groups = len(MODALITIES)
        self.input_projections = nn.ModuleDict({m: nn.Linear(config.modality_dims[m], dim) for m in MODALITIES})
        self.input_dropout = ComPDropout(drop)
        # groups: shared audio, text, video, then private audio, text, video
        self.encoders = ComPStackedMlp(2 * groups, dim, dim, dim, drop)
        self.decoders = ComPStackedMlp(groups, 2 * dim, dim, dim, drop)
        self.propagation_stacks = nn.ModuleList([ComPPropagationStack(config) for _ in range(2)])
        # Linear(D + 2p -> D) that fuses a stream with the two prompts it receives, before each stack.
        self.prompt_fusions = nn.ModuleList([ComPStackedLinear(groups, dim + 2 * prompt, dim) for _ in range(2)])
        # After the first stack: MLP(D, D, D + 2p) that splits a stream back into features and two prompts.
        self.prompt_splits = ComPStackedMlp(groups, dim, dim, dim + 2 * prompt, drop)
        self.prompt_generators = nn.ModuleList(
            [ComPPromptGenerator(config, with_prototype_layer=stage == 0) for stage in range(2)]
        )
        self.coordinator = ComPCoordinator(3 * dim, dim, 3, drop)
        self.post_init()

    def set_training_stage(self, stage: int) -> None:
        """1 trains the unimodal paths only (no prompts, no coordinator); 2 is the full model (and inference)."""
        if stage not in (1, 2):
            raise ValueError(f"training stage must be 1 or 2, got {stage!r}")
        self.training_stage = stage

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        video: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        utterance_index: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_packed: bool = False,
        output_private_streams: bool = False,
        training_stage: int | None = None,
        **kwargs,
    ) -> ComPModelOutput | tuple:
        r"""
        Args:
            audio (`torch.FloatTensor` of shape `(batch_size, num_utterances, audio_dim)`):
                Per-utterance audio features (anything, even NaN, where missing or padded: the model masks them).
            text (`torch.FloatTensor` of shape `(batch_size, num_utterances, text_dim)`):
                Per-utterance text features.
            video (`torch.FloatTensor` of shape `(batch_size, num_utterances, video_dim)`):
                Per-utterance face features.
            modality_mask (`torch.Tensor` of shape `(batch_size, num_utterances, 3)`, *optional*):
                Non-zero where a modality (audio, text, video) is observed. Defaults to all observed.
            attention_mask (`torch.Tensor` of shape `(batch_size, num_utterances)`, *optional*):
                Non-zero for real utterances, 0 for padding. Defaults to all real.
            utterance_index (`torch.LongTensor` of shape `(num_real_utterances,)`, *optional*):
                `utterance_index_from_attention_mask(attention_mask)`, computed by the collator on the host; it
                must agree with `attention_mask`. Without it the model computes it (one host synchronisation).
            output_attentions (`bool`, *optional*):
                Return each layer's attention probabilities (computed by the eager attention for that call).
            output_hidden_states (`bool`, *optional*):
                Return the streams entering the first attention layer and after every attention layer.
            return_dict (`bool`, *optional*):
                Return a [`ComPModelOutput`] (default: `config.return_dict`) instead of a tuple.
            return_packed (`bool`, *optional*, defaults to `False`):
                Return the per-row tensors in `packed` and skip the padded copies of the feature fields
                (`ComPForEmotionRecognition` computes its heads and losses on rows).
            output_private_streams (`bool`, *optional*, defaults to `False`):
                Stage 1: also run each modality's private features through the attention stacks (in the same
                batched pass as the shared ones), for the private-branch loss; in `packed.private_streams`.
            training_stage (`int`, *optional*):
                Overrides the model's `training_stage` for this call.
            kwargs:
                transformers' pass-through arguments (e.g. the Trainer's `num_items_in_batch`), ignored; any other
                keyword raises `TypeError`.

        Returns:
            [`ComPModelOutput`] or a tuple; padded positions hold zeros.
        """
        _refuse_unknown_kwargs(self, kwargs)
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        )
        stage = training_stage if training_stage is not None else self.training_stage
        if stage not in (1, 2):
            raise ValueError(f"training stage must be 1 or 2, got {stage!r}")
        eager = self._attention_is_eager(bool(output_attentions))
        features, observed, attention = self._validate_inputs(
            audio, text, video, modality_mask, attention_mask, utterance_index
        )
        packer, features, observed, attention = self._layout(features, observed, attention, utterance_index)
        with_private = stage == 1 and output_private_streams
        self._arm_dropout(packer, stage, with_private)
        mask_rows = packer.pack(observed)  # [N, 3] bool
        missing_rows = ~mask_rows
        projected, shared, private, reconstructed = self._encode(features, missing_rows, packer)
        key_mask, row_missing = observed.permute(2, 0, 1), missing_rows.T[..., None]  # [3, B, T], [3, N, 1]
        hidden_states: list[torch.Tensor] | None = [] if output_hidden_states else None
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        record = (hidden_states, attentions)
        if stage == 1 or not config.use_knowledge_propagation:
            private_source = private if with_private else None
            streams, private_streams, fused = self._unimodal(
                shared, private_source, key_mask, row_missing, packer, eager, record
            )
            coordinator_weights = None
        else:
            streams, coordinator_weights, fused = self._propagate(
                shared, key_mask, row_missing, observed, packer, eager, record
            )
            private_streams = None
        state = ComPPackedState(
            packer=packer,
            length=audio.shape[1],
            fused=fused,
            streams=streams,
            coordinator_weights=coordinator_weights,
            private_streams=private_streams,
            projected=projected,
            reconstructed=reconstructed,
            shared=shared,
            private=private,
            modality_mask=mask_rows,
            real=packer.pack(attention),
            masked_rows=packer.index is None and not config.reference_compat,
            attention=attention,
        )
        outputs = self._outputs(state, hidden_states, attentions, return_packed)
        return outputs if return_dict else outputs.to_tuple()

    # -- the steps of the forward --------------------------------------------------------------------------------
    def _validate_inputs(self, audio, text, video, modality_mask, attention_mask, utterance_index):
        config = self.config
        features = {AUDIO: audio, TEXT: text, VIDEO: video}
        dtype = self.input_projections[AUDIO].weight.dtype
        batch, length = None, None
        for name, tensor in features.items():
            if tensor is None:
                raise ValueError(f"ComP needs all three feature tensors; `{name}` is None (pass zeros and mask it)")
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}")
            if tensor.dim() != 3:
                raise ValueError(f"`{name}` must have shape [batch, utterances, dim], got {tuple(tensor.shape)}")
            if tensor.shape[-1] != config.modality_dims[name]:
                raise ValueError(
                    f"`{name}` has feature dimension {tensor.shape[-1]}, but this model expects "
                    f"{name}_dim={config.modality_dims[name]}"
                )
            if tensor.dtype == torch.bool or tensor.is_complex():
                raise ValueError(f"`{name}` must hold real numbers, got dtype {tensor.dtype}")
            if batch is None:
                batch, length = tensor.shape[:2]
            elif tuple(tensor.shape[:2]) != (batch, length):
                raise ValueError(
                    f"`{name}` has shape {tuple(tensor.shape)}, expected [{batch}, {length}, dim] like `audio`"
                )
            features[name] = tensor.to(dtype)  # float64 / float16 / integer features: cast to the model's dtype
        if batch == 0 or length == 0:
            raise ValueError(
                f"ComP needs at least one conversation of at least one utterance position, got features of shape "
                f"{tuple(audio.shape)}"
            )
        if length > config.max_utterances:
            raise ValueError(
                f"conversations of {length} utterances exceed this model's max_utterances={config.max_utterances}"
            )
        device = audio.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, device=device, dtype=torch.bool)
        if modality_mask is None:
            modality_mask = torch.ones(batch, length, 3, device=device, dtype=torch.bool)
        if tuple(attention_mask.shape) != (batch, length):
            raise ValueError(
                f"`attention_mask` must have shape [{batch}, {length}], got {tuple(attention_mask.shape)}"
            )
        if tuple(modality_mask.shape) != (batch, length, 3):
            raise ValueError(
                f"`modality_mask` must have shape [{batch}, {length}, 3], got {tuple(modality_mask.shape)}"
            )
        if utterance_index is not None and (
            utterance_index.dim() != 1
            or utterance_index.dtype not in (torch.int64, torch.int32)
            or utterance_index.shape[0] > batch * length
        ):
            raise ValueError(
                f"`utterance_index` must be a 1-D integer tensor of at most {batch * length} flat positions "
                f"(utterance_index_from_attention_mask), got dtype {utterance_index.dtype} shape "
                f"{tuple(utterance_index.shape)}"
            )
        attention = attention_mask != 0
        observed = (modality_mask != 0) & attention[..., None]
        return features, observed, attention

    def _layout(self, features: dict, observed, attention, utterance_index):
        """The rows the forward computes (`_Packer`), and the inputs in that layout. Reference mode pads every
        batch to `max_utterances` and computes every position, as the released code does (outputs are cut back
        afterwards); otherwise the rows are the real utterances (`utterance_index`), or every position."""
        batch, length = attention.shape
        if self.config.reference_compat:
            pad = self.config.max_utterances - length
            features = {m: F.pad(x, (0, 0, 0, pad)) for m, x in features.items()}
            observed, attention = F.pad(observed, (0, 0, 0, pad)), F.pad(attention, (0, pad))
            return _Packer(None, batch, self.config.max_utterances, attention.device), features, observed, attention
        if utterance_index is None:
            utterance_index = utterance_index_from_attention_mask(attention)  # the one host synchronisation
        full = utterance_index.shape[0] == batch * length  # every position is a row: no packing needed
        packer = _Packer(None if full else utterance_index.long(), batch, length, attention.device)
        return packer, features, observed, attention

    def _arm_dropout(self, packer: _Packer, stage: int, with_private: bool) -> None:
        """The forward's hidden dropouts travel with its layout: `packer.dropout` for every hidden dropout (one
        pool of masks drawn at once, `_DropoutMasks`), and `packer.attention_dropout` for the attention layers'
        MLPs (None: the layers' own). Gradient checkpointing re-runs the attention layers in the backward: their
        dropouts then draw their own masks (the checkpoint restores the random state), not masks from the pool."""
        pooled_attention = not (self.gradient_checkpointing and self.training)
        dropout = _no_dropout
        if self.training and self.config.hidden_dropout_prob > 0.0:
            numel = self._dropout_numel(stage, packer, with_private, pooled_attention)
            dropout = _DropoutMasks(self.config.hidden_dropout_prob, numel, self.input_projections[AUDIO].weight)
        packer.dropout, packer.attention_dropout = dropout, dropout if pooled_attention else None

    def _encode(self, features: dict, missing_rows: torch.Tensor, packer: _Packer):
        """Input projections, then the shared and private encoders (one batched pass over 6 groups) and the
        decoders, on the packed rows: `projected`, `shared`, `private`, `reconstructed`, each `[3, N, D]`."""
        # The model zeroes masked features itself, by selection: NaN or Inf there cannot leak into any output.
        inputs = [
            packer.pack(features[m]).masked_fill(missing_rows[:, i, None], 0.0) for i, m in enumerate(MODALITIES)
        ]
        projected = torch.stack([self.input_projections[m](inputs[i]) for i, m in enumerate(MODALITIES)])
        projected = packer.dropout(projected)  # [3, N, D]
        encoded = self.encoders(projected.repeat(2, 1, 1), packer.dropout)  # shared a, t, v, private a, t, v
        shared, private = encoded.unflatten(0, (2, 3)).unbind(0)
        reconstructed = self.decoders(torch.cat([shared, private], dim=-1), packer.dropout)
        return projected, shared, private, reconstructed

    def _unimodal(self, shared, private, key_mask, row_missing, packer, eager, record):
        """Stage 1 (and the "w/o KP" ablation): each stream through both stacks, no prompts. With `private`, the
        3 shared and 3 private streams run as 6 groups of one pass. Returns the streams `[3, N, D]`, the private
        streams (or None) and the fused representation `[N, 3D]` (missing rows zeroed before concatenation)."""
        hidden_states, attentions = record
        hidden, masks = shared, key_mask
        if private is not None:
            # Deviation (default mode): each private branch uses its own private features. The released
            # code feeds audio's private features to the text and video branches.
            sources = private[:1].expand(3, -1, -1) if self.config.reference_compat else private
            # modality-major groups: shared a, private a, shared t, private t, shared v, private v
            hidden = torch.stack([shared, sources], dim=1).flatten(0, 1)
            masks = key_mask.repeat_interleave(2, dim=0)
        attention_masks = _AttentionMasks(masks, packer, self._packed_attention(packer, eager))
        if hidden_states is not None:
            hidden_states.append(shared)
        for stack in self.propagation_stacks:
            hidden = stack(hidden, attention_masks, packer, eager, hidden_states, attentions)
        streams = hidden[::2] if private is not None else hidden
        private_streams = hidden[1::2] if private is not None else None
        fused = streams.masked_fill(row_missing, 0.0).permute(1, 0, 2).reshape(packer.rows, -1)  # [N, 3D]
        return streams, private_streams, fused

    def _propagate(self, shared, key_mask, row_missing, observed, packer, eager, record):
        """Stage 2: prompt generation, two knowledge-propagation stages with momentum, and the coordinator.
        Returns the streams `[3, N, D]`, the coordinator weights `[N, 3]` and the fused representation `[N, 3D]`."""
        config = self.config
        hidden_states, attentions = record
        first_generator, second_generator = self.prompt_generators
        first_stack, second_stack = self.propagation_stacks
        others = self._constant(_OTHERS, shared.new_empty(0, dtype=torch.long))
        masks = _AttentionMasks(key_mask, packer, self._packed_attention(packer, eager))

        def received(prompts: torch.Tensor) -> torch.Tensor:
            """For each modality, the prompts of its two others, concatenated: [3, N, 2p]."""
            groups, rows, width = prompts.shape
            chosen = prompts.index_select(0, others).view(groups, 2, rows, width)  # [3, 2, N, p]
            return chosen.transpose(1, 2).reshape(groups, rows, 2 * width)

        prototypes = first_generator.prototypes(shared, row_missing, packer) if config.use_prompt_generation else None
        released = observed.permute(2, 0, 1) if config.reference_compat else None
        prompts = first_generator(shared, prototypes, packer, released)  # [3, N, p]
        # Knowledge propagation, stage 1: a stream is concatenated with the prompts of the two others.
        hidden = self.prompt_fusions[0](torch.cat([shared, received(prompts)], dim=-1))
        if hidden_states is not None:
            hidden_states.append(hidden)
        hidden = first_stack(hidden, masks, packer, eager, hidden_states, attentions)
        split = self.prompt_splits(hidden, packer.dropout)
        split_streams, split_prompts = split.split([config.hidden_size, 2 * config.prompt_dim], -1)
        # Prompt generation, stage 2 (reusing the first stage's prototypes) and momentum updating:
        # P = λ·(prompts received from the first stack) + (1 − λ)·(new prompts of the others).
        new_prompts = second_generator(split_streams, prototypes, packer, released)
        lam = config.prompt_momentum
        momentum = lam * split_prompts + (1.0 - lam) * received(new_prompts)
        hidden = self.prompt_fusions[1](torch.cat([split_streams, momentum], dim=-1))
        streams = second_stack(hidden, masks, packer, eager, hidden_states, attentions)

        flat = streams.permute(1, 0, 2).reshape(packer.rows, -1)  # [N, 3D]: the three streams side by side
        if config.use_coordinator:
            weights = self.coordinator(flat, packer.dropout)
        else:  # ablation "w/o Cr": equal weights
            weights = shared.new_full((packer.rows, 3), 1.0 / 3.0)
        # In stage 2 the rows of missing modalities are not zeroed (released behaviour): after knowledge
        # propagation they hold what the other modalities reconstructed for them.
        fused = (flat.view(packer.rows, 3, -1) * weights[..., None]).view(packer.rows, -1)  # [N, 3D]
        return streams, weights, fused

    @staticmethod
    def _outputs(state: ComPPackedState, hidden_states, attentions, return_packed: bool) -> ComPModelOutput:
        """The padded outputs of the forward (or, with `return_packed`, the rows in `packed` and only the fields
        the head does not recompute)."""
        unpack, length = state.unpack, state.length

        def streams_padded(x: torch.Tensor) -> torch.Tensor:  # [3, N, D] -> [B, T, 3, D]
            return unpack(x.transpose(0, 1))

        outputs = ComPModelOutput(
            hidden_states=tuple(streams_padded(h) for h in hidden_states) if hidden_states is not None else None,
            attentions=(
                tuple(a.transpose(0, 1)[:, :, :, :length, :length] for a in attentions)
                if attentions is not None
                else None
            ),
        )
        if return_packed:
            outputs.packed = state
            return outputs
        outputs.last_hidden_state = unpack(state.fused)
        outputs.modality_hidden_states = streams_padded(state.streams)
        outputs.coordinator_weights = unpack(state.coordinator_weights)
        outputs.projected_features = streams_padded(state.projected)
        outputs.reconstructed_features = streams_padded(state.reconstructed)
        outputs.shared_features = streams_padded(state.shared)
        outputs.private_features = streams_padded(state.private)
        outputs.modality_mask = unpack(state.modality_mask.to(state.fused.dtype))
        outputs.attention_mask = unpack(state.real.to(state.fused.dtype))
        return outputs

    def _packed_attention(self, packer: _Packer, eager: bool) -> bool:
        """Attention over the packed rows rather than the padded layout (see `_PACKED_ATTENTION_RATIO`); never with
        eager attention (its probabilities are returned in the padded layout) nor in reference mode."""
        if eager or self.config.reference_compat:
            return False
        return packer.rows**2 <= _PACKED_ATTENTION_RATIO * packer.batch * packer.length**2

    def _dropout_numel(self, stage: int, packer: _Packer, with_private: bool, attention: bool) -> int:
        """How many elements one training forward of the backbone drops out with `hidden_dropout_prob` (the size of
        its `_DropoutMasks`), site by site in forward order; `attention`: the attention layers' MLPs draw from it."""
        config = self.config
        rows, dim, prompt = packer.rows, config.hidden_size, config.prompt_dim
        layers = 2 * (config.num_hidden_layers // 2)  # both stacks
        numel = 3 * rows * dim + 2 * 6 * rows * dim + 2 * 3 * rows * dim  # input, encoders, decoders
        if stage == 1 or not config.use_knowledge_propagation:
            groups = 6 if with_private else 3
        else:
            groups = 3
            if config.use_prompt_generation:  # prototype layer, then the prompt projections of both stages
                numel += 2 * 3 * packer.batch * dim * config.num_prototypes + 2 * 2 * 3 * rows * prompt
            numel += 3 * rows * dim + 3 * rows * (dim + 2 * prompt)  # prompt split
            if config.use_coordinator:
                numel += rows * dim + rows * 3
        if attention:
            numel += layers * 2 * groups * rows * dim
        return numel


# -- the model with heads and losses ---------------------------------------------------------------------------
_STAGE1_TERMS = ("audio_task", "text_task", "video_task", "audio_private", "text_private", "video_private")
_STAGE2_TERMS = ("fused_task", "audio_task", "text_task", "video_task", "reconstruction")


class ComPForEmotionRecognition(ComPPreTrainedModel):
    """ComP with its unimodal heads, fusion tail and fused head: per-utterance emotion classification
    (IEMOCAP) or sentiment regression (CMU-MOSI/MOSEI), for every utterance of a conversation.

    With `labels`, `forward` returns the loss of the current training stage, and in stage-2 training arms the
    gradient modulator (`gradient_modulator`, Eq. 10-11), which scales the gradient of the prototype layers
    during the following `backward()`: any training loop gets the full method.
    """

    def __init__(self, config: ComPConfig):
        super().__init__(config)
        dim, num_labels = config.hidden_size, config.num_labels
        self.comp = ComPModel(config)
        self.modality_heads = ComPStackedLinear(len(MODALITIES), dim, num_labels)
        # the residual fusion tail `h + dropout(relu(fusion(h)))`, then the classifier
        self.fusion = nn.Linear(3 * dim, 3 * dim)
        self.fusion_dropout = ComPDropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(3 * dim, num_labels)
        self.gradient_modulator = ComPGradientModulator(config)
        self.post_init()
        self._hook_prototype_layers()

    def _hook_prototype_layers(self) -> None:
        """Register the modulator's gradient hook on the stacked prototype-layer weight, once per (parameter,
        modulator) pair: loading may replace the parameter and a deep copy copies the hooks of the original, so an
        armed forward checks again and replaces a hook that belongs to another modulator."""
        modulator = self.gradient_modulator
        weight = self.comp.prompt_generators[0].prototype_layer.fc1.weight
        if getattr(weight, "_comp_modulator_id", None) == id(modulator):
            return
        stale = getattr(weight, "_comp_modulator_hook", None)
        if stale is not None and weight._backward_hooks is not None:
            weight._backward_hooks.pop(stale, None)
        handle = weight.register_hook(modulator._scale_gradient)
        weight._comp_modulator_id = id(modulator)
        weight._comp_modulator_hook = handle.id

    def set_training_stage(self, stage: int) -> None:
        """Switch between stage 1 (unimodal paths) and stage 2 (the full model, also used for inference). The
        stage is held by the backbone (`model.comp.training_stage`), not stored in the config."""
        self.comp.set_training_stage(stage)

    @property
    def training_stage(self) -> int:
        return self.comp.training_stage

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        video: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        utterance_index: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ComPOutput | tuple:
        r"""
        Args:
            audio, text, video, modality_mask, attention_mask, utterance_index, output_attentions, output_hidden_states:
                As for [`ComPModel.forward`].
            labels (`torch.Tensor` of shape `(batch_size, num_utterances)`, *optional*):
                Class ids (integers in `[0, num_labels)`, -100 ignored) or sentiment scores (finite floats). Padded
                positions are ignored.
            return_dict (`bool`, *optional*):
                Return a [`ComPOutput`] (default: `config.return_dict`) instead of a tuple.
            kwargs:
                transformers' pass-through arguments (e.g. the Trainer's `num_items_in_batch`: the loss is a mean
                over the batch's utterances either way), ignored; any other keyword raises `TypeError`.

        Returns:
            [`ComPOutput`]: see its docstring for the fields and shapes; padded positions hold zeros.
        """
        _refuse_unknown_kwargs(self, kwargs)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        stage = self.training_stage
        modulate = self._modulates(labels)
        backbone = self.comp(
            audio,
            text,
            video,
            modality_mask=modality_mask,
            attention_mask=attention_mask,
            utterance_index=utterance_index,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            return_packed=True,
            output_private_streams=labels is not None and stage == 1,
        )
        state = backbone.packed
        hidden = state.fused + self.fusion_dropout(F.relu(self.fusion(state.fused)))  # [N, 3D]
        logits = self.classifier(hidden)  # [N, C]
        modality_logits = self.modality_heads(state.streams)  # [3, N, C]
        if self.config.is_regression:
            logits, modality_logits = logits.squeeze(-1), modality_logits.squeeze(-1)
        loss, terms, modulation = None, None, None
        if labels is not None:
            targets = self._pack_labels(labels, state)
            valid = state.real if self.config.is_regression else state.real & (targets != -100)
            loss, terms = self._loss(state, logits, modality_logits, targets, valid, stage)
            if modulate:
                positions, length = state.packer.position, state.packer.length
                modulation = self.gradient_modulator(modality_logits, targets, valid, positions, length)
        output = self._padded_output(state, logits, modality_logits, hidden)
        output.loss, output.loss_terms, output.modulation_weights = loss, terms, modulation
        output.hidden_states, output.attentions = backbone.hidden_states, backbone.attentions
        return output if return_dict else output.to_tuple()

    def _modulates(self, labels: torch.Tensor | None) -> bool:
        """Whether this forward arms the gradient modulator (stage-2 training with labels and gradients, the
        method's components on; the released modulator is dead code, so never in reference mode). Disarms it
        otherwise."""
        config = self.config
        modulate = (
            labels is not None
            and self.training
            and torch.is_grad_enabled()
            and self.training_stage == 2
            and config.use_gradient_modulation
            and config.use_knowledge_propagation
            and config.use_prompt_generation
            and not config.reference_compat
        )
        self.gradient_modulator.disarm()
        if modulate:
            self._hook_prototype_layers()
        return modulate

    @staticmethod
    def _padded_output(state: ComPPackedState, logits, modality_logits, hidden) -> ComPOutput:
        """The head's padded outputs, unpacked together: one scatter for the four of them."""
        rows = state.packer.rows
        parts = [logits.reshape(rows, -1), modality_logits.transpose(0, 1).reshape(rows, -1), hidden]
        if state.coordinator_weights is not None:
            parts.append(state.coordinator_weights)
        padded = state.unpack(torch.cat(parts, dim=-1)).split([part.shape[-1] for part in parts], dim=-1)
        head = padded[0].shape[:2]
        return ComPOutput(
            logits=padded[0].reshape(*head, *logits.shape[1:]),
            modality_logits=padded[1].reshape(*head, *modality_logits.transpose(0, 1).shape[1:]),
            coordinator_weights=padded[3] if state.coordinator_weights is not None else None,
            last_hidden_state=padded[2],
        )

    def _pack_labels(self, labels: torch.Tensor, state: ComPPackedState) -> torch.Tensor:
        config = self.config
        labels = labels.to(state.fused.device)
        if tuple(labels.shape) != (state.packer.batch, state.length):
            raise ValueError(
                f"`labels` must have shape [{state.packer.batch}, {state.length}], got {tuple(labels.shape)}"
            )
        if config.is_regression:
            labels = labels.to(state.fused.dtype)
        else:
            if labels.is_floating_point():
                raise ValueError(
                    f"classification `labels` must be integer class ids in [0, {config.num_labels}) or -100, got "
                    f"dtype {labels.dtype}"
                )
            labels = labels.long()
        if state.packer.length > state.length:  # reference mode padded the batch to max_utterances
            labels = F.pad(labels, (0, state.packer.length - state.length), value=0 if config.is_regression else -100)
        targets = state.packer.pack(labels)
        if config.is_regression:  # NaN or inf (also a float64 beyond float32's range) would make the loss NaN
            # x * 0 is 0 for a finite x and NaN for NaN or inf: the sum is 0 exactly when every label is finite
            checked = targets.masked_fill(~state.real, 0.0) if state.masked_rows else targets
            ok = (checked * 0.0).sum() == 0.0
            _check_on_device(ok, f"regression `labels` must be finite {str(targets.dtype)[6:]} numbers")
        else:
            ok = ((targets == -100) | ((targets >= 0) & (targets < config.num_labels)) | ~state.real).all()
            _check_on_device(ok, f"`labels` must be class ids in [0, {config.num_labels}) or -100")
        return targets

    def _task_losses(
        self, prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, count: torch.Tensor
    ) -> torch.Tensor:
        """Masked-mean task loss of `[G, N, C]` predictions (`[G, N]` for regression) -> `[G]`."""
        if self.config.is_regression:
            per_row = F.mse_loss(prediction, target.expand_as(prediction), reduction="none")
        else:
            log_probs = torch.log_softmax(prediction, dim=-1)
            index = target.clamp_min(0)[None, :, None].expand(prediction.shape[0], -1, 1)
            per_row = -log_probs.gather(-1, index).squeeze(-1)
        per_row = torch.where(valid, per_row, 0.0)
        return per_row.sum(-1) / count

    def _loss(self, state: ComPPackedState, logits, modality_logits, targets, valid, stage):
        config = self.config
        # rows averaged over: the valid ones for the task losses, the real ones for the disentanglement (the same
        # rows in regression)
        count = valid.sum().clamp_min(1)
        real_count = count if valid is state.real else state.real.sum().clamp_min(1)
        if stage == 1:
            private_logits = self.modality_heads(state.private_streams)  # [3, N, C]
            if config.is_regression:
                # The private heads regress a noise target (one draw per batch shared by the three modalities).
                # (drawn per padded position, so a real utterance's draw does not depend on which rows are computed)
                packer = state.packer
                draw = torch.randn(packer.batch, packer.length, dtype=targets.dtype, device=targets.device)
                noise = (config.private_noise_std * packer.pack(draw)).clamp(-3.0, 3.0)
                private_loss = self._task_losses(private_logits.squeeze(-1), noise, valid, count)
            else:
                # The private heads are trained to make the true class the *lowest* logit (cross-entropy on
                # 1 - logits), pushing label information out of the private features.
                private_loss = self._task_losses(1.0 - private_logits, targets, valid, count)
            task = self._task_losses(modality_logits, targets, valid, count)
            weights = (config.stage1_modality_loss_weight,) * 3 + (config.private_loss_weight,) * 3
            values = [task, private_loss]
            names = _STAGE1_TERMS
        else:
            task = self._task_losses(torch.cat([logits[None], modality_logits]), targets, valid, count)  # [4]
            # Mean over every computed row: the real utterances by default (deviation: the released code also
            # averages over the padded positions, which is what reference mode, computing them, does).
            if state.masked_rows:  # padded rows computed: they do not count
                per_row = F.mse_loss(state.reconstructed, state.projected, reduction="none").mean(-1)  # [3, N]
                reconstruction = torch.where(state.real, per_row, 0.0).sum() / (3 * real_count)
            else:
                reconstruction = F.mse_loss(state.reconstructed, state.projected)
            weights = (config.fused_loss_weight,) + (config.modality_loss_weight,) * 3
            weights += (config.reconstruction_loss_weight,)
            values = [task, reconstruction[None]]
            names = _STAGE2_TERMS
        values = torch.cat([*values, self._disentanglement(state, real_count)[None]])
        weights += (config.disentangle_loss_weight,)
        weighted = values * self._constant(weights, values)
        loss = weighted.sum()
        return loss, dict(zip(names + ("disentanglement",), weighted.detach().unbind()))

    @staticmethod
    def _disentanglement(state: ComPPackedState, real_count: torch.Tensor) -> torch.Tensor:
        """DRFuse-style disentanglement: for each pair of modalities (m, n), |cos| between the private features
        of m and n and between the shared and private features of m and of n (averaged over real utterances),
        plus the Jensen-Shannon divergence between the sigmoids of the shared features of m and n (summed over
        features, averaged over the computed rows). Pairs (a, t), (a, v), (t, v): each modality is in two."""
        real = state.real
        rows = state.shared.shape[1]
        private = _normalize(state.private, eps=1e-8)
        shared = _normalize(state.shared, eps=1e-8)
        # pairs of modalities as (i, i + 1 mod 3): (a, t), (t, v), (v, a) — the same three unordered pairs
        cos_private = (private * private.roll(-1, 0)).sum(-1).abs()  # [3, N]
        cos_shared_private = (private * shared).sum(-1).abs()  # [3, N]
        cosines = torch.where(real, cos_private + 2.0 * cos_shared_private, 0.0).sum() / real_count
        log_p = F.logsigmoid(state.shared)
        log_q = log_p.roll(-1, 0)
        p, q = log_p.exp(), log_q.exp()
        log_mid = torch.log(0.5 * (p + q))
        divergence = p * (log_p - log_mid) + q * (log_q - log_mid)
        if state.masked_rows:  # padded rows computed: they do not count
            jsd = 0.5 * torch.where(real[:, None], divergence, 0.0).sum() / real_count
        else:
            jsd = 0.5 * divergence.sum() / max(rows, 1)
        return cosines + jsd


def load_comp_checkpoint(
    path_or_repo: str | os.PathLike, strict: bool = True, model_class: type | None = None, **kwargs
) -> ComPPreTrainedModel:
    """`from_pretrained` that refuses a checkpoint whose weights do not match the model exactly.

    With `strict=True` (the default) a checkpoint missing a tensor (which `from_pretrained` would silently
    initialise afresh) or holding unexpected or mis-shaped tensors raises a one-line `ValueError` naming the
    keys. `model_class` defaults to `ComPForEmotionRecognition`; `kwargs` go to `from_pretrained`.
    """
    model_class = model_class or ComPForEmotionRecognition
    kwargs.pop("output_loading_info", None)
    model, info = model_class.from_pretrained(path_or_repo, output_loading_info=True, **kwargs)
    if strict:
        problems = []
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            keys = sorted(str(k) for k in (info.get(kind) or ()))
            if kind == "missing_keys":
                keys = [with_checkpoint_names(key) for key in keys]
            if keys:
                shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                problems.append(f"{kind.replace('_', ' ')}: {shown}")
        if problems:
            name = Path(path_or_repo) if os.path.exists(path_or_repo) else path_or_repo
            raise ValueError(f"checkpoint {name} does not match {model_class.__name__}: " + "; ".join(problems))
    return model


__all__ = [
    "ComPForEmotionRecognition",
    "ComPGradientModulator",
    "ComPModel",
    "ComPModelOutput",
    "ComPOutput",
    "ComPPackedState",
    "ComPPreTrainedModel",
    "ComPStackedLinear",
    "ComPStackedMlp",
    "checkpoint_layout_state_dict",
    "load_comp_checkpoint",
    "model_layout_state_dict",
    "utterance_index_from_attention_mask",
]
