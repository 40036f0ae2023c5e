"""Helpers shared by the testinfra suites of every Molecule scenario.

A scenario's tests/conftest.py puts this directory on sys.path and imports
what it needs: `from flaskops_testinfra import http, run_converge`.
"""

from __future__ import annotations


# Runs inside the host with its own python3 (a fresh host has no curl).
# argv: method url headers-json body-or-empty tls-verify(0/1) body-size;
# a body-size > 0 sends that many bytes instead of the body. Prints one JSON.
_HTTP_CLIENT = r"""
import http.client, json, ssl, sys, urllib.parse
method, url, headers, body, verify = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
u = urllib.parse.urlsplit(url)
if u.scheme == "https":
    ctx = ssl.create_default_context() if verify else ssl._create_unverified_context()
    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=15, context=ctx)
else:
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=15)
payload = b"x" * int(sys.argv[6]) if int(sys.argv[6]) > 0 else (body.encode() or None)
conn.request(method, (u.path or "/") + ("?" + u.query if u.query else ""), body=payload, headers=headers)
r = conn.getresponse()
data = r.read()
print(json.dumps({"status": r.status, "headers": [[k.lower(), v] for k, v in r.getheaders()],
                  "body": data.decode("utf-8", "replace")}))
"""


class Response:
    """What a request made from inside the host got back."""

    def __init__(self, raw: dict) -> None:
        self.status: int = raw["status"]
        # Repeated headers are joined with ", " as HTTP allows.
        self.headers: dict[str, str] = {}
        for name, value in raw["headers"]:
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        self.body: str = raw["body"]


def http(host, url: str, method: str = "GET", headers: dict[str, str] | None = None, body: str = "",
         verify_tls: bool = False, body_size: int = 0) -> Response:
    """Make an HTTP(S) request from inside the host (no redirects followed).

    Traffic stays inside the host (its loopback) or the project's own containers.
    """
    import json

    out = host.check_output("python3 -c %s %s %s %s %s %s %s", _HTTP_CLIENT, method, url,
                            json.dumps(headers or {}), body, "1" if verify_tls else "0", str(body_size))
    return Response(json.loads(out))


# Speaks the uwsgi protocol to a socket, as nginx's uwsgi_pass does. Defines
# uwsgi_request(where, method, path, headers, body[, timeout]) -> (status, headers, body)
# for scripts run inside the host (see UWSGI_CLIENT_MAIN, and load loops).
UWSGI_CLIENT = r"""
import json, socket, struct, sys


def uwsgi_request(where, method, path, headers, body, timeout=15):
    query = path.split("?", 1)[1] if "?" in path else ""
    env = {"REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": path.split("?", 1)[0], "QUERY_STRING": query,
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
           "HTTP_HOST": "localhost", "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http"}
    for k, v in headers.items():
        key = k.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = v
    packet = b"".join(struct.pack("<H", len(x.encode())) + x.encode() for kv in env.items() for x in kv)
    if where.startswith("/"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        conn.connect(where)
    else:
        host, port = where.rsplit(":", 1)
        conn = socket.create_connection((host, int(port)), timeout=timeout)
    conn.sendall(struct.pack("<BHB", 0, len(packet), 0) + packet + body)
    data = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = [[l.split(":", 1)[0].strip().lower(), l.split(":", 1)[1].strip()] for l in lines[1:] if ":" in l]
    return int(lines[0].split()[1]), hdrs, payload.decode("utf-8", "replace")
"""

# argv: socket (path or host:port) method path headers-json body; prints one JSON.
_UWSGI_CLIENT_MAIN = UWSGI_CLIENT + r"""
status, hdrs, body = uwsgi_request(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5].encode())
print(json.dumps({"status": status, "headers": hdrs, "body": body}))
"""


def uwsgi_request(host, where: str, path: str = "/", method: str = "GET", headers: dict[str, str] | None = None,
                  body: str = "") -> Response:
    """Send one request over the uwsgi protocol to a uWSGI socket, from inside the host."""
    import json

    out = host.check_output("python3 -c %s %s %s %s %s %s", _UWSGI_CLIENT_MAIN, where, method, path,
                            json.dumps(headers or {}), body)
    return Response(json.loads(out))


