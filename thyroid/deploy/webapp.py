"""The Flask web app behind ``python -m thyroid.serve``: upload an image, get P(malignant).

``create_app(model_dir)`` returns the Flask app; ``create_wsgi_app`` wraps it in the security
headers, the optional token check and the concurrency limit (``thyroid.deploy.middleware``).
The views are module-level functions (``register_views`` adds them under the endpoint names
``index``, ``health``, ``predict``, ``model_card``); what they share (the model, whether it
draws Grad-CAM, the limits) is one ``AppState`` in ``app.extensions[STATE_KEY]``. Routes:

* ``GET /``: a single responsive page (file input with ``capture="environment"`` for phones);
* ``POST /api/predict``: multipart field ``image`` -> JSON ``probability`` (the model's
  P(malignant), which decides ``label`` at ``threshold``), ``risk`` (recalibrated), ``spread``
  (a fold ensemble's SD of risks, else null), ``label``, ``label_name``, ``threshold``,
  ``threshold_source`` (where the threshold came from), ``label_meaning`` (what the number is:
  e.g. the risk of a TIRADS 4a or above rating, from metadata.json; neutral wording for an
  export that does not say) and ``label_meaning_kind``, ``shift`` (how far the image lies
  from the development images, percent; null for an export without a shift reference),
  ``unusual`` (shift above 99), ``shift_warning`` (the page's plain warning on an unusual
  image, else null: the answer is still given) and ``shift_note``, ``gradcam`` (a PNG data URL of the map
  the exported model draws itself, its ``cam`` output, or null with ``gradcam_note`` saying
  why), ``notice``;
  with a segmentation network in the export (``segment.tflite``), ``outline`` / ``outlines`` (the
  nodule's polygon(s) in pixels of the upload), ``nodule_box``, ``measurements`` (pixels),
  ``nodule_found`` and ``outline_note`` (why there is none, or that sizes are in pixels);
  errors are JSON ``{"error": ...}``, one message per cause: 400 (no file, empty file, too many
  pixels, not decodable), 413 (file too large, too many form parts), 415 (a format other than
  JPEG or PNG), 500;
* ``GET /api/health``: ``{"status": "ok", ...}``;
* ``GET /model_card``: the export's MODEL_CARD.md as plain text (404 without one); the page
  links it.

Uploads are parsed into memory (never spooled to a temporary file), their format and pixel
count are checked from the header before any pixel is decoded, and nothing is kept after the
answer.
"""

import base64
import contextlib
import dataclasses
import io
import os
import threading

import numpy as np
from absl import logging
from flask import Flask, Response, current_app, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Request
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from thyroid.datasets.images import ImageError, decode_image_bytes
from thyroid.deploy import NOTICE, middleware
from thyroid.deploy.answer_wording import AnswerWording
from thyroid.deploy.segment import TFLiteSegmenter
from thyroid.deploy.predict import NO_CAM, shift_note, shift_warning
from thyroid.deploy.tflite_model import MAX_PIXELS, TFLiteModel
from thyroid.io_utils import json_text

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# A 16-Mpx image decodes to 48 MB of RGB and the scan-field search takes several float copies
# of it; 64 Mpx took about 3 GB per request (bench/serve_load.py measures the server).
DEFAULT_MAX_PIXELS = 16_000_000
# Above this, requests decode one at a time (AppState.large_image_slot).
LARGE_IMAGE_PIXELS = 4_000_000
# Grad-CAM overlays are drawn at most this wide or high: they are looked at on a screen, and a
# full-size overlay of a 16-Mpx image took tens of seconds and hundreds of MB to encode.
OVERLAY_MAX_SIDE = 1024
# The formats the page promises, as Pillow names them after reading the header.
ACCEPTED_FORMATS = ("JPEG", "PNG")
# One file field is all the form needs; a few spare parts for clients that add a field.
MAX_FORM_PARTS = 8
UPLOAD_FIELD = "image"
NO_SEGMENTATION = "no outline: this export has no segmentation network (export --segment_dir)"


class UploadError(Exception):
    """An upload refused before decoding: ``message`` for the client, HTTP ``status``."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def check_header(data, max_pixels):
    """Pixel count read from the header only (Pillow opens lazily), or None when the header is
    broken; raises UploadError for a format other than JPEG or PNG or too many pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as error:
        # Pillow's own guard (twice Image.MAX_IMAGE_PIXELS) fired while reading the header.
        raise UploadError(f"too many pixels: the header declares more than "
                          f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx, the limit is "
                          f"{max_pixels / 1e6:g} Mpx", 400) from error
    except UnidentifiedImageError as error:
        raise UploadError("not a usable image: unrecognised format: send a JPEG or PNG image",
                          400) from error
    except (OSError, ValueError, SyntaxError):
        return None  # a broken header: decoding reports it as not a usable image
    if image_format not in ACCEPTED_FORMATS:
        raise UploadError(f"unsupported format {image_format}: send a JPEG or PNG image", 415)
    if width * height > max_pixels:  # the web's own limit (--max_megapixels), from the header
        raise UploadError(f"too many pixels: {width}x{height} is {width * height / 1e6:.1f} "
                          f"Mpx, the limit is {max_pixels / 1e6:g} Mpx", 400)
    return width * height


