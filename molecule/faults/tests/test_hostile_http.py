"""Hostile HTTP input through nginx: oversize bodies and headers, slow
clients, and path traversal on /static."""

import pytest
from flaskops_testinfra import http

SITE = "https://127.0.0.1"
APP_FILE = "/srv/flaskapp/current/wsgi.py"


def test_an_oversize_body_is_refused_with_413(host):
    # nginx_client_max_body_size is 10m.
    resp = http(host, SITE + "/api/notes", "POST", {"Content-Type": "application/json"},
                body_size=11 * 1024 * 1024)
    assert resp.status == 413


@pytest.mark.parametrize("headers", [
    {"X-Long": "a" * 10000},                               # one line longer than a buffer (8k)
    {f"X-Many-{i}": "b" * 7000 for i in range(6)},         # more than 4 x 8k of header lines
    {"Cookie": "c" * 9000},
], ids=["one-long-line", "too-many-bytes", "long-cookie"])
def test_oversize_headers_are_refused(host, headers):
    resp = http(host, SITE + "/health", headers=headers)
    assert resp.status in (400, 431), resp.status
    assert "uWSGI" not in resp.body


# A client that sends half a request line and then nothing: nginx must hang
# up after client_header_timeout (15 s), not hold the connection open.
_SLOW_CLIENT = r"""
import socket, time
s = socket.create_connection(("127.0.0.1", 80))
s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
s.settimeout(40)
t = time.monotonic()
try:
    data = s.recv(4096)
except socket.timeout:
    data = None
print(round(time.monotonic() - t, 1), "closed" if data is not None else "open", (data or b"")[:20])
"""


def test_a_slow_client_is_cut_off_after_the_header_timeout(host):
    seconds, state, _received = host.check_output("python3 -c %s", _SLOW_CLIENT).split(" ", 2)
    assert state == "closed", "nginx kept a half-sent request open for 40 s"
    assert 10 <= float(seconds) <= 25, seconds


@pytest.mark.parametrize("path", [
    "/static/../wsgi.py",
    "/static/..%2fwsgi.py",
    "/static/%2e%2e/wsgi.py",
    "/static/%2e%2e%2fwsgi.py",
    "/static/..%5cwsgi.py",
    "/static/css/../../../wsgi.py",
    "/static/css/..%2f..%2f..%2fwsgi.py",
    "/static..%2fwsgi.py",
    "/static%2f..%2fwsgi.py",
    "/static/.%2e/.%2e/wsgi.py",
])
def test_path_traversal_on_static_never_returns_a_file_outside_it(host, path):
    secret = host.file(APP_FILE).content_string.strip()
    assert secret
    resp = http(host, SITE + path)
    assert secret not in resp.body, f"{path} returned {APP_FILE}"
    assert "create_app" not in resp.body
    assert resp.status in (400, 403, 404), (path, resp.status)
