"""Hostile HTTP input through nginx: oversize bodies and headers, slow
clients, and path traversal on /static."""

import json
import secrets
import time

import pytest
from flaskops_testinfra import client, http, uwsgi_requests_served, wait_for

SITE = "https://127.0.0.1"
STATS = "/run/uwsgi/flaskapp/stats.sock"
STATIC_DIR = "/srv/flaskapp/current/app/static"


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
def test_oversize_headers_are_refused_by_nginx_and_never_reach_uwsgi(host, headers):
    # A worker counts a request a moment after the client has its answer:
    # let the counters settle before and after.
    time.sleep(1)
    before = uwsgi_requests_served(host, STATS)
    resp = http(host, SITE + "/health", headers=headers)
    assert resp.status == 400, resp.status
    time.sleep(1)
    assert uwsgi_requests_served(host, STATS) == before, "the request reached uWSGI"
    # The counter does move for a request nginx passes on.
    assert http(host, SITE + "/health").status == 200
    assert wait_for(lambda: uwsgi_requests_served(host, STATS) == before + 1, timeout=5)


def test_a_slow_client_is_cut_off_after_the_header_timeout(host):
    seconds, state, _received = host.check_output("python3 %s", client(host, "slow_client")).split(" ", 2)
    assert state == "closed", "nginx kept a half-sent request open for 40 s"
    assert 10 <= float(seconds) <= 25, seconds


# Path traversal: a canary file is placed at every level above the static
# directory that a ".." can reach (the static dir's parent, grandparent, ...
# up to /), each with its own token; every form below is requested at every
# depth, and no token may ever come back.
CANARY = "flaskops-canary.txt"
TRAVERSALS = {
    "dot-dot": lambda d: "/static/" + "../" * d,
    "encoded slash": lambda d: "/static/" + "..%2f" * d,
    "encoded dots": lambda d: "/static/" + "%2e%2e/" * d,
    "all encoded": lambda d: "/static/" + "%2e%2e%2f" * d,
    "backslash": lambda d: "/static/" + "..%5c" * d,
    "half encoded": lambda d: "/static/" + ".%2e/" * d,
    "from a subdirectory": lambda d: "/static/css/" + "../" * (d + 1),
    "encoded from a subdirectory": lambda d: "/static/css/" + "..%2f" * (d + 1),
    "prefix without slash": lambda d: "/static.." + "%2f.." * (d - 1) + "%2f",
    "encoded slash after prefix": lambda d: "/static%2f" + "..%2f" * d,
    # The alias off-by-slash: with `location /static` (no trailing slash)
    # and `alias .../static/`, /static../x maps to the static dir's parent.
    "off by slash": lambda d: "/static../" + "../" * (d - 1),
}


@pytest.fixture()
def canaries(host):
    """A canary file at every level from the static dir's parent up to /: {dir: token}."""
    static = host.check_output("readlink -f %s", STATIC_DIR)
    levels, path = [], static
    while path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        levels.append(path)
    placed = {}
    try:
        for depth, directory in enumerate(levels, 1):
            token = f"canary-{depth}-{secrets.token_hex(8)}"
            host.check_output("printf %s %s > %s/%s", "%s", token, directory, CANARY)
            placed[directory] = token
        yield placed
    finally:
        for directory in placed:
            host.run("rm -f %s/%s", directory, CANARY)


def test_path_traversal_on_static_never_returns_a_file_outside_it(host, canaries):
    # Levels above the static dir: its parent (the release's app/), the
    # release, releases/, the app root, /srv and /.
    assert len(canaries) >= 5, canaries
    paths = [(form, depth, make(depth) + CANARY) for form, make in TRAVERSALS.items()
             for depth in range(1, len(canaries) + 1)]
    answers = json.loads(host.check_output("python3 %s %s", client(host, "https_paths"),
                                           json.dumps([p for _f, _d, p in paths])))
    leaked, statuses = [], set()
    for (form, depth, path), (status, body) in zip(paths, answers):
        statuses.add(status)
        found = [directory for directory, token in canaries.items() if token in body]
        if found or status not in (400, 403, 404):
            leaked.append((form, path, status, found))
    assert not leaked, leaked
    assert statuses <= {400, 403, 404}, statuses
