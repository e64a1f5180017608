"""Data-pipeline benchmark on a MOSEI-sized *synthetic* corpus written in the GCNet on-disk format.

It writes 22,856 utterances in 3,228 videos with 512/1024/1024-d features (the real MOSEI's sizes and dims; the
values are synthetic), then measures with the real reader:

1. first preparation: ``load_dataset("mosei", data_dir=...)`` with an empty cache (fingerprint the files, read
   every ``.npy``, build Arrow tables, write the cache atomically, apply masks);
2. cached reload: the same call again;
3. mask generation: ``apply_missing_protocol`` on every split and ``redraw_training_masks`` on train, and the
   realised missing rate over all utterances for requested rates 0.0 ... 0.7;
4. one epoch of collated batches: a ``torch.utils.data.DataLoader`` over the training split (shuffled,
   ``ComPDataCollator``, batch 32, no workers), and one pass over all splits;

and prints the figures, the project's targets (first preparation 60 s, reload 2 s, masks 0.2 s, one epoch 2 s) and the peak resident memory.

With ``--compare-cache`` it also measures, side by side on the same files, the two ways of caching a prepared
corpus: comp-emotion's Arrow cache (vectorised Arrow build, ``save_to_disk``, atomic rename) and ``datasets``'
own fingerprinted cache (``Dataset.from_generator`` yielding one conversation per example), each for a first
preparation (read every file, build, write) and a reload.

With ``--pickles`` it only measures the restricted unpickler against Python's default (C) unpickler, on a
MOSEI-sized GCNet label pickle (22,856 utterance ids in 3,228 videos, per-video numpy label and sentence arrays,
protocol 2 as the GCNet files) and a MOSI-sized MMSA ``aligned_50.pkl`` (2,199 clips, 50 frames, 768/5/20-d
float32, protocol 4): the cost of checking every call and opcode.

Run::

    PYTHONPATH=. python benchmarks/bench_data.py --pickles   # restricted vs default unpickler only (~0.4 GB temp)
    PYTHONPATH=. python benchmarks/bench_data.py              # writes ~0.5 GB into a temporary folder
    PYTHONPATH=. python benchmarks/bench_data.py --work-dir /tmp/mosei-synth --keep   # reuse the written corpus
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its figures.

    Args:
        argv: Command-line arguments (default: ``sys.argv``).

    Returns:
        The figures as a dict.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="where to write the corpus (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the written corpus (and reuse it next time)")
    parser.add_argument("--num-conversations", type=int, default=3228)
    parser.add_argument("--num-utterances", type=int, default=22856)
    parser.add_argument("--max-utterances", type=int, default=14, help="longest synthetic video")
    parser.add_argument("--dims", default="512,1024,1024", help="audio,text,video dims")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--missing-rate", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-cache", action="store_true", help="also time datasets' from_generator cache")
    parser.add_argument("--pickles", action="store_true", help="only time the restricted unpickler (see above)")
    parser.add_argument("--repeats", type=int, default=3, help="--pickles: timed loads per file (median shown)")
    args = parser.parse_args(argv)
    if args.pickles:
        return _bench_pickles(args.work_dir, args.repeats, args.seed)

    import datasets
    import numpy as np
    import torch

    from hub_datasets import (
        ComPDataCollator,
        apply_missing_protocol,
        dataset_provenance,
        load_dataset,
        model_config_kwargs,
        redraw_training_masks,
        write_synthetic_corpus,
    )

    datasets.disable_progress_bars()
    audio_dim, text_dim, video_dim = (int(x) for x in args.dims.split(","))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus_root = work / "corpus"
    cache_dir = work / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    figures: dict = {"device": "cpu", "torch_threads": torch.get_num_threads()}
    try:
        if not (corpus_root / "CMUMOSEI" / "CMUMOSEI_features_raw_2way.pkl").is_file():
            t0 = time.perf_counter()
            write_synthetic_corpus(
                corpus_root,
                "mosei",
                format="gcnet",
                overwrite=True,
                num_conversations=args.num_conversations,
                min_utterances=1,
                max_utterances=args.max_utterances,
                total_utterances=args.num_utterances,
                dims={"audio": audio_dim, "text": text_dim, "video": video_dim},
                missing_face_fraction=0.02,
                seed=args.seed,
            )
            figures["write_synthetic_corpus_s"] = time.perf_counter() - t0
        data_dir = corpus_root / "CMUMOSEI"

        t0 = time.perf_counter()
        dsd = load_dataset(
            "mosei",
            data_dir=data_dir,
            cache_dir=cache_dir,
            missing_rate=args.missing_rate,
            seed=args.seed,
            progress=False,
        )
        figures["first_preparation_s"] = time.perf_counter() - t0
        figures["peak_rss_after_preparation_mib"] = _peak_rss_mib()
        prov = dataset_provenance(dsd["train"])
        figures["utterances"] = int(sum(dataset_provenance(ds)["num_utterances"] for ds in dsd.values()))
        figures["conversations"] = int(sum(len(ds) for ds in dsd.values()))
        figures["dims"] = prov["dims"]
        figures["cache_bytes"] = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
        del dsd

        t0 = time.perf_counter()
        dsd = load_dataset(
            "mosei",
            data_dir=data_dir,
            cache_dir=cache_dir,
            missing_rate=args.missing_rate,
            seed=args.seed,
            progress=False,
        )
        figures["cached_reload_s"] = time.perf_counter() - t0
        if not dataset_provenance(dsd["train"])["cache"]["hit"]:
            raise RuntimeError("the second load did not hit the cache")

        t0 = time.perf_counter()
        remasked = apply_missing_protocol(dsd, missing_rate=0.7, seed=args.seed + 1)
        figures["masks_all_splits_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        train = redraw_training_masks(dsd["train"], epoch=1)
        figures["redraw_training_masks_s"] = time.perf_counter() - t0
        figures["realised_missing_rate_test_eta0.7"] = dataset_provenance(remasked["test"])["realised_missing_rate"]
        figures[f"realised_missing_rate_train_eta{args.missing_rate:.2f}"] = dataset_provenance(train)[
            "realised_missing_rate"
        ]

        rates = {}
        for eta in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            masked = apply_missing_protocol(dsd, missing_rate=eta, seed=args.seed)
            cells = sum(dataset_provenance(ds)["num_utterances"] for ds in masked.values())
            missing = sum(
                dataset_provenance(ds)["realised_missing_rate"] * dataset_provenance(ds)["num_utterances"]
                for ds in masked.values()
            )
            rates[f"{eta:.1f}"] = missing / cells
        figures["realised_missing_rate_all_utterances"] = rates

        kwargs = model_config_kwargs(train)
        collate = ComPDataCollator(max_utterances=kwargs["max_utterances"])
        generator = torch.Generator().manual_seed(args.seed)
        loader = torch.utils.data.DataLoader(
            train, batch_size=args.batch_size, shuffle=True, collate_fn=collate, generator=generator
        )
        t0 = time.perf_counter()
        seen, utterances, checksum = 0, 0, 0.0
        for batch in loader:
            seen += batch["conversation_index"].numel()
            utterances += int(batch["attention_mask"].sum())
            checksum += float(batch["text"][:, :, 0].sum())
        figures["train_epoch_s"] = time.perf_counter() - t0
        figures["train_epoch_batches"] = len(loader)
        if seen != len(train) or utterances != dataset_provenance(train)["num_utterances"]:
            raise RuntimeError(f"the epoch saw {seen} conversations / {utterances} utterances")
        t0 = time.perf_counter()
        for name in dsd:
            for batch in torch.utils.data.DataLoader(dsd[name], batch_size=args.batch_size, collate_fn=collate):
                checksum += float(batch["audio"][:, :, 0].sum())
        figures["all_splits_pass_s"] = time.perf_counter() - t0
        figures["peak_rss_mib"] = _peak_rss_mib()
        figures["rss_end_mib"] = _rss_mib()
        figures["checksum"] = float(np.round(checksum, 3))
        if args.compare_cache:
            figures["cache_backends"] = _compare_cache_backends(data_dir, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    targets = {
        "first_preparation_s": 60.0,
        "cached_reload_s": 2.0,
        "masks_all_splits_s": 0.2,
        "redraw_training_masks_s": 0.2,
        "train_epoch_s": 2.0,
    }
    print(
        f"synthetic MOSEI-sized corpus (GCNet format): {figures['utterances']} utterances, "
        f"{figures['conversations']} videos, dims {figures['dims']}"
    )
    print(f"{'stage':34s} {'seconds':>9s} {'target':>8s}  ratio")
    for key, limit in targets.items():
        value = figures[key]
        print(f"{key:34s} {value:9.3f} {limit:8.2f}  {value / limit:5.2f}x of target")
    print(f"{'all_splits_pass_s':34s} {figures['all_splits_pass_s']:9.3f}")
    if "write_synthetic_corpus_s" in figures:
        print(f"{'write_synthetic_corpus_s':34s} {figures['write_synthetic_corpus_s']:9.3f}  (setup, not a target)")
    print(
        f"realised missing rate over all utterances (evaluation masks, seed {args.seed}): "
        + ", ".join(f"{k} -> {v:.4f}" for k, v in figures["realised_missing_rate_all_utterances"].items())
    )
    print(
        f"peak RSS after preparation {figures['peak_rss_after_preparation_mib']:.0f} MiB; peak RSS overall "
        f"{figures['peak_rss_mib']:.0f} MiB (memory-mapped Arrow pages count once touched); "
        f"cache on disk {figures['cache_bytes'] / 2**20:.0f} MiB"
    )
    if "cache_backends" in figures:
        print("cache backends, same files, same run (first preparation = read every file + build + write):")
        for name, value in figures["cache_backends"].items():
            print(f"  {name:44s} {value:9.3f}")
    print("json:", json.dumps(figures, sort_keys=True))
    return figures


def _bench_pickles(work_dir: Path | None, repeats: int, seed: int) -> dict:
    """Median seconds of ``safe_load_pickle`` and of ``pickle.load`` on a label pickle and an MMSA pickle."""
    import pickle
    import statistics

    import numpy as np

    from hub_datasets import safe_load_pickle

    rng = np.random.default_rng(seed)
    work = Path(work_dir or tempfile.mkdtemp(prefix="bench-pickles-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {}
    try:
        sizes = np.full(3228, 22856 // 3228)
        sizes[: 22856 - int(sizes.sum())] += 1
        ids, labels, speakers, sentences = {}, {}, {}, {}
        for v, n in enumerate(sizes):
            vid = f"vid{v:05d}_{rng.integers(10**8):08d}"
            ids[vid] = [f"{vid}_{k}" for k in range(n)]
            labels[vid] = np.round(rng.uniform(-3, 3, n), 3)
            speakers[vid] = [""] * n
            sentences[vid] = np.array([f"sentence {k} of {vid} with a few more words" for k in range(n)])
        videos = sorted(ids)
        label = [ids, labels, speakers, sentences, set(videos[:2300]), set(videos[2300:2560]), set(videos[2560:])]
        n = 2199
        arrays = {
            "id": np.array([f"clip{k // 20}$_${k % 20}" for k in range(n)], dtype=object),
            "raw_text": np.array([f"text of clip {k}" for k in range(n)], dtype=object),
            "text": rng.standard_normal((n, 50, 768), dtype=np.float32),
            "audio": rng.standard_normal((n, 50, 5), dtype=np.float32),
            "vision": rng.standard_normal((n, 50, 20), dtype=np.float32),
            "audio_lengths": [50] * n,
            "vision_lengths": [50] * n,
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
        }
        cut = (1284, 1284 + 229)
        mmsa = {
            part: {k: (v[a:b] if isinstance(v, np.ndarray) else v[a:b]) for k, v in arrays.items()}
            for part, (a, b) in {"train": (0, cut[0]), "valid": cut, "test": (cut[1], n)}.items()
        }
        files = {"label pickle (MOSEI-sized, protocol 2)": (label, 2), "MMSA aligned_50.pkl (MOSI-sized)": (mmsa, 4)}
        for name, (obj, protocol) in files.items():
            path = work / f"{abs(hash(name))}.pkl"
            path.write_bytes(pickle.dumps(obj, protocol=protocol))
            del obj
            times = {"restricted": [], "default": []}
            for _ in range(repeats):
                t0 = time.perf_counter()
                safe_load_pickle(path)
                times["restricted"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with open(path, "rb") as handle:
                    pickle.load(handle)  # our own file, written just above: the default unpickler is fine here
                times["default"].append(time.perf_counter() - t0)
            figures[name] = {
                "bytes": path.stat().st_size,
                **{f"{k}_s": statistics.median(v) for k, v in times.items()},
                **{f"{k}_range_s": [min(v), max(v)] for k, v in times.items()},
            }
            path.unlink()
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'file':42s} {'MiB':>7s} {'restricted':>11s} {'default':>9s}  ratio")
    for name, f in figures.items():
        print(
            f"{name:42s} {f['bytes'] / 2**20:7.1f} {f['restricted_s']:10.3f}s {f['default_s']:8.3f}s "
            f"{f['restricted_s'] / max(f['default_s'], 1e-9):6.1f}x"
        )
    print("json:", json.dumps(figures, sort_keys=True))
    return figures


_FLAT: dict = {}


def _conversations(data_dir: str, split: str, key: str):
    """Rows of one natural split for ``Dataset.from_generator`` (reads the files itself, like a loader would;
    once for all three splits, as the comp-emotion reader does)."""
    from hub_datasets.constants import MODALITIES
    from hub_datasets.gcnet import read_gcnet
    from hub_datasets.schema import get_spec

    memo = sys.modules[__name__]._FLAT  # looked up, not referenced: datasets' fingerprint must not hash its content
    if data_dir not in memo:
        memo[data_dir] = read_gcnet(get_spec("mosei"), Path(data_dir), progress=False)[0]
    part = memo[data_dir][split]
    start = 0
    for i, (dialog, length) in enumerate(zip(part.dialog_ids, part.lengths.tolist(), strict=True)):
        stop = start + length
        yield {
            "dialog_id": dialog,
            "utterance_ids": part.utterance_ids[start:stop],
            "speakers": part.speakers[start:stop],
            "transcripts": part.transcripts[start:stop],
            "labels": part.labels[start:stop],
            **{m: part.features[m][start:stop] for m in MODALITIES},
            "feature_present": part.present[start:stop],
            "num_utterances": length,
            "corpus": part.corpus,
            "session": int(part.sessions[i]),
            "source_split": part.source_split,
        }
        start = stop


def _compare_cache_backends(data_dir: Path, work: Path) -> dict:
    from datasets import Dataset

    from hub_datasets.cache import load_cached, save_cached
    from hub_datasets.gcnet import read_gcnet
    from hub_datasets.schema import base_features, build_dataset, get_spec

    spec = get_spec("mosei")
    out = {}
    ours, theirs = work / "cache-ours", work / "cache-datasets"
    for folder in (ours, theirs):  # both start empty, even with --keep
        shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    flat, info = read_gcnet(spec, data_dir, progress=False)
    natural = {
        name: build_dataset(split, spec.label_names, split_name=name, fingerprint=f"bench-{name}")
        for name, split in flat.items()
    }
    save_cached(ours, "mosei", "bench", natural, {"meta": {}})
    out["comp_cache_first_preparation_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = load_cached(ours, "mosei", "bench")
    out["comp_cache_reload_s"] = time.perf_counter() - t0
    assert loaded is not None
    features = base_features(spec.label_names, info["dims"])
    files = {}
    for label in ("first_preparation", "reload"):
        t0 = time.perf_counter()
        for name in flat:
            files.setdefault(name, set()).add(
                Dataset.from_generator(
                    _conversations,
                    features=features,
                    cache_dir=str(theirs),
                    gen_kwargs={"data_dir": str(data_dir), "split": name, "key": "bench"},
                    split=name,
                ).cache_files[0]["filename"]
            )
        out[f"datasets_from_generator_{label}_s"] = time.perf_counter() - t0
    if any(len(paths) != 1 for paths in files.values()):
        raise RuntimeError(f"the second from_generator call did not reuse the first one's cache: {files}")
    _FLAT.clear()
    return out


if __name__ == "__main__":
    main()
