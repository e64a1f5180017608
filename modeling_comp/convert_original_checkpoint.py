"""Convert a `state_dict` saved by the authors' released ComP code into a comp-emotion checkpoint.

The released model (github.com/WenjueHE/2026-AAAI-ComP; its parameter names are listed by
`released_state_dict_keys`) maps one-to-one onto the checkpoint layout of `ComPForEmotionRecognition` (one
`nn.Linear` per modality; the model stacks them as it loads); the modules it defines but never calls
(`prop_former_*_2.proj_n`, `prop_proj_rev_*_2`) are dropped. The result has `reference_compat=True`, so its evaluation forward is the
released one. Every hyper-parameter is read from the tensor shapes except those that leave no trace in them
(attention heads, prompt momentum λ, the task type when it is ambiguous), which are options. The converted
config records the input features (`modality_features`): those of the paper's four corpora (`--corpus`), filled
automatically when the feature dimensions are theirs (audio 512, text 1024, video 1024).

Every shape is checked against sane bounds and against the shapes the other tensors imply before anything is
allocated, so a malformed `.pth` (e.g. stride-0 tensors claiming huge shapes) is refused with one line.

    python -m modeling_comp.convert_original_checkpoint --checkpoint best.pth --output comp-mosi \\
        --num_attention_heads 2 --prompt_momentum 0.3 --problem_type regression

The `.pth` is read with `torch.load(weights_only=True)`: a file that needs arbitrary unpickling is refused.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from .configuration_comp import CORPUS_MODALITY_FEATURES, ComPConfig
from .convert_arguments import build_parser
from .modeling_comp import ComPForEmotionRecognition, checkpoint_layout_state_dict


_SHORT = {"a": "audio", "t": "text", "v": "video"}

# (released-name pattern, our-name template); `{m}` is the modality letter, `{M}` our modality name.
_RULES: list[tuple[str, str]] = [
    (r"(?P<m>[atv])_in_proj\.0\.(?P<p>weight|bias)", "comp.input_projections.{M}.{p}"),
    (r"shared_enc_(?P<m>[atv])\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "comp.shared_encoders.{M}.{fc}.{p}"),
    (r"private_enc_(?P<m>[atv])\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "comp.private_encoders.{M}.{fc}.{p}"),
    (r"dec_(?P<m>[atv])\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "comp.decoders.{M}.{fc}.{p}"),
    (
        r"block(?P<s>[12])\.blocks\.(?P<i>\d+)\.Transformer_(?P<m>[atv])\.(?P<w>q|k|v|mlp\.fc1|mlp\.fc2)\.(?P<p>weight|bias)",
        "comp.propagation_stacks.{s0}.layers.{i}.modalities.{M}.{w}.{p}",
    ),
    (r"proj1\.(?P<p>weight|bias)", "fusion.{p}"),
    (r"nlp_head_(?P<m>[atv])\.(?P<p>weight|bias)", "modality_heads.{M}.{p}"),
    (r"nlp_head\.(?P<p>weight|bias)", "classifier.{p}"),
    (r"router\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "comp.coordinator.{fc}.{p}"),
    (r"prop_proj_(?P<m>[atv])_(?P<s>[12])\.(?P<p>weight|bias)", "comp.prompt_fusions.{s0}.{M}.{p}"),
    (r"prop_proj_rev_(?P<m>[atv])_1\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "comp.prompt_splits.{M}.{fc}.{p}"),
    (
        r"prop_former_(?P<m>[atv])_1\.proj_n\.(?P<fc>fc[12])\.(?P<p>weight|bias)",
        "comp.prompt_generators.0.{M}.prototype_layer.{fc}.{p}",
    ),
    (
        r"prop_former_(?P<m>[atv])_(?P<s>[12])\.proj_d\.(?P<fc>fc[12])\.(?P<p>weight|bias)",
        "comp.prompt_generators.{s0}.{M}.prompt_projection.{fc}.{p}",
    ),
    (
        r"prop_former_(?P<m>[atv])_(?P<s>[12])\.proj_prompt\.(?P<p>weight|bias)",
        "comp.prompt_generators.{s0}.{M}.residual_projection.{p}",
    ),
]
# Released modules that are defined but never called by the released forward: dropped on conversion.
_NEVER_USED = [
    r"prop_former_[atv]_2\.proj_n\.fc[12]\.(weight|bias)",
    r"prop_proj_rev_[atv]_2\.fc[12]\.(weight|bias)",
]


class ConversionError(ValueError):
    """A released checkpoint that cannot be converted; the message lists the offending keys."""


def map_key(name: str) -> str | None:
    """Our parameter name for a released one; `None` for a released module that is dropped.

    Raises:
        KeyError: if the name is neither mapped nor known to be unused.
    """
    for pattern in _NEVER_USED:
        if re.fullmatch(pattern, name):
            return None
    for pattern, template in _RULES:
        match = re.fullmatch(pattern, name)
        if match:
            groups = match.groupdict()
            values = dict(groups)
            if "m" in groups:
                values["M"] = _SHORT[groups["m"]]
            if "s" in groups:
                values["s0"] = int(groups["s"]) - 1
            return template.format(**values)
    raise KeyError(name)


# Bounds on what a released checkpoint's shapes may claim (far above the released sizes: hidden 256, features
# 1024, seq_len 150, depth 4), checked before any allocation.
_MAX_DIM = 65_536
_MAX_DEPTH = 64
_MAX_PARAMETERS = 200_000_000
# feature dimensions of the preprocessed features of the paper's corpora (CORPUS_MODALITY_FEATURES)
_RELEASED_FEATURE_DIMS = (512, 1024, 1024)


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int = 2) -> tuple[int, ...]:
    if key not in state:
        raise ConversionError(f"the checkpoint has no `{key}`, needed to read the model's dimensions")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ConversionError(f"`{key}` has shape {shape}; a {ndim}-D tensor was expected")
    for size in shape:
        if not 0 < size <= _MAX_DIM:
            raise ConversionError(f"`{key}` has shape {shape}: every size must be in [1, {_MAX_DIM}]")
    return shape


def config_from_state_dict(state: Mapping[str, torch.Tensor], **overrides) -> ComPConfig:
    """Read every shape-determined hyper-parameter of a released `state_dict`."""
    hidden, audio_dim = _shape(state, "a_in_proj.0.weight")
    text_dim = _shape(state, "t_in_proj.0.weight")[1]
    video_dim = _shape(state, "v_in_proj.0.weight")[1]
    num_prototypes, max_utterances = _shape(state, "prop_former_a_1.proj_n.fc1.weight")
    prompt_dim = _shape(state, "prop_former_a_1.proj_prompt.weight")[0]
    num_labels = _shape(state, "nlp_head.weight")[0]
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"block1\.blocks\.(\d+)\.", k))}
    if not layer_ids:
        raise ConversionError("the checkpoint has no `block1.blocks.*` attention layers")
    if max(layer_ids) >= _MAX_DEPTH:
        raise ConversionError(f"the checkpoint claims attention layer {max(layer_ids)}; at most {_MAX_DEPTH} expected")
    features = None
    if (audio_dim, text_dim, video_dim) == _RELEASED_FEATURE_DIMS:
        features = CORPUS_MODALITY_FEATURES["mosi"]  # the four corpora share the same features
    kwargs = {
        "audio_dim": audio_dim,
        "text_dim": text_dim,
        "video_dim": video_dim,
        "hidden_size": hidden,
        "num_hidden_layers": 2 * (max(layer_ids) + 1),
        "prompt_dim": prompt_dim,
        "num_prototypes": num_prototypes,
        "max_utterances": max_utterances,
        "num_labels": num_labels,
        "problem_type": "regression" if num_labels == 1 else "single_label_classification",
        "reference_compat": True,
        "prototype_scope": "batch",
        "modality_features": features,
    }
    corpus = overrides.pop("corpus", None)
    if corpus is not None:
        if corpus not in CORPUS_MODALITY_FEATURES:
            raise ConversionError(f"unknown corpus {corpus!r}; expected one of {sorted(CORPUS_MODALITY_FEATURES)}")
        kwargs["modality_features"] = CORPUS_MODALITY_FEATURES[corpus]
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = ComPConfig(**kwargs)  # the config's own size limits apply before anything is allocated
    except ConversionError:
        raise
    except ValueError as err:
        raise ConversionError(f"the checkpoint's shapes give an invalid configuration: {err}") from None
    _check_shapes(state, config)
    return config


def _check_shapes(state: Mapping[str, torch.Tensor], config: ComPConfig) -> None:
    """Before a model is allocated: the parameter count `config` implies, and every tensor's claimed shape, must
    stay within bounds (a stride-0 tensor may claim a huge shape from a tiny file). Shapes that merely disagree
    with the configuration are listed afterwards, with the other problems, by `convert_state_dict`."""
    expected = released_state_dict_keys(config)
    total = sum(math.prod(shape) for shape in expected.values())
    if total > _MAX_PARAMETERS:
        raise ConversionError(
            f"the checkpoint's shapes imply {total:,} parameters (more than {_MAX_PARAMETERS:,}): refused"
        )
    for name, tensor in state.items():
        shape = tuple(tensor.shape)
        if len(shape) > 2 or any(not 0 <= size <= _MAX_DIM for size in shape):
            raise ConversionError(
                f"`{name}` claims shape {shape}: at most 2 dimensions of at most {_MAX_DIM} each were expected"
            )


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a released `.pth` safely (`weights_only=True`), unwrapping `{"state_dict": ...}` / `{"model": ...}`
    containers and a `module.` (DataParallel) prefix."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure gets the same clear message
        raise ConversionError(
            f"{path} could not be read as a plain state_dict with torch.load(weights_only=True) "
            f"(a pickled whole model or custom objects are refused): {type(err).__name__}: {str(err)[:200]}"
        ) from None
    for container in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(container), Mapping):
            obj = obj[container]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} does not hold a state_dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def convert_state_dict(
    state: Mapping[str, torch.Tensor], config: ComPConfig | None = None, **overrides
) -> ComPForEmotionRecognition:
    """Build a `reference_compat` `ComPForEmotionRecognition` holding the released weights.

    Raises:
        ConversionError: listing every unmapped, missing or mis-shaped key.
    """
    if config is None:
        config = config_from_state_dict(state, **overrides)
    else:
        _check_shapes(state, config)
    model = ComPForEmotionRecognition(config)
    ours = checkpoint_layout_state_dict(model.state_dict())  # one nn.Linear per modality, as the release
    converted: dict[str, torch.Tensor] = {}
    unmapped, misshaped, dropped = [], [], []
    for name, tensor in state.items():
        try:
            target = map_key(name)
        except KeyError:
            unmapped.append(name)
            continue
        if target is None:
            dropped.append(name)
            continue
        if target not in ours:
            unmapped.append(f"{name} (-> {target}, absent from this configuration)")
            continue
        if tuple(tensor.shape) != tuple(ours[target].shape):
            misshaped.append(f"{name}: {tuple(tensor.shape)}, expected {tuple(ours[target].shape)}")
            continue
        converted[target] = tensor.detach().to(ours[target].dtype)
    missing = sorted(set(ours) - set(converted))
    problems = []
    if unmapped:
        problems.append("unmapped keys: " + ", ".join(sorted(unmapped)))
    if misshaped:
        problems.append("mis-shaped keys: " + "; ".join(sorted(misshaped)))
    if missing:
        problems.append("keys missing from the checkpoint (our names): " + ", ".join(missing))
    if problems:
        raise ConversionError("cannot convert the released checkpoint:\n  " + "\n  ".join(problems))
    model.load_state_dict(converted, strict=True)
    model.eval()
    return model


def convert_checkpoint(checkpoint: str | Path, output: str | Path, **overrides) -> ComPForEmotionRecognition:
    """Read a released `.pth`, convert it, and `save_pretrained` it (safetensors) to `output`."""
    state = load_original_state_dict(checkpoint)
    model = convert_state_dict(state, **overrides)
    model.save_pretrained(output)
    return model


def released_state_dict_keys(config: ComPConfig) -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes of the released model for `config`, including its never-used modules
    (useful to build test fixtures and to document the mapping)."""
    dim, p, k, n = config.hidden_size, config.prompt_dim, config.num_prototypes, config.max_utterances
    c = config.num_labels
    dims = {"a": config.audio_dim, "t": config.text_dim, "v": config.video_dim}
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, fan_in: int, fan_out: int) -> None:
        shapes[f"{name}.weight"] = (fan_out, fan_in)
        shapes[f"{name}.bias"] = (fan_out,)

    def mlp(name: str, fan_in: int, hidden: int, fan_out: int) -> None:
        linear(f"{name}.fc1", fan_in, hidden)
        linear(f"{name}.fc2", hidden, fan_out)

    for m in "atv":
        linear(f"{m}_in_proj.0", dims[m], dim)
    for prefix in ("shared_enc", "private_enc"):
        for m in "atv":
            mlp(f"{prefix}_{m}", dim, dim, dim)
    for m in "atv":
        mlp(f"dec_{m}", 2 * dim, dim, dim)
    for s in (1, 2):
        for i in range(config.num_hidden_layers // 2):
            for m in "atv":
                base = f"block{s}.blocks.{i}.Transformer_{m}"
                for w in ("q", "k", "v", "mlp.fc1", "mlp.fc2"):
                    linear(f"{base}.{w}", dim, dim)
    linear("proj1", 3 * dim, 3 * dim)
    for m in "atv":
        linear(f"nlp_head_{m}", dim, c)
    linear("nlp_head", 3 * dim, c)
    mlp("router", 3 * dim, dim, 3)
    for s in (1, 2):
        for m in "avt":
            linear(f"prop_proj_{m}_{s}", dim + 2 * p, dim)
    for s in (1, 2):
        for m in "avt":
            mlp(f"prop_proj_rev_{m}_{s}", dim, dim, dim + 2 * p)
    for s in (1, 2):
        for m in "avt":
            mlp(f"prop_former_{m}_{s}.proj_n", n, k, k)
            mlp(f"prop_former_{m}_{s}.proj_d", dim, p, p)
            linear(f"prop_former_{m}_{s}.proj_prompt", dim, p)
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model = convert_checkpoint(
            args.checkpoint,
            args.output,
            num_attention_heads=args.num_attention_heads,
            prompt_momentum=args.prompt_momentum,
            problem_type=args.problem_type,
            hidden_dropout_prob=args.hidden_dropout_prob,
            corpus=args.corpus,
        )
    except (ConversionError, ValueError) as err:
        print(f"comp-convert: error: {err}", file=sys.stderr)
        return 2
    n_params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {args.output} ({n_params:,} parameters, reference_compat=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "ConversionError",
    "config_from_state_dict",
    "convert_checkpoint",
    "convert_state_dict",
    "load_original_state_dict",
    "main",
    "map_key",
    "released_state_dict_keys",
]
