"""End to end in headless Chromium: python -m thyroid.serve, upload through the page, read the
answer. Skips when chromium / chromedriver / selenium are absent
(Debian: apt-get install -y chromium chromium-driver).

THYROID_SCREENSHOT=docs/screenshot.png saves the screenshot there (else in a temp folder).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

import chromium
from deploy_fixtures import segmented, trained  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_UNAVAILABLE = chromium.missing()
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(segmented):  # noqa: F811
    """The web app on the export that holds the classifier and the segmentation network."""
    yield from serving(segmented["export_dir"])


@pytest.fixture()
def shift_server(quick_study):
    """The web app on the shared quick study's export, which carries a shift reference."""
    yield from serving(quick_study[1] / "mobile")


def serving(export_dir):
    """Runs python -m thyroid.serve on ``export_dir`` (loopback), yields its URL, stops it."""
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "thyroid.serve", f"--model={export_dir}",
         f"--port={port}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail("server exited: " + log.read().decode(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(url + "api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not start within 120 s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture()
def browser(tmp_path):
    with chromium.headless(tmp_path / "chromium-profile", 1000) as driver:
        yield driver


def test_upload_in_a_real_browser(server, browser, segmented, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    from thyroid.deploy.predict import NO_SHIFT_NOTE, predict_files
    from thyroid.deploy.segment import TFLiteSegmenter
    from thyroid.deploy.tflite_model import TFLiteModel

    model = TFLiteModel.load(segmented["export_dir"])
    segmenter = TFLiteSegmenter.beside(segmented["export_dir"])
    answers = predict_files(model, segmented["frames"], segmenter=segmenter)
    expected = next(a for a in answers if a.get("nodule_found"))  # a whole synthetic frame
    image_path = expected["file"]

    browser.get(server)
    assert "not a diagnosis" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    file_input = browser.find_element(By.ID, "image-input")
    assert file_input.get_attribute("capture") == "environment"
    file_input.send_keys(image_path)
    WebDriverWait(browser, 30).until(ec.element_to_be_clickable((By.ID, "submit"))).click()
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "probability").text.strip()
        or "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""))
    status = browser.find_element(By.ID, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text

    shown = float(browser.find_element(By.ID, "probability").text)
    exact = float(browser.find_element(By.ID, "probability").get_attribute("data-probability"))
    assert 0.0 <= shown <= 1.0
    assert abs(shown - expected["probability"]) <= 5e-5 + 1e-9
    assert abs(exact - expected["probability"]) <= 1e-6
    assert browser.find_element(By.ID, "label").text == expected["label_name"]
    # The answer is worded by what metadata.json says the number is and where its threshold
    # came from (this export's data names no source: neutral words, the run's own threshold).
    from thyroid.deploy.answer_wording import AnswerWording
    wording = AnswerWording.from_metadata(model.metadata, model.threshold)
    assert browser.find_element(By.ID, "score-title").text == wording.meaning.score_title
    assert browser.find_element(By.ID, "risk-title").text == wording.meaning.risk_title
    assert browser.find_element(By.ID, "label-meaning").text == wording.meaning.detail
    assert wording.threshold_source in browser.find_element(By.ID, "threshold-source").text
    assert wording.threshold_source.startswith("the training run's threshold setting")
    # This export carries no shift reference: no warning, and the page says nothing measures it.
    assert not browser.find_element(By.ID, "shift-warning").is_displayed()
    assert browser.find_element(By.ID, "shift-note").text == NO_SHIFT_NOTE
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "var i = document.getElementById('gradcam');"
        "return i.complete && i.naturalWidth > 0 && !i.closest('figure').hidden;"))
    # The predicted outline is drawn over the uploaded image, beside the Grad-CAM view.
    drawn = WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "var f = document.getElementById('outline-figure');"
        "var p = f.querySelectorAll('polygon'); var i = f.querySelector('image');"
        "if (f.hidden || !p.length || !i || i.getBBox().width <= 0) return null;"
        "return {points: p[0].getAttribute('points'), count: p.length,"
        "        shown: f.getBoundingClientRect().width, box: p[0].getBBox().width,"
        "        caption: document.getElementById('outline-caption').textContent};"))
    points = [tuple(float(v) for v in pair.split(",")) for pair in drawn["points"].split()]
    assert [list(p) for p in points] == expected["outline"]
    assert drawn["count"] == len(expected["outlines"]) and drawn["box"] > 0
    assert drawn["shown"] > 100 and "nodule outline" in drawn["caption"]

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(430, min(max(int(height) + 140, 800), 2400))
    target = os.environ.get("THYROID_SCREENSHOT")
    if target:
        target = os.path.join(ROOT, target) if not os.path.isabs(target) else target
        os.makedirs(os.path.dirname(target), exist_ok=True)
    else:
        target = str(tmp_path / "screenshot.png")
    assert browser.save_screenshot(target)
    assert os.path.getsize(target) > 1000

    # The browser's limit check stops an oversized file before any upload.
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.write(b"\0" * (10 * 1024 * 1024 + 1))
    browser.execute_script("document.getElementById('image-input').value = '';")
    browser.find_element(By.ID, "image-input").send_keys(str(big))
    WebDriverWait(browser, 10).until(lambda d: "too large" in d.find_element(By.ID, "status").text)
    # The server process is still up.
    with urllib.request.urlopen(server + "api/health", timeout=10) as response:
        assert response.status == 200


