"""The Hub stand-in (tests/hub_standin.py) against the real huggingface_hub / transformers clients."""

import json
import os
import subprocess
import sys

import pytest
from hub_standin import hub_standin


CLIENT = r"""
import json, os, sys, tempfile
import torch
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from transformers import AutoModel, BertConfig, BertModel

api = HfApi()
api.create_repo("org/tiny")
api.create_repo("org/tiny", exist_ok=True)
folder = tempfile.mkdtemp()
torch.manual_seed(0)
model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                             vocab_size=16, max_position_embeddings=8))
model.save_pretrained(folder)
with open(os.path.join(folder, "README.md"), "w") as f:
    f.write("---\nlicense: apache-2.0\n---\n# tiny\n")
first = api.upload_folder(repo_id="org/tiny", folder_path=folder, commit_message="first")
second = api.upload_folder(repo_id="org/tiny", folder_path=folder, commit_message="unchanged")
out = {"same_commit": first.oid == second.oid}
out["files"] = sorted(s.rfilename for s in api.model_info("org/tiny").siblings)
out["config"] = json.load(open(hf_hub_download("org/tiny", "config.json")))["model_type"]
out["snapshot"] = sorted(os.listdir(snapshot_download("org/tiny", revision=first.oid)))
loaded = AutoModel.from_pretrained("org/tiny")
out["equal"] = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
try:
    hf_hub_download("org/tiny", "missing.json")
except EntryNotFoundError:
    out["missing"] = "EntryNotFound"
try:
    api.model_info("org/nope")
except RepositoryNotFoundError:
    out["nope"] = "RepoNotFound"
print("RESULT" + json.dumps(out))
"""


@pytest.fixture
def hub():
    with hub_standin() as running:
        yield running


def test_standin_serves_real_clients(hub, tmp_path):
    env = dict(
        os.environ,
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf"),
        HF_TOKEN="hf_standin",
    )
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["files"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert result["same_commit"] is True  # unchanged files are detected through the preupload oids
    assert result["config"] == "bert"
    assert result["snapshot"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert result["equal"] is True
    assert result["missing"] == "EntryNotFound" and result["nope"] == "RepoNotFound"
    # Weights went through the git-LFS route like on the Hub, the card as a regular file.
    assert hub.lfs_paths("org/tiny") == ["model.safetensors"]
    assert any(m == "PUT" and p.startswith("/lfs-upload/") for m, p in hub.requests)
    assert hub.read_file("org/tiny", "README.md").startswith(b"---\nlicense: apache-2.0")
