"""thyroid.serve / thyroid.deploy.webapp through Flask's test client."""

import base64
import io
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from deploy_fixtures import exported, full_frame, synthetic_scan, trained  # noqa: F401


def png(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(exported):  # noqa: F811
    from thyroid.deploy.webapp import create_app
    flask_app = create_app(exported["float"].output_dir)
    flask_app.testing = True
    return flask_app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def frame():
    return full_frame(synthetic_scan(1, np.random.RandomState(11)))


def upload(client, data, filename="scan.png", field="image"):
    return client.post("/api/predict", data={field: (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def test_page_is_a_phone_friendly_form(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'type="file"' in html and 'accept="image/*"' in html
    assert 'capture="environment"' in html
    assert 'name="viewport"' in html
    assert "not a diagnosis" in html
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_good_upload(client, app, frame):
    from thyroid.deploy.tflite_model import TFLiteModel
    response = upload(client, png(frame))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert 0.0 <= body["probability"] <= 1.0
    model = TFLiteModel.load(os.path.dirname(app.extensions["thyroid_model"].model_path))
    assert abs(body["probability"] - model.predict(frame).probability) < 1e-6
    assert body["label"] == int(body["probability"] >= body["threshold"])
    assert body["label_name"] in ("benign", "malignant")
    assert "not a diagnosis" in body["notice"]
    assert body["gradcam"].startswith("data:image/png;base64,")
    cam = Image.open(io.BytesIO(base64.b64decode(body["gradcam"].split(",", 1)[1])))
    assert cam.format == "PNG" and cam.size == (frame.shape[1], frame.shape[0])
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("case", ["no_file", "wrong_field", "empty", "text", "corrupt", "tiny"])
def test_bad_uploads_get_400_and_server_stays_up(client, frame, case):
    if case == "no_file":
        response = client.post("/api/predict", data={}, content_type="multipart/form-data")
    elif case == "wrong_field":
        response = upload(client, png(frame), field="file")
    elif case == "empty":
        response = upload(client, b"")
    elif case == "text":
        response = upload(client, b"hello, I am not an image", filename="notes.txt")
    elif case == "corrupt":
        response = upload(client, png(frame)[:300])
    else:
        response = upload(client, png(np.zeros((4, 4, 3), np.uint8)))
    assert response.status_code == 400
    message = response.get_json()["error"]
    expected = {"no_file": "No file uploaded", "wrong_field": "No file uploaded",
                "empty": "empty", "text": "not a usable image", "corrupt": "not a usable image",
                "tiny": "too small"}[case]
    assert expected in message
    again = upload(client, png(frame))
    assert again.status_code == 200 and 0.0 <= again.get_json()["probability"] <= 1.0


def test_too_large_gets_413(client, frame):
    big = os.urandom(10 * 1024 * 1024 + 1024)
    response = upload(client, big, filename="huge.png")
    assert response.status_code == 413
    assert "too large" in response.get_json()["error"] and "10 MB" in response.get_json()["error"]
    assert upload(client, png(frame)).status_code == 200


def test_nothing_written_to_disk(client, frame, tmp_path, monkeypatch):
    """Uploads over werkzeug's 500 KB spooling limit stay in memory too."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    model_dir = os.path.dirname(client.application.extensions["thyroid_model"].model_path)
    before = sorted(os.listdir(model_dir))
    noisy = np.random.RandomState(0).randint(0, 256, (700, 700, 3)).astype(np.uint8)
    data = png(noisy)
    assert len(data) > 600 * 1024
    assert upload(client, data).status_code == 200
    assert upload(client, b"garbage" * 100000, filename="x.png").status_code == 400
    assert list(scratch.iterdir()) == [] and list(work.iterdir()) == []
    assert sorted(os.listdir(model_dir)) == before


def test_health_and_unknown_routes(client):
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok" and health["gradcam"] is True
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/predict").status_code == 405


def test_server_binds_to_localhost_by_default(exported):  # noqa: F811
    import threading
    import urllib.request
    from thyroid import serve
    server = serve.make_server(exported["int8"].output_dir, port=0, gradcam=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as r:
            assert r.status == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_without_gradcam_train_dir(exported, tmp_path, frame):  # noqa: F811
    """A model folder copied without its training directory still serves probabilities."""
    import json
    import shutil
    from thyroid.deploy.webapp import create_app
    copy = tmp_path / "shipped"
    shutil.copytree(exported["int8"].output_dir, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["train_dir"] = str(tmp_path / "gone")
    (copy / "metadata.json").write_text(json.dumps(meta))
    client = create_app(str(copy)).test_client()
    body = upload(client, png(frame)).get_json()
    assert 0.0 <= body["probability"] <= 1.0
    assert body["gradcam"] is None and "Grad-CAM unavailable" in body["gradcam_note"]
