"""Distributed evaluation on 2 CPU processes, SIGKILL + resume, and the Hub push through a local stand-in."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hub_standin import hub_standin
from recipes_helpers import BLOCK_PACKAGES, REPO, TINY, TRAIN, repo_env, run_train, with_args


# `accelerate launch --multi_gpu --num_processes 2 recipes/train.py` (two gloo processes with ACCELERATE_USE_CPU=1)
TWO_PROCESS_LAUNCH = [
    sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
    "--main_process_port", "0", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    str(TRAIN),
]  # fmt: skip


def _final(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_two_cpu_processes_see_every_conversation_once(tmp_path):
    # 25 conversations -> the test split (session 5) has 5 and validation 2: with 2 processes and batch 2 the
    # last batch is padded with duplicates that gather_for_metrics must drop.
    out = tmp_path / "ddp"
    args = with_args(TINY, epochs=2, batch_size=2) + ["--output_dir", str(out)]
    cmd = [*TWO_PROCESS_LAUNCH, *args]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=repo_env(ACCELERATE_USE_CPU="1"), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = _final(out)
    prov = json.loads((out / "provenance.json").read_text())
    assert metrics["finished"] is True
    for record in metrics["epochs"]:
        for split in ("validation", "test"):
            assert record[split]["num_conversations"] == prov[split]["num_conversations"]
            assert record[split]["duplicate_conversations"] == 0 and record[split]["missing_conversations"] == 0
            assert record[split]["num_samples"] == prov[split]["num_utterances"]
    assert proc.stdout.count("selected model:") == 1  # the summary comes from the main process only


def test_launch_without_cpu_flag_fails_clearly(tmp_path):
    # `--multi_gpu` on a machine without GPUs and without ACCELERATE_USE_CPU starts two processes that would each
    # train alone on all the data: the recipe refuses with a one-line error instead.
    cmd = [*TWO_PROCESS_LAUNCH, *TINY, "--output_dir", str(tmp_path / "o")]
    env = repo_env()
    env.pop("ACCELERATE_USE_CPU", None)
    if torch.cuda.device_count() > 1:
        pytest.skip("this machine has several GPUs: --multi_gpu is legitimate here")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "error: 2 processes were launched but accelerate runs each one alone" in proc.stderr
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = with_args(TINY, epochs=7, stage1_epochs=2, checkpoint_total_limit="null", checkpoint_interval=0)
    kwargs = json.loads(args[args.index("--dataset_kwargs") + 1])
    kwargs["num_conversations"] = 40  # a bit more work per epoch, so the kill lands mid-run
    args = with_args(args, dataset_kwargs=json.dumps(kwargs))
    reference = tmp_path / "uninterrupted"
    proc = run_train(args + ["--output_dir", str(reference)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = tmp_path / "killed"
    victim = subprocess.Popen(
        [sys.executable, str(TRAIN), *args, "--output_dir", str(run)],
        cwd=tmp_path,
        env=repo_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = run / "checkpoints" / "checkpoint_3" / "training_state.json"
    deadline = time.time() + 300
    while not marker.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert _final(run)["finished"] is False and not (run / "model").exists()

    resumed = run_train(args + ["--output_dir", str(run), "--resume_from_checkpoint", "latest"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    a, b = _final(reference), _final(run)
    assert b["final"]["epoch"] == a["final"]["epoch"]
    assert b["final"]["test"] == a["final"]["test"]
    assert b["final"]["validation"] == a["final"]["validation"]
    assert [r["train"]["loss"] for r in b["epochs"]] == [r["train"]["loss"] for r in a["epochs"]]
    from safetensors.torch import load_file

    wa, wb = load_file(reference / "model" / "model.safetensors"), load_file(run / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    numbers = sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").iterdir())
    assert numbers == list(range(7))  # the counter continued after load_state: nothing clobbered or misnamed


LOAD_FROM_HUB = (
    BLOCK_PACKAGES
    + r"""
import json, sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
torch.manual_seed(0)
x = {m: torch.randn(1, 4, 8) for m in ("audio", "text", "video")}
with torch.no_grad():
    out = model(**x, modality_mask=torch.ones(1, 4, 3), attention_mask=torch.ones(1, 4, dtype=torch.long))
