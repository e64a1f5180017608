"""The checkpoint layout of ComP weights: one `nn.Linear` per modality, while the model stacks them.

The model stacks the per-modality layers of one shape into `ComPStackedLinear`s (`batched_layers.py`);
checkpoints keep one `nn.Linear` per modality (the layout of comp-emotion 0.1 checkpoints and of converted
released weights: the names of the released modules map one-to-one onto it). This module converts between the
two (`model_layout_state_dict`, `checkpoint_layout_state_dict`) and registers the conversion with transformers'
weight-conversion mapping, so `from_pretrained` stacks and `save_pretrained` unstacks.

Copied into every saved checkpoint with `modeling_comp.py` (a relative import of it): it imports only torch,
transformers and `configuration_comp.py`.
"""

from __future__ import annotations

import torch

from .configuration_comp import MODALITIES, ComPConfig


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


def with_checkpoint_names(key: str) -> str:
    """A stacked parameter name followed by the checkpoint names it is made of (for error messages)."""
    for target, sources, _ in _CHECKPOINT_LAYOUT:
        prefix = _matches(key, target)
        if prefix is not None:
            return f"{key} (stacked from {', '.join(prefix + source for source in sources)})"
    return key


__all__ = ["checkpoint_layout_state_dict", "model_layout_state_dict", "with_checkpoint_names"]