def display_copy(rgb, box, max_side=OVERLAY_MAX_SIDE):
    """``rgb`` and its crop ``box`` scaled so that the longer side is at most ``max_side``
    (for display only: the prediction uses the full image)."""
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return rgb, box
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    top, bottom, left, right = (round(v * scale) for v in box)
    return small, (top, max(bottom, top + 1), left, max(right, left + 1))


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


@dataclasses.dataclass
class AppState:
    """What the views share, kept in ``app.extensions[STATE_KEY]``."""
    model: TFLiteModel
    draws_gradcam: bool  # whether answers carry the model's own Grad-CAM overlay
    gradcam_note: str | None  # why answers carry no overlay; None when they do
    max_upload_bytes: int
    max_pixels: int
    segmenter: TFLiteSegmenter | None = None  # segment.tflite beside the model, if exported
    # Large images take several hundred MB each while decoded and cropped: one at a time keeps
    # the server's memory bounded whatever the mix of requests.
    large_image_slot: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def limit_mb(self):
        return self.max_upload_bytes / (1024 * 1024)


STATE_KEY = "thyroid"


def _state():
    return current_app.extensions[STATE_KEY]


def _gradcam_for(model, gradcam):
    """-> (draws, note or None): the note says why answers carry no overlay."""
    if not gradcam:
        return False, "Grad-CAM disabled"
    if not model.has_cam:
        note = f"Grad-CAM unavailable: this export {NO_CAM}"
        logging.warning("%s", note)
        return False, note
    return True, None


def create_app(model_dir, gradcam=True, max_upload_bytes=MAX_UPLOAD_BYTES,
               max_pixels=DEFAULT_MAX_PIXELS):
    """The app for the export in ``model_dir`` (or its model.tflite).

    ``gradcam``: True to draw the overlay of the map the model draws (an export without a
    ``cam`` output answers why there is none); False never to.
    ``max_pixels``: largest width x height accepted (at most the decoder's own MAX_PIXELS).
    """
    if not 0 < max_pixels <= MAX_PIXELS:
        raise ValueError(f"max_pixels must be in (0, {MAX_PIXELS}], got {max_pixels}")
    model = TFLiteModel.load(model_dir)
    draws_gradcam, gradcam_note = _gradcam_for(model, gradcam)

    package_dir = os.path.dirname(os.path.abspath(__file__))
    app = Flask(__name__, template_folder=os.path.join(package_dir, "templates"),
                static_folder=os.path.join(package_dir, "static"))
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = max_upload_bytes
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.json = StrictJSONProvider(app)
    app.extensions[STATE_KEY] = AppState(model, draws_gradcam, gradcam_note, max_upload_bytes,
                                         max_pixels, TFLiteSegmenter.beside(model.model_dir))
    # Kept under its own name too: callers (and tests) read the loaded model from here.
    app.extensions["thyroid_model"] = model
    register_views(app)
    return app


class StrictJSONProvider(DefaultJSONProvider):
    """Answers in strict JSON (``io_utils.json_text``: NaN and inf as null, which a browser's
    ``JSON.parse`` accepts and a bare NaN it does not), keys in the order built."""

    sort_keys = False

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return json_text(obj, **kwargs)


def register_views(app):
    """The routes, error handlers and header hook, under the endpoint names they always had."""
    app.after_request(add_headers)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)
    app.add_url_rule("/", "index", index, methods=["GET"])
    app.add_url_rule("/api/health", "health", health, methods=["GET"])
    app.add_url_rule("/api/predict", "predict", predict, methods=["POST"])
    app.add_url_rule("/model_card", "model_card", model_card, methods=["GET"])


def add_headers(response):
    # Applied here too so that the bare Flask app (tests, other servers) is as strict.
    for name, value in middleware.SECURITY_HEADERS:
        response.headers[name] = value
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def too_large(error):
    del error
    # werkzeug raises the same error for too many parts; a body within the byte limit can only
    # have failed on the parts (a text field over the limit would exceed it).
    state = _state()
    length = request.content_length
    if length is not None and length <= state.max_upload_bytes:
        return _error(f"Too many form parts: send one file in the field '{UPLOAD_FIELD}' "
                      f"(at most {MAX_FORM_PARTS} parts).", 413)
    return _error(f"The file is too large: the limit is {state.limit_mb:g} MB.", 413)


def http_error(error):
    if request.path.startswith("/api/"):
        return _error(error.description or error.name, error.code or 500)
    return error