print("RESULT" + json.dumps({"logits": out.logits.tolist(), "stage": model.training_stage}))
"""
)


def test_push_to_hub_then_load_without_the_package(tmp_path):
    with hub_standin() as hub:
        hub_env = {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_TOKEN": "hf_standin",
            "HF_HOME": str(tmp_path / "hf-train"),
        }
        out = tmp_path / "pushed"
        proc = run_train(
            TINY + ["--output_dir", str(out), "--push_to_hub", "comp-org/comp-tiny-synthetic"],
            cwd=tmp_path,
            env=repo_env(**hub_env),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"pushed to {hub.endpoint}/comp-org/comp-tiny-synthetic" in proc.stdout
        files = hub.list_files("comp-org/comp-tiny-synthetic")
        for name in (
            "README.md",
            "config.json",
            "model.safetensors",
            "modeling_comp.py",
            "configuration_comp.py",
            "comp_run.json",
        ):
            assert name in files
        card = hub.read_file("comp-org/comp-tiny-synthetic", "README.md").decode()
        assert "comp-org/comp-tiny-synthetic" in card and "synthetic" in card and "| accuracy |" in card

        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(hub_env, HF_HOME=str(tmp_path / "hf-fresh"))
        loader = subprocess.run(
            [sys.executable, "-c", LOAD_FROM_HUB, "comp-org/comp-tiny-synthetic"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert loader.returncode == 0, loader.stderr[-3000:]
        assert any(
            p.startswith("/comp-org/comp-tiny-synthetic/resolve/") and p.endswith("modeling_comp.py")
            for _, p in hub.requests
        )
        # evaluation.py takes the Hub id as well, and reproduces the run's final test metrics.
        kwargs = TINY[TINY.index("--dataset_kwargs") + 1]
        evaluated = subprocess.run(
            [
                sys.executable,
                str(REPO / "recipes" / "evaluation.py"),
                "--model",
                "comp-org/comp-tiny-synthetic",
                "--dataset_kwargs",
                kwargs,
                "--missing_rate",
                "0.3",
                "--progress",
                "false",
                "--output_file",
                str(tmp_path / "hub_eval.json"),
            ],
            cwd=tmp_path,
            env=repo_env(**hub_env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    final = _final(out)["final"]["test"]
    hub_metrics = json.loads((tmp_path / "hub_eval.json").read_text())["metrics"]
    for key in ("accuracy", "weighted_f1", "accuracy_audio", "accuracy_text", "accuracy_video"):
        assert hub_metrics[key] == pytest.approx(final[key], abs=1e-9), key
    result = json.loads(loader.stdout.split("RESULT", 1)[1])
    from transformers import AutoModel

    import modeling_comp  # noqa: F401

    local = AutoModel.from_pretrained(out / "model").eval()
    torch.manual_seed(0)
    x = {m: torch.randn(1, 4, 8) for m in ("audio", "text", "video")}
    with torch.no_grad():
        expected = local(**x, modality_mask=torch.ones(1, 4, 3), attention_mask=torch.ones(1, 4, dtype=torch.long))
    assert torch.allclose(torch.tensor(result["logits"]), expected.logits, atol=1e-6)
    assert result["stage"] == 2


@pytest.mark.parametrize("kind", ["not_a_checkpoint", "missing"])
def test_resume_from_bad_checkpoint_dir(tmp_path, kind):
    target = tmp_path / "ckpt"
    if kind == "not_a_checkpoint":
        target.mkdir()
    proc = run_train(
        TINY + ["--output_dir", str(tmp_path / "o"), "--resume_from_checkpoint", str(target)], cwd=tmp_path
    )
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: resume_from_checkpoint") and str(target) in line
    assert "Traceback" not in proc.stderr


def _readme_command(pattern: str) -> list[str]:
    """The README's command matching ``pattern`` (a regular expression), as an argv run from any folder: `accelerate`
    becomes this interpreter's accelerate CLI, ``recipes/…`` paths point into the repository, and ``VAR=value``
    prefixes are returned as the first items ``VAR=value``."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line.strip().strip("`").rstrip(".").rstrip("`") for line in readme.splitlines()]
    matches = [line for line in lines if re.search(pattern, line)]
    assert matches, f"README.md has no command matching {pattern!r}"
    argv = []
    for token in shlex.split(matches[0]):
        if token == "accelerate":
            argv += [sys.executable, "-m", "accelerate.commands.accelerate_cli"]
        elif token.startswith("recipes/"):
            argv.append(str(REPO / token))
        else:
            argv.append(token)
    return argv


def _split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while argv and "=" in argv[0] and not argv[0].startswith("-") and "/" not in argv[0].split("=")[0]:
        key, value = argv.pop(0).split("=", 1)
        env[key] = value
    return env, argv


def test_the_readmes_two_process_cpu_command_runs_without_output_dir(tmp_path):
    """The README's exact 2-process CPU command (no --output_dir), with a tiny corpus appended: both processes train
    into the one default run folder, which holds a finished run."""
    env, argv = _split_env(
        _readme_command(r"^ACCELERATE_USE_CPU=1 accelerate launch .*cpu_2proc\.yaml recipes/train\.py$")
    )
    assert env == {"ACCELERATE_USE_CPU": "1"}
    tiny = with_args(TINY, epochs=2, batch_size=2)
    proc = subprocess.run(
        [*argv, *tiny], cwd=tmp_path, env=repo_env(**env), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    assert _final(runs[0])["finished"] is True
    assert proc.stdout.count("selected model:") == 1


def _launch_error(argv, cwd, **env):
    proc = subprocess.run(argv, cwd=cwd, env=repo_env(**env), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_a_user_error_under_accelerate_launch_is_one_line(tmp_path):
    """Through `accelerate launch` (one process) a user error prints exactly its one line: no launcher traceback, no
    repeated message, no empty run folder; the README's real-corpus command without its data says so in one line."""
    home = tmp_path / "home"  # the README's ~/data/GCNet does not exist there
    home.mkdir()
    argv = _readme_command(r"^accelerate launch --config_file \S+default\.yaml recipes/train\.py --config \S+mosi")
    proc = _launch_error(argv, tmp_path, HOME=home)
    assert proc.stderr.strip().splitlines() == [f"error: data_dir '{home}/data/GCNet' does not exist or is not a "
                                                "directory"]  # fmt: skip
    default = REPO / "recipes" / "accelerate_configs" / "default.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file", str(default)]
    proc = _launch_error([*launch, str(TRAIN), *TINY, "--selection_metric", "acc7"], tmp_path)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: selection_metric='acc7' is not a classification metric of 'synthetic'")
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_a_user_error_under_a_two_process_launch_is_said_once(tmp_path):
    proc = _launch_error([*TWO_PROCESS_LAUNCH, *TINY, "--missing_rate", "2"], tmp_path, ACCELERATE_USE_CPU="1")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: missing_rate=2.0 is invalid: expected a number in [0, 1)"]
    # what else may print is torch's elastic agent saying it stops the workers (its own log lines)
    others = [line for line in proc.stderr.strip().splitlines() if not line.startswith("error:")]
    assert all("torch/distributed/elastic" in line for line in others), others
