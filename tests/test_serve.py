"""thyroid.serve / thyroid.deploy.webapp through Flask's test client."""

import base64
import functools
import io
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from bench.serve_load import declared_png  # one builder for the bench and the tests
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


def encoded(rgb, image_format):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=image_format)
    return buffer.getvalue()


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


def test_answers_are_strict_json(client, app, frame):
    import math
    import strict_json
    # An undefined number (a measurement from an absurd input) goes out as null, which a
    # browser's JSON.parse accepts; a bare NaN would break the page.
    assert strict_json.loads(app.json.dumps({"width_mm": math.nan, "ok": 1.5})) == {
        "width_mm": None, "ok": 1.5}
    answer = strict_json.loads(upload(client, png(frame)).get_data(as_text=True))
    assert 0.0 <= answer["probability"] <= 1.0 and "not a diagnosis" in answer["notice"]


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


@pytest.mark.parametrize("width, height", [(20000, 20000), (8000, 8000), (5000, 4000)])
def test_too_many_pixels_refused_from_the_header(client, frame, width, height):
    """Refused before decoding: a 400 Mpx header (Pillow's own guard fires first), the 64 Mpx
    that used to be accepted, and 20 Mpx, just over the default 16 Mpx."""
    data = declared_png(width, height)
    assert len(data) < 200
    response = upload(client, data)
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert message.startswith("scan.png: too many pixels") and "limit is 16 Mpx" in message
    assert upload(client, png(frame)).status_code == 200


def test_large_image_predicted_in_full_with_a_screen_sized_overlay(client, app, frame):
    """Over LARGE_IMAGE_PIXELS (decoded one at a time); the prediction uses the full image,
    the overlay is scaled to OVERLAY_MAX_SIDE."""
    from thyroid.deploy import webapp
    from thyroid.deploy.tflite_model import TFLiteModel
    big = np.asarray(Image.fromarray(frame).resize((2600, 1700), Image.BILINEAR))
    assert big.shape[0] * big.shape[1] > webapp.LARGE_IMAGE_PIXELS
    response = upload(client, png(big))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    model = TFLiteModel.load(os.path.dirname(app.extensions["thyroid_model"].model_path))
    assert abs(body["probability"] - model.predict(big).probability) < 1e-6
    assert (body["width"], body["height"]) == (2600, 1700)
    cam = Image.open(io.BytesIO(base64.b64decode(body["gradcam"].split(",", 1)[1])))
    assert cam.size == (webapp.OVERLAY_MAX_SIDE, round(1700 * webapp.OVERLAY_MAX_SIDE / 2600))


def test_pixel_limit_is_configurable(exported, frame):  # noqa: F811
    from thyroid.deploy.webapp import create_app
    client = create_app(exported["int8"].output_dir, gradcam=False,
                        max_pixels=frame.shape[0] * frame.shape[1] - 1).test_client()
    response = upload(client, png(frame))
    assert response.status_code == 400 and "too many pixels" in response.get_json()["error"]
    with pytest.raises(ValueError):
        create_app(exported["int8"].output_dir, gradcam=False, max_pixels=10 ** 9)


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF", "WEBP"])
def test_formats_the_page_does_not_promise_get_415(client, frame, image_format):
    """Judged from the bytes: the file name says .png."""
    response = upload(client, encoded(frame, image_format), filename="scan.png")
    assert response.status_code == 415
    assert f"unsupported format {image_format}" in response.get_json()["error"]


def test_jpeg_accepted(client, frame):
    response = upload(client, encoded(frame, "JPEG"), filename="scan.jpg")
    assert response.status_code == 200 and 0.0 <= response.get_json()["probability"] <= 1.0


def test_too_many_form_parts_has_its_own_message(client, frame):
    fields = {f"extra{i}": "x" for i in range(20)}
    fields["image"] = (io.BytesIO(png(frame)), "scan.png")
    response = client.post("/api/predict", data=fields, content_type="multipart/form-data")
    assert response.status_code == 413
    message = response.get_json()["error"]
    assert "Too many form parts" in message and "too large" not in message


