"""Publish a prepared corpus as a parquet dataset repo (one config per corpus) with a generated dataset card.

On the Hub, :func:`publish_to_hub` uploads the natural splits with :meth:`datasets.DatasetDict.push_to_hub`
(``config_name=`` one config per corpus; ``datasets`` writes the parquet shards and the card's ``configs`` and
``dataset_info`` metadata), then completes the card: ``task_categories``, tags, licence notes, schema, label
map, folds and missing-modality protocols. :func:`write_parquet_repo` writes the same layout to a local folder::

    README.md                         card: YAML metadata (configs, dataset_info, task_categories, licence) + text
    <config>/<split>-00000-of-00001.parquet
    <config>/comp_emotion.json        what the card says about this config (kept to regenerate the card)

Both are read by plain :func:`datasets.load_dataset` (then :func:`hub_datasets.add_missing_modality` adds the
masks) and by :func:`hub_datasets.load_dataset` (``load_dataset("<user>/<repo>", "<config>", missing_rate=...)``).

Masks are not published (one upload serves every missing rate; masks are recomputed at load time).
IEMOCAP-derived features are licence-restricted: they are refused unless the caller opts in explicitly and, for
an upload, the repository is private.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import datasets
import pyarrow.compute as pc
import yaml
from datasets import Dataset, DatasetDict, concatenate_datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import CommitOperationAdd, DatasetCard, DatasetCardData, HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from .atomic import atomic_write_json, atomic_write_text, make_temp_dir
from .cache import quiet_progress
from .constants import MODALITIES, is_hub_id
from .errors import IemocapUploadRefusedError
from .loading import dataset_provenance
from .masks import MASK_ALGORITHM
from .schema import DERIVED_COLUMNS


__all__ = ["CARD_METADATA_FILE", "publish_to_hub", "render_dataset_card", "write_parquet_repo"]

#: Per-config metadata file inside a repo written by :func:`write_parquet_repo`.
CARD_METADATA_FILE = "comp_emotion.json"
_CONFIG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _provenance(dataset: DatasetDict | Dataset) -> dict:
    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    return dataset_provenance(first)


def _is_real_iemocap(prov: dict) -> bool:
    return prov["family"] == "iemocap" and not prov["synthetic"]


def _natural_splits(dataset: DatasetDict | Dataset, prov: dict) -> dict[str, Dataset]:
    """The corpus's natural splits (IEMOCAP sessions; CMU train/validation/test) without load-time columns."""
    parts = list(dataset.values()) if isinstance(dataset, DatasetDict) else [dataset]
    parts = [p.remove_columns([c for c in DERIVED_COLUMNS if c in p.column_names]).with_format(None) for p in parts]
    if prov["family"] == "iemocap":
        pool = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        meta = pool.select_columns(["dialog_id", "session"])[:]
        out = {}
        for session in range(1, 6):
            idx = sorted(
                (i for i, s in enumerate(meta["session"]) if int(s) == session), key=lambda i: meta["dialog_id"][i]
            )
            if idx:
                out[f"session{session}"] = pool.select(idx)
        return out
    if not isinstance(dataset, DatasetDict) or set(dataset) != {"train", "validation", "test"}:
        raise ValueError(
            f"publish the full {prov['corpus']} DatasetDict (train/validation/test) as returned by load_dataset"
        )
    return dict(zip(dataset, parts, strict=True))


def _config_metadata(config_name: str, prov: dict, splits: dict[str, Dataset]) -> dict:
    counts = {}
    for name, ds in splits.items():
        lengths = ds.select_columns(["num_utterances"]).with_format("arrow")[:].column("num_utterances")
        counts[name] = {"conversations": len(ds), "utterances": int(pc.sum(lengths).as_py() or 0)}
    return {
        "config_name": config_name,
        "corpus": prov["corpus"],
        "corpus_label": prov["corpus_label"],
        "display_name": prov["display_name"],
        "synthetic": bool(prov["synthetic"]),
        "synthetic_params": prov.get("synthetic_params"),
        "family": prov["family"],
        "task": prov["task"],
        "label_names": prov["label_names"],
        "dims": prov["dims"],
        "max_utterances": prov["max_utterances"],
        "feature_names": prov.get("feature_names"),
        "source": prov["source"],
        "splits": counts,
        "mask_algorithm": MASK_ALGORITHM,
    }


