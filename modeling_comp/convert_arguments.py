"""The command line of the checkpoint converter (`comp-convert`), built with the standard library alone.

Importing any module of `modeling_comp` imports torch and transformers (the package registers its Auto classes on
import), which takes seconds. This file imports nothing else, so the `comp-convert` console script
(`recipes.cli:convert`) loads it on its own, parses the command line with it, and imports the converter only once
the arguments are valid: `--help` and usage errors answer at once. `modeling_comp.convert_original_checkpoint.main`
parses with the same parser.
"""

from __future__ import annotations

import argparse


# The corpora whose input features a converted config can record: the keys of
# `modeling_comp.configuration_comp.CORPUS_MODALITY_FEATURES` (a test keeps the two equal).
CONVERTIBLE_CORPORA = ("iemocap4", "iemocap6", "mosei", "mosi")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comp-convert", description="Convert a released ComP .pth state_dict to a comp-emotion checkpoint."
    )
    parser.add_argument("--checkpoint", required=True, help="the released .pth (a state_dict)")
    parser.add_argument("--output", required=True, help="output folder (safetensors + config + model files)")
    parser.add_argument("--num_attention_heads", type=int, default=2, help="released --num_heads (default 2)")
    parser.add_argument("--prompt_momentum", type=float, default=0.3, help="released --lbd λ (default 0.3)")
    parser.add_argument(
        "--problem_type",
        choices=["regression", "single_label_classification"],
        default=None,
        help="default: regression when the head has one output, classification otherwise",
    )
    parser.add_argument("--hidden_dropout_prob", type=float, default=None, help="released --drop_rate")
    parser.add_argument(
        "--corpus",
        choices=CONVERTIBLE_CORPORA,
        default=None,
        help="record this corpus's input features in the config (default: the paper's features when the "
        "dimensions match them)",
    )
    return parser
