"""The Space loads its checkpoint by Hub id (optionally pinned to a revision) through ``HF_ENDPOINT``.

``tests/hub_standin.py`` stands in for the Hub's upload and download routes; the Space runs in a subprocess
whose ``HF_ENDPOINT`` points at it, exactly as a deployed Space resolves ``COMP_CHECKPOINT=org/name[@revision]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from comp_space.inference import load_checkpoint, predict
from comp_space.inputs import load_examples
from hub_standin import hub_standin as serve_hub_standin
from space_testing import SPACE_DIR, make_tiny_model


REPO_ROOT = Path(__file__).resolve().parents[2]


REPO_ID = "standin-org/comp-tiny"

_SPACE_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import importlib.util
spec = importlib.util.spec_from_file_location("space_app", sys.argv[1] + "/app.py")
app_module = sys.modules["space_app"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app_module)
settings = app_module.SpaceSettings.from_env()
app = app_module.SpaceApp(settings)
(ref,) = settings.checkpoints.values()
ckpt = app.store.get(ref)
grid, _ = app.load(ref, app_module.SOURCE_EXAMPLE, "synthetic_test_002", None)
grid["video"] = False
summary, table, _, _, probs = app.predict_outputs(ref, app_module.SOURCE_EXAMPLE, "synthetic_test_002", None, grid)
print(json.dumps({"ref": ckpt.ref, "name": ckpt.name, "module": type(ckpt.model).__module__,
                  "probs": probs.to_numpy()[:, 1::2].tolist()}))
"""


_PUSH_SCRIPT = r"""
import sys
from huggingface_hub import HfApi
api = HfApi(token="hf_standin")   # endpoint from HF_ENDPOINT
api.create_repo(sys.argv[1])
for folder in sys.argv[2:]:
    print(api.upload_folder(repo_id=sys.argv[1], folder_path=folder, commit_message="tiny ComP").oid)
"""


def _env(hub, tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "COMP_"))}  # not offline, no leaks
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / f"hf-home-{name}"),
        HF_HUB_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
        GRADIO_ANALYTICS_ENABLED="False",
        **extra,
    )
    return env


def test_space_loads_checkpoint_by_hub_id_and_revision(tiny_checkpoint, tiny_examples, tmp_path):
    conv = load_examples(tiny_examples)["synthetic_test_002"]
    mask = np.ones((conv.num_utterances, 3), dtype=bool)
    mask[:, 2] = False
    second = tmp_path / "second"
    make_tiny_model(seed=5).save_pretrained(second)
    expected = {
        "first": predict(load_checkpoint(str(tiny_checkpoint)), conv, mask).masked.scores,
        "latest": predict(load_checkpoint(str(second)), conv, mask).masked.scores,
    }
    assert np.abs(expected["first"] - expected["latest"]).max() > 1e-3

    with serve_hub_standin() as hub:
        pushed = subprocess.run(
            [sys.executable, "-c", _PUSH_SCRIPT, REPO_ID, str(tiny_checkpoint), str(second)],
            capture_output=True,
            text=True,
            env=_env(hub, tmp_path, "push"),
            timeout=240,
        )
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        first_commit = pushed.stdout.split()[0]
        assert {"config.json", "model.safetensors"} <= set(hub.list_files(REPO_ID))
        for mode, ref in (("latest", REPO_ID), ("first", f"{REPO_ID}@{first_commit}")):
            env = _env(
                hub, tmp_path, mode, COMP_CHECKPOINT=ref, COMP_EXAMPLES=str(tiny_examples), PYTHONPATH=str(REPO_ROOT)
            )
            result = subprocess.run(
                [sys.executable, "-c", _SPACE_SCRIPT, str(SPACE_DIR), mode],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=240,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            payload = json.loads(result.stdout.strip().splitlines()[-1])
            assert payload["ref"] == ref and payload["name"] == ref
            assert payload["module"] == "modeling_comp.modeling_comp"  # the installed package, never Hub code
            np.testing.assert_allclose(payload["probs"], expected[mode], atol=6e-5)
            assert list((tmp_path / f"hf-home-{mode}").rglob("model.safetensors")), "weights came from the cache"