def _licence_text(meta: dict) -> str:
    if meta["synthetic"]:
        return (
            "Synthetic data generated by comp-emotion's `hub_datasets.synthetic` (no recordings, no people, no real "
            "emotion labels). It imitates the schema of the real corpus only; numbers obtained on it say nothing "
            "about real emotion recognition."
        )
    if meta["family"] == "iemocap":
        return (
            "Derived from IEMOCAP, released by USC SAIL under a signed data-release form. These features must not "
            "be redistributed: keep this repository **private**, and share it only with people who hold their own "
            "IEMOCAP licence. comp-emotion uploads IEMOCAP-derived data only with an explicit opt-in."
        )
    return (
        "Derived from CMU-MOSI / CMU-MOSEI (CMU Multimodal SDK); use is subject to the original corpus terms. "
        "The features are those of the GCNet/ComP or MMSA releases."
    )


def _folds_text(meta: dict) -> str:
    if meta["family"] == "iemocap":
        return (
            "Splits are the five sessions (`session1` ... `session5`). The protocol is 5-fold leave-one-session-out: "
            "`hub_datasets.load_dataset(repo, config, fold=k)` tests on session k and trains on the other four, "
            "holding out a seeded 10 % of each training session's dialogues as validation (the choice is recorded "
            "in the dataset's provenance)."
        )
    return "Splits are the corpus's official `train` / `validation` / `test` videos."