# Reads a uWSGI stats server's JSON from its unix socket.
_STATS_CLIENT = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                 "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")


def uwsgi_stats(host, socket_path: str) -> dict:
    """What uWSGI's stats server says (workers, their request counters...), read inside the host."""
    import json

    return json.loads(host.check_output("python3 -c %s %s", _STATS_CLIENT, socket_path))


def uwsgi_requests_served(host, socket_path: str) -> int:
    """Requests uWSGI's workers have answered so far (a worker counts one a
    moment after the client has its response)."""
    return sum(worker["requests"] for worker in uwsgi_stats(host, socket_path)["workers"])


def put_file(host, path: str, content: bytes) -> None:
    """Write a file inside the host from the controller (its directory is created)."""
    import base64

    host.check_output("mkdir -p %s && printf %s %s | base64 -d > %s", path.rsplit("/", 1)[0], "%s",
                      base64.b64encode(content).decode(), path)


# A TLS client inside the host that allows everything (security level 0),
# so that a refused handshake is the server's doing. argv: port, then either
# "handshake MIN MAX CIPHERS" (prints one result) or "suites AUTH" (tries,
# one at a time over TLS 1.2, every pre-1.3 suite this client's OpenSSL can
# offer with that authentication, e.g. auth-ecdsa, plus the anonymous ones,
# and prints {suite: result}). A result is ["ok", version, cipher],
# ["refused", reason] (the server's alert, e.g. TLSV1_ALERT_PROTOCOL_VERSION)
# or ["client-cannot", reason] when this client cannot offer what was asked.
_TLS_PROBE = r"""
import json, socket, ssl, sys
VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
            "1.3": ssl.TLSVersion.TLSv1_3}
port = int(sys.argv[1])


def attempt(low, high, ciphers):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
        ctx.minimum_version, ctx.maximum_version = VERSIONS[low], VERSIONS[high]
    except (ssl.SSLError, ValueError) as exc:
        return ["client-cannot", type(exc).__name__]
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as s:
            return ["ok", s.version(), s.cipher()[0]]
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        return ["client-cannot" if reason == "NO_PROTOCOLS_AVAILABLE" else "refused", reason]
    except OSError as exc:
        return ["refused", type(exc).__name__]


if sys.argv[2] == "handshake":
    print(json.dumps(attempt(*sys.argv[3:6])))
else:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    suites = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"
              and c["auth"] in (sys.argv[3], "auth-null") and c["kea"] in ("kx-ecdhe", "kx-dhe", "kx-rsa")]
    print(json.dumps({name: attempt("1.2", "1.2", name) for name in suites}))
"""


def tls_handshake(host, low: str, high: str, ciphers: str = "ALL", port: int = 443) -> list[str]:
    """One handshake from inside the host with TLS versions low..high ("1.0".."1.3") and an OpenSSL cipher list."""
    import json

    return json.loads(host.check_output("python3 -c %s %s handshake %s %s %s", _TLS_PROBE, str(port), low, high,
                                        ciphers))


def tls_suites(host, auth: str, port: int = 443) -> dict[str, list[str]]:
    """Every TLS 1.2 suite the host's client can offer for a certificate of this
    kind ("auth-ecdsa" or "auth-rsa"), and anonymous ones, each tried alone."""
    import json

    return json.loads(host.check_output("python3 -c %s %s suites %s", _TLS_PROBE, str(port), auth))


# The distribution's PostgreSQL per Debian release.
POSTGRES_VERSIONS = {"12": "15", "13": "17"}


def postgres_version(host) -> str:
    """The PostgreSQL major version the host's Debian release ships."""
    return POSTGRES_VERSIONS[host.check_output("cut -d. -f1 /etc/debian_version")]


