"""The Space served on 127.0.0.1 and driven through ``gradio_client``, as an API user would."""

from __future__ import annotations

import numpy as np
import pytest
from comp_space.inference import load_checkpoint, predict
from comp_space.inputs import load_examples
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError


LABEL = "tiny test checkpoint (synthetic)"  # the selector's values are labels: server paths never leave it


@pytest.fixture(scope="module")
def served(space_app_module, tiny_settings):
    demo = space_app_module.build_demo(tiny_settings)
    demo.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **space_app_module.launch_options(tiny_settings)
    )
    try:
        yield demo, Client(demo.local_url, verbose=False, download_files=False)
    finally:
        demo.close()


def _grid_payload(grid: dict) -> dict:
    return {"headers": grid["headers"], "data": grid["data"]}


def test_api_lists_the_documented_endpoints(served):
    _, client = served
    api = client.view_api(return_format="dict", print_info=False)
    assert {"/predict", "/predict_text", "/load", "/draw_mask", "/all_present", "/checkpoint_info"} <= set(
        api["named_endpoints"]
    )
    assert "/tmp" not in str(api) and "pytest-of" not in str(api)  # no server-side path in the API description


def test_load_toggle_predict(served, space_app_module, tiny_checkpoint, tiny_examples):
    _, client = served
    ref, source, example = LABEL, space_app_module.SOURCE_EXAMPLE, "synthetic_test_001"
    grid, text = client.predict(ref, source, example, None, api_name="/load")
    assert grid["headers"] == ["#", "utterance", "audio", "text", "video"] and len(grid["data"]) == 20
    assert "synthetic" in text.lower()
    grid["data"][0][2] = False  # utterance 1: audio missing
    grid["data"][5][3] = "false"  # the grid also accepts words
    summary, table, weights_all, weights_masked, probs = client.predict(
        ref, source, example, None, _grid_payload(grid), api_name="/predict"
    )
    assert "synthetic" in summary and "drops 2 of 60 available modality slots" in summary
    headers, rows = table["headers"], table["data"]
    assert rows[0][headers.index("observed (masked)")] == "· T V"
    assert rows[5][headers.index("observed (masked)")] == "A · V"
    assert rows[0][headers.index("audio head")].endswith("(missing)")
    # The served numbers are the library's numbers for the same input.
    conv = load_examples(tiny_examples)[example]
    mask = np.ones((20, 3), dtype=bool)
    mask[0, 0] = mask[5, 1] = False
    expected = predict(load_checkpoint(str(tiny_checkpoint)), conv, mask)
    got = np.array([row[1:] for row in probs["data"]], dtype=float)[:, 0::2]  # the "(masked)" columns
    np.testing.assert_allclose(got, expected.masked.scores, atol=6e-5)
    assert weights_masked["columns"] == ["utterance", "modality", "weight"]
    first = {row[1]: row[2] for row in weights_masked["data"] if row[0] == "01"}
    assert first["audio"] == 0.0 and first["audio (missing)"] > 0.0
    totals: dict[str, float] = {}
    for utterance, _, weight in weights_all["data"]:
        totals[utterance] = totals.get(utterance, 0.0) + weight
    np.testing.assert_allclose(list(totals.values()), 1.0, rtol=1e-6)
    assert len(totals) == 20


def test_draw_mask_endpoint(served, space_app_module):
    _, client = served
    grid, note = client.predict(
        space_app_module.SOURCE_EXAMPLE, "synthetic_test_001", None, 0.5, 11, api_name="/draw_mask"
    )
    mask = np.array([row[2:] for row in grid["data"]], dtype=bool)
    assert mask.any(axis=1).all() and not mask.all()
    again, _ = client.predict(
        space_app_module.SOURCE_EXAMPLE, "synthetic_test_001", None, 0.5, 11, api_name="/draw_mask"
    )
    assert again["data"] == grid["data"]
    assert "requested rate 0.50" in note and "seed 11" in note


