"""WSGI middleware in front of the web app: security headers, token authentication and a
bounded number of concurrent predictions.

They wrap the whole WSGI app (not Flask hooks) so that their answers, a 401 or a 503 included,
carry the same headers as the app's own.
"""

import hmac
import http.cookies
import json
import threading
import urllib.parse

SECURITY_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
     "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
TOKEN_COOKIE = "thyroid_token"
TOKEN_QUERY = "token"


def json_response(start_response, status, message, extra_headers=()):
    """A JSON error body ``{"error", "status"}`` in the app's own format."""
    code = int(status.split()[0])
    body = json.dumps({"error": message, "status": code}).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                            *extra_headers])
    return [body]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (replacing any the app set)."""

    def __init__(self, app):
        self.app = app
        self._names = {name.lower() for name, _ in SECURITY_HEADERS}

    def __call__(self, environ, start_response):
        def with_headers(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if k.lower() not in self._names]
            return start_response(status, kept + list(SECURITY_HEADERS), exc_info)
        return self.app(environ, with_headers)


class TokenAuth:
    """Requires ``token`` on every request: ``Authorization: Bearer <token>`` (API clients) or
    the HttpOnly, SameSite=Strict cookie that ``GET /?token=<token>`` sets once and then
    redirects to ``/`` (browsers; the token leaves the address bar). Compared in constant time.
    """

    def __init__(self, app, token):
        if not token:
            raise ValueError("TokenAuth needs a non-empty token")
        self.app = app
        self._token = token.encode("utf-8")

    def _matches(self, candidate):
        return candidate is not None and hmac.compare_digest(
            candidate.encode("utf-8", "surrogateescape"), self._token)

    def _presented(self, environ):
        """The token from the Authorization header, else from the cookie, else None."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        cookies = http.cookies.SimpleCookie()
        try:
            cookies.load(environ.get("HTTP_COOKIE", ""))
        except http.cookies.CookieError:
            return None
        morsel = cookies.get(TOKEN_COOKIE)
        return morsel.value if morsel else None

    def _login(self, environ, start_response):
        """``GET /?token=``: sets the cookie when the token is right; None when not a login."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != "/":
            return None
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if TOKEN_QUERY not in query:
            return None
        if not self._matches(query[TOKEN_QUERY][0]):
            return json_response(start_response, "401 Unauthorized", "Wrong token.")
        cookie = (f"{TOKEN_COOKIE}={self._token.decode('utf-8')}; Path=/; HttpOnly; "
                  "SameSite=Strict")
        start_response("303 See Other", [("Location", "/"), ("Set-Cookie", cookie),
                                          ("Cache-Control", "no-store"), ("Content-Length", "0")])
        return [b""]

    def __call__(self, environ, start_response):
        login = self._login(environ, start_response)
        if login is not None:
            return login
        if self._matches(self._presented(environ)):
            return self.app(environ, start_response)
        return json_response(
            start_response, "401 Unauthorized",
            "This server needs its access token: send 'Authorization: Bearer <token>', or open "
            f"/?{TOKEN_QUERY}=<token> once in the browser.")


class ConcurrencyLimit:
    """At most ``workers`` requests to ``paths`` run at once and at most ``queue`` more wait
    for a slot; any further one is answered 503 at once instead of holding memory and a thread.
    """

    def __init__(self, app, workers, queue, paths=("/api/predict",)):
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0, got {workers}, {queue}")
        self.app = app
        self.paths = tuple(paths)
        self.capacity = workers + queue
        self._running = threading.BoundedSemaphore(workers)
        self._admitted = 0
        self._lock = threading.Lock()

    def _admit(self):
        with self._lock:
            if self._admitted >= self.capacity:
                return False
            self._admitted += 1
            return True

    def _leave(self):
        with self._lock:
            self._admitted -= 1

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(self.paths):
            return self.app(environ, start_response)
        if not self._admit():
            return json_response(start_response, "503 Service Unavailable",
                                 "The server is busy with other images; please retry in a "
                                 "few seconds.", [("Retry-After", "5")])
        try:
            with self._running:
                # The body is consumed inside the slot so that work and memory stay bounded.
                result = self.app(environ, start_response)
                try:
                    return list(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
        finally:
            self._leave()
