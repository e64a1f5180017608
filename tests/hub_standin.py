"""A small in-process stand-in for the Hugging Face Hub HTTP endpoints, for offline tests.

What it stands in for: the handful of routes that ``huggingface_hub`` 2.x calls when a user pushes a folder
and then loads it back (checked against the installed client's source: ``hf_api.py``, ``_commit_api.py``,
``lfs.py``, ``file_download.py``, ``_snapshot_download.py``):

========================================================  =============================================
route                                                      used by
========================================================  =============================================
``POST /api/repos/create``                                 ``create_repo`` (409 when it exists)
``POST /api/validate-yaml``                                ``create_commit`` when a README.md is committed
``POST /api/{type}s/{repo}/preupload/{rev}``               upload mode per file (``regular`` / ``lfs``)
``POST /{prefix}{repo}.git/info/lfs/objects/batch``        git-LFS batch API (basic transfer)
``PUT /lfs-upload/{oid}``, ``POST /lfs-verify/{oid}``      the upload/verify hrefs that batch hands out
``POST /api/{type}s/{repo}/commit/{rev}``                  ``create_commit`` NDJSON (file / lfsFile /
                                                           deletedFile / deletedFolder)
``GET /api/{type}s/{repo}[/revision/{rev}]``               ``repo_info`` / ``model_info`` (sha, siblings)
``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``            ``list_repo_tree`` (used by snapshot_download)
``HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}``          ``hf_hub_download`` (X-Repo-Commit, ETag,
                                                           X-Linked-Etag/-Size for LFS files, Range)
``GET /api/whoami-v2``                                     ``whoami`` (a fixed local user)
========================================================  =============================================

Files are stored content-addressed under a temporary directory; every commit is a new snapshot (a real
40-hex id) of the branch ``main``, so revisions by branch or by commit id both resolve. Errors carry the
Hub's ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) so the client
raises its usual typed exceptions. Files matching the Hub's default ``.gitattributes`` LFS patterns (or
larger than 10 MiB) are routed through the LFS batch API, like on the real Hub.

What it does **not** do: Xet storage (run clients with ``HF_HUB_DISABLE_XET=1``), authentication (any
token is accepted; requests are recorded), pull requests, branches other than ``main``, multipart LFS,
pagination, Spaces runtime. It is for tests, never a server to expose: it binds 127.0.0.1 only.

Usage::

    from hub_standin import hub_standin
    with hub_standin() as hub:                  # hub.endpoint == "http://127.0.0.1:<port>"
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1"}
        HfApi(endpoint=hub.endpoint).create_repo("org/name")
        ...
        assert hub.list_files("org/name") == [...]

``huggingface_hub`` reads ``HF_ENDPOINT`` / ``HF_HUB_DISABLE_XET`` when it is first imported: set them
in a subprocess's environment, or pass ``endpoint=`` explicitly in-process. Run
``python tests/hub_standin.py`` to serve one from a shell (prints the endpoint).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


__all__ = ["HubStandIn", "hub_standin"]

# The Hub's default .gitattributes LFS patterns (subset that matters for ML repos).
_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tar.*", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip",
    "*.zst", "*tfevents*",
)  # fmt: skip
_LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size > _LFS_SIZE_THRESHOLD or any(fnmatch.fnmatch(name, pattern) for pattern in _LFS_PATTERNS)


@dataclass
class _Entry:
    sha256: str
    size: int
    git_oid: str
    lfs: bool


@dataclass
class _Commit:
    oid: str
    message: str
    files: dict[str, _Entry]
    date: float


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[_Commit] = field(default_factory=list)


class _HubError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, commit: str | None = None, extra: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit
        self.extra = extra or {}


class HubStandIn:
    """State and HTTP server of one stand-in Hub.

    Attributes:
        endpoint: base URL to use as ``HF_ENDPOINT`` (``http://127.0.0.1:<port>``).
        root: directory holding the stored blobs.
        requests: ``(method, path)`` of every request served, in order (for assertions).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.requests: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-standin", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HubStandIn:
        """Starts serving in a daemon thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the server and closes its socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def client_env(self, home: Path) -> dict[str, str]:
        """The environment of a client process of this stand-in that must not find this repository's packages
        (no ``PYTHONPATH``): the endpoint, no Xet, online, a token, and its own Hub and remote-code caches
        under ``home``."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HUB_DISABLE_XET="1",
            HF_HUB_OFFLINE="0",
            HF_HOME=str(Path(home) / "hf"),
            HF_MODULES_CACHE=str(Path(home) / "modules"),
            HF_TOKEN="hf_standin",
        )
        return env

    # ------------------------------------------------------------------ inspection helpers
    def list_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Sorted paths of the files at ``revision`` of a repo (raises ``KeyError`` when unknown)."""
        with self._lock:
            return sorted(self._resolve(self._repo(repo_type, repo_id), revision).files)

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        """Content of one file at ``revision``."""
        with self._lock:
            entry = self._resolve(self._repo(repo_type, repo_id), revision).files[path]
        return self._blob_path(entry.sha256).read_bytes()

    def lfs_paths(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Paths at ``main`` that were stored through the LFS route."""
        with self._lock:
            head = self._resolve(self._repo(repo_type, repo_id), "main")
            return sorted(p for p, e in head.files.items() if e.lfs)

    # ------------------------------------------------------------------ storage
    def _blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def _store_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._blob_path(digest)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return digest

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, f"Repository {repo_type}/{repo_id} not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        revision = unquote(revision)
        if revision == "main":
            return repo.commits[-1]
        if _COMMIT_RE.match(revision):
            for commit in repo.commits:
                if commit.oid == revision:
                    return commit
        raise _HubError(404, f"Revision {revision!r} not found in {repo.repo_id}", "RevisionNotFound")

    # ------------------------------------------------------------------ route handlers
    def create_repo(self, body: dict) -> tuple[int, dict]:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _HubError(400, "'name' is required")
        repo_type = body.get("type") or "model"
        if repo_type not in _TYPE_PREFIX:
            raise _HubError(400, f"unsupported repo type {repo_type!r}")
        repo_id = f"{body['organization']}/{name}" if body.get("organization") else f"standin-user/{name}"
        url = f"{self.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # Like the Hub, the conflict answer carries the existing repo's URL (create_repo(exist_ok=True)).
                raise _HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
            repo = _Repo(repo_type, repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
            initial = {".gitattributes": self._gitattributes_entry()}
            repo.commits.append(_Commit(self._new_oid(repo_id, "initial"), "initial commit", initial, time.time()))
            self._repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def _gitattributes_entry(self) -> _Entry:
        data = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS).encode()
        return _Entry(self._store_blob(data), len(data), _git_blob_sha1(data), lfs=False)

    def _new_oid(self, repo_id: str, salt: str) -> str:
        return hashlib.sha1(f"{repo_id}:{salt}:{time.time_ns()}:{len(self.requests)}".encode()).hexdigest()

    def validate_yaml(self, body: dict) -> tuple[int, dict]:
        import yaml

        content = body.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.S)
        if match is None:
            return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"invalid YAML: {err}"}]}
        if meta is not None and not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a YAML mapping"}]}
        return 200, {"warnings": []}

    def preupload(self, repo_type: str, repo_id: str, revision: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            head = self._resolve(self._repo(repo_type, repo_id), revision)
            files = []
            for item in body.get("files", []):
                path, size = item["path"], int(item["size"])
                mode = "lfs" if size > 0 and _is_lfs(path, size) else "regular"
                existing = head.files.get(path)
                oid = None
                if existing is not None:
                    oid = existing.sha256 if mode == "lfs" else existing.git_oid
                files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return 200, {"files": files, "commitOid": head.oid}

    def lfs_batch(self, repo_type: str, repo_id: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            self._repo(repo_type, repo_id)
        if body.get("operation") != "upload":
            raise _HubError(400, "only the 'upload' operation is supported by the stand-in")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            answer: dict = {"oid": oid, "size": size}
            if not self._blob_path(oid).exists():
                answer["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs-upload/{oid}/{size}"},
                    "verify": {"href": f"{self.endpoint}/lfs-verify/{oid}"},
                }
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_upload(self, oid: str, size: int, data: bytes) -> tuple[int, dict]:
        if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
            raise _HubError(400, f"uploaded content does not match oid {oid} / size {size}")
        self._store_blob(data)
        return 200, {}

    def lfs_verify(self, oid: str, body: dict) -> tuple[int, dict]:
        path = self._blob_path(oid)
        if not path.exists() or path.stat().st_size != int(body.get("size", -1)):
            raise _HubError(404, f"LFS object {oid} was not uploaded")
        return 200, {}

    def commit(self, repo_type: str, repo_id: str, revision: str, raw: bytes, query: dict) -> tuple[int, dict]:
        if query.get("create_pr"):
            raise _HubError(400, "the stand-in does not support pull requests")
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if unquote(revision) != "main":
                raise _HubError(400, "the stand-in only commits to 'main'", "RevisionNotFound")
            parent = repo.commits[-1]
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise _HubError(412, "parent commit is not the head of 'main'")
            files = dict(parent.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    data = (
                        base64.b64decode(value["content"])
                        if value.get("encoding") == "base64"
                        else value["content"].encode()
                    )
                    files[value["path"]] = _Entry(self._store_blob(data), len(data), _git_blob_sha1(data), lfs=False)
                elif key == "lfsFile":
                    blob = self._blob_path(value["oid"])
                    if not blob.exists():
                        raise _HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    size = blob.stat().st_size
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\nsize {size}\n"
                    files[value["path"]] = _Entry(value["oid"], size, _git_blob_sha1(pointer.encode()), lfs=True)
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise _HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
                else:
                    raise _HubError(400, f"unsupported commit operation {key!r}")
            oid = self._new_oid(repo_id, header.get("summary", ""))
            repo.commits.append(_Commit(oid, header.get("summary", ""), files, time.time()))
        url = f"{self.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}/commit/{oid}"
        return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None, "success": True}

    def repo_info(self, repo_type: str, repo_id: str, revision: str) -> tuple[int, dict]:
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._resolve(repo, revision)
            siblings = []
            for path, entry in sorted(commit.files.items()):
                sibling: dict = {"rfilename": path, "size": entry.size, "blobId": entry.git_oid}
                if entry.lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": 134}
                siblings.append(sibling)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date))
        info = {
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "lastModified": stamp,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.commits[0].date)),
            "tags": [],
            "siblings": siblings,
        }
        return 200, info

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str, recursive: bool) -> tuple[int, list]:
        with self._lock:
            commit = self._resolve(self._repo(repo_type, repo_id), revision)
            prefix = path.strip("/") + "/" if path.strip("/") else ""
            entries: dict[str, dict] = {}
            for file_path, entry in sorted(commit.files.items()):
                if not file_path.startswith(prefix):
                    continue
                rest = file_path[len(prefix) :]
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    folder = prefix + "/".join(parts[:depth])
                    if recursive or depth == 1:
                        entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0})
                if len(parts) > 1 and not recursive:
                    continue
                item: dict = {"type": "file", "path": file_path, "size": entry.size, "oid": entry.git_oid}
                if entry.lfs:
                    item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": 134}
                entries[file_path] = item
            if prefix and not entries:
                raise _HubError(404, f"{path} not found", "EntryNotFound", commit.oid)
        return 200, list(entries.values())

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> tuple[_Entry, _Commit]:
        with self._lock:
            commit = self._resolve(self._repo(repo_type, repo_id), revision)
            entry = commit.files.get(path)
            if entry is None:
                raise _HubError(404, f"Entry {path} not found", "EntryNotFound", commit.oid)
        return entry, commit

    # ------------------------------------------------------------------ HTTP plumbing
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence the default stderr log
                return

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, payload, headers: dict | None = None, head: bool = False) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                if not isinstance(payload, bytes):
                    self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _error(self, err: _HubError, head: bool = False) -> None:
                headers = {"X-Error-Message": err.message}
                if err.code:
                    headers["X-Error-Code"] = err.code
                if err.commit:
                    headers["X-Repo-Commit"] = err.commit
                self._send(err.status, {"error": err.message, **err.extra}, headers, head=head)

            def _dispatch(self, method: str) -> None:
                split = urlsplit(self.path)
                path, query = unquote(split.path), {k: v[-1] for k, v in parse_qs(split.query).items()}
                with hub._lock:
                    hub.requests.append((method, split.path))
                body = self._body() if method in ("POST", "PUT") else b""
                try:
                    self._route(method, path, query, body)
                except _HubError as err:
                    self._error(err, head=method == "HEAD")
                except (KeyError, ValueError, json.JSONDecodeError) as err:
                    self._error(_HubError(400, f"bad request: {err!r}"), head=method == "HEAD")

            def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
                js = lambda: json.loads(body or b"{}")  # noqa: E731
                if method == "POST" and path == "/api/repos/create":
                    return self._send(*hub.create_repo(js()))
                if method == "POST" and path == "/api/validate-yaml":
                    return self._send(*hub.validate_yaml(js()))
                if method == "GET" and path == "/api/whoami-v2":
                    return self._send(200, {"type": "user", "name": "standin-user", "orgs": [], "auth": {}})
                if (m := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})/(\d+)", path)) and method == "PUT":
                    return self._send(*hub.lfs_upload(m.group(1), int(m.group(2)), body))
                if (m := re.fullmatch(r"/lfs-verify/([0-9a-f]{64})", path)) and method == "POST":
                    return self._send(*hub.lfs_verify(m.group(1), js()))
                if m := re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(/.*)?", path):
                    repo_type, repo_id, rest = _PLURAL[m.group(1)], m.group(2), m.group(3) or ""
                    if method == "GET" and rest in ("", "/"):
                        return self._send(*hub.repo_info(repo_type, repo_id, "main"))
                    if method == "GET" and (r := re.fullmatch(r"/revision/(.+)", rest)):
                        return self._send(*hub.repo_info(repo_type, repo_id, r.group(1)))
                    if method == "GET" and (r := re.fullmatch(r"/tree/([^/]+)(/.*)?", rest)):
                        recursive = str(query.get("recursive", "")).lower() in ("1", "true")
                        return self._send(*hub.tree(repo_type, repo_id, r.group(1), r.group(2) or "", recursive))
                    if method == "POST" and (r := re.fullmatch(r"/preupload/(.+)", rest)):
                        return self._send(*hub.preupload(repo_type, repo_id, r.group(1), js()))
                    if method == "POST" and (r := re.fullmatch(r"/commit/(.+)", rest)):
                        return self._send(*hub.commit(repo_type, repo_id, r.group(1), body, query))
                if m := re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+?)\.git/info/lfs/objects/batch", path):
                    repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m.group(1) or "", "model")
                    if method == "POST":
                        return self._send(*hub.lfs_batch(repo_type, m.group(2), js()))
                m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m and method in ("GET", "HEAD"):
                    repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m.group(1) or "", "model")
                    return self._serve_file(method, repo_type, m.group(2), m.group(3), m.group(4))
                raise _HubError(404, f"the Hub stand-in has no route {method} {path}")

            def _serve_file(self, method: str, repo_type: str, repo_id: str, revision: str, path: str) -> None:
                entry, commit = hub.resolve(repo_type, repo_id, revision, path)
                data = hub._blob_path(entry.sha256).read_bytes()
                headers = {
                    "X-Repo-Commit": commit.oid,
                    "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"',
                    "Last-Modified": formatdate(commit.date, usegmt=True),
                    "Accept-Ranges": "bytes",
                }
                if entry.lfs:
                    headers["X-Linked-Etag"] = f'"{entry.sha256}"'
                    headers["X-Linked-Size"] = str(entry.size)
                status = 200
                rng = self.headers.get("Range")
                if method == "GET" and rng and (r := re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())):
                    start = int(r.group(1))
                    end = int(r.group(2)) if r.group(2) else len(data) - 1
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    data, status = data[start : end + 1], 206
                self._send(status, data, headers, head=method == "HEAD")

            def do_GET(self) -> None:  # noqa: N802
                self._dispatch("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._dispatch("HEAD")

            def do_POST(self) -> None:  # noqa: N802
                self._dispatch("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._dispatch("PUT")

        return Handler


@contextlib.contextmanager
def hub_standin(root: str | Path | None = None) -> Iterator[HubStandIn]:
    """Serves a fresh stand-in Hub on 127.0.0.1 (random free port) for the duration of the block.

    Args:
        root: where to store blobs; a temporary directory (removed afterwards) when omitted.

    Yields:
        The running :class:`HubStandIn`; its ``endpoint`` attribute is the URL for ``HF_ENDPOINT``.
    """
    tmp = None if root is not None else tempfile.mkdtemp(prefix="hub-standin-")
    hub = HubStandIn(root if root is not None else tmp).start()
    try:
        yield hub
    finally:
        hub.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual use
    with hub_standin() as running:
        print(f"Hub stand-in serving at {running.endpoint} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
