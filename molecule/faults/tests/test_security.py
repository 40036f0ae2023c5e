"""Security of the running stack: what listens where, who runs what, file
ownership and modes, secrets, the uWSGI unit's sandbox, and TLS."""

import json
import os
import re
import socket
import struct
from pathlib import Path

import pytest

from flaskops_testinfra import client, http, main_pid, postgres_unit, run_converge, tls_handshake, tls_suites

SITE = "https://127.0.0.1"
ENV_FILE = "/etc/flaskops/flaskapp.env"
SOCKET = "/run/uwsgi/flaskapp/uwsgi.sock"
MEASUREMENTS = Path(__file__).resolve().parents[3] / ".cache" / "measurements"


def listening(host) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket, from /proc/net/tcp{,6}."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in host.file(table).content_string.splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(struct.pack("<I", word) for word in struct.unpack(f">{len(raw) // 4}I", raw))
            found.add((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def test_only_http_and_https_listen_beyond_loopback(host):
    sockets = listening(host)
    public = {port for address, port in sockets if not loopback(address)}
    assert public == {80, 443}, sorted(sockets)
    # PostgreSQL on loopback only (all-in-one: the app reaches it there).
    assert {address for address, port in sockets if port == 5432} <= {"127.0.0.1", "::1"}
    assert any(port == 5432 for _address, port in sockets)
    # Nothing else listens on TCP at all: uWSGI has only its unix socket on an
    # all-in-one host.
    assert {port for _address, port in sockets} == {80, 443, 5432}, sorted(sockets)
    assert host.socket(f"unix://{SOCKET}").is_listening


def process_users(host, unit: str) -> tuple[str, set[str]]:
    """User of a unit's main process, and the users of its children."""
    master = str(main_pid(host, unit))
    children = host.run("pgrep -d, -P %s", master).stdout.strip()
    assert children, f"{unit} has no child processes"
    users = host.check_output("ps -o user= -p %s", children).split()
    return host.check_output("ps -o user= -p %s", master), set(users)


def test_each_service_runs_as_its_own_user(host):
    # uWSGI: master and workers as the app user (the unit's User=).
    assert process_users(host, "uwsgi-flaskapp") == ("flaskapp", {"flaskapp"})
    # nginx: only the master is root (it binds 80/443); workers as www-data.
    assert process_users(host, "nginx") == ("root", {"www-data"})
    assert process_users(host, postgres_unit(host)) == ("postgres", {"postgres"})


def test_the_app_user_cannot_change_its_code(host):
    release = host.check_output("readlink -f /srv/flaskapp/current")
    for path in (release, release + "/wsgi.py", release + "/app", release + "/venv/bin"):
        cmd = host.run("runuser -u flaskapp -- test -w %s", path)
        assert cmd.rc != 0, f"{path} is writable by the app user"
    probe = host.run("runuser -u flaskapp -- touch %s/flaskops-probe", release)
    assert probe.rc != 0


def test_environment_file_and_socket_modes(host):
    env = host.file(ENV_FILE)
    assert (env.user, env.group, env.mode) == ("root", "flaskapp", 0o640)
    sock = host.file(SOCKET)
    assert sock.is_socket and sock.group == "flaskapp" and sock.mode == 0o660
    keys = host.check_output("ls /etc/nginx/tls/*.key").split()
    assert keys
    for path in keys:
        assert host.file(path).mode & 0o077 == 0, f"{path} is readable by group or others"


def secrets(host) -> dict[str, str]:
    env = dict(line.split("=", 1) for line in host.file(ENV_FILE).content_string.splitlines()
               if line and not line.startswith("#"))
    password = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "app-db-password").read_text().strip()
    return {"SECRET_KEY": json.loads(env["SECRET_KEY"]), "database password": password}


def test_no_secret_in_the_process_list_or_a_world_readable_file(host):
    values = secrets(host)
    ps = host.check_output("ps -eww -o args")
    for name, value in values.items():
        assert len(value) >= 16, name
        assert value not in ps, f"the {name} is in the process list"
    # (The search runs after the process list was read: its own arguments hold the secrets.)
    report = json.loads(host.check_output("python3 %s %s", client(host, "find_secrets"), json.dumps(values)))
    assert report["errors"] == [], f"files or directories the search could not read: {report['errors']}"
    assert report["files"] > 1000, report["files"]
    assert report["found"] == {name: [] for name in values}, f"secrets in world-readable files: {report['found']}"


def test_no_secret_in_ansible_output_even_with_diff(host, monkeypatch):
    # A change to the environment file, run with --diff: the file's content
    # (with the database URL and the secret key) must not be printed.
    monkeypatch.setenv("ANSIBLE_DIFF_ALWAYS", "true")
    result = run_converge(host, {"flask_app_env": {"FLASKOPS_MARKER": "diff-probe"}}, tags=["app"])
    try:
        assert result.returncode == 0, result.failure_text or result.raw
        assert result.changed > 0
        for name, value in secrets(host).items():
            assert value not in result.output, f"the {name} is in the playbook's output"
    finally:
        run_converge(host, {}, tags=["app"])


SECURITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"
# The release the sandbox table of docs/security.md was measured on.
DOCUMENTED_RELEASE = "bookworm"


def exposure(output: str) -> float:
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", output).group(1))


def documented_exposures() -> dict[str, tuple[str, str]]:
    """docs/security.md's sandbox table: unit -> (exposure, Debian's unit alone)."""
    rows = re.findall(r"^\| `([^`]+)` \| ([0-9.]+) \| ([0-9.]+|-) \|", SECURITY_DOC.read_text(), re.M)
    return {unit: (live, stock) for unit, live, stock in rows}


@pytest.mark.parametrize("unit, stock_file", [
    ("nginx.service", "/lib/systemd/system/nginx.service"),
    ("postgresql", "/lib/systemd/system/postgresql@.service"),
    ("flaskops-postgres-backup.service", None),
    ("uwsgi-flaskapp.service", None),
])
def test_each_unit_scores_under_4_as_documented(host, unit, stock_file):
    if unit == "postgresql":  # the cluster's unit name depends on the Debian release
        unit = postgres_unit(host) + ".service"
    live = exposure(host.check_output("systemd-analyze security --no-pager %s", unit))
    measured = {"exposure": live}
    if stock_file:
        # Debian's unit alone, without the collection's drop-ins: a copy
        # under another name, scored offline (no drop-in applies to it).
        copy = "/tmp/flaskops-debian-" + unit.replace("@", "-")
        host.check_output("cp %s %s", stock_file, copy)
        measured["debian_unit_offline"] = exposure(
            host.check_output("cd /tmp && systemd-analyze security --offline=yes %s", copy))
    MEASUREMENTS.mkdir(parents=True, exist_ok=True)
    (MEASUREMENTS / f"systemd-exposure-{unit}.json").write_text(json.dumps(measured) + "\n")
    print(f"systemd-analyze security {unit}: {measured}")
    assert live <= 4.0, f"{unit} scores {live}"
    if host.system_info.codename == DOCUMENTED_RELEASE:
        documented = documented_exposures().get(unit)
        assert documented, f"docs/security.md has no sandbox row for {unit}"
        assert documented[0] == f"{live:.1f}", f"{unit} scores {live}, docs/security.md says {documented[0]}"
        if stock_file:
            assert documented[1] == f"{measured['debian_unit_offline']:.1f}", \
                f"Debian's {unit} scores {measured['debian_unit_offline']}, docs/security.md says {documented[1]}"


# What the shipped nginx_tls_ciphers agree to over TLS 1.2: ECDHE key
# exchange with an AEAD cipher (AES-GCM, ChaCha20-Poly1305).
STRONG_TLS12 = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")


def test_tls_1_0_and_1_1_are_refused_with_a_protocol_version_alert(host):
    # The client allows them (security level 0): the refusal has to be the
    # server's protocol_version alert, not any handshake error.
    for old in ("1.0", "1.1"):
        result = tls_handshake(host, old, old)
        assert result == ["refused", "TLSV1_ALERT_PROTOCOL_VERSION"], f"TLS {old}: {result}"
    assert tls_handshake(host, "1.3", "1.3")[:2] == ["ok", "TLSv1.3"]
    result = tls_handshake(host, "1.2", "1.2")
    assert result[0] == "ok" and STRONG_TLS12.match(result[2]), result


def test_tls_1_2_agrees_only_to_ecdhe_with_aead_for_the_sites_ecdsa_key(host):
    # The self-signed key is ECDSA: every suite that can authenticate with
    # it (and every anonymous one) is offered alone; only the strong ones
    # may be agreed. The CBC suites are named to prove they were tried.
    results = tls_suites(host, "auth-ecdsa")
    assert {"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256",
            "ECDHE-ECDSA-AES256-SHA384"} <= set(results), sorted(results)
    agreed = {suite for suite, result in results.items() if result[0] == "ok"}
    cannot = {suite for suite, result in results.items() if result[0] == "client-cannot"}
    assert not cannot, cannot
    assert agreed and all(STRONG_TLS12.match(suite) for suite in agreed), sorted(agreed)
    assert agreed == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                      "ECDHE-ECDSA-CHACHA20-POLY1305"}, sorted(agreed)


def test_hsts_is_sent_over_https(host):
    resp = http(host, SITE + "/health")
    assert resp.headers["strict-transport-security"] == "max-age=31536000"
    plain = http(host, "http://127.0.0.1/health")
    assert plain.status == 301 and plain.headers["location"].startswith("https://")
