"""The whole stack on one host, driven from outside its processes.

Every request goes client -> nginx (TLS) -> uWSGI socket -> Flask ->
PostgreSQL and back; the client is a python3 inside the host talking to its
own loopback.
"""

import json
import subprocess
import time

import pytest
from flaskops_testinfra import http, main_pid, postgres_unit, uwsgi_requests_served, uwsgi_stats, wait_for

SITE = "https://127.0.0.1"
STATS = "/run/uwsgi/flaskapp/stats.sock"


def services(host) -> list[str]:
    return ["nginx", "uwsgi-flaskapp", postgres_unit(host)]


def create_note(host, body: str) -> dict:
    resp = http(host, SITE + "/api/notes", "POST", {"Content-Type": "application/json"}, json.dumps({"body": body}))
    assert resp.status == 201, resp.body
    return json.loads(resp.body)


def listed_bodies(host) -> list[str]:
    resp = http(host, SITE + "/api/notes")
    assert resp.status == 200, resp.body
    return [note["body"] for note in json.loads(resp.body)["notes"]]


def stack_answers(host) -> bool:
    return http(host, SITE + "/health").status == 200


def test_every_service_is_enabled_and_running(host):
    for name in services(host):
        service = host.service(name)
        assert service.is_enabled and service.is_running, name


def test_a_record_made_over_https_is_listed_back(host):
    body = f"note {time.time_ns()}"
    created = create_note(host, body)
    assert created["body"] == body
    assert body in listed_bodies(host)


def test_health_is_ok_with_the_database_up(host):
    resp = http(host, SITE + "/health")
    assert resp.status == 200
    assert json.loads(resp.body) == {"status": "ok", "database": "up"}


def test_static_files_are_served_by_nginx_without_touching_uwsgi(host):
    # A worker counts a request once it has sent the response, a moment after
    # the client has it: let the counters settle before and after.
    time.sleep(1)
    before = uwsgi_requests_served(host, STATS)
    for path in ("/static/css/app.css", "/favicon.ico", "/robots.txt"):
        assert http(host, SITE + path).status == 200, path
    time.sleep(1)
    assert uwsgi_requests_served(host, STATS) == before
    # The counter does move for a page the app makes.
    assert http(host, SITE + "/api/notes").status == 200
    assert wait_for(lambda: uwsgi_requests_served(host, STATS) == before + 1, timeout=5)


def test_uwsgi_runs_two_workers_per_vcpu_by_default(host):
    # The scenario leaves uwsgi_processes to its default: uwsgi_workload
    # "cpu" gives 2 x the vCPUs Ansible counts (processor entries of
    # /proc/cpuinfo), all running.
    vcpus = int(host.check_output("grep -c ^processor /proc/cpuinfo"))
    workers = uwsgi_stats(host, STATS)["workers"]
    assert len(workers) == 2 * vcpus, (vcpus, len(workers))
    master = str(main_pid(host, "uwsgi-flaskapp"))
    assert len(host.check_output("pgrep -P %s", master).split()) == 2 * vcpus


def test_http_redirects_to_https(host):
    resp = http(host, "http://127.0.0.1/api/notes?x=1")
    assert resp.status == 301
    assert resp.headers["location"] == "https://127.0.0.1/api/notes?x=1"


@pytest.mark.parametrize("service", ["nginx", "uwsgi", "postgresql"])
def test_each_service_comes_back_after_a_restart_with_the_data(host, service):
    body = f"before restarting {service} {time.time_ns()}"
    create_note(host, body)
    unit = {"nginx": "nginx", "uwsgi": "uwsgi-flaskapp", "postgresql": postgres_unit(host)}[service]
    host.check_output("systemctl restart %s", unit)
    assert wait_for(lambda: stack_answers(host), timeout=30), f"the site did not come back after restarting {unit}"
    for name in services(host):
        assert host.service(name).is_enabled and host.service(name).is_running, name
    assert body in listed_bodies(host)


def test_everything_comes_back_after_the_host_restarts(host):
    body = f"before the host restarts {time.time_ns()}"
    create_note(host, body)
    container = host.backend.get_hostname()
    subprocess.run(["docker", "restart", container], check=True, capture_output=True, timeout=120)
    # (Polled with wait_for: until the host's first new connection is up,
    # ssh itself may fail.)
    state = {}

    def booted() -> bool:
        state["now"] = host.run("systemctl is-system-running").stdout.strip()
        return state["now"] in ("running", "degraded")
    assert wait_for(booted, timeout=90, step=1), f"the host did not finish booting: {state}"
    assert state["now"] == "running", host.run("systemctl --failed --no-pager").stdout
    assert wait_for(lambda: stack_answers(host), timeout=60)
    for name in services(host):
        assert host.service(name).is_enabled and host.service(name).is_running, name
    assert body in listed_bodies(host)
