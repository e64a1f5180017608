"""Accuracy benchmark: ours (default and released protocols, each default-mode fix undone) against the authors'
released trainer, on the same SYNTHETIC corpora in the GCNet on-disk layout, in one run on one machine.

    python benchmarks/bench_accuracy.py --output_dir /tmp/bench_acc                           # everything
    python benchmarks/bench_accuracy.py --output_dir /tmp/b --corpora mosi --arms default,released \\
        --plan 0.7:2 --mosi_epochs 6 --jobs 1                                                 # a small run
    COMP_AUTHORS_CODE=/path/to/2026-AAAI-ComP python benchmarks/bench_accuracy.py ...         # + the authors' arm

Corpora (written once into ``<output_dir>/data``; nothing real is read), scaled down so that two busy CPU cores
can train every arm several times:

* ``mosi``: a MOSI-sized synthetic corpus — 93 videos, 2,199 utterances (9–63 per video; split 70/10/20 % of
  the videos), sentiment regression; feature dims 32/64/64 (audio/text/video) instead of 512/1024/1024.
* ``iemocap4``: an IEMOCAP-4-shaped synthetic corpus scaled down to 75 dialogues (15 per session, 5–40 utterances),
  4 classes, fold 1 (session 1 tested), same dims.

The planted signal is stronger in text than in audio, and in audio than in video (strengths 2.2 / 1.5 / 0.9 of
``hub_datasets.synthetic``). Model: hidden 64 (scaled from 256), 4 layers, 2 heads, dropout 0.1 (released 0.5),
λ 0.3; MOSI batch 32, lr 1e-3, 30 epochs (10 + 20); IEMOCAP batch 8, lr 1e-3, 20 epochs (10 + 10) (options change
these). (At hidden 64 and 32/64/64-d features, dropout 0.5 and lr 1e-4 for 40 epochs left both trainers predicting a
constant sign in stage 2 on the MOSI-sized corpus, hence these settings; both trainers always get the same ones.)

Arms (``--arms``):

* ``default``: ours, default protocol (fixed seeded test masks, 10 % of the training dialogues held out for
  IEMOCAP, best validation epoch).
* ``released``: ours with ``--protocol released`` (per-batch masks, test batches reshuffled, all training
  dialogues, best test epoch over all epochs, the release's metric definitions, ``reference_compat=True``).
* ``batch_prototypes`` / ``no_gradient_modulation`` / ``reference_compat``: the default protocol with one default-mode
  fix undone (``prototype_scope="batch"``, ``use_gradient_modulation=False``, ``reference_compat=True`` —
  the last undoes every fix bundled in that switch: padded/missing rows in the prototypes, audio's private
  features fed to the text and video private branches, padded rows in the reconstruction/JSD terms, and the
  two above).
* ``authors``: the authors' ``ComP/train_mr.py`` on the same files, in a subprocess, when ``COMP_AUTHORS_CODE``
  points at a copy of their repository (it is copied to a scratch folder per run, its ``config.py`` data paths
  are rewritten, and its fold loop is limited to fold 1 for IEMOCAP by one substituted line; nothing of it
  enters this repository). Its printed metrics are parsed.

Per run the JSON holds: the selected epoch's test metrics (each protocol's own selection), the best test value
over stage-2 epochs, and the mean test value over the last ``--last_epochs`` epochs (less selection bias).
The table prints mean ± std per arm and each difference vs the authors' arm (when run) and vs ``default``,
with a Welch 95 % confidence interval. Differences whose interval contains 0 are no measurable difference.
Runs are appended to ``results.json`` as they finish; rerunning the same command skips finished runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hub_datasets.atomic import atomic_write_text  # noqa: E402


ARMS = ("authors", "released", "default", "batch_prototypes", "no_gradient_modulation", "reference_compat")
FIX_ARMS = {
    "batch_prototypes": {"prototype_scope": "batch"},
    "no_gradient_modulation": {"use_gradient_modulation": False},
    "reference_compat": {"reference_compat": True},
}
BENCHMARKED_CORPORA = ("mosi", "iemocap4")
DIMS = {"audio": 32, "text": 64, "video": 64}
SIGNAL = {"audio": 1.5, "text": 2.2, "video": 0.9}  # text > audio > video
CORPUS_ARGS = {
    "mosi": {"num_conversations": 93, "min_utterances": 9, "max_utterances": 63, "total_utterances": 2199},
    "iemocap4": {"num_conversations": 75, "min_utterances": 5, "max_utterances": 40},
}
FOLDER = {"mosi": "CMUMOSI", "iemocap4": "IEMOCAP"}
AUTHORS_DATASET = {"mosi": "CMUMOSI", "iemocap4": "IEMOCAPFour"}
MAIN = {"mosi": ("acc2", "f1"), "iemocap4": ("accuracy", "unweighted_accuracy")}
FEATURES = ("wav2vec-large-c-UTT", "deberta-large-4-UTT", "manet_UTT")


# ---------------------------------------------------------------------- data


def write_corpora(data_root: Path, corpora: list[str], seed: int = 0) -> dict[str, Path]:
    """Writes (once) each synthetic corpus in the GCNet layout; returns corpus → folder holding the pickle."""
    from hub_datasets.synthetic import write_synthetic_corpus

    out = {}
    for corpus in corpora:
        target = data_root / corpus / FOLDER[corpus]
        if not (target / "features").is_dir():
            write_synthetic_corpus(
                data_root / corpus, corpus, dims=DIMS, signal=SIGNAL, seed=seed, overwrite=True, **CORPUS_ARGS[corpus]
            )
        out[corpus] = target
    return out


# ---------------------------------------------------------------------- one run (in a worker process)


def _hyper(job: dict) -> dict:
    corpus = job["corpus"]
    epochs = job["epochs"]
    return {
        "epochs": epochs,
        "stage1_epochs": job["stage1_epochs"],
        "batch_size": 32 if corpus == "mosi" else 8,
        "learning_rate": job["lr"],
        "model": {
            "hidden_size": job["hidden"],
            "num_layers": 4,
            "num_attention_heads": 2,
            "hidden_dropout_prob": job["dropout"],
            "attention_dropout_prob": 0.0,
            "prompt_momentum": 0.3,
        },
    }


def _summarise_history(history: list[dict], corpus: str, last: int, stage1_epochs: int) -> dict:
    main, second = MAIN[corpus]
    tests = [r.get("test") or {} for r in history]
    stage2 = tests[stage1_epochs:]
    window = tests[-last:]

    def mean(rows, key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    return {
        "best_test_stage2": max((r[main] for r in stage2 if r.get(main) is not None), default=None),
        "last_mean": {main: mean(window, main), second: mean(window, second)},
        "per_epoch": [r.get(main) for r in tests],
    }


def run_ours(job: dict) -> dict:
    """One run of our recipe (default protocol with the arm's model switches, or the released protocol)."""
    import torch

    torch.set_num_threads(1)
    from recipes.config import TrainConfig
    from recipes.train import train_run

    corpus, arm = job["corpus"], job["arm"]
    hyper = _hyper(job)
    model = dict(hyper.pop("model"))
    model.update(FIX_ARMS.get(arm, {}))
    released = arm == "released"
    if released:
        model["reference_compat"] = True
    with tempfile.TemporaryDirectory(prefix=f"bench-{arm}-", dir=job["scratch"]) as tmp:
        cfg = TrainConfig(
            dataset=corpus,
            data_dir=job["data_dir"],
            missing_rate=job["missing_rate"],
            fold="1" if corpus == "iemocap4" else None,
            seed=job["seed"],
            model=model,
            selection="test" if released else "validation",
            selection_stage=1 if released else 2,
            protocol="released" if released else "default",
            output_dir=tmp,
            report_to="none",
            progress=False,
            checkpoint_every=hyper["epochs"],
            checkpoint_total_limit=1,
            **hyper,
        ).validate()
        started = time.perf_counter()
        final = train_run(cfg, Path(tmp), 1 if corpus == "iemocap4" else None)  # the protocol is cfg.protocol
        seconds = time.perf_counter() - started
        history = json.loads((Path(tmp) / "metrics.json").read_text())["epochs"]
    main, second = MAIN[corpus]
    test = final["test"] or {}
    return {
        "selected": {main: test.get(main), second: test.get(second)},
        "selected_epoch": final["epoch"],
        "selection": "best test epoch, all epochs (released)" if released else "best validation epoch (stage 2)",
        **_summarise_history(history, corpus, job["last_epochs"], cfg.stage1_epochs),
        "seconds": seconds,
    }


_EPOCH_LINE = re.compile(
    r"^epoch:(\d+); test_mae_[\d.]+:(\S+); test_corr_[\d.]+:(\S+); test_fscore_[\d.]+:([\d.]+)%; test_acc_[\d.]+:([\d.]+)%"
)
_BEST_CMU = re.compile(
    r"The best\(acc\) epoch of mask_rate \([\d.]+\): (\d+) --test_mae (\S+) --test_corr (\S+) --test_fscores (\S+) "
    r"--test_acc (\S+?)\.?$"
)
_BEST_IEMOCAP = re.compile(
    r"The best\(acc\) epoch of mask_rate \([\d.]+\): (\d+) --test_acc (\S+) --test_ua (\S+?)\.?$"
)


def _authors_copy(code: Path, corpus: str, data_dir: Path, dest: Path) -> Path:
    """A scratch copy of the authors' code whose ``config.py`` points at ``data_dir`` (and, for IEMOCAP, whose
    fold loop can be limited by ``COMP_BENCH_FOLDS``)."""
    shutil.copytree(code, dest, ignore=shutil.ignore_patterns("figures", ".git", "*.pyc", "__pycache__"))
    config = (dest / "config.py").read_text(encoding="utf-8")
    name = AUTHORS_DATASET[corpus]
    config = re.sub(rf"'{name}':\s*'[^']*'", f"'{name}': {str(data_dir)!r}", config)
    config = re.sub(r"SAVED_ROOT = .*", f"SAVED_ROOT = {str(dest / 'saved') + '/'!r}", config)
    (dest / "config.py").write_text(config, encoding="utf-8")
    script = dest / "ComP" / "train_mr.py"
    text = script.read_text(encoding="utf-8")
    loop = "for ii in range(args.num_folder):"
    if loop not in text:
        raise RuntimeError(f"{script}: fold loop {loop!r} not found; is COMP_AUTHORS_CODE the ComP release?")
    text = text.replace(loop, "for ii in range(int(os.environ.get('COMP_BENCH_FOLDS', args.num_folder))):")
    script.write_text(text, encoding="utf-8")
    return dest


def run_authors(job: dict) -> dict:
    """One run of the authors' ``train_mr.py`` on the same files; its printed metrics are parsed."""
    corpus = job["corpus"]
    hyper = _hyper(job)
    with tempfile.TemporaryDirectory(prefix="bench-authors-", dir=job["scratch"]) as tmp:
        dest = _authors_copy(
            Path(job["authors_code"]), corpus, Path(job["data_dir"]) / FOLDER[corpus], Path(tmp) / "c"
        )
        cmd = [
            sys.executable, "ComP/train_mr.py", "--dataset", AUTHORS_DATASET[corpus],
            "--audio-feature", FEATURES[0], "--text-feature", FEATURES[1], "--video-feature", FEATURES[2],
            "--seed", str(job["seed"]), "--batch-size", str(hyper["batch_size"]), "--epochs", str(hyper["epochs"]),
            "--lr", str(hyper["learning_rate"]), "--hidden", str(job["hidden"]), "--depth", "4", "--num_heads", "2",
            "--drop_rate", str(job["dropout"]), "--attn_drop_rate", "0.0", "--stage_epoch", str(hyper["stage1_epochs"]),
            "--mask_rate", str(job["missing_rate"]), "--lbd", "0.3",
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COMP_BENCH_FOLDS": "1"}
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    out = proc.stdout
    if proc.returncode != 0:
        tail = (proc.stderr or out).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"authors' train_mr.py exited {proc.returncode}: {tail[0]}")
    per_epoch: dict[int, dict] = {}
    for line in out.splitlines():
        m = _EPOCH_LINE.match(line.strip())
        if m:
            epoch = int(m.group(1))
            f1, acc = float(m.group(4)) / 100, float(m.group(5)) / 100
            if corpus == "mosi":
                per_epoch[epoch] = {"acc2": acc, "f1": f1}
            else:  # the release prints UA in the "corr" slot for IEMOCAP
                per_epoch[epoch] = {"accuracy": acc, "unweighted_accuracy": float(m.group(3))}
    main, second = MAIN[corpus]
    best = None
    for line in out.splitlines():
        m = (_BEST_CMU if corpus == "mosi" else _BEST_IEMOCAP).search(line.strip())
        if m:
            best = m
    if best is None:
        raise RuntimeError("could not find the authors' 'The best(acc) epoch' line in their output")
    if corpus == "mosi":
        selected = {"acc2": float(best.group(5)), "f1": float(best.group(4))}
    else:
        selected = {"accuracy": float(best.group(2)), "unweighted_accuracy": float(best.group(3))}
    epochs = sorted(per_epoch)  # the release prints test metrics for stage-2 epochs only
    window = [per_epoch[e] for e in epochs[-job["last_epochs"] :]]
    return {
        "selected": selected,
        "selected_epoch": int(best.group(1)),
        "selection": "best test epoch, all epochs (the authors' trainer)",
        "best_test_stage2": max((per_epoch[e][main] for e in epochs), default=None),
        "last_mean": {k: sum(w[k] for w in window) / len(window) for k in (main, second)} if window else {},
        "per_epoch": [per_epoch[e][main] for e in epochs],
        "seconds": seconds,
    }


def parity_check(corpus: str, data_dir: Path, code: Path, hidden: int = 16) -> list[str]:
    """One training step of the authors' code and of ours on identical weights (converted), batch and masks,
    dropout 0: the worst relative gradient difference per stage. Runs their modules in this process, so call it
    in a subprocess (``--parity``)."""
    import argparse as _argparse

    import numpy as np
    import torch

    import hub_datasets
    from modeling_comp.convert_original_checkpoint import convert_state_dict, map_key
    from recipes.common import model_inputs
    from recipes.released_protocol import _apply_masks, _SpeakerCollator

    scratch = Path(tempfile.mkdtemp(prefix="bench-parity-"))
    copy = _authors_copy(code, corpus, data_dir / FOLDER[corpus], scratch / "c")
    sys.path[:0] = [str(copy / "ComP"), str(copy)]
    import train_mr  # the authors' trainer (their module, from the scratch copy)
    from utils import build_model

    iem = corpus == "iemocap4"
    root = data_dir / FOLDER[corpus]
    if iem:
        from dataloader_iemocap import IEMOCAPDataset as Dataset

        pickle_path = root / "IEMOCAP_features_raw_4way.pkl"
    else:
        from dataloader_cmumosi import CMUMOSIDataset as Dataset

        pickle_path = root / "CMUMOSI_features_raw_2way.pkl"
    feats = [str(root / "features" / name) for name in FEATURES]
    theirs_ds = Dataset(label_path=str(pickle_path), audio_root=feats[0], text_root=feats[1], video_root=feats[2])
    length = 150 if iem else 65
    args = _argparse.Namespace(
        hidden=hidden, n_classes=4 if iem else 1, depth=4, num_heads=2, drop_rate=0.0, attn_drop_rate=0.0,
        no_cuda=True, lbd=0.3, device="cpu", seq_len=length, dataset=AUTHORS_DATASET[corpus],
    )  # fmt: skip
    train_mr.args, train_mr.device = args, "cpu"
    torch.manual_seed(0)
    theirs = build_model(args, *theirs_ds.get_featDim())
    ours = convert_state_dict(
        theirs.state_dict(), num_attention_heads=2, prompt_momentum=0.3, hidden_dropout_prob=0.0,
        attention_dropout_prob=0.0, **({} if iem else {"problem_type": "regression"}),
    )  # fmt: skip
    ours.train()
    vids = (
        list(theirs_ds.vids)
        if iem
        else sorted(theirs_ds.trainVids) + sorted(theirs_ds.valVids) + sorted(theirs_ds.testVids)
    )
    pick = [0, 3, 5, 7]
    loader = torch.utils.data.DataLoader(theirs_ds, batch_size=4, sampler=pick, collate_fn=theirs_ds.collate_fn)
    dsd = hub_datasets.load_dataset(corpus, data_dir=str(data_dir), progress=False, **({"fold": 1} if iem else {}))
    rows = {dsd[s][i]["dialog_id"]: dsd[s][i] for s in dsd for i in range(len(dsd[s]))}
    collate = _SpeakerCollator(hub_datasets.ComPDataCollator(max_utterances=length, pad_to="max_utterances"), length)
    lines = []
    for stage in (1, 2):
        np.random.seed(7)  # both draw their two mask matrices from the same point of NumPy's stream
        optimizer = torch.optim.SGD(theirs.parameters(), lr=0.0)
        train_mr.train_or_eval_model(
            args, theirs, train_mr.MaskedMSELoss(), train_mr.MaskedCELoss(), loader, length, optimizer=optimizer,
            train=True, first_stage=stage == 1, mask_rate=0.4,
        )  # fmt: skip
        np.random.seed(7)
        batch = _apply_masks(collate([rows[vids[i]] for i in pick]), 0.4)
        ours.zero_grad()
        ours.set_training_stage(stage)
        ours(**model_inputs(batch)).loss.backward()
        named = dict(ours.named_parameters())
        worst, where = 0.0, None
        for name, param in theirs.named_parameters():
            key = map_key(name)
            if key is None or param.grad is None:
                continue
            mine = named[key].grad if named[key].grad is not None else torch.zeros_like(param.grad)
            scale = max(param.grad.abs().max().item(), mine.abs().max().item())
            rel = (param.grad - mine).abs().max().item() / (scale + 1e-4)
            if rel > worst:
                worst, where = rel, name
        note = " (the private heads' noise targets are different random draws)" if stage == 1 and not iem else ""
        lines.append(f"{corpus} stage {stage}: worst relative gradient difference {worst:.1e} at {where}{note}")
    shutil.rmtree(scratch, ignore_errors=True)
    return lines


def worker(job_json: str) -> int:
    """``--worker JSON``: runs one job and prints one JSON line (the result or the error)."""
    job = json.loads(job_json)
    try:
        result = run_authors(job) if job["arm"] == "authors" else run_ours(job)
        print("RESULT " + json.dumps({**job, **result, "ok": True}), flush=True)
    except Exception as err:  # reported in the results, the benchmark goes on
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print("RESULT " + json.dumps({**job, "ok": False, "error": f"{type(err).__name__}: {message}"}), flush=True)
    return 0


# ---------------------------------------------------------------------- statistics and table


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def welch(a: list[float], b: list[float]) -> tuple[float, float, float] | None:
    """``(mean(a) - mean(b), low, high)`` with a Welch 95 % confidence interval; None if either has < 2 values."""
    from scipy import stats

    ma, sa, na = _mean_std(a)
    mb, sb, nb = _mean_std(b)
    if na < 2 or nb < 2:
        return None
    va, vb = sa**2 / na, sb**2 / nb
    se = math.sqrt(va + vb)
    diff = ma - mb
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return diff, diff - half, diff + half


def _values(results: list[dict], corpus: str, rate: float, arm: str, kind: str) -> list[float]:
    main = MAIN[corpus][0]
    out = []
    for r in results:
        if r.get("ok") and r["corpus"] == corpus and r["missing_rate"] == rate and r["arm"] == arm:
            value = r["selected"].get(main) if kind == "selected" else (r.get("last_mean") or {}).get(main)
            if value is not None:
                out.append(100 * value)
    return out


def _fmt_diff(d) -> str:
    if d is None:
        return "n/a"
    diff, low, high = d
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"


def table(results: list[dict]) -> str:
    """The printed table: per corpus and rate, each arm's mean ± std and its differences (Welch 95 % CI)."""
    lines = []
    keys = sorted({(r["corpus"], r["missing_rate"]) for r in results}, key=lambda k: (k[0], -k[1]))
    for corpus, rate in keys:
        main = MAIN[corpus][0]
        arms = [a for a in ARMS if any(r["arm"] == a and r["corpus"] == corpus and r["missing_rate"] == rate
                                      for r in results)]  # fmt: skip
        lines += [
            "",
            f"## {corpus} (synthetic), MR {rate:g}: test {main} (percent), mean ± std over seeds",
            "",
            "| arm | n | selected epoch | Δ vs authors [95% CI] | Δ vs default [95% CI] "
            "| mean of last epochs | Δ vs authors [95% CI] | Δ vs default [95% CI] |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for arm in arms:
            row = [arm]
            for kind in ("selected", "last"):
                vals = _values(results, corpus, rate, arm, kind)
                mean, std, n = _mean_std(vals)
                if kind == "selected":
                    row.append(str(n))
                row.append("n/a" if n == 0 else f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}")
                for ref in ("authors", "default"):
                    other = _values(results, corpus, rate, ref, kind)
                    row.append("—" if ref == arm else _fmt_diff(welch(vals, other)) if other else "n/a")
            lines.append("| " + " | ".join(row) + " |")
        failed = [r for r in results if not r.get("ok") and r["corpus"] == corpus and r["missing_rate"] == rate]
        for r in failed:
            lines.append(f"- FAILED {r['arm']} seed {r['seed']}: {r['error']}")
    lines += [
        "",
        "selected epoch: authors/released = best TEST epoch over all epochs (optimistic); default and fix arms = "
        "best validation epoch (stage 2). mean of last epochs: mean test value over the last epochs of each run "
        "(authors: last stage-2 epochs it printed). Δ: difference of means with a Welch 95 % confidence interval; "
        "an interval containing 0 is no measurable difference.",
    ]
    return "\n".join(lines)


def _stage2_best(results: list[dict], corpus: str, rate: float, arm: str) -> list[float]:
    return [
        100 * r["best_test_stage2"]
        for r in results
        if r.get("ok") and r["corpus"] == corpus and r["missing_rate"] == rate and r["arm"] == arm
        and r.get("best_test_stage2") is not None
    ]  # fmt: skip


def paper_table(results: list[dict], command: str) -> str:
    """ "Paper protocol vs ours": one row per (trainer, protocol), one column per corpus and missing rate."""
    cols = sorted({(r["corpus"], r["missing_rate"]) for r in results if r.get("ok")}, key=lambda k: (k[0], -k[1]))
    rows = [
        ("the authors' `train_mr.py`", "paper (released): best TEST epoch, test masks/batches redrawn", "authors", "selected"),
        ("ours, `--protocol released`", "paper (released), reproduced by us", "released", "selected"),
        ("ours, default", "ours: fixed test masks, best VALIDATION epoch", "default", "selected"),
        ("ours, default masks, best test epoch", "ours, max test value over stage-2 epochs", "default", "stage2"),
        ("the authors' `train_mr.py`", "paper, mean of the last epochs (no selection)", "authors", "last"),
        ("ours, `--protocol released`", "paper, mean of the last epochs (no selection)", "released", "last"),
        ("ours, default", "ours, mean of the last epochs (no selection)", "default", "last"),
    ]  # fmt: skip
    head = " | ".join(f"{c} MR {r:g} {MAIN[c][0]}" for c, r in cols)
    lines = [
        "## Paper protocol vs ours (SYNTHETIC corpora in the GCNet layout; percent, mean ± std over seeds)",
        "",
        f"| trainer | protocol | {head} |",
        "|---|---|" + "---|" * len(cols),
    ]
    for trainer, protocol, arm, kind in rows:
        cells = []
        for corpus, rate in cols:
            vals = (
                _stage2_best(results, corpus, rate, arm)
                if kind == "stage2"
                else _values(results, corpus, rate, arm, kind)
            )
            mean, std, n = _mean_std(vals)
            cells.append("n/a" if n == 0 else f"{mean:.2f} ± {std:.2f} (n={n})" if n > 1 else f"{mean:.2f} (n=1)")
        if any(c != "n/a" for c in cells):
            lines.append(f"| {trainer} | {protocol} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def jitter_table(results: list[dict], last: int = 10) -> str:
    """How noisy one run's test curve is: mean |Δ| of the main test metric between consecutive epochs over each
    run's last ``last`` epochs (points), averaged over runs — the noise the best-epoch maximum feeds on."""
    lines = [
        "## Epoch-to-epoch jitter of the test curve (mean |Δ| between consecutive epochs, last epochs, points)",
        "",
        "| corpus | MR | arm | jitter | runs |",
        "|---|---|---|---|---|",
    ]
    keys = sorted({(r["corpus"], r["missing_rate"], r["arm"]) for r in results if r.get("ok")},
                  key=lambda k: (k[0], -k[1], ARMS.index(k[2])))  # fmt: skip
    for corpus, rate, arm in keys:
        per_run = []
        for r in results:
            if r.get("ok") and (r["corpus"], r["missing_rate"], r["arm"]) == (corpus, rate, arm):
                curve = [v for v in (r.get("per_epoch") or [])[-last:] if v is not None]
                if len(curve) > 1:
                    per_run.append(100 * sum(abs(b - a) for a, b in zip(curve, curve[1:])) / (len(curve) - 1))
        if per_run:
            lines.append(f"| {corpus} | {rate:g} | {arm} | {sum(per_run) / len(per_run):.2f} | {len(per_run)} |")
    return "\n".join(lines)


def render(results: list[dict], command: str) -> str:
    """Every table of the benchmark, as printed and written to ``table.md``."""
    return "\n\n".join([paper_table(results, command), table(results), jitter_table(results)]) + "\n"


# ---------------------------------------------------------------------- planning and main


def parse_plan(text: str) -> list[tuple[float, int]]:
    """``"0.7:5,0.1:3,0.4:3"`` → ``[(0.7, 5), (0.1, 3), (0.4, 3)]`` (rate : number of seeds)."""
    plan = []
    for part in text.split(","):
        rate, _, count = part.partition(":")
        try:
            rate_f, count_i = float(rate), int(count or 5)
        except ValueError:
            raise SystemExit(f"error: --plan entry {part!r} is invalid: expected RATE:SEEDS, e.g. 0.7:5") from None
        if not 0.0 <= rate_f < 1.0 or count_i < 1:
            raise SystemExit(f"error: --plan entry {part!r} is invalid: rate in [0, 1), seeds >= 1")
        plan.append((rate_f, count_i))
    return plan


def plan_jobs(args, data: dict[str, Path], arms: list[str]) -> list[dict]:
    """Jobs in priority order: for each plan entry, seed by seed, every corpus and arm (so a partial run is
    balanced)."""
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = []
    for rate, count in parse_plan(args.plan):
        rate_arms = (
            arms if rate == parse_plan(args.plan)[0][0] else [a for a in arms if a in args.side_arms.split(",")]
        )
        for seed in seeds[:count]:
            for corpus in args.corpora.split(","):
                for arm in rate_arms:
                    jobs.append(
                        {
                            "corpus": corpus,
                            "arm": arm,
                            "missing_rate": rate,
                            "seed": seed,
                            "epochs": args.mosi_epochs if corpus == "mosi" else args.iemocap_epochs,
                            "hidden": args.hidden,
                            "dropout": args.dropout,
                            "lr": args.mosi_lr if corpus == "mosi" else args.iemocap_lr,
                            "stage1_epochs": args.mosi_stage1 if corpus == "mosi" else args.iemocap_stage1,
                            "last_epochs": args.last_epochs,
                            "data_dir": str(data[corpus].parent),
                            "authors_code": os.environ.get("COMP_AUTHORS_CODE"),
                            "scratch": str(Path(args.output_dir) / "scratch"),
                        }
                    )
    return jobs


def _key(job: dict) -> tuple:
    keys = ("corpus", "arm", "missing_rate", "seed", "epochs", "hidden", "lr", "stage1_epochs", "dropout")
    return tuple(job.get(k) for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="results.json, table.md, data/ and scratch/ go here")
    parser.add_argument("--corpora", default="mosi,iemocap4", help="comma-separated: mosi, iemocap4")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--plan", default="0.7:5,0.1:3,0.4:3", help="RATE:SEEDS,...; the first rate runs every arm")
    parser.add_argument("--side_arms", default="authors,released,default", help="arms run at the plan's other rates")
    parser.add_argument("--seeds", default="66,0,1,2,3,4,5,6,7,8", help="seed list, used in order")
    parser.add_argument("--mosi_epochs", type=int, default=30, help="total epochs on mosi")
    parser.add_argument("--iemocap_epochs", type=int, default=20, help="total epochs on iemocap4")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout of every model (released: 0.5)")
    parser.add_argument("--mosi_stage1", type=int, default=10, help="stage-1 epochs on mosi")
    parser.add_argument("--iemocap_stage1", type=int, default=10, help="stage-1 epochs on iemocap4")
    parser.add_argument("--mosi_lr", type=float, default=1e-3, help="learning rate on mosi (released: 1e-4)")
    parser.add_argument("--iemocap_lr", type=float, default=1e-3, help="learning rate on iemocap4")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of every model (released: 256)")
    parser.add_argument("--last_epochs", type=int, default=10, help="window of the mean-over-last-epochs figure")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (each uses one thread)")
    parser.add_argument("--table_only", action="store_true", help="only re-render the tables of results.json")
    parser.add_argument(
        "--parity", action="store_true", help="one-step gradient parity check against COMP_AUTHORS_CODE, then exit"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.table_only:
        path = Path(args.output_dir) / "results.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist (run the benchmark first)")
        saved = json.loads(path.read_text())
        text = render(saved["runs"], saved.get("command", ""))
        (Path(args.output_dir) / "table.md").write_text(text)
        print(text, flush=True)
        return 0

    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"error: unknown arm {unknown[0]!r}; expected some of {', '.join(ARMS)}")
    bad = [c for c in args.corpora.split(",") if c not in BENCHMARKED_CORPORA]
    if bad:
        raise SystemExit(f"error: unknown corpus {bad[0]!r}; expected some of {', '.join(BENCHMARKED_CORPORA)}")
    code = os.environ.get("COMP_AUTHORS_CODE")
    if "authors" in arms and not code:
        print("COMP_AUTHORS_CODE is not set: the authors' arm is skipped", flush=True)
        arms.remove("authors")
    if code and not (Path(code) / "ComP" / "train_mr.py").is_file():
        raise SystemExit(f"error: COMP_AUTHORS_CODE={code!r} does not hold ComP/train_mr.py")
    out = Path(args.output_dir)
    (out / "scratch").mkdir(parents=True, exist_ok=True)
    data = write_corpora(out / "data", args.corpora.split(","))
    if args.parity:
        if not code:
            raise SystemExit("error: --parity needs COMP_AUTHORS_CODE (a copy of the authors' repository)")
        for corpus in args.corpora.split(","):
            snippet = (
                "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import bench_accuracy as b; "
                "print('\\n'.join(b.parity_check(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))"
            )
            proc = subprocess.run(
                [sys.executable, "-c", snippet, str(Path(__file__).parent), corpus, str(data[corpus].parent), code],
                env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
            )  # fmt: skip
            text = [ln for ln in proc.stdout.splitlines() if " stage " in ln and "worst" in ln]
            print("\n".join(text) if text else f"{corpus}: parity check failed: {proc.stderr.strip()[-300:]}")
        return 0
    results_path = out / "results.json"
    results: list[dict] = json.loads(results_path.read_text())["runs"] if results_path.is_file() else []
    done = {_key(r) for r in results if r.get("ok")}
    results = [r for r in results if r.get("ok")]
    jobs = [j for j in plan_jobs(args, data, arms) if _key(j) not in done]
    print(f"{len(jobs)} runs to do ({len(done)} already done), {args.jobs} at a time", flush=True)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    meta = {
        "machine": f"{os.cpu_count()}-core CPU shared with other jobs",
        "corpora": {c: {**CORPUS_ARGS[c], "dims": DIMS, "signal": SIGNAL, "synthetic": True} for c in data},
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }

    def launch(job):
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--output_dir", str(out), "--worker", json.dumps(job)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**job, "ok": False, "error": f"worker exited {proc.returncode}: {tail}"}

    def save():
        atomic_write_text(results_path, json.dumps({**meta, "runs": results}, indent=1))
        (out / "table.md").write_text(render(results, meta["command"]))

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(launch, job): job for job in jobs}
        for i, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            main_key = MAIN[result["corpus"]][0]
            shown = (
                f"{100 * result['selected'][main_key]:.2f} ({result['seconds']:.0f} s)"
                if result.get("ok")
                else result["error"]
            )
            print(f"[{i}/{len(jobs)}] {result['corpus']} {result['arm']} MR {result['missing_rate']} "
                  f"seed {result['seed']}: {shown}", flush=True)  # fmt: skip
            save()
    save()
    print(render(results, meta["command"]), flush=True)
    print(f"\nwrote {results_path} and {out / 'table.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
