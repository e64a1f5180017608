"""Console-script entry points (``comp-train``, ``comp-eval``, ``comp-sweep``, ``comp-convert``).

A plain ``pip install comp-emotion`` installs the recipes' scripts but not the training extra they run on. Each of
them first checks that every module of the extra can be found, and otherwise exits with one line naming the missing
modules and the install command, before the recipe itself is imported.

``comp-convert`` parses its command line with ``modeling_comp/convert_arguments.py`` loaded on its own (the standard
library only) before importing the converter, which imports torch and transformers: ``--help`` and usage errors
answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


__all__ = ["TRAIN_EXTRA_MODULES", "missing_train_modules", "train", "evaluate", "sweep", "convert"]

# The import names of the `train` extra's distributions (setup.cfg), in its order; tests/test_packaging.py checks
# that both lists name the same packages.
TRAIN_EXTRA_MODULES = {
    "accelerate": "accelerate",
    "evaluate": "evaluate",
    "scikit-learn": "sklearn",
    "tensorboard": "tensorboard",
    "pyyaml": "yaml",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "pandas": "pandas",
    "psutil": "psutil",
}


def missing_train_modules() -> list[str]:
    """The import names of the training extra that cannot be found in this environment."""
    missing = []
    for module in TRAIN_EXTRA_MODULES.values():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            found = False
        if not found:
            missing.append(module)
    return missing


def _run(script: str, target: str) -> int | None:
    missing = missing_train_modules()
    if missing:
        sys.exit(
            f"{script} needs the training extra (missing: {', '.join(missing)}): pip install 'comp-emotion[train]'"
        )
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)()


def train() -> int | None:
    """``comp-train``: :func:`recipes.train.main`."""
    return _run("comp-train", "recipes.train:main")


def evaluate() -> int | None:
    """``comp-eval``: :func:`recipes.evaluation.main`."""
    return _run("comp-eval", "recipes.evaluation:main")


def sweep() -> int | None:
    """``comp-sweep``: :func:`recipes.sweep.main`."""
    return _run("comp-sweep", "recipes.sweep:main")


def _converter_arguments():
    """``modeling_comp/convert_arguments.py`` as a module of its own, without importing the ``modeling_comp``
    package (whose ``__init__`` imports torch and transformers)."""
    package = importlib.util.find_spec("modeling_comp")  # locates the package without running its __init__
    if package is None or not package.submodule_search_locations:
        sys.exit("comp-convert: the modeling_comp package is not installed (pip install comp-emotion)")
    for folder in package.submodule_search_locations:
        path = Path(folder) / "convert_arguments.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("_comp_convert_arguments", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    sys.exit(f"comp-convert: {package.name} has no convert_arguments.py (a broken install?)")


def convert(argv: list[str] | None = None) -> int:
    """``comp-convert``: :func:`modeling_comp.convert_original_checkpoint.main`, with the arguments checked first."""
    argv = sys.argv[1:] if argv is None else argv
    _converter_arguments().build_parser().parse_args(argv)  # --help, usage errors: exits here
    from modeling_comp.convert_original_checkpoint import main

    return main(argv)
