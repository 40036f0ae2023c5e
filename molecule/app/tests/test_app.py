"""Roles `flask_app` and `uwsgi`, seen on the converged host."""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from flaskops_testinfra import (UWSGI_CLIENT, main_pid, on_first_platform_only, run_converge, uwsgi_request,
                                uwsgi_stats, wait_for)

SOCKET = "/run/uwsgi/flaskapp/uwsgi.sock"
STATS = "/run/uwsgi/flaskapp/stats.sock"
UNIT = "uwsgi-flaskapp"
SAMPLE_APP = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "sample_app"


def stats(host) -> dict:
    return uwsgi_stats(host, STATS)


def env_value(host, name: str) -> str:
    for line in host.check_output("cat /etc/flaskops/flaskapp.env").splitlines():
        if line.startswith(name + "="):
            return json.loads(line.split("=", 1)[1])
    raise AssertionError(f"{name} not in the environment file")


def current_release(host) -> str:
    return host.check_output("readlink /srv/flaskapp/current")


def test_unit_enabled_and_running_as_the_app_user(host):
    service = host.service(UNIT)
    assert service.is_enabled and service.is_running
    pid = str(main_pid(host, UNIT))
    users = host.check_output("ps -o user= --ppid %s -p %s | sort -u", pid, pid).split()
    assert users == ["flaskapp"]
    assert host.check_output("systemctl show -p StatusText --value %s", UNIT) == "uWSGI is ready"


def test_app_user_has_no_login(host):
    user = host.user("flaskapp")
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/srv/flaskapp"
    assert not user.home.startswith("/var/www")


