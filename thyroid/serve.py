"""Serves an exported model as a small web app (phone friendly).

    python -m thyroid.serve --model=OUT [--host=127.0.0.1] [--port=8000]

Open http://HOST:PORT/ , choose or take an ultrasound picture, and read P(malignant), the label
and a Grad-CAM overlay. JSON API: ``POST /api/predict`` (multipart field ``image``).
Binds to 127.0.0.1 unless ``--host`` says otherwise; uploads are limited to ``--max_upload_mb``
and processed in memory. A research tool, not a diagnosis.
"""

import sys

from absl import app, flags, logging

from thyroid.deploy.tflite_model import ModelError

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "Export folder (model.tflite + metadata.json) or model.tflite.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes it to the network.")
    flags.DEFINE_integer("port", 8000, "TCP port.")
    flags.DEFINE_float("max_upload_mb", 10.0, "Largest accepted upload, in MB (larger -> 413).")
    flags.DEFINE_bool("gradcam", True, "Draw Grad-CAM overlays (needs the train_dir recorded "
                      "in metadata.json).")
    flags.mark_flag_as_required("model")


def make_server(model, host="127.0.0.1", port=8000, gradcam=True, max_upload_mb=10.0):
    """A werkzeug server (threaded) for ``model``; ``serve_forever()`` / ``shutdown()``."""
    from werkzeug.serving import make_server as werkzeug_server
    from thyroid.deploy.webapp import create_app
    flask_app = create_app(model, gradcam=gradcam, max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    return werkzeug_server(host, port, flask_app, threaded=True)


def main(argv):
    del argv
    try:
        server = make_server(FLAGS.model, FLAGS.host, FLAGS.port, FLAGS.gradcam,
                             FLAGS.max_upload_mb)
    except ModelError as error:
        print(f"serve: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"serve: error: cannot listen on {FLAGS.host}:{FLAGS.port}: {error}", file=sys.stderr)
        return 2
    if FLAGS.host not in ("127.0.0.1", "localhost", "::1"):
        logging.warning("listening on %s: reachable from other machines; there is no "
                        "authentication", FLAGS.host)
    print(f"Serving on http://{FLAGS.host}:{server.server_port}/ (Ctrl-C to stop). "
          "Research tool, not a diagnosis.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