def postgres_unit(host) -> str:
    """The systemd unit of the host's main PostgreSQL cluster."""
    return f"postgresql@{postgres_version(host)}-main"


def main_pid(host, unit: str) -> int:
    """The main PID systemd has for a unit (0 when it has none)."""
    return int(host.check_output("systemctl show -p MainPID --value %s", unit))


# A bounded load loop run inside a host against its own nginx: requests PATH
# over HTTPS until told to stop (or MAX_SECONDS, or 100000 requests),
# recording each status; an exception counts as a failure (code 0).
# argv: out-file stop-file path max-seconds
_LOAD = r"""
import http.client, json, os, ssl, sys, time
out, stop, path = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl._create_unverified_context()
codes, deadline = [], time.monotonic() + float(sys.argv[4])
while not os.path.exists(stop) and time.monotonic() < deadline and len(codes) < 100000:
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", 443, timeout=30, context=ctx)
        conn.request("GET", path)
        codes.append(conn.getresponse().status)
        conn.close()
    except Exception:
        codes.append(0)
json.dump(codes, open(out, "w"))
"""


def start_load(host, path: str = "/api/notes", max_seconds: int = 420, name: str = "load") -> None:
    """Start the load loop in the background inside host (see stop_load)."""
    host.run("rm -f /tmp/%s.stop /tmp/%s.json", name, name)
    host.check_output("nohup python3 -c %s /tmp/%s.json /tmp/%s.stop %s %s >/dev/null 2>&1 &",
                      _LOAD, name, name, path, str(max_seconds))


def load_running(host, name: str = "load") -> bool:
    """True while the loop has not ended (it writes its statuses when it ends)."""
    return not host.file(f"/tmp/{name}.json").exists


def stop_load(host, name: str = "load") -> list[int]:
    """Stop the loop and return the status of every request it made."""
    import json

    host.run("touch /tmp/%s.stop", name)
    assert wait_for(lambda: host.file(f"/tmp/{name}.json").exists, timeout=60), "the load loop did not stop"
    return json.loads(host.check_output("cat /tmp/%s.json", name))


def statuses(codes: list[int]) -> dict[int, int]:
    """How many requests got each status."""
    return {code: codes.count(code) for code in sorted(set(codes))}