def unexpected(error):
    if isinstance(error, HTTPException):
        return http_error(error)
    logging.exception("unexpected error answering %s", request.path)
    return _error("Internal error while processing the image; please try another one.", 500)


def _wording(model):
    return AnswerWording.from_metadata(model.metadata, model.threshold)


def index():
    state = _state()
    return render_template("index.html", notice=NOTICE, model=state.model.metadata.get("model"),
                           quantize=state.model.metadata.get("quantize"),
                           limit_mb=state.limit_mb, max_bytes=state.max_upload_bytes,
                           field=UPLOAD_FIELD, threshold=state.model.threshold,
                           risk_note=risk_note(state.model), wording=_wording(state.model),
                           has_card=state.model.card_path is not None)


def model_card():
    """The export's MODEL_CARD.md, as plain text: the browser shows it and renders nothing."""
    path = _state().model.card_path
    if path is None:
        return _error("This export has no model card (MODEL_CARD.md).", 404)
    with open(path, "rb") as card:
        return Response(card.read(), content_type="text/plain; charset=utf-8")


def risk_note(model):
    """What the page says the risk is."""
    maps = model.maps
    if all(m.is_identity for m in maps):
        return "This model carries no recalibration map: the risk equals the model score."
    folds = f" the mean over {len(maps)} fold models," if len(maps) > 1 else ""
    return ("Risk: the model score through a logistic map fitted on inner-validation data"
            f"{folds} never on test data.")


def health():
    state = _state()
    return jsonify({"status": "ok", "model": state.model.metadata.get("model"),
                    "quantize": state.model.metadata.get("quantize"),
                    "threshold": state.model.threshold,
                    "recalibrated": not all(m.is_identity for m in state.model.maps),
                    "folds": len(state.model.maps),
                    "gradcam": state.draws_gradcam,
                    "model_card": state.model.card_path is not None,
                    "shift_reference": state.model.shift_reference is not None,
                    "segmentation": state.segmenter is not None})


def analyse(state, rgb):
    """P(malignant) for a decoded image, with its Grad-CAM overlay (or the note why not)."""
    prepared = state.model.prepare(rgb)
    if state.draws_gradcam:
        from thyroid.deploy.overlay import overlay, png_bytes
        prediction, heat = state.model.explain_prepared(prepared)
        shown, box = display_copy(rgb, prepared.box)
        drawn = png_bytes(overlay(shown, heat, box))
        result = dict(prediction.as_dict(), gradcam=_data_url(drawn),
                      gradcam_layer=(state.model.metadata.get("cam") or {}).get("layer"))
    else:
        prediction = state.model.predict_prepared(prepared)
        result = dict(prediction.as_dict(), gradcam=None, gradcam_note=state.gradcam_note)
    # An unusual image still gets its answer; the warning goes beside it.
    result.update(shift_warning=shift_warning(prediction), shift_note=shift_note(prediction))
    if state.segmenter is not None:
        same_crop = state.segmenter.crop == ("scan" if state.model.crop == "roi" else state.model.crop)
        result.update(state.segmenter.locate(rgb, prepared.box if same_crop else None))
    else:
        result.update(outline=None, outlines=[], outline_note=NO_SEGMENTATION)
    return result


def predict():
    state = _state()
    upload = request.files.get(UPLOAD_FIELD)
    if upload is None:
        return _error(f"No file uploaded: send an image in the form field '{UPLOAD_FIELD}'.", 400)
    data = upload.read()
    name = upload.filename or "upload"
    if not data:
        return _error(f"{name}: the file is empty.", 400)
    try:
        pixels = check_header(data, state.max_pixels)
        large = pixels is not None and pixels > LARGE_IMAGE_PIXELS
        with state.large_image_slot if large else contextlib.nullcontext():
            rgb = decode_image_bytes(data)
            del data
            result = analyse(state, rgb)
    except UploadError as error:
        return _error(f"{name}: {error}", error.status)
    except ImageError as error:
        return _error(f"{name}: not a usable image: {error}", 400)
    result.update({"file": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                   "model": state.model.metadata.get("model"),
                   "quantize": state.model.metadata.get("quantize"), "notice": NOTICE,
                   **_wording(state.model).json_fields()})
    return jsonify(result)


def create_wsgi_app(flask_app, workers, queue, auth_token=None, **token_options):
    """``flask_app`` behind the concurrency limit, the token check (when ``auth_token``) and
    the security headers, outermost, so that every answer carries them.

    ``token_options``: TokenAuth's limits on wrong tokens (``max_failures``, ``window_s``,
    ``max_peers``, ``clock``); its defaults otherwise."""
    wrapped = middleware.ConcurrencyLimit(flask_app, workers, queue)
    if auth_token:
        wrapped = middleware.TokenAuth(wrapped, auth_token, **token_options)
    return middleware.SecurityHeaders(wrapped)
