"""Serves an exported model as a small web app (phone friendly).

    python -m thyroid.serve --model=OUT [--host=127.0.0.1] [--port=8000]
        [--auth_token=... | THYROID_AUTH_TOKEN=...] [--workers=2] [--queue=16]

Open http://HOST:PORT/ , choose or take an ultrasound picture, and read P(malignant), the label
and a Grad-CAM overlay. JSON API: ``POST /api/predict`` (multipart field ``image``).
Runs under waitress (bounded threads, timeouts for idle connections). Binds to 127.0.0.1 unless
``--host`` says otherwise; any other address needs a token, which clients send as
``Authorization: Bearer <token>`` and a browser gets by opening ``/?token=<token>`` once.
Uploads are limited in bytes, pixels and formats (JPEG, PNG) and processed in memory.
A research tool, not a diagnosis.
"""

import ipaddress
import os
import sys

from absl import app, flags, logging

from thyroid.deploy.tflite_model import MAX_PIXELS, ModelError

FLAGS = flags.FLAGS
TOKEN_ENV = "THYROID_AUTH_TOKEN"
SERVER_IDENT = "thyroid"  # the Server header: no name or version of the software behind it
BODY_MARGIN_BYTES = 1024 * 1024  # multipart framing and form fields around the file
OUTPUT_IN_MEMORY_BYTES = 256 * 1024 * 1024  # answers (a Grad-CAM data URL) are never spooled


def define_flags():
    flags.DEFINE_string("model", None, "Export folder (model.tflite + metadata.json) or model.tflite.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind; anything but loopback exposes it "
                        "to the network and needs --auth_token.")
    flags.DEFINE_integer("port", 8000, "TCP port.", lower_bound=0, upper_bound=65535)
    flags.DEFINE_float("max_upload_mb", 10.0, "Largest accepted upload, in MB (larger -> 413).",
                       lower_bound=0.01, upper_bound=100.0)
    flags.DEFINE_float("max_megapixels", 16.0, "Largest accepted image, in millions of pixels, "
                       "read from the header before decoding.", lower_bound=0.01,
                       upper_bound=MAX_PIXELS / 1e6)
    flags.DEFINE_string("auth_token", None, f"Token every request must carry (default: the "
                        f"{TOKEN_ENV} environment variable); required off loopback.")
    flags.DEFINE_integer("workers", 2, "Predictions computed at once.", lower_bound=1,
                         upper_bound=64)
    flags.DEFINE_integer("queue", 16, "Predictions that may wait for a worker; more -> 503.",
                         lower_bound=0, upper_bound=1024)
    flags.DEFINE_integer("channel_timeout", 30, "Seconds an idle or stalled connection is kept.",
                         lower_bound=1, upper_bound=3600)
    flags.DEFINE_integer("connection_limit", 32, "Open connections at most (each may buffer "
                         "one upload in memory).", lower_bound=1, upper_bound=10000)
    flags.DEFINE_bool("gradcam", True, "Draw Grad-CAM overlays (needs the train_dir recorded "
                      "in metadata.json).")
    flags.mark_flag_as_required("model")


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to any interface


class WebServer:
    """A waitress server for the wrapped app: ``serve_forever()`` in one thread,
    ``shutdown()`` from another, ``server_address`` = (host, port)."""

    def __init__(self, wsgi_app, host, port, workers, queue, channel_timeout, connection_limit,
                 max_upload_bytes):
        from waitress.server import create_server
        # waitress reads a whole body before the app sees it: bodies a little over the upload
        # limit still reach the app (for its JSON 413); larger ones waitress refuses itself.
        # Input and output stay in memory (waitress would spool them to temporary files).
        max_body = max_upload_bytes + BODY_MARGIN_BYTES
        self._server = create_server(
            wsgi_app, host=host, port=port,
            # Threads beyond the admitted requests answer the 503s, so that a full queue never
            # leaves a client waiting in waitress's own task list.
            threads=workers + queue + 2,
            channel_timeout=channel_timeout, connection_limit=connection_limit,
            max_request_body_size=max_body, inbuf_overflow=max_body + 1,
            outbuf_overflow=OUTPUT_IN_MEMORY_BYTES, ident=SERVER_IDENT,
            expose_tracebacks=False, clear_untrusted_proxy_headers=True)
        # One listening socket gives a TcpWSGIServer, several (a name with IPv4 and IPv6
        # addresses) a MultiSocketServer; both keep their sockets in one map.
        listen = getattr(self._server, "effective_listen", None) or [
            (self._server.effective_host, self._server.effective_port)]
        self.server_address = tuple(listen[0][:2])
        self.server_port = self.server_address[1]
        self._map = getattr(self._server, "map", None) or self._server._map

    def serve_forever(self):
        try:
            self._server.run()
        except (OSError, ValueError):
            pass  # the event loop can trip over sockets that shutdown() closed under it

    def shutdown(self):
        from waitress import wasyncore
        wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=5)

    def server_close(self):
        self.shutdown()


def make_server(model, host="127.0.0.1", port=8000, gradcam=True, max_upload_mb=10.0,
                max_megapixels=16.0, auth_token=None, workers=2, queue=16, channel_timeout=30,
                connection_limit=32):
    """A WebServer for ``model``. Raises ValueError when bound off loopback without a token."""
    from thyroid.deploy.webapp import create_app, create_wsgi_app
    if not auth_token and not is_loopback(host):
        raise ValueError(f"--host={host} is reachable from other machines: give --auth_token "
                         f"or set {TOKEN_ENV}")
    max_upload_bytes = int(max_upload_mb * 1024 * 1024)
    flask_app = create_app(model, gradcam=gradcam, max_upload_bytes=max_upload_bytes,
                           max_pixels=int(max_megapixels * 1e6))
    wsgi_app = create_wsgi_app(flask_app, workers, queue, auth_token)
    return WebServer(wsgi_app, host, port, workers, queue, channel_timeout, connection_limit,
                     max_upload_bytes)


def main(argv):
    del argv
    token = FLAGS.auth_token or os.environ.get(TOKEN_ENV) or None
    try:
        server = make_server(FLAGS.model, FLAGS.host, FLAGS.port, FLAGS.gradcam,
                             FLAGS.max_upload_mb, FLAGS.max_megapixels, token, FLAGS.workers,
                             FLAGS.queue, FLAGS.channel_timeout, FLAGS.connection_limit)
    except (ModelError, ValueError) as error:
        print(f"serve: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"serve: error: cannot listen on {FLAGS.host}:{FLAGS.port}: {error}", file=sys.stderr)
        return 2
    if token:
        logging.info("access token required: header 'Authorization: Bearer <token>', or open "
                     "/?token=<token> once in a browser")
    host, port = server.server_address
    print(f"Serving on http://{host}:{port}/ (Ctrl-C to stop); "
          f"{'token required' if token else 'no token (loopback only)'}; "
          f"{FLAGS.workers} workers, queue {FLAGS.queue}. Research tool, not a diagnosis.",
          flush=True)
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