def wait_for(predicate, timeout: float = 30, step: float = 0.5) -> bool:
    """Poll predicate until it is true; a predicate whose command fails counts as not yet."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except AssertionError:
            pass
        time.sleep(step)
    return False


class PlayResult:
    """Outcome of an ansible-playbook run: exit code and what each failed task said."""

    def __init__(self, returncode: int, failures: list[str], changed: int, raw: str, output: str = "",
                 failed_tasks: list[str] | None = None, reported: bool = True) -> None:
        self.returncode = returncode
        # "task name: message" per failed task (or the whole output of a run
        # that printed no JSON report).
        self.failures = failures
        # The full names ("role : task") of the tasks that failed.
        self.failed_tasks = failed_tasks or []
        # False when the run printed no JSON report (it crashed).
        self.reported = reported
        self.changed = changed
        self.raw = raw
        # Everything the run printed (raw is its tail, for assertion messages).
        self.output = output

    @property
    def failure_text(self) -> str:
        return "\n".join(self.failures)


def run_converge(host, extra_vars: dict, tags: list[str] | None = None) -> PlayResult:
    """Run the scenario's converge playbook again on this host with extra vars.

    For tests that a bad value fails the play, or that a change is applied
    the way it should be (reload or restart). tags limits the run to the
    roles under test (the converge playbooks tag each role with its name).
    """
    import os

    return run_playbook(host, os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"), extra_vars,
                        tags)


def run_playbook(host, playbook: str, extra_vars: dict, tags: list[str] | None = None,
                 check: bool = False) -> PlayResult:
    """Run a playbook against this host (None: every host) through Molecule's inventory.

    The json stdout callback gives each failed task's message and stderr
    unwrapped, whatever the terminal.
    """
    import json
    import os
    import subprocess

    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook, "-e", json.dumps(extra_vars)]
    if host is not None:
        cmd += ["--limit", host.backend.get_hostname()]
    if check:
        cmd += ["--check", "--diff"]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    failures, failed_tasks, reported = [], [], True
    # Other enabled callbacks (profile_tasks) may print around the JSON document.
    start = 0 if proc.stdout.startswith("{") else proc.stdout.find("\n{") + 1
    try:
        report = json.JSONDecoder().raw_decode(proc.stdout, start)[0]
    except ValueError:
        report, reported = {"plays": []}, False
        failures.append(proc.stdout + proc.stderr)
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                if result.get("failed"):
                    # A loop reports its failed items' messages per item.
                    items = [r for r in result.get("results", []) if r.get("failed")]
                    said = [f"{r.get('msg', '')} {r.get('stderr', '')}" for r in items] or \
                        [f"{result.get('msg', '')} {result.get('stderr', '')}"]
                    failures.append("{}: {}".format(task["task"]["name"], " | ".join(said)))
                    failed_tasks.append(task["task"]["name"])
    changed = sum(stats.get("changed", 0) for stats in report.get("stats", {}).values())
    return PlayResult(proc.returncode, failures, changed, proc.stdout[-3000:] + proc.stderr[-3000:],
                      proc.stdout + proc.stderr, failed_tasks, reported)


def role_checks(role: str) -> list[str]:
    """Patterns of the full names of the tasks with which a role checks its
    input before it changes anything: its argument spec validation, the tasks
    of its tasks/validate.yml and the "Check ..." tasks of its tasks/main.yml
    (a templated part of a name, such as an app's name, matches any text)."""
    import os
    import re

    import yaml

    tasks = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "roles", role, "tasks")
    names = {"Validating arguments against arg spec 'main'"}
    for name, keep in (("validate.yml", lambda _n: True), ("main.yml", lambda n: n.startswith("Check "))):
        with open(os.path.join(tasks, name), encoding="utf-8") as f:
            names |= {t["name"] for t in yaml.safe_load(f) or [] if "name" in t and keep(t["name"])}
    return [".+".join(map(re.escape, re.split(r"\{\{.*?\}\}", f"flaskops.stack.{role} : {name}")))
            for name in sorted(names)]


def assert_refused_by_the_role(result: PlayResult, role: str, variable: str) -> None:
    """A converge with bad input failed in one of the role's own checks,
    with a message naming the variable, before anything changed."""
    import re

    assert result.reported, f"the play crashed instead of failing a check: {result.raw}"
    assert result.returncode != 0, "the play must fail"
    assert len(result.failed_tasks) == 1, result.failures
    # Argument spec validation names its task after the spec's short description too.
    task = re.sub(r"(arg spec 'main') - .*", r"\1", result.failed_tasks[0], flags=re.S)
    assert any(re.fullmatch(pattern, task) for pattern in role_checks(role)), \
        f"the failure did not come from a check of the {role} role: {result.failures}"
    assert variable in result.failure_text, result.failure_text
    assert result.changed == 0, "nothing may change on the host"


def files_state(host, paths: list[str]) -> dict[str, str]:
    """sha256 (or the link target, or "absent") of each path on the host."""
    state = {}
    for path in paths:
        f = host.file(path)
        state[path] = f.linked_to if f.is_symlink else f.sha256sum if f.exists else "absent"
    return state


def on_primary_distro_only() -> None:
    """Skip a slow test that does not depend on the Debian release on the matrix's other releases.

    Re-converging with bad input proves the role's checks, which are the same
    on every release; scripts/molecule-all.sh names the release every
    scenario runs on (FLASKOPS_PRIMARY_DISTRO) and the release of this run
    (FLASKOPS_DISTRO), and such tests run on the first only.
    """
    import os

    import pytest

    primary = os.environ.get("FLASKOPS_PRIMARY_DISTRO")
    distro = os.environ.get("FLASKOPS_DISTRO")
    if primary and distro and distro != primary:
        pytest.skip(f"release-independent; proven on {primary}")
