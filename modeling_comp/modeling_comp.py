"""PyTorch ComP: Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition.

He, Zhu & Zhang, AAAI 2026 (https://arxiv.org/abs/2512.11239). The network keeps the decomposition of the
authors' released code (per-modality input projections, shared/private encoders and decoders, two
knowledge-propagation stages of masked self-attention, prototype-based prompt generators, a coordinator and a
residual fusion tail) so that released checkpoints convert one-to-one (see `convert_original_checkpoint.py`).

By default the model implements the paper's method with the released code's defects fixed; each fix is a
config switch and `ComPConfig.reference_compat=True` restores the released evaluation forward. Every place
where the two differ carries a comment starting with "Deviation".

Computation layout: the three modalities (and, in stage 1, the shared and private branches) run as one batched
computation. The per-modality layers of one shape are stored stacked (`ComPStackedLinear`: weights
`[groups, in, out]`) and applied with one batched matrix product to a `[groups, rows, features]` tensor, so a
training step dispatches few, large operators and the backward accumulates few gradients. Checkpoints keep one
`nn.Linear` per modality (`save_pretrained` writes that layout; `from_pretrained` and `load_state_dict` read it
and the stacked one, see `checkpoint_layout_state_dict`). Position-wise layers run on the packed rows of the real
utterances (`[3, N, D]`); the prototype layer sees the `[batch, T]` layout, and so does the attention when that
is cheaper than attending over the packed rows with a block-diagonal mask (`_PACKED_ATTENTION_RATIO`). Nothing in
the forward or backward synchronises with the host when the caller passes `utterance_index` (see
`utterance_index_from_attention_mask`).

This file and `configuration_comp.py` are copied into every saved checkpoint for `trust_remote_code` users:
they must not import anything from the rest of the project.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

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


# -- batched building blocks -----------------------------------------------------------------------------------
def _dropout(hidden: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (the distribution and scaling of `nn.Dropout`) drawn as `rand >= p`: on CPU several times
    faster than `F.dropout`'s Bernoulli sampling, and four operators."""
    if not training or p == 0.0:
        return hidden
    keep = torch.rand_like(hidden).ge_(p).mul_(1.0 / (1.0 - p))
    return hidden * keep


