"""The web app under waitress: bounded threads, idle timeouts, a token off loopback
(the library behind ``python -m thyroid.serve``)."""

import ipaddress

TOKEN_ENV = "THYROID_AUTH_TOKEN"
SERVER_IDENT = "thyroid"  # the Server header: no name or version of the software behind it
BODY_MARGIN_BYTES = 1024 * 1024  # multipart framing and form fields around the file
OUTPUT_IN_MEMORY_BYTES = 256 * 1024 * 1024  # answers (a Grad-CAM data URL) are never spooled


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
    """A WebServer for ``model``. Raises ValueError when bound off loopback without a token
    or when the token is unusable (``middleware.check_token``)."""
    from thyroid.deploy import middleware
    from thyroid.deploy.webapp import create_app, create_wsgi_app
    if not auth_token and not is_loopback(host):
        raise ValueError(f"--host={host} is reachable from other machines: give --auth_token "
                         f"or set {TOKEN_ENV}")
    if auth_token:
        middleware.check_token(auth_token)  # before the model is loaded
    max_upload_bytes = int(max_upload_mb * 1024 * 1024)
    flask_app = create_app(model, gradcam=gradcam, max_upload_bytes=max_upload_bytes,
                           max_pixels=int(max_megapixels * 1e6))
    wsgi_app = create_wsgi_app(flask_app, workers, queue, auth_token)
    return WebServer(wsgi_app, host, port, workers, queue, channel_timeout, connection_limit,
                     max_upload_bytes)