def test_the_page_links_the_model_card(server, browser, segmented):  # noqa: F811
    """The footer's link opens the export's MODEL_CARD.md as plain text (nothing rendered)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(server)
    link = browser.find_element(By.ID, "model-card-link")
    assert link.text == "Model card"
    link.click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/model_card"))
    assert browser.execute_script("return document.contentType") == "text/plain"
    text = browser.find_element(By.TAG_NAME, "body").text
    with open(os.path.join(segmented["export_dir"], "MODEL_CARD.md"), encoding="utf-8") as f:
        card = f.read()
    assert text.strip() == card.strip()
    assert text.startswith("# Model card: efficientnet_lite0") and "## Limitations" in text


def _upload(browser, path):
    """Uploads ``path`` through the page and waits for the answer (or an error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    browser.execute_script("document.getElementById('image-input').value = '';")
    browser.find_element(By.ID, "image-input").send_keys(str(path))
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "status").text.startswith("Ready"))
    WebDriverWait(browser, 30).until(ec.element_to_be_clickable((By.ID, "submit"))).click()
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "status").text == "Done."
        or "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""))
    status = browser.find_element(By.ID, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text


def test_an_unusual_image_is_answered_with_a_warning(shift_server, browser, quick_study,
                                                     tmp_path):
    """On an export with a shift reference, an image far from the development images (a flat
    grey frame) gets its answer and a plain warning; a development frame gets no warning."""
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By
    from thyroid.deploy.predict import predict_files, shift_note, shift_warning
    from thyroid.deploy.tflite_model import TFLiteModel
    run_dir = quick_study[1]
    model = TFLiteModel.load(str(run_dir / "mobile"))
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((180, 280, 3), 200, np.uint8)).save(flat)
    frames = sorted(str(p) for p in (run_dir / "synthetic" / "ddti").glob("*.jpg"))[:6]
    answers = predict_files(model, frames + [str(flat)])
    usual = next(a for a in answers[:-1] if not a["unusual"])
    unusual = answers[-1]
    assert unusual["unusual"] and unusual["shift"] > 99.0
    browser.get(shift_server)
    for expected in (unusual, usual, unusual):  # the warning comes and goes with the image
        _upload(browser, expected["file"])
        shown = float(browser.find_element(By.ID, "probability").get_attribute(
            "data-probability"))
        assert abs(shown - expected["probability"]) <= 1e-6  # the answer is still given
        assert browser.find_element(By.ID, "label").text == expected["label_name"]
        warning = browser.find_element(By.ID, "shift-warning")
        note = browser.find_element(By.ID, "shift-note")
        assert float(note.get_attribute("data-shift")) == pytest.approx(expected["shift"])
        prediction = model.decide(expected["probability"])
        prediction.shift, prediction.unusual = expected["shift"], expected["unusual"]
        assert note.text == shift_note(prediction)
        if expected["unusual"]:
            assert warning.is_displayed() and warning.text == shift_warning(prediction)
            assert "Unusual image" in warning.text and "does not mean wrong" in warning.text
        else:
            assert not warning.is_displayed() and warning.text == ""