def test_security_headers(client, frame):
    for response in (client.get("/"), upload(client, png(frame)), upload(client, b"junk"),
                     client.get("/api/nothing")):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


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


@pytest.fixture()
def running(exported):  # noqa: F811
    """Starts serve.make_server(**options) in a thread; yields (server, base url)."""
    import threading
    from thyroid.deploy import server as serve
    started = []

    def start(**options):
        server = serve.make_server(exported["int8"].output_dir, port=0, gradcam=False, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server, f"http://127.0.0.1:{server.server_address[1]}"
    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_server_binds_to_localhost_by_default(running):
    import urllib.request
    server, url = running()
    assert server.server_address[0] == "127.0.0.1"
    with urllib.request.urlopen(f"{url}/api/health", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Server"] == "thyroid"  # no software name or version
        assert r.headers["X-Frame-Options"] == "DENY"


TOKEN = "tok-123-0123456789"  # tokens are at least 16 characters


def test_server_with_token(running):
    import urllib.error
    import urllib.request
    _, url = running(auth_token=TOKEN)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/health", timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["X-Frame-Options"] == "DENY"
    request = urllib.request.Request(f"{url}/api/health",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


def get(url, headers):
    """-> (status, headers, parsed JSON body) of a GET, error answers included."""
    import json
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def test_server_reads_its_cookie_among_malformed_ones(running):
    """Browsers send every cookie of the host, whatever its port: another local app's
    malformed cookie must not hide ours (it used to make every request 401, a login loop)."""
    import http.client
    server, url = running(auth_token=TOKEN)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.request("GET", f"/?token={TOKEN}")
    login = connection.getresponse()
    assert login.status == 303
    assert login.getheader("Set-Cookie").startswith(f"thyroid_token={TOKEN};")
    connection.close()
    for others in ('prefs={"a":1}', "note=two words", "path=C:\\temp", 'x="open', "flag"):
        for cookie in (f"{others}; thyroid_token={TOKEN}", f"thyroid_token={TOKEN}; {others}"):
            status, _, body = get(f"{url}/api/health", {"Cookie": cookie})
            assert status == 200 and body["status"] == "ok", cookie
        status, _, _ = get(f"{url}/api/health", {"Cookie": f"{others}; thyroid_token=nope"})
        assert status == 401


def test_server_limits_wrong_tokens_per_address(running):
    """After TokenAuth's 10 failures from one address, 429 with Retry-After, even for the
    right token, until the window passes; requests without any token do not count."""
    _, url = running(auth_token=TOKEN)
    for _ in range(3):
        assert get(f"{url}/api/health", {})[0] == 401
    for attempt in range(10):
        status, _, body = get(f"{url}/api/health", {"Authorization": f"Bearer wrong{attempt}"})
        assert status == 401, (attempt, body)
    status, headers, body = get(f"{url}/api/health", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 429 and "Too many wrong tokens" in body["error"]
    assert 0 < int(headers["Retry-After"]) <= 60
    assert headers["X-Frame-Options"] == "DENY"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture()
def guarded(app):
    """(werkzeug client factory for a peer address, fake clock) for the real app behind
    create_wsgi_app with a small failure budget: 3 per 60 s, at most 2 addresses tracked."""
    from werkzeug.test import Client
    from thyroid.deploy.webapp import create_wsgi_app
    clock = FakeClock()
    wsgi = create_wsgi_app(app, 2, 4, TOKEN, max_failures=3, window_s=60, max_peers=2,
                           clock=clock)

    def client(address):
        """A client whose requests come from ``address`` (REMOTE_ADDR)."""
        return functools.partial(Client(wsgi, use_cookies=False).get,
                                 environ_overrides={"REMOTE_ADDR": address})
    return client, clock


def health(client, token=None, query=None):
    """GET /api/health with ``token`` as Bearer, or the login link with ``query``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client(f"/?token={query}" if query else "/api/health", headers=headers)


def test_wrong_tokens_from_one_address_get_429_until_the_window_passes(guarded):
    client, clock = guarded
    peer, other = client("192.0.2.7"), client("198.51.100.9")
    for _ in range(5):
        assert health(peer, TOKEN).status_code == 200  # successes do not count
        assert health(peer).status_code == 401  # nor requests without a token
    assert health(peer, "wrong").status_code == 401
    clock.now += 10
    assert health(peer, query="wrong").status_code == 401  # a wrong login link counts
    assert health(peer, "wrong").status_code == 401
    clock.now += 5
    for token in ("wrong", TOKEN, None):  # refused without looking at the token
        refused = health(peer, token)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "45"
        assert "Too many wrong tokens" in refused.get_json()["error"]
    assert health(peer, query=TOKEN).status_code == 429  # the login link too
    assert health(other, TOKEN).status_code == 200  # other addresses keep their budget
    clock.now += 44.5
    assert health(peer, TOKEN).headers["Retry-After"] == "1"
    clock.now += 0.5
    assert health(peer, TOKEN).status_code == 200
    assert health(peer, "wrong").status_code == 401  # a fresh window


def test_tracked_addresses_are_bounded(guarded):
    """max_peers=2: a third address drops the oldest, which starts afresh."""
    client, clock = guarded
    first, second, third = client("10.0.0.1"), client("10.0.0.2"), client("10.0.0.3")
    for _ in range(3):
        health(first, "wrong")
    assert health(first, TOKEN).status_code == 429
    clock.now += 1
    health(second, "wrong")
    clock.now += 1
    health(third, "wrong")
    assert health(first, TOKEN).status_code == 200
    for _ in range(2):
        assert health(second, "wrong").status_code == 401
    assert health(second, TOKEN).status_code == 429


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("token, reason", [
    ("tok-42", "at least 16 characters"), ("jeton-très-secret-0123", "character 9 is")])
def test_serve_refuses_an_unusable_token_at_start(exported, how, token, reason):  # noqa: F811
    import subprocess
    import sys
    env = dict(os.environ)
    args = [sys.executable, "-m", "thyroid.serve", f"--model={exported['int8'].output_dir}",
            "--port=0"]
    if how == "flag":
        env.pop("THYROID_AUTH_TOKEN", None)
        args.append(f"--auth_token={token}")
    else:
        env["THYROID_AUTH_TOKEN"] = token
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("serve: error")]
    assert len(errors) == 1 and reason in errors[0], result.stderr
    assert errors[0].startswith("serve: error: --auth_token=")
    assert ("THYROID_AUTH_TOKEN" in errors[0]) == (how == "env")
    assert token not in result.stderr + result.stdout  # the secret is not echoed


@pytest.mark.parametrize("token", ["x", "tok-123", "ümlaut-token-0123456"])
def test_make_server_refuses_an_unusable_token(exported, token):  # noqa: F811
    from thyroid.deploy import server as serve
    with pytest.raises(ValueError, match="token"):
        serve.make_server(exported["int8"].output_dir, port=0, gradcam=False, auth_token=token)


def test_stalled_connections_hold_no_worker(running):
    """Half-sent requests wait in the event loop, not in a thread: the server still answers."""
    import socket
    import urllib.request
    _, url = running(workers=1, queue=0)
    port = int(url.rsplit(":", 1)[1])
    stalled = []
    for _ in range(8):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        stalled.append(sock)
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=10) as r:
            assert r.status == 200
    finally:
        for sock in stalled:
            sock.close()


def test_body_far_over_the_limit_refused_by_the_server(running):
    """waitress refuses a body over limit + margin from its Content-Length, before reading it."""
    import http.client
    server, url = running(max_upload_mb=0.5)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(50 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.org"])
def test_exposed_bind_needs_a_token(exported, host):  # noqa: F811
    from thyroid.deploy import server as serve
    with pytest.raises(ValueError, match="auth_token"):
        serve.make_server(exported["int8"].output_dir, host=host, port=0, gradcam=False)


def test_serve_without_token_off_loopback_exits_2(exported):  # noqa: F811
    import subprocess
    import sys
    env = dict(os.environ)
    env.pop("THYROID_AUTH_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "thyroid.serve", f"--model={exported['int8'].output_dir}",
         "--host=0.0.0.0", "--port=0"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("serve: error")]
    assert len(errors) == 1 and "THYROID_AUTH_TOKEN" in errors[0], result.stderr


def test_copied_export_draws_its_own_gradcam(exported, tmp_path, frame):  # noqa: F811
    """A model folder copied away from its run (no training directory anywhere) still draws
    Grad-CAM: the map is an output of the exported model."""
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
    assert body["gradcam"].startswith("data:image/png;base64,")
    assert body["gradcam_layer"] == "conv_head" and "gradcam_note" not in body


def test_export_without_a_cam_output_says_why(exported, tmp_path, frame):  # noqa: F811
    """An export made before the model drew its own map (one output, the probability) still
    answers, and says how to get heat maps back."""
    import shutil
    import subprocess
    import sys
    from thyroid.compat import tf, tf1
    from thyroid.deploy.webapp import create_app
    copy = tmp_path / "old"
    shutil.copytree(exported["float"].output_dir, copy)
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, 64, 64, 3], name="image")
        output = tf.identity(tf.reduce_mean(inputs, axis=[1, 2, 3]) / 255.0, name="probability")
        with tf1.Session() as sess:
            converter = tf1.lite.TFLiteConverter.from_session(sess, [inputs], [output])
            (copy / "model.tflite").write_bytes(converter.convert())
    body = upload(create_app(str(copy)).test_client(), png(frame)).get_json()
    assert 0.0 <= body["probability"] <= 1.0 and body["gradcam"] is None
    assert "export it again" in body["gradcam_note"]
    done = subprocess.run([sys.executable, "-m", "thyroid.predict", f"--model={copy}",
                           f"--gradcam={tmp_path / 'cams'}", str(tmp_path)],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "no cam output" in done.stderr


def _reworded_export(exported, folder, kind, source):  # noqa: F811
    """A copy of the float export whose metadata.json records the label meaning ``kind`` and
    the threshold's ``source`` (None for both: an export written before these fields)."""
    import json
    import shutil
    from thyroid.datasets import label_meaning
    shutil.copytree(exported["float"].output_dir, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta.pop("label_meaning", None)
    meta.pop("threshold_source", None)
    if kind is not None:
        meta["label_meaning"] = label_meaning.MEANINGS[kind].to_json()
        meta["threshold_source"] = source
    (folder / "metadata.json").write_text(json.dumps(meta))
    return str(folder)


@pytest.mark.parametrize("kind", ["tirads", "malignancy", None])
def test_the_answer_is_worded_by_what_the_label_means(exported, tmp_path, frame, kind):  # noqa: F811
    """The page's headings and notes and the JSON answer say what the number is and where the
    threshold came from, as metadata.json records them; an older export gets neutral words."""
    from markupsafe import escape  # the page's own escaping (Jinja's)
    from thyroid.datasets import label_meaning
    from thyroid.deploy.answer_wording import UNRECORDED_THRESHOLD_SOURCE
    from thyroid.deploy.webapp import create_app
    source = "the study's operating point 'youden', the median over the 5 fold thresholds"
    model_dir = _reworded_export(exported, tmp_path / "export", kind, source)
    client = create_app(model_dir, gradcam=False).test_client()
    page = client.get("/").get_data(as_text=True)
    body = upload(client, png(frame)).get_json()
    meaning = label_meaning.MEANINGS[kind or "unstated"]
    shown_source = source if kind else UNRECORDED_THRESHOLD_SOURCE
    assert f'<dt id="score-title">{escape(meaning.score_title)}</dt>' in page
    assert f'<dt id="risk-title">{escape(meaning.risk_title)}</dt>' in page
    assert escape(meaning.detail) in page and escape(shown_source) in page
    for other in label_meaning.MEANINGS.values():
        if other is not meaning:
            assert escape(other.score_title) not in page, other.kind
    assert body["label_meaning"] == meaning.answer
    assert body["label_meaning_kind"] == meaning.kind
    assert body["threshold_source"] == shown_source
    if kind == "tirads":
        assert "malignancy" not in meaning.score_title + meaning.risk_title + meaning.answer
        assert "Probability of malignancy" not in page
