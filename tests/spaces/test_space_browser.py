"""A real headless Chromium drives the Space: pick an example, untick a modality, read the changed prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from comp_space.inference import load_checkpoint, predict
from comp_space.inputs import load_examples
from playwright import sync_api
from space_testing import BROWSER_ARGS, CHROMIUM, TINY_LABELS


pytestmark = pytest.mark.browser


def test_pick_example_toggle_modality_and_read_prediction(
    space_app_module, tiny_settings, tiny_checkpoint, tiny_examples, tmp_path
):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    demo = space_app_module.build_demo(tiny_settings)
    demo.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **space_app_module.launch_options(tiny_settings)
    )
    example, n = "synthetic_test_001", 20
    conv = load_examples(tiny_examples)[example]
    ckpt = load_checkpoint(str(tiny_checkpoint))
    all_on = np.ones((n, 3), dtype=bool)
    no_audio_1 = all_on.copy()
    no_audio_1[0, 0] = False
    expected_before = predict(ckpt, conv, all_on).masked.scores[0]
    expected_after = predict(ckpt, conv, no_audio_1).masked.scores[0]
    assert np.abs(expected_after - expected_before).max() > 1e-3  # the toggle must change something visible
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
                # Pick the 20-utterance example from the selector.
                page.locator("#example input").click()
                page.get_by_role("option", name=example).click()
                expect(page.locator("#conversation-info")).to_contain_text(example, timeout=30000)
                expect(page.locator("#summary")).to_contain_text(f"{n} utterances", timeout=30000)
                expect(cell("predictions", 0, 2)).to_have_text("A T V", timeout=30000)
                np.testing.assert_allclose(masked_probs(), expected_before, atol=6e-5)
                # Untick audio for utterance 1 in the present/missing grid and predict again.
                checkbox = cell("grid", 0, 2).locator("input[type=checkbox]")
                expect(checkbox).to_be_checked()
                checkbox.click()
                expect(checkbox).not_to_be_checked()
                page.locator("#predict-btn").click()
                expect(cell("predictions", 0, 2)).to_have_text("· T V", timeout=30000)
                expect(cell("predictions", 0, 9)).to_contain_text("(missing)")  # the audio head's column
                expect(page.locator("#summary")).to_contain_text("drops 1 of 60 available modality slots")
                expect(page.locator("#predictions")).to_contain_text("masked input vs all modalities) (synthetic)")
                expect(page.locator("#weights-masked")).to_contain_text("masked input (synthetic)")
                after = masked_probs()
                np.testing.assert_allclose(after, expected_after, atol=6e-5)
                assert np.abs(after - expected_before).max() > 1e-3
                shot = tmp_path / "space-after-toggle.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        demo.close()
