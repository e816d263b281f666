"""``pip install .`` is the serving install: a fresh venv made from a copy of this checkout has
no TensorFlow (nor lxml, python-docx, scipy), and its ``predict`` and web app answer with
probability, risk, Grad-CAM heat map and nodule outline from an export folder copied away from
the quick study that made it (``localised_run``: classifier + row 12's segmentation network).

pip needs a package index or its cache (after the first run the wheels come from
~/.cache/pip); ``THYROID_WHEELHOUSE=DIR`` installs from a folder of wheels instead (``pip
download . -d DIR`` makes one). Without either the test is skipped, saying so.
"""

import base64
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from bench.serve_slim import InstallError, clean_env, copy_source, make_venv, post_image

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESEARCH_ONLY = ("tensorflow", "lxml", "docx", "scipy", "sklearn", "matplotlib")
FRAMES = 3


@pytest.fixture(scope="module")
def serving_python(tmp_path_factory):
    work = tmp_path_factory.mktemp("serving_install")
    source = copy_source(REPO, work / "src")
    try:
        return make_venv(work / "venv", source, wheelhouse=os.environ.get("THYROID_WHEELHOUSE"))
    except InstallError as error:
        if error.offline:
            pytest.skip("pip install . needs a package index or THYROID_WHEELHOUSE: "
                        + error.output.strip().splitlines()[-1])
        raise AssertionError(f"{error}:\n{error.output[-3000:]}") from error


@pytest.fixture(scope="module")
def shipped(localised_run, tmp_path_factory):
    """The quick study's export folder and a few of its whole frames, copied away from it."""
    _, run_dir = localised_run
    away = tmp_path_factory.mktemp("shipped")
    export_dir = shutil.copytree(run_dir / "mobile", away / "export")
    ddti = run_dir / "synthetic" / "ddti"
    frames = [str(shutil.copy(ddti / name, away / name))
              for name in sorted(n for n in os.listdir(ddti) if n.endswith(".jpg"))[:FRAMES]]
    return str(export_dir), frames


def run(python, *args, cwd):
    return subprocess.run([python, *args], capture_output=True, text=True, cwd=cwd,
                          env=clean_env(), timeout=300)


def test_the_serving_install_has_no_research_stack(serving_python, tmp_path):
    for module in RESEARCH_ONLY:
        done = run(serving_python, "-c", f"import {module}", cwd=tmp_path)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, module
    done = run(serving_python, "-c", "import thyroid; print(thyroid.__file__)", cwd=tmp_path)
    assert done.stdout.startswith(os.path.dirname(os.path.dirname(serving_python)))
    for command in ("train", "export", "study", "checkpoints"):  # installed, and say so
        done = run(serving_python, "-m", f"thyroid.{command}", cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"{command}: error: needs the research install "
                                   "(pip install '.[study]'); missing tensorflow")


def _reference(export_dir, frames):
    """The answers of this (research) install, in process."""
    from thyroid.deploy.predict import predict_files
    from thyroid.deploy.segment import TFLiteSegmenter
    from thyroid.deploy.tflite_model import TFLiteModel
    model = TFLiteModel.load(export_dir)
    return {row["file"]: row for row in predict_files(
        model, frames, segmenter=TFLiteSegmenter.beside(export_dir))}


def _check_answer(answer, reference):
    assert abs(answer["probability"] - reference["probability"]) < 1e-5
    # The export carries the study's shift reference: scored without scikit-learn.
    assert reference["shift"] is not None and abs(answer["shift"] - reference["shift"]) < 1e-6
    assert answer["unusual"] == reference["unusual"]
    assert abs(answer["risk"] - reference["risk"]) < 1e-5 and 0 <= answer["risk"] <= 1
    assert answer["nodule_found"] and len(answer["outline"]) >= 3
    box, expected = np.array(answer["nodule_box"]), np.array(reference["nodule_box"])
    assert np.max(np.abs(box - expected)) <= 2  # interpreters may differ in the last bits


def test_predict_from_the_copied_export(serving_python, shipped, tmp_path):
    export_dir, frames = shipped
    cams = tmp_path / "cams"
    done = run(serving_python, "-m", "thyroid.predict", f"--model={export_dir}", "--json",
               f"--gradcam={cams}", *frames, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["segmentation"].endswith("segment.tflite")
    reference = _reference(export_dir, frames)
    for row in report["results"]:
        _check_answer(row, reference[row["file"]])
        with Image.open(row["gradcam"]) as heat:
            assert heat.format == "PNG"
    assert len(os.listdir(cams)) == FRAMES


def _serve(python, export_dir, cwd):
    """(process, port) of ``python -m thyroid.serve --port=0`` once it says where it listens."""
    process = subprocess.Popen([python, "-m", "thyroid.serve", f"--model={export_dir}",
                                "--port=0"], cwd=cwd, env=clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}") from None
            continue
        if line.startswith("Serving on http://127.0.0.1:"):
            return process, int(line.split("127.0.0.1:", 1)[1].split("/", 1)[0])
    process.kill()
    raise AssertionError("serve did not start within 120 s")


def test_web_app_from_the_copied_export(serving_python, shipped, tmp_path):
    import http.client
    export_dir, frames = shipped
    reference = _reference(export_dir, frames)
    process, port = _serve(serving_python, export_dir, tmp_path)
    try:
        status, answer = post_image(port, frames[0])
        assert status == 200, answer
        _check_answer(answer, reference[frames[0]])
        heat = Image.open(io.BytesIO(base64.b64decode(answer["gradcam"].split(",", 1)[1])))
        assert heat.format == "PNG" and answer["gradcam_layer"] == "conv_head"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/")
        page = connection.getresponse().read().decode()
        assert 'href="model_card"' in page
        connection.request("GET", "/model_card")
        card = connection.getresponse()
        assert card.status == 200 and card.getheader("Content-Type").startswith("text/plain")
        assert "## Figures" in card.read().decode()
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