def _size_category(count: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return label
    return "n>1M"


def _front_matter(configs: list[dict], card_data: dict | None) -> dict:
    """The card's YAML: our descriptive keys, then ``configs`` / ``dataset_info`` as ``datasets`` writes them."""
    any_synthetic = any(c["synthetic"] for c in configs)
    all_synthetic = all(c["synthetic"] for c in configs)
    tasks = {c["task"] for c in configs}
    utterances = max(sum(v["utterances"] for v in c["splits"].values()) for c in configs)
    # Synthetic data is the project's own output (Apache-2.0); real-corpus features follow each corpus's terms.
    licence = {"license": "apache-2.0"} if all_synthetic else {"license": "other", "license_name": "corpus-terms"}
    front = {
        **licence,
        "pretty_name": "comp-emotion features" + (" (synthetic)" if all_synthetic else ""),
        "language": ["en"],
        "task_categories": ["audio-classification", "text-classification", "video-classification"],
        "task_ids": sorted(
            ({"multi-class-classification"} if "classification" in tasks else set())
            | ({"sentiment-scoring"} if "regression" in tasks else set())
        ),
        "size_categories": [_size_category(utterances)],
        "tags": ["multimodal", "emotion-recognition", "sentiment-analysis", "missing-modality"]
        + (["synthetic"] if any_synthetic else []),
    }
    card_data = dict(card_data or {})
    front["configs"] = card_data.get("configs") or [
        {
            "config_name": c["config_name"],
            "data_files": [{"split": s, "path": f"{c['config_name']}/{s}-*"} for s in c["splits"]],
        }
        for c in configs
    ]
    if card_data.get("dataset_info"):
        front["dataset_info"] = card_data["dataset_info"]
    return front


def render_dataset_card(configs: list[dict], repo_id: str | None = None, card_data: dict | None = None) -> str:
    """The dataset card (README.md with YAML front matter) for the given configs' metadata.

    Args:
        configs: ``comp_emotion.json`` contents, one per config.
        repo_id: Used in the usage snippet (a placeholder when ``None``).
        card_data: The ``configs`` and ``dataset_info`` metadata as ``datasets`` writes them (kept verbatim);
            default: ``configs`` derived from ``configs``' split names, no ``dataset_info``.

    Returns:
        The card text.
    """
    configs = sorted(configs, key=lambda c: c["config_name"])
    any_synthetic = any(c["synthetic"] for c in configs)
    all_synthetic = all(c["synthetic"] for c in configs)
    front = _front_matter(configs, card_data)
    repo = repo_id or "<user>/<repo>"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", ""]
    title = "comp-emotion features" + (" — SYNTHETIC" if all_synthetic else "")
    lines += [f"# {title}", ""]
    if any_synthetic:
        lines += [
            "> **Synthetic data.** Configs marked synthetic below were generated by comp-emotion; they contain no "
            "real recordings or emotion annotations.",
            "",
        ]
    lines += [
        "Utterance-level audio, text and video features, one row per conversation, for incomplete multimodal "
        "emotion recognition with [ComP](https://arxiv.org/abs/2512.11239) (AAAI 2026). Load with masks:",
        "",
        "```python",
        "from hub_datasets import load_dataset",
        f'dsd = load_dataset("{repo}", "{configs[0]["config_name"]}", missing_rate=0.7, seed=0)',
        "```",
        "",
        "or with `datasets` alone, adding the same masks afterwards:",
        "",
        "```python",
        "import datasets",
        "from hub_datasets import add_missing_modality",
        f'dsd = add_missing_modality(datasets.load_dataset("{repo}", "{configs[0]["config_name"]}"), missing_rate=0.7, seed=0)',
        "```",
        "",
        "`datasets.load_dataset` has no `missing_rate` option of its own (passing one fails with a `ParquetConfig` "
        "error): add the masks as above, or per batch with `hub_datasets.MissingModalityTransform` "
        "(`.map(..., batched=True)`, `with_transform`, or `add_missing_modality` on a `streaming=True` dataset).",
        "",
    ]
    for c in configs:
        lines += [f"## Config `{c['config_name']}`: {c['display_name']}", ""]
        if c["synthetic"]:
            lines += [
                "**Synthetic** (generated by comp-emotion). Generator parameters: "
                f"`{json.dumps(c.get('synthetic_params'), sort_keys=True)}`.",
                "",
            ]
        task = (
            "emotion classification" if c["task"] == "classification" else "sentiment regression (scores in [-3, 3])"
        )
        lines += [
            f"- task: {task}",
            "- feature dimensions: " + ", ".join(f"{m} {c['dims'][m]}" for m in MODALITIES),
            f"- `max_utterances` (the model's padded length): {c['max_utterances']}",
            f"- source: {c['source']}",
        ]
        if c.get("feature_names"):
            lines.append("- feature folders: " + ", ".join(f"{m} `{n}`" for m, n in c["feature_names"].items()))
        lines += ["", "| split | conversations | utterances |", "|---|---|---|"]
        lines += [f"| {s} | {v['conversations']} | {v['utterances']} |" for s, v in c["splits"].items()]
        lines.append("")
        if c["label_names"]:
            lines += ["| label id | name |", "|---|---|"]
            lines += [f"| {i} | {name} |" for i, name in enumerate(c["label_names"])]
            lines.append("")
        lines += [_folds_text(c), "", f"Licence: {_licence_text(c)}", ""]
    lines += [
        "## Schema",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        "| `dialog_id` | string | conversation (dialogue / video) id |",
        "| `utterance_ids` | list of string | utterance ids, in conversation order |",
        "| `speakers` | list of string | `F`/`M` (IEMOCAP), empty (CMU) |",
        "| `transcripts` | list of string | transcripts where the corpus has them |",
        "| `labels` | list of ClassLabel / float64 | class ids (IEMOCAP) or sentiment in [-3, 3] (CMU) |",
        "| `audio`, `text`, `video` | Array2D `[n, dim]` float32 | utterance features (the speaking actor's) |",
        "| `feature_present` | Array2D `[n, 3]` int8 | 0 where the corpus had an empty feature (e.g. no face) |",
        "| `num_utterances` | int32 | `n` |",
        "| `corpus` | string | corpus config (`synthetic-...` for synthetic data) |",
        "| `session` | int32 | IEMOCAP session 1-5 (0 for CMU) |",
        "| `source_split` | string | split in the source files |",
        "",
        "## Missing-modality protocols",
        "",
        "Masks are **not** stored: one upload serves every missing rate. `hub_datasets.load_dataset` adds a "
        "`modality_mask` column (`[n, 3]`, 1 = observed, order audio/text/video) computed from a hash of "
        f"(seed, role, epoch, utterance id) (`{MASK_ALGORITHM}`): identical across runs, machines and process counts.",
        "",
        '- `protocol="rate"` (the paper\'s): each utterance keeps one uniformly chosen modality and each other one '
        "with probability q = clip((2 - 3·η)/2, 0, 1), so every utterance keeps at least one modality and the "
        "expected missing rate is η for η ≤ 2/3. At η ≥ 2/3 exactly one modality is kept: **η = 0.7 really means "
        "0.667**. The realised rate is stored with the loaded dataset.",
        '- `protocol="subset"` (MMIN/MoMKE): a fixed observed set for every utterance, e.g. `modalities="at"`.',
        "- Evaluation masks are fixed; training masks are redrawn per epoch with "
        "`hub_datasets.redraw_training_masks(train, epoch)`.",
        "",
        "## Citation",
        "",
        "He, Zhu & Zhang, *Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition*, "
        "AAAI 2026 (arXiv:2512.11239).",
        "",
    ]
    return "\n".join(lines)


def _collect_metadata(folder: Path) -> list[dict]:
    out = []
    for meta_file in sorted(folder.glob(f"*/{CARD_METADATA_FILE}")):
        out.append(json.loads(meta_file.read_text(encoding="utf-8")))
    return out


def local_repo_corpus(path: str | os.PathLike, config: str | None = None) -> str | None:
    """The corpus a config of a local parquet repo holds (``iemocap4``, ``mosi`` ...), read from its metadata.

    Args:
        path: The repo folder written by :func:`write_parquet_repo`.
        config: The config (default: the repo's only one).

    Returns:
        The corpus name, or ``None`` when the folder, the config or its metadata is absent or unreadable.
    """
    root = Path(path).expanduser()
    if config is None:
        found = sorted(root.glob(f"*/{CARD_METADATA_FILE}")) if root.is_dir() else []
        if len(found) != 1:
            return None
        meta_path = found[0]
    else:
        meta_path = root / str(config) / CARD_METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    corpus = meta.get("corpus") if isinstance(meta, dict) else None
    return corpus if isinstance(corpus, str) else None


def write_parquet_repo(
    dataset: DatasetDict | Dataset,
    output_dir: str | os.PathLike,
    *,
    config_name: str | None = None,
    repo_id: str | None = None,
    allow_iemocap: bool = False,
) -> Path:
    """Write a prepared corpus as one config of a parquet dataset repo folder, and (re)generate its card.

    Args:
        dataset: A ``DatasetDict`` from :func:`hub_datasets.load_dataset` (any missing rate, any fold: masks
            and load-time columns are dropped, IEMOCAP folds are regrouped into sessions).
        output_dir: The repo folder (created if needed; other configs in it are kept).
        config_name: Config name (default: the ``corpus`` column's value, e.g. ``mosi`` or
            ``synthetic-iemocap4``).
        repo_id: Repo id used in the card's usage snippet.
        allow_iemocap: Required to write real IEMOCAP-derived features (licence-restricted).

    Returns:
        The repo folder.

    Raises:
        IemocapUploadRefusedError: For real IEMOCAP data without ``allow_iemocap=True``.
    """
    prov = _provenance(dataset)
    if _is_real_iemocap(prov) and not allow_iemocap:
        raise IemocapUploadRefusedError(
            "refusing to write IEMOCAP-derived features for publication: IEMOCAP is licence-restricted (USC SAIL "
            "data-release form). Pass allow_iemocap=True to confirm you may, and publish to a private repo only."
        )
    config_name = config_name or prov["corpus_label"]
    if not _CONFIG_RE.match(config_name):
        raise ValueError(f"config_name must be letters, digits, '-' or '_', got {config_name!r}")
    splits = _natural_splits(dataset, prov)
    root = Path(output_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(root, f".{config_name}.tmp-")
    target = root / config_name
    try:
        with quiet_progress():
            for name, ds in splits.items():
                ds.to_parquet(str(tmp / f"{name}-00000-of-00001.parquet"))
        meta = _config_metadata(config_name, prov, splits)
        atomic_write_json(tmp / CARD_METADATA_FILE, meta, indent=2, sort_keys=True)
        card_data = _local_card_data(root / "README.md", config_name, splits, tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "README.md", render_dataset_card(_collect_metadata(root), repo_id, card_data))
    return root


def _read_card_data(readme: Path) -> dict:
    """The YAML metadata of an existing card (empty when there is none)."""
    try:
        return DatasetCard(readme.read_text(encoding="utf-8")).data.to_dict()
    except FileNotFoundError:
        return {}


def _local_card_data(readme: Path, config_name: str, splits: dict[str, Dataset], folder: Path) -> dict:
    """``configs`` and ``dataset_info`` for a local repo, in the form ``DatasetDict.push_to_hub`` writes them.

    The other configs' entries of an existing card are kept; this config's entry is replaced.
    """
    old = DatasetCardData(**_read_card_data(readme))
    infos = DatasetInfosDict.from_dataset_card_data(old)
    configs = MetadataConfigs.from_dataset_card_data(old)
    first = next(iter(splits.values()))
    info = DatasetInfo(config_name=config_name, features=first.features, splits=SplitDict(), download_size=0)
    info.dataset_size = 0
    for name, ds in splits.items():
        num_bytes = int((ds.flatten_indices(keep_in_memory=True) if ds._indices is not None else ds).data.nbytes)
        info.splits.add(SplitInfo(name=name, num_bytes=num_bytes, num_examples=len(ds)))
        info.dataset_size += num_bytes
        info.download_size += sum(p.stat().st_size for p in folder.glob(f"{name}-*.parquet"))
    info.size_in_bytes = info.download_size + info.dataset_size
    infos[config_name] = info
    configs[config_name] = {"data_files": [{"split": name, "path": f"{config_name}/{name}-*"} for name in splits]}
    card = DatasetCardData()
    MetadataConfigs(dict(sorted(configs.items()))).to_dataset_card_data(card)
    DatasetInfosDict(dict(sorted(infos.items()))).to_dataset_card_data(card)
    return {"configs": card.to_dict().get("configs"), "dataset_info": card.to_dict().get("dataset_info")}


def publish_to_hub(
    dataset: DatasetDict | Dataset,
    repo_id: str,
    *,
    config_name: str | None = None,
    private: bool = False,
    allow_iemocap: bool = False,
    token: str | None = None,
    output_dir: str | os.PathLike | None = None,
    api=None,
    commit_message: str | None = None,
):
    """Push a prepared corpus with :meth:`datasets.DatasetDict.push_to_hub` as one config, then complete the card.

    ``datasets`` uploads the natural splits as ``<config>/<split>-*.parquet`` and writes the card's ``configs``
    and ``dataset_info`` (other configs already in the repo are kept). A second commit adds this config's
    ``comp_emotion.json`` and rewrites the card's text and descriptive metadata (``task_categories``, tags,
    licence notes) for every config in the repo.

    Args:
        dataset: A ``DatasetDict`` from :func:`hub_datasets.load_dataset`.
        repo_id: ``"<user>/<repo>"``.
        config_name: Config name (default: the corpus label).
        private: Create the repository private.
        allow_iemocap: Explicit opt-in for IEMOCAP-derived data (also requires ``private=True`` and an existing
            repository to be private).
        token: Hub token.
        output_dir: Also write the same repo layout to this local folder (:func:`write_parquet_repo`).
        api: A ``huggingface_hub.HfApi`` for the checks and the card commit (default: ``HfApi(token=token)``).
            The parquet upload goes through ``datasets``, which uses the ``HF_ENDPOINT`` it was imported with;
            the two endpoints must agree.
        commit_message: Message of the data commit.

    Returns:
        The ``CommitInfo`` of the card commit.
    """
    prov = _provenance(dataset)
    if _is_real_iemocap(prov) and not (allow_iemocap and private):
        raise IemocapUploadRefusedError(
            "refusing to upload IEMOCAP-derived features: IEMOCAP is licence-restricted (USC SAIL data-release "
            "form). Uploading requires both allow_iemocap=True and private=True."
        )
    if not is_hub_id(repo_id):
        raise ValueError(f"repo_id must be a Hub id '<owner>/<name>', got {repo_id!r}")
    if api is None:
        api = HfApi(token=token)
    if api.endpoint.rstrip("/") != datasets.config.HF_ENDPOINT.rstrip("/"):
        raise ValueError(
            f"api.endpoint {api.endpoint!r} differs from the endpoint datasets uploads to "
            f"({datasets.config.HF_ENDPOINT!r}); set HF_ENDPOINT before importing datasets"
        )
    config_name = config_name or prov["corpus_label"]
    if not _CONFIG_RE.match(config_name):
        raise ValueError(f"config_name must be letters, digits, '-' or '_', got {config_name!r}")
    try:
        info = api.repo_info(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        info = None
    if info is not None and _is_real_iemocap(prov) and not getattr(info, "private", False):
        raise IemocapUploadRefusedError(f"refusing to upload IEMOCAP-derived features to public repo {repo_id}")
    splits = _natural_splits(dataset, prov)
    with quiet_progress():
        DatasetDict(splits).push_to_hub(
            repo_id,
            config_name=config_name,
            private=private,
            token=token if token is not None else api.token,
            commit_message=commit_message or f"Upload comp-emotion config {config_name}",
        )
    metas = {config_name: _config_metadata(config_name, prov, splits)}
    with tempfile.TemporaryDirectory(prefix="comp-emotion-publish-") as scratch:
        try:
            remote = api.snapshot_download(
                repo_id,
                repo_type="dataset",
                allow_patterns=["README.md", f"*/{CARD_METADATA_FILE}"],
                local_dir=str(Path(scratch) / "remote"),
            )
        except (EntryNotFoundError, RepositoryNotFoundError):  # pragma: no cover - we just pushed
            remote = str(Path(scratch) / "remote")
        for meta_file in Path(remote).glob(f"*/{CARD_METADATA_FILE}"):
            metas.setdefault(meta_file.parent.name, json.loads(meta_file.read_text(encoding="utf-8")))
        card_data = DatasetCard((Path(remote) / "README.md").read_text(encoding="utf-8")).data.to_dict()
    pushed = {c["config_name"] for c in card_data.get("configs") or []}
    card = render_dataset_card([m for name, m in metas.items() if name in pushed], repo_id, card_data)
    commit = api.create_commit(
        repo_id,
        repo_type="dataset",
        operations=[
            CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")),
            CommitOperationAdd(
                path_in_repo=f"{config_name}/{CARD_METADATA_FILE}",
                path_or_fileobj=json.dumps(metas[config_name], indent=2, sort_keys=True).encode("utf-8"),
            ),
        ],
        commit_message=f"Dataset card for comp-emotion config {config_name}",
    )
    if output_dir is not None:
        write_parquet_repo(dataset, output_dir, config_name=config_name, repo_id=repo_id, allow_iemocap=allow_iemocap)
    return commit
