"""Serves an exported model as a small web app (phone friendly).

    python -m thyroid.serve --model=OUT [--host=127.0.0.1] [--port=8000]

Open http://HOST:PORT/ , choose or take an ultrasound picture, and read P(malignant), the label
and a Grad-CAM overlay. JSON API: ``POST /api/predict`` (multipart field ``image``).
Binds to 127.0.0.1 unless ``--host`` says otherwise; uploads are limited to ``--max_upload_mb``
and processed in memory. A research tool, not a diagnosis.
"""

from absl import flags, logging

from thyroid import cli
from thyroid.deploy.tflite_model import ModelError

COMMAND = "serve"
MAX_UPLOAD_MB = 1024.0


def define_flags(fv):
    flags.DEFINE_string("model", None, "Export folder (model.tflite + metadata.json) or model.tflite.",
                        flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes it to the network.",
                        flag_values=fv)
    flags.DEFINE_integer("port", 8000, "TCP port (0: any free port).", lower_bound=0,
                         upper_bound=65535, flag_values=fv)
    flags.DEFINE_float("max_upload_mb", 10.0, "Largest accepted upload, in MB (larger -> 413).",
                       lower_bound=0.001, upper_bound=MAX_UPLOAD_MB, flag_values=fv)
    flags.DEFINE_bool("gradcam", True, "Draw Grad-CAM overlays (needs the train_dir recorded "
                      "in metadata.json).", flag_values=fv)
    flags.mark_flag_as_required("model", flag_values=fv)


def make_server(model, host="127.0.0.1", port=8000, gradcam=True, max_upload_mb=10.0):
    """A werkzeug server (threaded) for ``model``; ``serve_forever()`` / ``shutdown()``."""
    from werkzeug.serving import make_server as werkzeug_server
    from thyroid.deploy.webapp import create_app
    flask_app = create_app(model, gradcam=gradcam, max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    return werkzeug_server(host, port, flask_app, threaded=True)


def run(fv, args):
    del args
    try:
        server = make_server(fv.model, fv.host, fv.port, fv.gradcam, fv.max_upload_mb)
    except ModelError as error:
        cli.print_error(COMMAND, error)
        return cli.USAGE_STATUS
    except OSError as error:
        cli.print_error(COMMAND, f"cannot listen on {fv.host}:{fv.port}: {error}")
        return cli.USAGE_STATUS
    if fv.host not in ("127.0.0.1", "localhost", "::1"):
        logging.warning("listening on %s: reachable from other machines; there is no "
                        "authentication", fv.host)
    print(f"Serving on http://{fv.host}:{server.server_port}/ (Ctrl-C to stop). "
          "Research tool, not a diagnosis.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
