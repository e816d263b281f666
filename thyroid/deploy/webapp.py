"""The Flask web app behind ``python -m thyroid.serve``: upload an image, get P(malignant).

``create_app(model_dir)`` returns the app. Routes:

* ``GET /``: a single responsive page (file input with ``capture="environment"`` for phones);
* ``POST /api/predict``: multipart field ``image`` -> JSON ``probability``, ``label``,
  ``label_name``, ``threshold``, ``gradcam`` (a PNG data URL, or null), ``notice``;
  errors are JSON ``{"error": ...}`` with 400 (no file, not an image), 413 (too large) or 500;
* ``GET /api/health``: ``{"status": "ok", ...}``.

Uploads are parsed into memory (never spooled to a temporary file) and nothing is kept after
the answer.
"""

import base64
import io
import os

from absl import logging
from flask import Flask, jsonify, render_template, request
from flask.wrappers import Request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from thyroid.datasets.images import ImageError, decode_image_bytes
from thyroid.deploy import NOTICE
from thyroid.deploy.tflite_model import TFLiteModel

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
UPLOAD_FIELD = "image"


class InMemoryRequest(Request):
    """Keeps uploaded files in memory: werkzeug would spool files over 500 KB to disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return io.BytesIO()


def _error(message, status):
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


def _data_url(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def create_app(model_dir, gradcam=True, max_upload_bytes=MAX_UPLOAD_BYTES):
    """The app for the export in ``model_dir`` (or its model.tflite).

    ``gradcam``: True to draw Grad-CAM overlays when metadata.json's train_dir is available
    (if it is not, answers say why and carry no overlay); False never to.
    """
    model = TFLiteModel.load(model_dir)
    gradcam_model, gradcam_note = None, None
    if gradcam:
        from thyroid.deploy.predict import load_gradcam
        from thyroid.deploy.tflite_model import ModelError
        try:
            gradcam_model = load_gradcam(model)
        except ModelError as error:
            gradcam_note = f"Grad-CAM unavailable: {error}"
            logging.warning("%s", gradcam_note)
    else:
        gradcam_note = "Grad-CAM disabled"

    package_dir = os.path.dirname(os.path.abspath(__file__))
    app = Flask(__name__, template_folder=os.path.join(package_dir, "templates"),
                static_folder=os.path.join(package_dir, "static"))
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = max_upload_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["thyroid_model"] = model
    app.extensions["thyroid_gradcam"] = gradcam_model
    limit_mb = max_upload_bytes / (1024 * 1024)

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
            "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'")
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error):
        del error
        return _error(f"The file is too large: the limit is {limit_mb:g} MB.", 413)

    @app.errorhandler(HTTPException)
    def http_error(error):
        if request.path.startswith("/api/"):
            return _error(error.description or error.name, error.code or 500)
        return error

    @app.errorhandler(Exception)
    def unexpected(error):
        if isinstance(error, HTTPException):
            return http_error(error)
        logging.exception("unexpected error answering %s", request.path)
        return _error("Internal error while processing the image; please try another one.", 500)

    @app.get("/")
    def index():
        return render_template("index.html", notice=NOTICE, model=model.metadata.get("model"),
                               quantize=model.metadata.get("quantize"), limit_mb=limit_mb,
                               max_bytes=max_upload_bytes, field=UPLOAD_FIELD,
                               threshold=model.threshold)

    @app.get("/api/health")
    def health():
        return jsonify({"status": "ok", "model": model.metadata.get("model"),
                        "quantize": model.metadata.get("quantize"),
                        "threshold": model.threshold, "gradcam": gradcam_model is not None})

    @app.post("/api/predict")
    def predict():
        upload = request.files.get(UPLOAD_FIELD)
        if upload is None:
            return _error(f"No file uploaded: send an image in the form field '{UPLOAD_FIELD}'.", 400)
        data = upload.read()
        name = upload.filename or "upload"
        if not data:
            return _error(f"{name}: the file is empty.", 400)
        try:
            rgb = decode_image_bytes(data)
        except ImageError as error:
            return _error(f"{name}: not a usable image: {error}", 400)
        finally:
            del data
        prepared = model.prepare(rgb)
        result = model.predict_prepared(prepared).as_dict()
        result["gradcam"] = None
        if gradcam_model is not None:
            from thyroid.deploy.gradcam import overlay, png_bytes
            heat, _ = gradcam_model.compute(prepared.net_input)
            result["gradcam"] = _data_url(png_bytes(overlay(rgb, heat, prepared.box)))
            result["gradcam_layer"] = gradcam_model.layer_name
        else:
            result["gradcam_note"] = gradcam_note
        result.update({"file": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                       "model": model.metadata.get("model"),
                       "quantize": model.metadata.get("quantize"), "notice": NOTICE})
        return jsonify(result)

    return app