def _no_dropout(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


class _DropoutMasks:
    """The keep masks of every `hidden_dropout_prob` dropout of one training forward, drawn at once.

    One uniform draw, one comparison and one scaling for the whole forward, then a strided view and a product per
    dropout (instead of four operators per dropout). `numel` is the number of elements the forward drops out
    (`ComPModel._dropout_numel`); a dropout past it draws its own mask (same distribution).
    """

    def __init__(self, p: float, numel: int, like: torch.Tensor):
        self.p, self.offset, self.buffer = p, 0, None
        if numel > 0:
            self.buffer = torch.rand(numel, device=like.device, dtype=like.dtype).ge_(p).mul_(1.0 / (1.0 - p))

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        numel = hidden.numel()
        if self.buffer is None or self.offset + numel > self.buffer.numel():
            return _dropout(hidden, self.p, True)
        mask = self.buffer.as_strided(hidden.shape, _contiguous_strides(hidden.shape), self.offset)
        self.offset += numel
        return hidden * (mask if mask.dtype == hidden.dtype else mask.to(hidden.dtype))


class _Normalize(torch.autograd.Function):
    """`F.normalize(x, dim=-1, eps=eps)` with a backward of five operators (autograd's composite takes about 15)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True)
        denominator = norm.clamp_min(eps)
        normalized = hidden / denominator
        ctx.save_for_backward(normalized, denominator, norm >= eps)
        return normalized

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        normalized, denominator, active = ctx.saved_tensors
        # d(x / max(|x|, eps)) = (g - y <g, y>) / |x| where |x| >= eps, g / eps elsewhere
        radial = (grad * normalized).sum(-1, keepdim=True) * active
        return torch.addcmul(grad, normalized, radial, value=-1.0) / denominator, None


def _normalize(hidden: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return _Normalize.apply(hidden, eps)


class ComPDropout(nn.Dropout):
    """`nn.Dropout` computed by `_dropout` (same distribution and scaling)."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return _dropout(hidden, self.p, self.training)


class ComPMlp(nn.Module):
    """`fc1 -> GELU (exact erf) -> dropout -> fc2 -> dropout` (the released `Mlp`)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.dropout = ComPDropout(dropout)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(hidden)))))


class ComPStackedLinear(nn.Module):
    """`groups` independent linear layers of one shape (one per modality, say), applied to `[groups, rows,
    in_features]` in one batched product.

    `weight` is `[groups, in_features, out_features]` (group g's `nn.Linear.weight`, transposed) and `bias`
    `[groups, 1, out_features]`: the forward is a single `baddbmm` and the backward needs no transposed copy.
    `save_pretrained` writes each group as the `nn.Linear` it replaces (see `checkpoint_layout_state_dict`).
    """

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        self.groups, self.in_features, self.out_features = groups, in_features, out_features
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(groups, 1, out_features))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, hidden, self.weight)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, in_features={self.in_features}, out_features={self.out_features}"


class ComPStackedMlp(nn.Module):
    """`groups` independent `ComPMlp`s of one shape on `[groups, rows, in_features]`."""

    def __init__(self, groups: int, in_features: int, hidden_features: int, out_features: int, dropout: float):
        super().__init__()
        self.fc1 = ComPStackedLinear(groups, in_features, hidden_features)
        self.fc2 = ComPStackedLinear(groups, hidden_features, out_features)
        self.dropout = ComPDropout(dropout)

    def forward(self, hidden: torch.Tensor, dropout=None) -> torch.Tensor:
        """`dropout`: the dropout to apply (a callable, e.g. the forward's `_DropoutMasks`); default `self.dropout`."""
        dropout = dropout if dropout is not None else self.dropout
        return dropout(self.fc2(dropout(F.gelu(self.fc1(hidden)))))


class _Packer:
    """Moves between padded `[G, B, T, ...]` tensors and packed rows `[G, N, ...]` (the real utterances).

    `index` holds the flat positions `b * T + t` of the packed rows; `None` means every position is a row (no
    padding in the batch, or reference mode), and packing is a reshape.
    """

    def __init__(self, index: torch.Tensor | None, batch: int, length: int, device: torch.device):
        self.batch, self.length = batch, length
        self.dropout, self.attention_dropout = _no_dropout, None  # set by the forward (see `ComPModel.forward`)
        self.index = index
        self.rows = batch * length if index is None else index.shape[0]
        flat = torch.arange(batch * length, device=device) if index is None else index
        self.position = flat % length  # utterance position of each row

    def pack(self, padded: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """`[..., B, T, ...]` (batch axis at `dim`) -> `[..., N, ...]`."""
        flat = padded.flatten(dim, dim + 1)
        return flat if self.index is None else flat.index_select(dim, self.index)

    def unpack(self, packed: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """`[..., N, ...]` (rows at `dim`) -> `[..., B, T, ...]` with zeros at the positions not computed."""
        if self.index is not None:
            shape = list(packed.shape)
            shape[dim] = self.batch * self.length
            packed = packed.new_zeros(shape).index_copy_(dim, self.index, packed)  # in place: no extra copy
        return packed.unflatten(dim, (self.batch, self.length))


# Attention over the packed rows (a block-diagonal mask: each row attends to the rows of its conversation) costs
# N^2 scores, attention over the padded layout B * T^2 plus scattering the rows into a zero-filled [B, T] buffer and
# gathering them back in every layer. The packed form is used when N^2 <= this ratio times B * T^2 (conversations
# of similar lengths favour the padded form, a long tail of short ones the packed form).
_PACKED_ATTENTION_RATIO = 2.5


class _AttentionMasks:
    """Per-forward masks of the attention layers: for each group, which keys each query may attend to.

    Padded layout (`packed=False`): `[G * B, 1, 1, T]`, the observed keys of the conversation. Packed layout: `[G, 1,
    N, N]`, the observed keys among the rows of the query's own conversation (block-diagonal).
    """

    def __init__(self, key_mask: torch.Tensor, packer: _Packer, packed: bool):  # key_mask [G, B, T] bool
        self.packed = packed  # `allowed`: the boolean mask (True: may be attended to)
        groups, length = key_mask.shape[0], key_mask.shape[2]
        if packed:
            rows = packer.index if packer.index is not None else torch.arange(packer.rows, device=key_mask.device)
            conversation = torch.div(rows, length, rounding_mode="floor")
            same = conversation[:, None] == conversation[None, :]  # [N, N]
            allowed = same & packer.pack(key_mask, dim=1)[:, None, :]  # [G, N, N]
            no_key = ~allowed.any(dim=-1, keepdim=True)  # [G, N, 1]
            # Conversations without any observed key: the released code's softmax gives NaN, then 0. We let every key
            # of the conversation through for them (so the kernel sees no empty row) and zero their output afterwards.
            self.allowed = (allowed | (same & no_key))[:, None]  # [G, 1, N, N]
            self.no_key = no_key[:, None]  # [G, 1, N, 1]
        else:
            key_mask = key_mask.reshape(groups * key_mask.shape[1], length)  # [G * B, T]
            no_key = ~key_mask.any(dim=-1, keepdim=True)  # [G * B, 1]
            self.allowed = (key_mask | no_key)[:, None, None, :]  # [G * B, 1, 1, T]
            self.no_key = no_key.view(-1, 1, 1, 1)
        self._additive: dict[torch.dtype, torch.Tensor] = {}

    def additive(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as the additive float mask of `scaled_dot_product_attention` (0 or -inf, as log(1) and log(0)),
        built once per dtype (SDPA would convert the boolean mask in every layer)."""
        if dtype not in self._additive:
            self._additive[dtype] = self.allowed.to(dtype).log_()
        return self._additive[dtype]


class ComPAttentionLayer(nn.Module):
    """One masked self-attention layer of the three modalities (independent parameters per modality, stacked).

    Keys of missing or padded utterances are masked, queries are not: a missing utterance receives context from
    the observed utterances of the same modality in its conversation. A conversation with no observed key gets
    zeros. There is no output projection and no LayerNorm; the layer returns `O + MLP(O)` and the caller adds
    the residual. `qkv` holds each modality's query, key and value projections side by side (`[3, D, 3D]`,
    columns `q | k | v`); the computation is `_attention_layer`.
    """

    def __init__(self, config: ComPConfig):
        super().__init__()
        dim = config.hidden_size
        self.qkv = ComPStackedLinear(len(MODALITIES), dim, 3 * dim)
        self.mlp = ComPStackedMlp(len(MODALITIES), dim, dim, dim, config.hidden_dropout_prob)


class ComPPropagationStack(nn.Module):
    """`num_hidden_layers // 2` residual attention layers per modality (the released `block1` / `block2`)."""

    def __init__(self, config: ComPConfig):
        super().__init__()
        self.layers = nn.ModuleList([ComPAttentionLayer(config) for _ in range(config.num_hidden_layers // 2)])


def _attention_layer(
    hidden: torch.Tensor,
    layer: ComPAttentionLayer,
    masks: _AttentionMasks,
    packer: _Packer,
    config: ComPConfig,
    training: bool,
    eager: bool,
    mlp_dropout=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One attention layer for `G` groups of packed rows `[G, N, D]`, `G` a multiple of 3, groups modality-major
    (the `G / 3` groups of a modality are adjacent, e.g. its shared and private streams): each modality's groups
    are one `[G / 3 * N, D]` block of rows for its products. Returns `hidden + O + MLP(O)` and, with `eager`, the
    attention probabilities `[G, B, H, T, T]`. `mlp_dropout` is the MLP's dropout (default: the layer's own)."""
    groups, dim = hidden.shape[0], hidden.shape[-1]
    heads = config.num_attention_heads
    blocks = len(MODALITIES)

    def by_module(x: torch.Tensor) -> torch.Tensor:  # [G, N, F] -> [3, G / 3 * N, F]
        return x if groups == blocks else x.reshape(blocks, -1, x.shape[-1])

    def by_group(x: torch.Tensor) -> torch.Tensor:  # the inverse
        return x if groups == blocks else x.view(groups, -1, x.shape[-1])

    qkv = by_group(layer.qkv(by_module(hidden)))  # [G, N, 3D]
    if masks.packed:  # [G, H, N, hd]: every row of the group at once, the mask keeps conversations apart
        qkv = qkv.view(groups, packer.rows, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    else:  # [G * B, H, T, hd]
        qkv = packer.unpack(qkv, dim=1).view(groups * packer.batch, packer.length, 3, heads, dim // heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    dropout = config.attention_dropout_prob if training else 0.0
    scale = (dim // heads) ** -0.5
    probs = None
    if eager:
        scores = (query @ key.transpose(-1, -2)) * scale
        probs = torch.softmax(scores.masked_fill(~masks.allowed, float("-inf")), dim=-1)
        probs = probs.masked_fill(masks.no_key, 0.0)
        attended = _dropout(probs, dropout, training) @ value
        probs = probs.unflatten(0, (groups, packer.batch))
    else:
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=masks.additive(query.dtype), dropout_p=dropout, scale=scale
        )
        attended = attended.masked_fill(masks.no_key, 0.0)
    if masks.packed:
        attended = attended.transpose(1, 2).reshape(groups, packer.rows, dim)
    else:
        attended = packer.pack(attended.transpose(1, 2).reshape(groups, packer.batch, packer.length, dim), dim=1)
    return hidden + attended + by_group(layer.mlp(by_module(attended), mlp_dropout)), probs


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
    mapping `max_utterances` positions to `num_prototypes` prototypes); the second stage reuses the first
    stage's prototypes, as the released code does. A prompt is `prompt_projection(softmax(cos(z, prototypes))
    · prototypes) + residual_projection(z)`.
    """

    def __init__(self, config: ComPConfig, with_prototype_layer: bool):
        super().__init__()
        groups, drop = len(MODALITIES), config.hidden_dropout_prob
        if with_prototype_layer:
            self.prototype_layer = ComPStackedMlp(
                groups, config.max_utterances, config.num_prototypes, config.num_prototypes, drop
            )
        self.prompt_projection = ComPStackedMlp(groups, config.hidden_size, config.prompt_dim, config.prompt_dim, drop)
        self.residual_projection = ComPStackedLinear(groups, config.hidden_size, config.prompt_dim)


# -- checkpoint layout -----------------------------------------------------------------------------------------
# The model stacks the per-modality layers of one shape into `ComPStackedLinear`s; checkpoints keep one `nn.Linear`
# per modality (the layout of comp-emotion 0.1 checkpoints and of converted released weights: the names of the
# released modules map one-to-one onto it). `_CHECKPOINT_LAYOUT` lists, for every stacked tensor name (relative
# to the module that holds it, so it applies at any depth and under any prefix), the checkpoint names it stacks in
# group order; `chunks` consecutive names are concatenated along the output features of one group (q, k, v).
def _checkpoint_layout() -> list[tuple[str, tuple[str, ...], int]]:
    rows: list[tuple[str, tuple[str, ...], int]] = []

    def linear(target: str, sources: list[str], chunks: int = 1) -> None:
        for name in ("weight", "bias"):
            rows.append((f"{target}.{name}", tuple(f"{source}.{name}" for source in sources), chunks))

    def mlp(target: str, sources: list[str]) -> None:
        for fc in ("fc1", "fc2"):
            linear(f"{target}.{fc}", [f"{source}.{fc}" for source in sources])

    mlp("encoders", [f"shared_encoders.{m}" for m in MODALITIES] + [f"private_encoders.{m}" for m in MODALITIES])
    mlp("decoders", [f"decoders.{m}" for m in MODALITIES])
    linear("qkv", [f"modalities.{m}.{w}" for m in MODALITIES for w in ("q", "k", "v")], chunks=3)
    mlp("mlp", [f"modalities.{m}.mlp" for m in MODALITIES])
    for stage in range(2):
        linear(f"prompt_fusions.{stage}", [f"prompt_fusions.{stage}.{m}" for m in MODALITIES])
    mlp("prompt_splits", [f"prompt_splits.{m}" for m in MODALITIES])
    mlp("prototype_layer", [f"{m}.prototype_layer" for m in MODALITIES])
    mlp("prompt_projection", [f"{m}.prompt_projection" for m in MODALITIES])
    linear("residual_projection", [f"{m}.residual_projection" for m in MODALITIES])
    linear("modality_heads", [f"modality_heads.{m}" for m in MODALITIES])
    return rows


_CHECKPOINT_LAYOUT = _checkpoint_layout()


def _stack_tensors(tensors: list[torch.Tensor], chunks: int, is_weight: bool) -> torch.Tensor:
    """Checkpoint tensors (`[out, in]` weights or `[out]` biases, in group order) -> one stacked tensor."""
    groups = [torch.cat(tensors[i : i + chunks], dim=0) for i in range(0, len(tensors), chunks)]
    if is_weight:
        return torch.stack([group.t() for group in groups]).contiguous()  # [G, in, out]
    return torch.stack(groups).unsqueeze(1)  # [G, 1, out]


def _unstack_tensor(tensor: torch.Tensor, chunks: int, is_weight: bool) -> list[torch.Tensor]:
    """The inverse of `_stack_tensors`: contiguous checkpoint tensors in group order."""
    groups = [group.t() for group in tensor.unbind(0)] if is_weight else [group[0] for group in tensor.unbind(0)]
    return [part.contiguous() for group in groups for part in group.chunk(chunks, dim=0)]


def _matches(key: str, name: str) -> str | None:
    """The prefix of `key` when it is `prefix + name` with `prefix` empty or ending with a dot."""
    if key == name:
        return ""
    if key.endswith("." + name):
        return key[: -len(name)]
    return None


def model_layout_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in the checkpoint layout (one `nn.Linear` per modality, any key prefix) in the model's stacked
    layout. Keys already stacked, and keys the layout does not concern, pass through unchanged."""
    out = dict(state_dict)
    for target, sources, chunks in _CHECKPOINT_LAYOUT:
        prefixes = {prefix for key in state_dict if (prefix := _matches(key, sources[0])) is not None}
        for prefix in sorted(prefixes):
            names = [prefix + source for source in sources]
            missing = [name for name in names if name not in out]
            if missing:
                raise ValueError(
                    f"cannot stack `{prefix + target}`: the checkpoint has {names[0]} but not " + ", ".join(missing)
                )
            tensors = [out.pop(name) for name in names]
            out[prefix + target] = _stack_tensors(tensors, chunks, target.endswith("weight"))
    return out


def checkpoint_layout_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's stacked state dict in the checkpoint layout (what `save_pretrained` writes): the inverse of
    `model_layout_state_dict`."""
    out = dict(state_dict)
    for target, sources, chunks in _CHECKPOINT_LAYOUT:
        for key in [key for key in out if _matches(key, target) is not None]:
            prefix = _matches(key, target)
            parts = _unstack_tensor(out.pop(key), chunks, target.endswith("weight"))
            out.update({prefix + source: part for source, part in zip(sources, parts)})
    return out


def _register_checkpoint_layout() -> None:
    """Teach `from_pretrained` to stack the checkpoint layout and `save_pretrained` to write it (transformers'
    weight-conversion mapping for the `comp` model type; loading a stacked state dict needs nothing)."""
    try:
        from transformers.conversion_mapping import register_checkpoint_conversion_mapping
        from transformers.core_model_loading import ConversionOps, WeightConverter
    except ImportError:  # pragma: no cover - transformers without weight conversions: stacked checkpoints only
        return

    class StackGroups(ConversionOps):
        def __init__(self, chunks: int, is_weight: bool):
            self.chunks, self.is_weight = chunks, is_weight

        def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
            if any(pattern not in input_dict for pattern in source_patterns):
                return {}  # the stacked tensor is then reported missing, as any weight absent from a checkpoint
            tensors = [input_dict.pop(pattern) for pattern in source_patterns]
            tensors = [t[0] if isinstance(t, list) else t for t in tensors]
            return {target_patterns[0]: _stack_tensors(tensors, self.chunks, self.is_weight)}

        @property
        def reverse_op(self) -> ConversionOps:
            return UnstackGroups(self.chunks, self.is_weight)

    class UnstackGroups(ConversionOps):
        def __init__(self, chunks: int, is_weight: bool):
            self.chunks, self.is_weight = chunks, is_weight

        def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
            tensor = input_dict[source_patterns[0]]
            tensor = tensor[0] if isinstance(tensor, list) else tensor
            parts = _unstack_tensor(tensor, self.chunks, self.is_weight)
            return dict(zip(target_patterns, parts))

        @property
        def reverse_op(self) -> ConversionOps:
            return StackGroups(self.chunks, self.is_weight)

    converters = [
        WeightConverter(
            source_patterns=list(sources),
            target_patterns=target,
            operations=[StackGroups(chunks, target.endswith("weight"))],
        )
        for target, sources, chunks in _CHECKPOINT_LAYOUT
    ]
    register_checkpoint_conversion_mapping(ComPConfig.model_type, converters, overwrite=True)


_register_checkpoint_layout()


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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, declaring every supported Auto class in `config.auto_map` (the
        model files themselves are copied next to the weights), so the folder loads with
        `trust_remote_code=True` in a process that does not have this package."""
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        # Provenance of the weights: the stage they were saved in (a model loaded from them starts in it).
        self.config.trained_stage = int(self.training_stage)
        return super().save_pretrained(save_directory, *args, **kwargs)

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
    change any output, even NaN or Inf: the model selects zeros there.

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
        self.coordinator = ComPMlp(3 * dim, dim, 3, drop)
        self.post_init()

    def set_training_stage(self, stage: int) -> None:
        """1 trains the unimodal paths only (no prompts, no coordinator); 2 is the full model (and inference)."""
        if stage not in (1, 2):
            raise ValueError(f"training stage must be 1 or 2, got {stage!r}")
        self.training_stage = stage

    # -- inputs --------------------------------------------------------------------------------------------------
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

    # -- forward -------------------------------------------------------------------------------------------------
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

        Returns:
            [`ComPModelOutput`] or a tuple; padded positions hold zeros.
        """
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
        training = self.training
        drop = config.hidden_dropout_prob
        reference = config.reference_compat
        features, observed, attention = self._validate_inputs(
            audio, text, video, modality_mask, attention_mask, utterance_index
        )
        batch, length = attention.shape
        if reference:
            # Released behaviour: every batch is padded to the fixed length `seq_len` before the model, and every
            # padded position is computed (and feeds the prototype layer); outputs are cut back afterwards.
            pad = config.max_utterances - length
            features = {m: F.pad(x, (0, 0, 0, pad)) for m, x in features.items()}
            observed = F.pad(observed, (0, 0, 0, pad))
            attention = F.pad(attention, (0, pad))
            packer = _Packer(None, batch, config.max_utterances, attention.device)
        else:
            if utterance_index is None:
                utterance_index = utterance_index_from_attention_mask(attention)  # the one host synchronisation
            full = utterance_index.shape[0] == batch * length  # every position is real: no packing needed
            packer = _Packer(None if full else utterance_index.long(), batch, length, attention.device)

        with_private = stage == 1 and output_private_streams
        # Gradient checkpointing re-runs the attention layers in the backward: their dropouts then draw their own
        # masks (the checkpoint restores the random state), not masks taken from the forward's pool.
        pooled_attention = not (self.gradient_checkpointing and training)
        if training and drop > 0.0:
            numel = self._dropout_numel(stage, packer, with_private, pooled_attention, return_packed)
            dropout = _DropoutMasks(drop, numel, self.input_projections[AUDIO].weight)
        else:
            dropout = _no_dropout
        # the forward's dropouts travel with its layout: `packer.dropout` for every hidden dropout, and
        # `packer.attention_dropout` for the attention layers' MLPs (None: the layers' own)
        packer.dropout, packer.attention_dropout = dropout, dropout if pooled_attention else None
        mask_rows = packer.pack(observed)  # [N, 3] bool
        missing_rows = ~mask_rows
        # The model zeroes masked features itself, by selection: NaN or Inf there cannot leak into any output.
        inputs = [
            packer.pack(features[m]).masked_fill(missing_rows[:, i, None], 0.0) for i, m in enumerate(MODALITIES)
        ]
        projected = torch.stack([self.input_projections[m](inputs[i]) for i, m in enumerate(MODALITIES)])
        projected = dropout(projected)  # [3, N, D]
        # shared and private encoders in one batched pass over 6 groups
        encoded = self.encoders(projected.repeat(2, 1, 1), dropout)  # [6, N, D]: shared a, t, v, private a, t, v
        shared, private = encoded.unflatten(0, (2, 3)).unbind(0)
        reconstructed = self.decoders(torch.cat([shared, private], dim=-1), dropout)
        key_mask = observed.permute(2, 0, 1)  # [3, B, T]
        row_missing = missing_rows.T[..., None]  # [3, N, 1]

        hidden_states: list[torch.Tensor] | None = [] if output_hidden_states else None
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        coordinator_weights, private_streams = None, None
        if stage == 1 or not config.use_knowledge_propagation:
            # Stage 1 (and the "w/o KP" ablation): each stream through both stacks, no prompts; with the private
            # branches, the 3 shared and 3 private streams run as 6 groups of one pass.
            hidden = shared
            masks = key_mask
            if with_private:
                # Deviation (default mode): each private branch uses its own private features. The released
                # code feeds audio's private features to the text and video branches.
                sources = private[:1].expand(3, -1, -1) if reference else private
                # modality-major groups: shared a, private a, shared t, private t, shared v, private v
                hidden = torch.stack([shared, sources], dim=1).flatten(0, 1)
                masks = key_mask.repeat_interleave(2, dim=0)
            attention_masks = _AttentionMasks(masks, packer, self._packed_attention(packer, eager))
            if hidden_states is not None:
                hidden_states.append(shared)
            for stack in self.propagation_stacks:
                hidden = self._stack(hidden, stack, attention_masks, packer, eager, hidden_states, attentions)
            streams = hidden[::2] if with_private else hidden
            if with_private:
                private_streams = hidden[1::2]
            fused_streams = streams.masked_fill(row_missing, 0.0)  # missing rows are zeroed before concatenation
            fused = fused_streams.permute(1, 0, 2).reshape(packer.rows, -1)  # [N, 3D]
        else:
            streams, coordinator_weights, concatenated = self._propagate(
                shared, key_mask, row_missing, observed, packer, eager, hidden_states, attentions
            )
            # In stage 2 the rows of missing modalities are not zeroed (released behaviour): after knowledge
            # propagation they hold what the other modalities reconstructed for them.
            fused = (concatenated * coordinator_weights[..., None]).view(packer.rows, -1)  # [N, 3D]

        state = ComPPackedState(
            packer=packer,
            length=length,
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
            masked_rows=packer.index is None and not reference,
            attention=attention,
        )
        unpack = state.unpack

        def streams_padded(x: torch.Tensor) -> torch.Tensor:  # [3, N, D] -> [B, T, 3, D]
            return unpack(x.transpose(0, 1))

        outputs = ComPModelOutput(
            last_hidden_state=None if return_packed else unpack(fused),
            hidden_states=tuple(streams_padded(h) for h in hidden_states) if hidden_states is not None else None,
            attentions=(
                tuple(a.transpose(0, 1)[:, :, :, :length, :length] for a in attentions)
                if attentions is not None
                else None
            ),
            packed=state if return_packed else None,
        )
        if not return_packed:
            outputs.modality_hidden_states = streams_padded(streams)
            outputs.coordinator_weights = unpack(coordinator_weights)
            outputs.projected_features = streams_padded(projected)
            outputs.reconstructed_features = streams_padded(reconstructed)
            outputs.shared_features = streams_padded(shared)
            outputs.private_features = streams_padded(private)
            outputs.modality_mask = unpack(mask_rows.to(fused.dtype))
            outputs.attention_mask = unpack(state.real.to(fused.dtype))
        return outputs if return_dict else outputs.to_tuple()

    def _packed_attention(self, packer: _Packer, eager: bool) -> bool:
        """Attention over the packed rows rather than the padded layout (see `_PACKED_ATTENTION_RATIO`); never with
        eager attention (its probabilities are returned in the padded layout) nor in reference mode."""
        if eager or self.config.reference_compat:
            return False
        return packer.rows**2 <= _PACKED_ATTENTION_RATIO * packer.batch * packer.length**2

    def _dropout_numel(self, stage: int, packer: _Packer, with_private: bool, attention: bool, head: bool) -> int:
        """How many elements one training forward drops out with `hidden_dropout_prob` (the size of its
        `_DropoutMasks`), site by site in forward order; `attention`: the attention layers' MLPs draw from it;
        `head`: so does the fusion tail of `ComPForEmotionRecognition`."""
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
        if head:
            numel += rows * 3 * dim
        return numel

    def _stack(self, hidden, stack, masks, packer, eager, hidden_states, attentions) -> torch.Tensor:
        """One propagation stack on `G` groups `[G, N, D]`: audio, text, video, each repeated `G / 3` times in a row
        (modality-major); `hidden_states` and `attentions` receive the first group of each modality."""
        first = slice(None, None, hidden.shape[0] // len(MODALITIES))
        for layer in stack.layers:
            args = (hidden, layer, masks, packer, self.config, self.training, eager, packer.attention_dropout)
            if self.gradient_checkpointing and self.training:
                hidden, probs = self._gradient_checkpointing_func(_attention_layer, *args)
            else:
                hidden, probs = _attention_layer(*args)
            if hidden_states is not None:
                hidden_states.append(hidden[first])
            if attentions is not None:
                attentions.append(probs[first])
        return hidden

    def _prototypes(self, shared, row_missing, packer) -> torch.Tensor:
        """Compress each conversation's utterances (rows `[3, N, D]`) into `K` prototypes `[3, B, K, D]`.

        Only the first `T` rows of the `[max_utterances, K]` first layer are used: with the rows of padded (and,
        by default, missing) utterances zeroed, the other rows would only ever multiply zeros.
        """
        config = self.config
        layer = self.prompt_generators[0].prototype_layer
        if not config.reference_compat:
            # Deviation (default mode): missing utterances do not feed the prototypes (the intent of Eq. 7's
            # mask), and padded ones are zeros. The released code feeds both (padded rows carry the biases).
            shared = shared.masked_fill(row_missing, 0.0)
        groups, dim = shared.shape[0], shared.shape[-1]
        # the utterance axis last: [3, B * D, T]
        transposed = packer.unpack(shared, dim=1).transpose(2, 3).reshape(groups, -1, packer.length)
        hidden = torch.baddbmm(layer.fc1.bias, transposed, layer.fc1.weight[:, : packer.length])
        protos = packer.dropout(layer.fc2(packer.dropout(F.gelu(hidden))))  # [3, B * D, K]
        return protos.view(groups, packer.batch, dim, -1).transpose(2, 3)  # [3, B, K, D]

    def _prompts(self, generator, hidden, prototypes, packer, released_mask) -> torch.Tensor:
        """Prompts `[3, N, p]` for the rows `hidden` `[3, N, D]` given prototypes `[3, B, K, D]`.

        `released_mask` (`[3, B, L]`, reference mode only) reproduces the released code's similarity mask bit for
        bit: it is a no-op mathematically, but `cos - 10000` rounds in float32.
        """
        config = self.config
        residual = generator.residual_projection(hidden)
        if prototypes is None:  # ablation "w/o PG": the prompts are not built from prototypes
            return residual
        groups, _, dim = hidden.shape
        queries = _normalize(hidden)
        keys = _normalize(prototypes)
        # Eq. 7's mask is constant along each row of the similarity matrix, so it cannot change a row softmax
        # (the released code's mask is a no-op as well); the default mode omits it.
        if config.reference_compat or config.prototype_scope == "batch":
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
        return generator.prompt_projection(aggregated, packer.dropout) + residual

    def _propagate(self, shared, key_mask, row_missing, observed, packer, eager, hidden_states, attentions):
        """Stage 2: prompt generation, two knowledge-propagation stages with momentum, and the coordinator."""
        config = self.config
        dim = config.hidden_size
        first_generators, second_generators = self.prompt_generators
        stacks = self.propagation_stacks
        others = self._constant(_OTHERS, shared.new_empty(0, dtype=torch.long))
        masks = _AttentionMasks(key_mask, packer, self._packed_attention(packer, eager))

        prototypes = self._prototypes(shared, row_missing, packer) if config.use_prompt_generation else None
        released = observed.permute(2, 0, 1) if config.reference_compat else None
        prompts = self._prompts(first_generators, shared, prototypes, packer, released)  # [3, N, p]

        def received(prompts: torch.Tensor) -> torch.Tensor:
            """For each modality, the prompts of its two others, concatenated: [3, N, 2p]."""
            groups, rows, width = prompts.shape
            chosen = prompts.index_select(0, others).view(groups, 2, rows, width)  # [3, 2, N, p]
            return chosen.transpose(1, 2).reshape(groups, rows, 2 * width)

        # Knowledge propagation, stage 1: a stream is concatenated with the prompts of the two others.
        hidden = self.prompt_fusions[0](torch.cat([shared, received(prompts)], dim=-1))
        if hidden_states is not None:
            hidden_states.append(hidden)
        hidden = self._stack(hidden, stacks[0], masks, packer, eager, hidden_states, attentions)
        split_streams, split_prompts = self.prompt_splits(hidden, packer.dropout).split(
            [dim, 2 * config.prompt_dim], -1
        )

        # Prompt generation, stage 2 (reusing the first stage's prototypes) and momentum updating:
        # P = λ·(prompts received from the first stack) + (1 − λ)·(new prompts of the others).
        new_prompts = self._prompts(second_generators, split_streams, prototypes, packer, released)
        lam = config.prompt_momentum
        momentum = lam * split_prompts + (1.0 - lam) * received(new_prompts)
        hidden = self.prompt_fusions[1](torch.cat([split_streams, momentum], dim=-1))
        streams = self._stack(hidden, stacks[1], masks, packer, eager, hidden_states, attentions)

        flat = streams.permute(1, 0, 2).reshape(packer.rows, -1)  # [N, 3D]: the three streams side by side
        if config.use_coordinator:
            coordinator, dropout = self.coordinator, packer.dropout
            weights = torch.softmax(dropout(coordinator.fc2(dropout(F.gelu(coordinator.fc1(flat))))), dim=-1)
        else:  # ablation "w/o Cr": equal weights
            weights = shared.new_full((packer.rows, 3), 1.0 / 3.0)
        return streams, weights, flat.view(packer.rows, 3, -1)


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

    def _heads(self, streams: torch.Tensor) -> torch.Tensor:
        """Unimodal heads on `[3, N, D]` -> `[3, N, C]`."""
        return self.modality_heads(streams)

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
                Class ids (integers in `[0, num_labels)`, -100 ignored) or sentiment scores (float). Padded
                positions are ignored.
            return_dict (`bool`, *optional*):
                Return a [`ComPOutput`] (default: `config.return_dict`) instead of a tuple.

        Returns:
            [`ComPOutput`]: see its docstring for the fields and shapes; padded positions hold zeros.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        stage = self.training_stage
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
        self.gradient_modulator.disarm()
        if modulate:
            self._hook_prototype_layers()
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
            output_private_streams=want_loss and stage == 1,
        )
        state = backbone.packed
        hidden = state.fused + state.packer.dropout(F.relu(self.fusion(state.fused)))
        logits = self.classifier(hidden)  # [N, C]
        modality_logits = self._heads(state.streams)  # [3, N, C]
        if config.is_regression:
            logits, modality_logits = logits.squeeze(-1), modality_logits.squeeze(-1)

        loss, terms, modulation = None, None, None
        if want_loss:
            targets = self._pack_labels(labels, state)
            valid = state.real if config.is_regression else state.real & (targets != -100)
            loss, terms = self._loss(state, logits, modality_logits, targets, valid, stage)
            if modulate:
                modulation = self.gradient_modulator(
                    modality_logits, targets, valid, state.packer.position, state.packer.length
                )

        # the padded outputs, unpacked together: one scatter for the four of them
        rows = state.packer.rows
        parts = [logits.reshape(rows, -1), modality_logits.transpose(0, 1).reshape(rows, -1), hidden]
        if state.coordinator_weights is not None:
            parts.append(state.coordinator_weights)
        padded = state.unpack(torch.cat(parts, dim=-1)).split([part.shape[-1] for part in parts], dim=-1)
        head = padded[0].shape[:2]
        output = ComPOutput(
            loss=loss,
            logits=padded[0].reshape(*head, *logits.shape[1:]),
            modality_logits=padded[1].reshape(*head, *modality_logits.transpose(0, 1).shape[1:]),
            coordinator_weights=padded[3] if state.coordinator_weights is not None else None,
            loss_terms=terms,
            last_hidden_state=padded[2],
            hidden_states=backbone.hidden_states,
            attentions=backbone.attentions,
            modulation_weights=modulation,
        )
        return output if return_dict else output.to_tuple()

    # -- losses --------------------------------------------------------------------------------------------------
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
        if not config.is_regression:
            # checked on the device (no host synchronisation); on CPU it raises at once
            ok = ((targets == -100) | ((targets >= 0) & (targets < config.num_labels)) | ~state.real).all()
            torch._assert_async(ok, f"labels must be class ids in [0, {config.num_labels}) or -100")
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
            private_logits = self._heads(state.private_streams)  # [3, N, C]
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


def _with_checkpoint_names(key: str) -> str:
    """A stacked parameter name followed by the checkpoint names it is made of (for error messages)."""
    for target, sources, _ in _CHECKPOINT_LAYOUT:
        prefix = _matches(key, target)
        if prefix is not None:
            return f"{key} (stacked from {', '.join(prefix + source for source in sources)})"
    return key


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
                keys = [_with_checkpoint_names(key) for key in keys]
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
