"""Serves an exported model as a small web app (phone friendly).

    python -m thyroid.serve --model=OUT [--host=127.0.0.1] [--port=8000]
        [--auth_token=... | THYROID_AUTH_TOKEN=...] [--workers=2] [--queue=16]

Open http://HOST:PORT/ , choose or take an ultrasound picture, and read P(malignant), the label
and a Grad-CAM overlay (drawn by the exported model itself: the export folder is all the
server needs). The page links the export's model card (``/model_card``).
JSON API: ``POST /api/predict`` (multipart field ``image``).
Runs under waitress (bounded threads, timeouts for idle connections). Binds to 127.0.0.1 unless
``--host`` says otherwise; any other address needs a token, which clients send as
``Authorization: Bearer <token>`` and a browser gets by opening ``/?token=<token>`` once.
A token is at least 16 characters of cookie-safe ASCII (``middleware.check_token``); wrong
tokens are limited per client address (429 after 10 a minute; behind a reverse proxy all
clients share the proxy's address and so one budget).
Uploads are limited in bytes, pixels and formats (JPEG, PNG) and processed in memory.
A research tool, not a diagnosis.
"""

import os

from absl import flags, logging

from thyroid import cli
from thyroid.deploy.middleware import MIN_TOKEN_LENGTH, check_token
from thyroid.deploy.server import TOKEN_ENV, make_server
from thyroid.deploy.tflite_model import MAX_PIXELS, ModelError

COMMAND = "serve"


def define_flags(fv):
    flags.DEFINE_string("model", None, "Export folder (model.tflite + metadata.json) or model.tflite.",
                        flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind; anything but loopback exposes it "
                        "to the network and needs --auth_token.", flag_values=fv)
    flags.DEFINE_integer("port", 8000, "TCP port (0: any free port).", lower_bound=0,
                         upper_bound=65535, flag_values=fv)
    flags.DEFINE_float("max_upload_mb", 10.0, "Largest accepted upload, in MB (larger -> 413).",
                       lower_bound=0.01, upper_bound=100.0, flag_values=fv)
    flags.DEFINE_float("max_megapixels", 16.0, "Largest accepted image, in millions of pixels, "
                       "read from the header before decoding.", lower_bound=0.01,
                       upper_bound=MAX_PIXELS / 1e6, flag_values=fv)
    flags.DEFINE_string("auth_token", None, f"Token every request must carry (default: the "
                        f"{TOKEN_ENV} environment variable); required off loopback. At least "
                        f"{MIN_TOKEN_LENGTH} characters of printable ASCII without spaces, "
                        "quotes, ',', ';' or '\\'.", flag_values=fv)
    flags.DEFINE_integer("workers", 2, "Predictions computed at once.", lower_bound=1,
                         upper_bound=64, flag_values=fv)
    flags.DEFINE_integer("queue", 16, "Predictions that may wait for a worker; more -> 503.",
                         lower_bound=0, upper_bound=1024, flag_values=fv)
    flags.DEFINE_integer("channel_timeout", 30, "Seconds an idle or stalled connection is kept.",
                         lower_bound=1, upper_bound=3600, flag_values=fv)
    flags.DEFINE_integer("connection_limit", 32, "Open connections at most (each may buffer "
                         "one upload in memory).", lower_bound=1, upper_bound=10000,
                         flag_values=fv)
    flags.DEFINE_bool("gradcam", True, "Draw Grad-CAM overlays (the map the exported model "
                      "draws itself, its cam output).", flag_values=fv)
    flags.mark_flag_as_required("model", flag_values=fv)


def auth_token(fv):
    """The token from --auth_token, else from the environment, else None (an empty value counts
    as none). Raises cli.UsageError, without the secret, when the token is unusable."""
    token = fv.auth_token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        try:
            check_token(token)
        except ValueError as error:
            # The value is a secret: the message says where it came from, not what it is.
            source = "<hidden>" if fv.auth_token else f"${TOKEN_ENV}"
            raise cli.UsageError("auth_token", source, str(error)) from None
    return token


def run(fv, args):
    del args
    token = auth_token(fv)
    try:
        server = make_server(fv.model, fv.host, fv.port, fv.gradcam, fv.max_upload_mb,
                             fv.max_megapixels, token, fv.workers, fv.queue, fv.channel_timeout,
                             fv.connection_limit)
    except (ModelError, ValueError) as error:
        cli.print_error(COMMAND, error)
        return cli.USAGE_STATUS
    except OSError as error:
        cli.print_error(COMMAND, f"cannot listen on {fv.host}:{fv.port}: {error}")
        return cli.USAGE_STATUS
    if token:
        logging.info("access token required: header 'Authorization: Bearer <token>', or open "
                     "/?token=<token> once in a browser")
    host, port = server.server_address
    print(f"Serving on http://{host}:{port}/ (Ctrl-C to stop); "
          f"{'token required' if token else 'no token (loopback only)'}; "
          f"{fv.workers} workers, queue {fv.queue}. Research tool, not a diagnosis.", flush=True)
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