def test_uploaded_files_and_clear_errors(served, space_app_module, tiny_checkpoint, tmp_path):
    _, client = served
    ref, files = LABEL, space_app_module.SOURCE_FILES
    rng = np.random.default_rng(5)
    arrays = {m: rng.normal(size=(7, d)).astype(np.float32) for m, d in {"audio": 12, "text": 16, "video": 8}.items()}
    path = tmp_path / "conversation.npz"
    np.savez(path, **arrays)
    grid, _ = client.predict(ref, files, None, [handle_file(str(path))], api_name="/load")
    assert len(grid["data"]) == 7
    summary, table, *_ = client.predict(
        ref, files, None, [handle_file(str(path))], _grid_payload(grid), api_name="/predict"
    )
    assert "uploaded: conversation.npz" in summary and len(table["data"]) == 7

    arrays["video"][2, 3] = np.inf
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(
        AppError, match=r"bad\.npz\['video'\]: 1 value\(s\) are NaN or infinite \(first at utterance 3"
    ):
        client.predict(ref, files, None, [handle_file(str(bad))], _grid_payload(grid), api_name="/predict")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, audio=np.zeros((7, 11), np.float32), text=arrays["text"], video=np.zeros((7, 8), np.float32))
    with pytest.raises(
        AppError,
        match=r"feature dims per utterance do not fit checkpoint .*: audio has 11 \(expected 12\)",
    ):
        client.predict(ref, files, None, [handle_file(str(wrong))], _grid_payload(grid), api_name="/predict")
    long = tmp_path / "long.npz"
    np.savez(long, audio=np.zeros((30, 12), np.float32), text=np.zeros((30, 16), np.float32))
    # Too long for the checkpoint: refused on upload (/load), from the file's header, and again at prediction.
    with pytest.raises(
        AppError, match=r"long\.npz\['audio'\]: 30 utterances, more than the checkpoint's max_utterances = 24"
    ):
        client.predict(ref, files, None, [handle_file(str(long))], api_name="/load")
    with pytest.raises(AppError, match=r"30 utterances, more than the checkpoint's max_utterances = 24"):
        client.predict(ref, files, None, [handle_file(str(long))], _grid_payload(grid), api_name="/predict")
    for row in grid["data"][:2]:
        row[2:] = [False, False, False]
    with pytest.raises(AppError, match=r"utterance\(s\) 1, 2 have no modality marked present"):
        client.predict(ref, files, None, [handle_file(str(path))], _grid_payload(grid), api_name="/predict")
    junk = tmp_path / "audio.npy"
    junk.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(AppError, match=r"audio\.npy: (unreadable|not a plain)"):
        client.predict(ref, files, None, [handle_file(str(junk))], api_name="/load")
    with pytest.raises(AppError, match=r"org/unknown is not in the list of choices"):  # the selector refuses it
        client.predict("org/unknown", api_name="/checkpoint_info")
    # After all that, the server still answers.
    summary, *_ = client.predict(
        ref,
        space_app_module.SOURCE_EXAMPLE,
        "synthetic_test_000",
        None,
        client.predict(ref, space_app_module.SOURCE_EXAMPLE, "synthetic_test_000", None, api_name="/load")[0],
        api_name="/predict",
    )
    assert "6 utterances" in summary


def test_file_size_limit(space_app_module, tiny_settings, tmp_path):
    """Over the app's limit: its own message; the server's hard cap (2x) protects the upload route itself."""
    import dataclasses

    settings = dataclasses.replace(tiny_settings, max_file_bytes=4096)
    demo = space_app_module.build_demo(settings)
    demo.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **space_app_module.launch_options(settings)
    )
    try:
        client = Client(demo.local_url, verbose=False, download_files=False)
        path = tmp_path / "big.npz"
        np.savez(path, audio=np.zeros((40, 12), np.float32), text=np.zeros((40, 16), np.float32))
        assert 4096 < path.stat().st_size < 8192
        with pytest.raises(AppError, match=r"big\.npz: file is [0-9.]+ KiB, over the 4\.0 KiB limit per file"):
            client.predict(None, space_app_module.SOURCE_FILES, None, [handle_file(str(path))], api_name="/load")
    finally:
        demo.close()


def test_concurrent_requests_are_all_answered(served, space_app_module, tiny_checkpoint):
    _, client = served
    ref, source = LABEL, space_app_module.SOURCE_EXAMPLE
    grid, _ = client.predict(ref, source, "synthetic_test_002", None, api_name="/load")
    jobs = [
        client.submit(ref, source, "synthetic_test_002", None, _grid_payload(grid), api_name="/predict")
        for _ in range(6)
    ]
    results = [job.result(timeout=120) for job in jobs]
    assert all(result[4] == results[0][4] for result in results)  # identical answers, whatever the interleaving
