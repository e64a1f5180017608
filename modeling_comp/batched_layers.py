"""Building blocks of the batched ComP computation, beside the network in `modeling_comp.py`.

The three modalities (and, in stage 1, the shared and private branches) run as one batched computation: the
per-modality layers of one shape are stored stacked (`ComPStackedLinear`: weights `[groups, in, out]`) and
applied with one batched product to `[groups, rows, features]`, on the packed rows of the real utterances
(`_Packer`). This module holds that plumbing: the stacked layers, the dropout drawn once per forward
(`_DropoutMasks`), a normalisation with a short backward (`_Normalize`), the packing of rows and the attention
masks (`_AttentionMasks`, which also keeps conversations apart in the packed layout whatever their values).

Copied into every saved checkpoint with `modeling_comp.py` (a relative import of it): it imports only torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class _BoundedForOthers(torch.autograd.Function):
    """The attention layer's input rows `hidden` of the packed layout, clamped to `±_safe_magnitude` and with NaN
    replaced by 0, before the query, key and value projections.

    In one product over every row, a query reads the keys and values of the other conversations through a zero
    weight, and 0 * NaN = NaN, inf - inf = NaN, so one bad value would reach every conversation. From bounded rows
    the keys and values are finite and far too small for any score to overflow (for weights below about 1e13), so
    it cannot; the conversation that holds the bad value keeps it in its residual stream (its own outputs stay NaN
    or huge). Every value a real model computes is far below the bound, so the forward is the identity there and
    so is the backward (no operator; at a replaced entry the gradient is passed through unchanged, and that
    conversation's loss is not finite anyway). Two operators, forward only, on `D`-wide rows.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor) -> torch.Tensor:
        bound = _safe_magnitude(hidden.dtype)
        return hidden.clamp(-bound, bound).nan_to_num_(0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad


def _safe_magnitude(dtype: torch.dtype) -> float:
    """The bound of `_BoundedForOthers`: the fourth root of the dtype's largest value (1.8e9 in float32 and
    bfloat16), so that a projection of bounded rows and a dot product of two such projections stay finite; for a
    dtype too narrow for such a bound (float16), its largest finite value."""
    largest = torch.finfo(dtype).max
    return largest**0.25 if largest > 1e30 else largest


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

    def bounded_for_others(self, hidden: torch.Tensor) -> torch.Tensor:
        """Packed layout: the rows `hidden` `[G, N, D]` bounded before the projections, so that nothing in one
        conversation can make another's scores NaN (see `_BoundedForOthers`); padded layout: `hidden` (each
        conversation is its own batch entry of the attention there)."""
        return _BoundedForOthers.apply(hidden) if self.packed else hidden

    def additive(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as the additive float mask of `scaled_dot_product_attention` (0 or -inf, as log(1) and log(0)),
        built once per dtype (SDPA would convert the boolean mask in every layer)."""
        if dtype not in self._additive:
            self._additive[dtype] = self.allowed.to(dtype).log_()
        return self._additive[dtype]