def test_socket_is_660_and_owned_by_the_app_group(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert sock.mode == 0o660
    assert sock.group == "flaskapp"


def test_stats_socket_lists_the_configured_workers(host):
    data = stats(host)
    assert len(data["workers"]) == 3
    assert all(w["status"] in ("idle", "busy") for w in data["workers"])


def test_page_and_health_over_the_uwsgi_socket(host):
    page = uwsgi_request(host, SOCKET, "/")
    assert page.status == 200 and "<html" in page.body.lower()
    health = uwsgi_request(host, SOCKET, "/health")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok", "database": "up"}


def test_records_round_trip_through_postgresql(host):
    marker = f"note-{time.time_ns()}"
    created = uwsgi_request(host, SOCKET, "/api/notes", "POST", {"Content-Type": "application/json"},
                            json.dumps({"body": marker}))
    assert created.status == 201, created.body
    listed = uwsgi_request(host, SOCKET, "/api/notes")
    assert marker in listed.body


def test_environment_file_and_code_permissions(host):
    env = host.file("/etc/flaskops/flaskapp.env")
    assert env.user == "root" and env.group == "flaskapp" and env.mode == 0o640
    assert len(env_value(host, "SECRET_KEY")) >= 32
    release = current_release(host)
    # The app user reads its code but cannot change it.
    assert host.run("runuser -u flaskapp -- test -r %s/wsgi.py", release).rc == 0
    assert host.run("runuser -u flaskapp -- test -w %s/wsgi.py", release).rc != 0
    assert host.run("runuser -u flaskapp -- touch %s/new-file", release).rc != 0
    assert host.run("runuser -u flaskapp -- test -w %s/venv/bin", release).rc != 0


def test_secret_key_is_kept_and_never_printed(host):
    before = env_value(host, "SECRET_KEY")
    result = run_converge(host, {}, tags=["flask_app"])
    assert result.returncode == 0, result.failure_text or result.raw
    assert env_value(host, "SECRET_KEY") == before
    assert before not in result.raw


def test_systemctl_reload_is_graceful_and_reports_ready(host):
    pid, restarts = main_pid(host, UNIT), host.check_output("systemctl show -p NRestarts --value %s", UNIT)
    host.check_output("systemctl reload %s", UNIT)
    assert wait_for(lambda: host.check_output("systemctl show -p StatusText --value %s", UNIT) == "uWSGI is ready"
                    and uwsgi_request(host, SOCKET, "/health").status == 200)
    assert main_pid(host, UNIT) == pid
    assert host.check_output("systemctl show -p NRestarts --value %s", UNIT) == restarts


# A loop inside the host that sends requests to the socket until told to stop
# (or for 5 minutes at most), recording every status; an exception counts as
# a failure (code 0).
_LOAD = UWSGI_CLIENT + r"""
import os, time
where, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
codes = []
deadline = time.monotonic() + 300
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        codes.append(uwsgi_request(where, "GET", "/health", {}, b"", timeout=30)[0])
    except Exception:
        codes.append(0)
json.dump(codes, open(out, "w"))
"""


def test_new_release_switches_current_without_a_failed_request_and_rolls_back(host):
    first = current_release(host)
    source = Path(tempfile.mkdtemp(prefix="flaskops-release2-"))
    try:
        shutil.copytree(SAMPLE_APP, source / "app", ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        index = source / "app" / "app" / "templates" / "base.html"
        index.write_text(index.read_text().replace("</h1>", " (release two)</h1>", 1))
        assert "(release two)" in index.read_text()

        host.run("rm -f /tmp/load.stop /tmp/load.json")
        host.check_output("nohup python3 -c %s %s /tmp/load.json /tmp/load.stop >/dev/null 2>&1 &", _LOAD, SOCKET)
        result = run_converge(host, {"flask_app_source_path": str(source / "app")}, tags=["flask_app"])
        assert result.returncode == 0, result.failure_text or result.raw
        second = current_release(host)
        assert second != first
        assert wait_for(lambda: "(release two)" in uwsgi_request(host, SOCKET, "/").body, timeout=60)
        host.check_output("touch /tmp/load.stop")
        assert wait_for(lambda: host.file("/tmp/load.json").exists, timeout=40)
        codes = json.loads(host.check_output("cat /tmp/load.json"))
        assert len(codes) > 20
        assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}

        result = run_converge(host, {"flask_app_source_path": str(source / "app"), "flask_app_rollback": True},
                              tags=["flask_app"])
        assert result.returncode == 0, result.failure_text or result.raw
        assert current_release(host) == first
        assert wait_for(lambda: "(release two)" not in uwsgi_request(host, SOCKET, "/").body, timeout=60)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    # The default source is the first release again: nothing to build.
    result = run_converge(host, {}, tags=["flask_app"])
    assert result.returncode == 0 and current_release(host) == first


def test_kill_9_of_the_master_is_followed_by_a_restart_within_10s(host):
    pid = main_pid(host, UNIT)
    host.check_output("kill -9 %s", str(pid))
    started = time.monotonic()
    assert wait_for(lambda: main_pid(host, UNIT) not in (0, pid) and uwsgi_request(host, SOCKET, "/health").status == 200,
                    timeout=10, step=0.2)
    assert time.monotonic() - started <= 10


def test_unit_hardening_exposure(host):
    out = host.check_output("systemd-analyze security %s --no-pager 2>&1 | tail -n 1", UNIT)
    # "→ Overall exposure level for uwsgi-flaskapp.service: 2.1 OK"
    level = float(out.split(":")[1].split()[0])
    assert level < 4.0, out


def test_a_value_uwsgi_rejects_fails_and_the_server_keeps_running(host):
    on_first_platform_only(host)
    ini, pid = host.file("/etc/uwsgi/flaskapp.ini").sha256sum, main_pid(host, UNIT)
    result = run_converge(host, {"uwsgi_options": {"harakirii": 5}}, tags=["uwsgi"])
    assert result.returncode != 0
    assert "unknown config directive: harakirii" in result.failure_text
    assert host.file("/etc/uwsgi/flaskapp.ini").sha256sum == ini
    assert main_pid(host, UNIT) == pid


@pytest.mark.parametrize("bad, variable", [
    ({"uwsgi_socket": "tcp://10.0.0.1:3031"}, "uwsgi_socket"),
    ({"uwsgi_socket": "10.0.0.1:70000"}, "uwsgi_socket"),
    ({"uwsgi_processes": -1}, "uwsgi_processes"),
    ({"uwsgi_apps": [{"name": "flaskapp", "threads": 0}]}, "uwsgi_threads"),
    ({"flask_app_root": "srv/app"}, "flask_app_root"),
    ({"flask_app_source_type": "svn"}, "flask_app_source_type"),
    ({"flask_app_database_url": "not a url"}, "flask_app_database_url"),
])
def test_bad_input_fails_before_any_change(host, bad, variable):
    on_first_platform_only(host)
    pid = main_pid(host, UNIT)
    result = run_converge(host, bad, tags=["flask_app", "uwsgi"])
    assert result.returncode != 0
    assert variable in result.failure_text, result.failure_text or result.raw
    assert result.changed == 0
    assert main_pid(host, UNIT) == pid
