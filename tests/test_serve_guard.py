"""thyroid.deploy.middleware on a stand-in WSGI app: headers, token, concurrency limit."""

import threading

import pytest
from werkzeug.test import Client

from thyroid.deploy import middleware

TOKEN = "s3cret-token-0123"  # 17 characters: tokens are at least MIN_TOKEN_LENGTH long


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "ALLOW")])
    return [b"hello"]


def test_security_headers_on_every_answer():
    client = Client(middleware.SecurityHeaders(middleware.TokenAuth(hello, TOKEN)))
    for response in (client.get("/"), client.get("/api/predict", headers={
            "Authorization": f"Bearer {TOKEN}"})):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers.get_all("X-Frame-Options") == ["DENY"]
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401),
    ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"Authorization": f"Bearer {TOKEN}"}, 200),
    ({"Authorization": f"bearer  {TOKEN} "}, 200),
    ({"Cookie": f"thyroid_token={TOKEN}"}, 200),
    ({"Cookie": "thyroid_token=nope"}, 401),
    ({"Cookie": "\x00garbage;;="}, 401),
])
def test_token_required(headers, status):
    client = Client(middleware.TokenAuth(hello, TOKEN), use_cookies=False)
    response = client.get("/api/health", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert "access token" in response.get_json()["error"]
    else:
        assert response.get_data() == b"hello"


def test_token_link_sets_a_strict_cookie_and_drops_the_token_from_the_address():
    client = Client(middleware.TokenAuth(hello, TOKEN))
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/").status_code == 401  # no cookie was set by the wrong try
    login = client.get(f"/?token={TOKEN}")
    assert login.status_code == 303 and login.headers["Location"] == "/"
    cookie = login.headers["Set-Cookie"]
    assert f"thyroid_token={TOKEN}" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert client.get("/").get_data() == b"hello"  # the client now sends the cookie
    assert client.get("/api/health").status_code == 200


def test_empty_token_is_refused():
    with pytest.raises(ValueError):
        middleware.TokenAuth(hello, "")


@pytest.mark.parametrize("token, reason", [
    ("x", "at least 16"),
    ("a" * 15, "at least 16"),
    ("é" * 20, "character 1 is"),  # sent as UTF-8 in a cookie, read back as latin-1
    ("token-with-ümlaut-0123", "character 12 is"),
    ("token with a space", "character 6 is"),
    ("token;with;semicolons", "character 6 is"),
    ("token,with,commas-0123", "character 6 is"),
    ('token"with"quotes-0123', "character 6 is"),
    ("token\\with\\backslash", "character 6 is"),
    ("token\twith-a-tab-0123", "character 6 is"),
    ("t" * 1025, "at most 1024"),
])
def test_tokens_that_cannot_work_are_refused(token, reason):
    with pytest.raises(ValueError, match=reason):
        middleware.TokenAuth(hello, token)
    with pytest.raises(ValueError, match=reason):
        middleware.check_token(token)


@pytest.mark.parametrize("token", [
    "a" * 16, "Ab0-_.~+/=!#$%&'()*:<>?@[]^`{|}", "t" * 1024, TOKEN])
def test_tokens_that_fit_a_cookie_are_accepted(token):
    client = Client(middleware.TokenAuth(hello, token), use_cookies=False)
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/", headers={"Cookie": f"thyroid_token={token}"}).status_code == 200
    middleware.check_token(token)


@pytest.mark.parametrize("header, expected", [
    ("thyroid_token=abc", "abc"),
    ('prefs={"a":1}; thyroid_token=abc', "abc"),
    ("a=b c; thyroid_token=abc", "abc"),
    ("x=\\; thyroid_token=abc", "abc"),
    ('x="unterminated; thyroid_token=abc', "abc"),
    ("flag;thyroid_token=abc;other=1", "abc"),
    ("\x00garbage;;=; thyroid_token=abc", "abc"),
    ("thyroid_token=abc; thyroid_token=def", "abc"),  # the first only: one guess per request
    ("xthyroid_token=abc", None),
    ("", None),
    ("thyroid_token", None),
])
def test_cookie_value_is_read_per_cookie(header, expected):
    assert middleware.cookie_value(header, "thyroid_token") == expected


class Blocking:
    """A WSGI app whose /api/predict requests wait until ``release`` is set; counts them."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] != "/api/predict":
            return hello(environ, start_response)
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started.release()
        self.release.wait(30)
        with self.lock:
            self.running -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]


def call(app, path, results):
    def start_response(status, headers, exc_info=None):
        results.append([status, dict(headers)])
    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "POST"}, start_response))
    results[-1].append(body)


def test_full_queue_answers_503_and_frees_its_slots():
    inner = Blocking()
    app = middleware.ConcurrencyLimit(inner, workers=1, queue=2)
    results = []
    threads = [threading.Thread(target=call, args=(app, "/api/predict", results))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    assert inner.started.acquire(timeout=10)  # one runs, two wait for the worker
    rejected = []
    call(app, "/api/predict", rejected)
    status, headers, body = rejected[0]
    assert status.startswith("503") and headers["Retry-After"] == "5"
    assert b"busy" in body
    other = []
    call(app, "/api/health", other)  # paths outside the limit are not held back
    assert other[0][0] == "200 OK" and other[0][2] == b"hello"
    inner.release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r[0] for r in results) == ["200 OK"] * 3
    assert inner.most_running == 1
    again = []
    call(app, "/api/predict", again)
    assert again[0][0] == "200 OK"


def test_limit_rejects_bad_sizes():
    with pytest.raises(ValueError):
        middleware.ConcurrencyLimit(hello, workers=0, queue=1)
