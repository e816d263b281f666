"""WSGI middleware in front of the web app: security headers, token authentication and a
bounded number of concurrent predictions.

They wrap the whole WSGI app (not Flask hooks) so that their answers, a 401, 429 or 503
included, carry the same headers as the app's own.

Tokens (``check_token``): at least MIN_TOKEN_LENGTH characters, all of them cookie-safe printable
ASCII (RFC 6265 cookie-octets: no space, control, ``"``, ``,``, ``;`` or ``\\``), at most
MAX_TOKEN_LENGTH. A token outside that could never be used: browsers send non-ASCII as UTF-8
and WSGI reads headers as latin-1, and the Set-Cookie value is not quoted.

``TokenAuth`` counts wrong tokens per peer address (``REMOTE_ADDR``): after ``max_failures``
within ``window_s`` seconds that address is answered 429 with Retry-After, without the token
being looked at, until the window passes. Behind a reverse proxy the peer address is the
proxy's (the server trusts no forwarded-for header), so all clients share one budget, and a
client that guesses wrong locks everybody out for the rest of the window.
"""

import collections
import dataclasses
import hmac
import math
import threading
import time
import urllib.parse

from thyroid.io_utils import json_text

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
    body = json_text({"error": message, "status": code}).encode("utf-8")
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


MIN_TOKEN_LENGTH = 16
# Browsers keep a cookie of at most 4096 bytes, name and attributes included.
MAX_TOKEN_LENGTH = 1024
# RFC 6265 cookie-octet: printable ASCII but space, '"', ',', ';' and '\\'.
TOKEN_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F)) - set('",;\\')


def check_token(token):
    """Raises ValueError, saying why without repeating the secret, when ``token`` could not
    be sent back as a cookie or is too short to resist guessing."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
        length = len(token) if isinstance(token, str) else 0
        raise ValueError(f"the token is too short: {length} characters, at least "
                         f"{MIN_TOKEN_LENGTH} characters are needed (e.g. python -c "
                         "\"import secrets; print(secrets.token_urlsafe(24))\")")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"the token is too long: {len(token)} characters, at most "
                         f"{MAX_TOKEN_LENGTH} fit in a browser cookie")
    for position, character in enumerate(token, 1):
        if character not in TOKEN_CHARACTERS:
            kind = ("non-ASCII" if ord(character) > 0x7E else
                    "a space, control character, quote, comma, semicolon or backslash")
            raise ValueError(f"character {position} is {kind}; a token must be printable "
                             "ASCII without spaces, '\"', ',', ';' or '\\' (it is sent back as "
                             "a cookie)")


def cookie_value(header, name):
    """The value of the first ``name=value`` pair in a Cookie ``header``, or None.

    Split by hand: the standard library's parser gives up on the whole header at the first
    cookie it cannot read, and browsers send every cookie of the host (whatever the port, so
    other local apps' too). Only the first pair of our name counts, so that a request carries
    one guess."""
    for pair in header.split(";"):
        key, equals, value = pair.partition("=")
        if equals and key.strip() == name:
            return value.strip()
    return None


@dataclasses.dataclass
class _Failures:
    """Wrong tokens from one address in the window that started at ``since``."""
    since: float
    count: int = 0


class FailureLimit:
    """Counts wrong tokens per address, in fixed windows of ``window_s`` seconds from each
    address's first failure; tracks at most ``max_peers`` addresses, dropping the oldest.
    Thread-safe (waitress answers on several threads)."""

    def __init__(self, max_failures, window_s, max_peers, clock):
        if max_failures < 1 or window_s <= 0 or max_peers < 1:
            raise ValueError(f"max_failures and max_peers must be >= 1 and window_s > 0, got "
                             f"{max_failures}, {window_s}, {max_peers}")
        self.max_failures, self.window_s, self.max_peers = max_failures, window_s, max_peers
        self._clock = clock
        self._peers = collections.OrderedDict()  # address -> _Failures, oldest window first
        self._lock = threading.Lock()

    def _current(self, peer, now):
        failures = self._peers.get(peer)
        if failures is not None and now - failures.since >= self.window_s:
            del self._peers[peer]
            return None
        return failures

    def retry_after(self, peer):
        """Seconds until ``peer`` may try again (an int >= 1), or 0 when it may now."""
        with self._lock:
            now = self._clock()
            failures = self._current(peer, now)
            if failures is None or failures.count < self.max_failures:
                return 0
            return max(1, math.ceil(failures.since + self.window_s - now))

    def record(self, peer):
        with self._lock:
            now = self._clock()
            failures = self._current(peer, now)
            if failures is None:
                while len(self._peers) >= self.max_peers:
                    self._peers.popitem(last=False)
                failures = self._peers[peer] = _Failures(now)
            failures.count += 1


class TokenAuth:
    """Requires ``token`` on every request: ``Authorization: Bearer <token>`` (API clients) or
    the HttpOnly, SameSite=Strict cookie that ``GET /?token=<token>`` sets once and then
    redirects to ``/`` (browsers; the token leaves the address bar). Compared in constant time.

    Wrong tokens (header, cookie or login link; not requests without one) are limited per peer
    address: ``max_failures`` in ``window_s`` seconds, then 429 until the window passes (see
    the module docstring for reverse proxies); ``max_peers`` addresses are tracked at most.
    ``clock``: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, app, token, max_failures=10, window_s=60.0, max_peers=4096,
                 clock=time.monotonic):
        check_token(token)
        self.app = app
        self._token = token.encode("ascii")
        self.failures = FailureLimit(max_failures, window_s, max_peers, clock)

    def _matches(self, candidate):
        # Header values arrive as latin-1 strings, a query decoded from UTF-8: anything not
        # ASCII encodes to bytes the ASCII token cannot equal ("surrogatepass": never raises).
        return hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), self._token)

    def _presented(self, environ):
        """The token from the Authorization header, else from the cookie, else None."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return cookie_value(environ.get("HTTP_COOKIE", ""), TOKEN_COOKIE)

    def _login_token(self, environ):
        """The token of a ``GET /?token=`` login link, or None when the request is not one."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != "/":
            return None
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        return query[TOKEN_QUERY][0] if TOKEN_QUERY in query else None

    def _set_cookie(self, start_response):
        cookie = f"{TOKEN_COOKIE}={self._token.decode('ascii')}; Path=/; HttpOnly; SameSite=Strict"
        start_response("303 See Other", [("Location", "/"), ("Set-Cookie", cookie),
                                          ("Cache-Control", "no-store"), ("Content-Length", "0")])
        return [b""]

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        # Checked and recorded under separate locks: requests already past this check when the
        # limit is reached still get their 401, a few at most (the server's threads).
        wait = self.failures.retry_after(peer)
        if wait:
            return json_response(
                start_response, "429 Too Many Requests",
                f"Too many wrong tokens from this address; retry in {wait} s.",
                [("Retry-After", str(wait))])
        login = self._login_token(environ)
        candidate = login if login is not None else self._presented(environ)
        if candidate is not None and self._matches(candidate):
            return self._set_cookie(start_response) if login is not None else self.app(
                environ, start_response)
        if candidate is not None:
            self.failures.record(peer)
        if login is not None:
            return json_response(start_response, "401 Unauthorized", "Wrong token.")
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
