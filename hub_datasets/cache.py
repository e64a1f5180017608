"""Arrow cache of prepared corpora, written atomically.

A prepared corpus (natural splits, features, ids, labels; no masks) is saved with
:meth:`datasets.Dataset.save_to_disk` into ``<cache root>/.tmp-<key>-<random>/``; the manifest
``comp_cache.json`` is written last, and the folder is then renamed to ``<cache root>/<name>-<key>/``. A reader
only accepts a folder whose manifest names the right key and lists every split, so an interrupted preparation
(exception, Ctrl-C, killed process) never looks complete: its temporary folder is ignored.

While it writes, the preparer holds an exclusive lock on ``<temporary folder>.lock``, created and locked before
the folder (:mod:`filelock`: ``flock`` on POSIX, ``LockFileEx`` on Windows). The operating system releases that
lock when the process ends, however it ends, so the next preparer removes a temporary folder only when it can take
its lock: a live writer's folder is never removed, whatever PID namespace, container or machine-local process
table either process sees (process ids are not used). Where neither is available, :mod:`filelock` falls back to a
lock file's existence: a killed writer's folder is then kept (never a live one removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import datasets
from datasets import Dataset
from filelock import FileLock, Timeout

from .atomic import atomic_write_json


__all__ = [
    "CACHE_FORMAT_VERSION",
    "cache_key",
    "default_cache_dir",
    "load_cached",
    "quiet_progress",
    "save_cached",
]

#: Bump when the prepared schema changes so old caches are not reused.
CACHE_FORMAT_VERSION = 1
_MANIFEST = "comp_cache.json"


def default_cache_dir() -> Path:
    """``$COMP_EMOTION_CACHE`` if set, else ``<HF datasets cache>/comp_emotion``.

    Returns:
        The cache root.
    """
    env = os.environ.get("COMP_EMOTION_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(datasets.config.HF_DATASETS_CACHE) / "comp_emotion"


def cache_key(parts: dict) -> str:
    """A short stable key for a preparation: the SHA-256 of its JSON description.

    Args:
        parts: Everything the prepared data depends on (corpus, file fingerprint, options).

    Returns:
        16 hex characters.
    """
    blob = json.dumps({"version": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _final_dir(root: Path, name: str, key: str) -> Path:
    return root / f"{name}-{key}"


@contextlib.contextmanager
def quiet_progress():
    """Silence ``datasets`` progress bars inside the block (restoring the previous setting)."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def load_cached(root: Path, name: str, key: str) -> tuple[dict[str, Dataset], dict] | None:
    """Load a complete cache entry, or return ``None``.

    Args:
        root: The cache root.
        name: Corpus name (part of the folder name).
        key: :func:`cache_key` of the preparation.

    Returns:
        ``({split: memory-mapped Dataset}, manifest)`` or ``None`` when there is no complete entry.
    """
    folder = _final_dir(root, name, key)
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key or not manifest.get("complete") or not isinstance(manifest.get("splits"), list):
        return None
    splits = {}
    try:
        for split in manifest["splits"]:
            splits[split] = Dataset.load_from_disk(str(folder / split))
    except (OSError, ValueError, FileNotFoundError):
        return None
    return splits, manifest


def _try_lock(path: Path) -> FileLock | None:
    """Take an exclusive lock on ``path`` (created if needed) without waiting; ``None`` when another holds it."""
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):
        return None
    return lock


def _unlock(lock: FileLock, path: Path) -> None:
    lock.release()
    path.unlink(missing_ok=True)


def _remove_stale_temporaries(root: Path, key: str) -> None:
    """Remove temporary folders of ``key`` whose writer is gone (their lock can be taken)."""
    for entry in root.glob(f".tmp-{key}-*"):
        if entry.name.endswith(".lock") or not entry.is_dir():
            continue
        lock_path = entry.with_name(entry.name + ".lock")
        lock = _try_lock(lock_path)
        if lock is None:
            continue  # a live writer holds it
        try:
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            _unlock(lock, lock_path)


def save_cached(root: Path, name: str, key: str, splits: dict[str, Dataset], manifest: dict) -> dict[str, Dataset]:
    """Write a cache entry atomically and return the splits reloaded from it (memory-mapped).

    Args:
        root: The cache root.
        name: Corpus name.
        key: :func:`cache_key` of the preparation.
        splits: The prepared splits.
        manifest: Extra metadata stored in the manifest (dims, feature names, counts ...).

    Returns:
        The splits, loaded back from the cache.
    """
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root, key)
    tmp = root / f".tmp-{key}-{uuid.uuid4().hex[:12]}"
    lock_path = tmp.with_name(tmp.name + ".lock")
    lock = _try_lock(lock_path)  # taken before the folder exists, released (by the OS too) at the end
    if lock is None:  # pragma: no cover - a fresh random name
        raise OSError(f"cannot create and lock {lock_path}")
    final = _final_dir(root, name, key)
    try:
        tmp.mkdir()
        with quiet_progress():
            for split, ds in splits.items():
                ds.save_to_disk(str(tmp / split))
        body = {**manifest, "key": key, "splits": list(splits), "complete": True, "format": CACHE_FORMAT_VERSION}
        _write_manifest(tmp / _MANIFEST, body)
        if final.exists() and load_cached(root, name, key) is None:
            shutil.rmtree(final, ignore_errors=True)  # a broken entry (e.g. files deleted by hand): replace it
        try:
            os.rename(tmp, final)
        except OSError:
            if load_cached(root, name, key) is None:  # pragma: no cover - rename failed for another reason
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use its entry
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _unlock(lock, lock_path)
    loaded = load_cached(root, name, key)
    if loaded is None:  # pragma: no cover - we just wrote it
        raise OSError(f"cache entry {final} could not be read back")
    return loaded[0]


def _write_manifest(path: Path, body: dict) -> None:
    atomic_write_json(path, body, indent=2, sort_keys=True, default=str)
