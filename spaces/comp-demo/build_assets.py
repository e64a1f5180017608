"""Build the Space's bundled assets from the synthetic corpus with our training recipe.

Writes, next to this file:

* ``checkpoint/`` — the model selected by ``recipes/train.py`` (default config
  ``recipes/configs/synthetic.yaml``: the synthetic IEMOCAP-4-shaped corpus, hidden size 64), exactly as the
  recipe saved it (``save_pretrained`` files, model card, ``comp_run.json``);
* ``examples.parquet`` — the held-out **test** split of the same synthetic corpus (never seen in training or
  model selection), every modality present, one row per conversation in the ``hub_datasets`` layout;
* ``assets.json`` — what was built, from what, and the recipe's synthetic test metrics.

Usage (from the repository root; about a minute on a 2-core CPU)::

    python spaces/comp-demo/build_assets.py
    python spaces/comp-demo/build_assets.py --output_dir /tmp/assets -- --epochs 3   # args after -- go to the recipe

Every file is written to a temporary name and renamed into place, so an interrupted build leaves the previous
assets intact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_CONFIG = REPO_ROOT / "recipes" / "configs" / "synthetic.yaml"
MAX_CHECKPOINT_BYTES = 5 * 2**20
EXAMPLE_COLUMNS = ("dialog_id", "utterance_ids", "speakers", "transcripts", "labels", "num_utterances")

__all__ = ["build_assets", "main"]


class BuildError(RuntimeError):
    """The assets could not be built; the message says why."""


def _replace_path(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, replacing what was there (a directory is swapped, not merged)."""
    if final.is_dir():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _display(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _write_examples(test_split: Any, path: Path, max_utterances: int) -> list[str]:
    """Write the test conversations (all modalities present) as ``examples.parquet``; return their ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hub_datasets.constants import MODALITIES

    rows = []
    for row in test_split:
        n = int(row["num_utterances"])
        if n > max_utterances:
            continue
        record = {key: row[key] for key in EXAMPLE_COLUMNS if key in row}
        for modality in MODALITIES:
            record[modality] = np.asarray(row[modality], dtype=np.float32).tolist()
        record["modality_mask"] = np.ones((n, 3), dtype=np.int8).tolist()
        rows.append(record)
    if not rows:
        raise BuildError(f"no test conversation has at most {max_utterances} utterances")
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp, compression="zstd")
    os.replace(tmp, path)
    return [r["dialog_id"] for r in rows]


def build_assets(
    output_dir: Path = HERE, config: Path = DEFAULT_CONFIG, recipe_args: list[str] | None = None
) -> dict[str, Any]:
    """Train with the recipe, then write ``checkpoint/``, ``examples.parquet`` and ``assets.json``.

    Args:
        output_dir: where to write the assets (default: the Space folder).
        config: the recipe's YAML config (default: the synthetic one).
        recipe_args: extra ``recipes/train.py`` arguments (they override the config).

    Returns:
        The ``assets.json`` content.

    Raises:
        BuildError: if training fails, the corpus is not synthetic, the splits overlap, or the checkpoint is
            over 5 MiB.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import numpy as np

    from hub_datasets import dataset_provenance
    from hub_datasets.atomic import atomic_write_text
    from hub_datasets.constants import MODALITIES
    from recipes.common import load_corpus
    from recipes.config import parse_train_args
    from recipes.train import main as train_main

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="comp-space-assets-") as work:
        run_dir = Path(work) / "run"
        argv = ["--config", str(config), *(recipe_args or []), "--output_dir", str(run_dir), "--report_to", "none"]
        cfg = parse_train_args(argv)
        if cfg.dataset != "synthetic":
            raise BuildError(f"the bundled checkpoint must be trained on the synthetic corpus, got {cfg.dataset!r}")
        print("training: python recipes/train.py " + " ".join(argv), flush=True)
        if train_main(argv) != 0:
            raise BuildError("recipes/train.py failed (see its message above)")
        model_dir = run_dir / "model"
        run_info = json.loads((model_dir / "comp_run.json").read_text())

        # The held-out test split, exactly as the run split it, but with every modality present.
        trained = load_corpus(cfg)
        full = load_corpus(dataclasses.replace(cfg, missing_rate=0.0))
        test, run_test = full["test"], trained["test"]
        test_ids = list(test["dialog_id"])
        if test_ids != list(run_test["dialog_id"]):
            raise BuildError("the test split changed with the missing rate; refusing to ship examples")
        seen = set(trained["train"]["dialog_id"]) | set(trained["validation"]["dialog_id"])
        if seen & set(test_ids):
            raise BuildError(f"test conversations also used in training/validation: {sorted(seen & set(test_ids))}")
        for i in range(len(test)):  # same features where the run observed them (masks are the only difference)
            mask = np.asarray(run_test[i]["modality_mask"], dtype=bool)
            for j, modality in enumerate(MODALITIES):
                a, b = np.asarray(test[i][modality]), np.asarray(run_test[i][modality])
                if not np.allclose(a[mask[:, j]], b[mask[:, j]]):
                    raise BuildError(f"features of {test[i]['dialog_id']} differ from the run's test split")
        provenance = dataset_provenance(test)
        if not provenance.get("synthetic"):
            raise BuildError("the test split's provenance does not say synthetic; refusing to label it so")

        size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
        if size > MAX_CHECKPOINT_BYTES:
            raise BuildError(f"the checkpoint is {size / 2**20:.2f} MiB, over the 5 MiB budget of the Space")
        max_utterances = int(json.loads((model_dir / "config.json").read_text())["max_utterances"])
        examples_path = output_dir / "examples.parquet"
        ids = _write_examples(test, examples_path, max_utterances)

        staged = output_dir / "checkpoint.tmp"
        shutil.rmtree(staged, ignore_errors=True)
        # No model code beside the weights: the Space loads them through the installed comp-emotion package.
        shutil.copytree(model_dir, staged, ignore=shutil.ignore_patterns("*.py"))
        config = json.loads((staged / "config.json").read_text())
        config.pop("auto_map", None)
        (staged / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _replace_path(staged, output_dir / "checkpoint")

    final = run_info.get("final", {})
    assets = {
        "synthetic": True,
        "note": "SYNTHETIC data: generated by hub_datasets' synthetic corpus, not recordings of people",
        "checkpoint": "checkpoint",
        "checkpoint_bytes": size,
        "examples": "examples.parquet",
        "examples_split": "test",
        "examples_dialog_ids": ids,
        "examples_provenance": {
            k: provenance.get(k)
            for k in (
                "corpus_label",
                "config",
                "split",
                "fold",
                "seed",
                "num_conversations",
                "num_utterances",
                "dims",
                "label_names",
                "synthetic",
                "fingerprint",
            )
        },
        "recipe": {
            "command": " ".join(
                [
                    "python recipes/train.py",
                    "--config",
                    _display(config),
                    *(recipe_args or []),
                    "--output_dir",
                    "<temporary>",
                    "--report_to",
                    "none",
                ]
            ),
            "config": {k: v for k, v in run_info.get("config", {}).items() if k != "output_dir"},
            "selection_rule": final.get("selection_rule"),
            "selected_epoch": final.get("epoch"),
            "test_metrics_synthetic": final.get("test"),
        },
        "built_by": "spaces/comp-demo/build_assets.py",
    }
    atomic_write_text(output_dir / "assets.json", json.dumps(assets, indent=2, sort_keys=True, default=str) + "\n")
    return assets


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python spaces/comp-demo/build_assets.py [--output_dir DIR] [--config YAML] [-- ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, recipe_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, default=HERE, help="where to write the assets (default: here)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="recipe config (default: synthetic)")
    args = parser.parse_args(argv)
    try:
        assets = build_assets(args.output_dir, args.config, recipe_args)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metrics = assets["recipe"]["test_metrics_synthetic"] or {}
    print(
        f"wrote {args.output_dir / 'checkpoint'} ({assets['checkpoint_bytes'] / 2**20:.2f} MiB) and "
        f"{len(assets['examples_dialog_ids'])} held-out synthetic conversations to "
        f"{args.output_dir / 'examples.parquet'}; synthetic test accuracy "
        f"{100 * float(metrics.get('accuracy', float('nan'))):.2f} %"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
