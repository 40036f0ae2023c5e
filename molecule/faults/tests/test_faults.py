"""Faults the stack survives, each caused on the running host and checked
from a client's side: requests go client -> nginx (TLS) -> uWSGI -> Flask ->
PostgreSQL, the client being a python3 inside the host on its own loopback.

The scenario turns on the app's /diag/ endpoints and sets harakiri to 5 s
and reload-on-rss to 160 MB (molecule.yml).
"""

import json
import os
import time
from pathlib import Path

import pytest
from flaskops_testinfra import (client, http, load_running, main_pid, postgres_unit, start_load, statuses, stop_load,
                                wait_for)

SITE = "https://127.0.0.1"
UWSGI = "uwsgi-flaskapp"
HARAKIRI_S = 5
MEASUREMENTS = Path(__file__).resolve().parents[3] / ".cache" / "measurements"


def site_answers(host) -> bool:
    return http(host, SITE + "/health").status == 200


def children(host, unit: str) -> set[int]:
    """PIDs of the children of a unit's main process."""
    out = host.run("pgrep -P %s", str(main_pid(host, unit))).stdout
    return {int(pid) for pid in out.split()}


def uwsgi_workers(host) -> set[int]:
    """PIDs of the uWSGI master's children (its workers)."""
    return children(host, UWSGI)


def nginx_children(host) -> set[int]:
    """PIDs of nginx's workers (and cache processes): its master's children."""
    return children(host, "nginx")


def unit_pid(unit: str):
    return lambda host: main_pid(host, unit)


def a_uwsgi_worker(host) -> int:
    return min(uwsgi_workers(host))


@pytest.mark.parametrize("what, unit, pid_of", [
    ("uWSGI master", UWSGI, unit_pid(UWSGI)),
    ("uWSGI worker", UWSGI, a_uwsgi_worker),
    ("nginx master", "nginx", unit_pid("nginx")),
    ("PostgreSQL postmaster", None, None),
])
def test_a_process_killed_with_sigkill_comes_back_within_10_seconds(host, what, unit, pid_of):
    if unit is None:  # the cluster's unit name depends on the Debian release
        unit = postgres_unit(host)
        pid_of = unit_pid(unit)
    assert site_answers(host)
    master_before = main_pid(host, unit)
    victim = pid_of(host)
    workers_before = uwsgi_workers(host)
    host.check_output("kill -9 %s", str(victim))
    killed_at = time.monotonic()

    def recovered() -> bool:
        if main_pid(host, unit) == 0 or not site_answers(host):
            return False
        if what == "uWSGI worker":  # the master replaces the worker itself
            return victim not in uwsgi_workers(host) and len(uwsgi_workers(host)) == len(workers_before)
        return main_pid(host, unit) != victim

    assert wait_for(recovered, timeout=10, step=0.25), f"{what} (pid {victim}) did not come back within 10 s"
    took = time.monotonic() - killed_at
    if what == "uWSGI worker":
        assert main_pid(host, unit) == master_before, "a dead worker must not restart the master"
    assert host.service(unit).is_running, unit
    print(f"{what}: site answering again {took:.1f} s after kill -9")


def test_a_request_past_harakiri_is_killed_logged_and_its_worker_replaced(host):
    master = main_pid(host, UWSGI)
    workers = uwsgi_workers(host)
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    # The slow request runs in the background; its status lands in a file.
    host.run("rm -f /tmp/slow.json")
    host.check_output("nohup python3 %s %s /tmp/slow.json >/dev/null 2>&1 &", client(host, "timed_request"),
                      f"/diag/sleep/{HARAKIRI_S * 4}")
    # Meanwhile the other worker keeps answering.
    time.sleep(1)
    for _attempt in range(5):
        assert site_answers(host)
    assert wait_for(lambda: host.file("/tmp/slow.json").exists, timeout=HARAKIRI_S * 4)
    slow = json.loads(host.check_output("cat /tmp/slow.json"))
    # nginx answers 502 when the worker dies under the request, well before the sleep ends.
    assert slow["status"] == 502, slow
    assert HARAKIRI_S - 1 <= slow["seconds"] < HARAKIRI_S * 3, slow
    journal = host.check_output("journalctl -u %s --since %s --no-pager", UWSGI, since)
    assert "HARAKIRI" in journal, journal[-2000:]
    assert wait_for(lambda: len(uwsgi_workers(host)) == len(workers) and uwsgi_workers(host) != workers, timeout=10)
    assert main_pid(host, UWSGI) == master
    assert site_answers(host)


def settled_workers(host) -> set[int]:
    """The workers, once the same full set has been there for 2 s."""
    previous: set[int] = set()

    def stable() -> bool:
        nonlocal previous
        now = uwsgi_workers(host)
        same = now == previous and len(now) == 2
        previous = now
        return same

    assert wait_for(stable, timeout=30, step=2), previous
    return previous


def test_the_app_survives_20_seconds_without_its_database(host):
    unit = postgres_unit(host)
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    master, workers = main_pid(host, UWSGI), settled_workers(host)
    host.check_output("systemctl stop %s", unit)
    stopped_at = time.monotonic()
    try:
        seen = []
        while time.monotonic() - stopped_at < 20:
            resp = http(host, SITE + "/health")
            seen.append(resp.status)
            assert resp.status == 503, resp.body
            body = json.loads(resp.body)
            assert body["status"] == "unavailable" and body["database"] == "down" and body["detail"], body
            # Pages that need the database fail without taking the app down.
            assert http(host, SITE + "/api/notes").status >= 500
            time.sleep(2)
        assert len(seen) >= 5
        assert main_pid(host, UWSGI) == master and uwsgi_workers(host) == workers, \
            host.check_output("journalctl -u %s --since %s --no-pager", UWSGI, since)[-3000:]
    finally:
        host.check_output("systemctl start %s", unit)
    # The same workers reconnect on their own: no uWSGI restart.
    assert wait_for(lambda: site_answers(host), timeout=15)
    resp = http(host, SITE + "/api/notes", "POST", {"Content-Type": "application/json"},
                json.dumps({"body": "written after the database came back"}))
    assert resp.status == 201, resp.body
    assert main_pid(host, UWSGI) == master and uwsgi_workers(host) == workers


def notes_pages_at_once(host, count: int = 24, in_flight: int = 8) -> list[list]:
    """[status, body] of count GET /api/notes, in_flight at a time (so every
    worker gets some); status 0 where no answer came (the body says why)."""
    return json.loads(host.check_output("python3 %s %s %s", client(host, "https_paths"),
                                        json.dumps(["/api/notes"] * count), str(in_flight)))


def failed(answers: list[list]) -> list[list]:
    return [[status, body[:300]] for status, body in answers if status != 200]


def test_no_request_fails_once_the_database_is_back_from_a_restart(host):
    # The workers' pools hold connections whose sessions the restart ends;
    # each must be replaced before a request gets it, not fail that request.
    assert not failed(notes_pages_at_once(host)), "before the restart"
    master, workers = main_pid(host, UWSGI), uwsgi_workers(host)
    host.check_output("systemctl restart %s", postgres_unit(host))  # returns once it accepts connections
    assert not failed(notes_pages_at_once(host)), "after the restart"
    assert main_pid(host, UWSGI) == master and uwsgi_workers(host) == workers, "the same workers answered"


def test_a_worker_past_reload_on_rss_is_recycled_without_a_failed_request(host):
    master = main_pid(host, UWSGI)
    start_load(host, "/api/notes", max_seconds=120, name="rss")
    try:
        time.sleep(1)
        resp = http(host, SITE + "/diag/grow/200")
        assert resp.status == 200, resp.body
        grown = json.loads(resp.body)["pid"]
        # Checked after the request: the worker that grew is replaced.
        assert wait_for(lambda: grown not in uwsgi_workers(host) and len(uwsgi_workers(host)) == 2, timeout=15), \
            f"worker {grown} is still there"
        time.sleep(1)
        assert load_running(host, "rss")
    finally:
        codes = stop_load(host, "rss")
    assert main_pid(host, UWSGI) == master
    assert len(codes) > 10, len(codes)
    assert set(codes) == {200}, statuses(codes)


def test_nginx_keeps_serving_when_its_log_disk_is_full(host):
    logs = "/var/log/nginx"
    host.check_output("mount -t tmpfs -o size=256k flaskops-full-logs %s", logs)
    try:
        # Fill it, then make nginx open its logs there.
        host.run("dd if=/dev/zero of=%s/filler bs=4k 2>/dev/null", logs)
        assert host.check_output("df --output=avail %s | tail -1", logs).strip() == "0"
        host.check_output("nginx -s reopen")
        time.sleep(1)
        for path in ("/health", "/static/css/app.css", "/api/notes", "/"):
            for _attempt in range(10):
                assert http(host, SITE + path).status == 200, path
        assert host.service("nginx").is_running
    finally:
        host.run("umount -l %s", logs)
        host.run("nginx -s reopen")
    assert site_answers(host)


def test_reloads_of_uwsgi_and_nginx_under_load_fail_no_request(host):
    master = main_pid(host, UWSGI)
    start_load(host, "/api/notes", max_seconds=180, name="reloads")
    try:
        time.sleep(2)
        # Graceful reload (the unit's ExecReload: "r" to the master fifo),
        # then a chain reload (workers replaced one at a time, as a new
        # release does): each ends with a whole new set of workers.
        for reload in ("systemctl reload " + UWSGI, "echo c > /run/uwsgi/flaskapp/master.fifo"):
            before = uwsgi_workers(host)
            host.check_output(reload)
            assert wait_for(lambda: len(uwsgi_workers(host)) == len(before) and not uwsgi_workers(host) & before,
                            timeout=60), reload
            time.sleep(2)
        # Each nginx reload starts new workers and lets the old ones finish:
        # seen as a whole new set of the master's children, same master.
        nginx_master = main_pid(host, "nginx")
        for reload in ("systemctl reload nginx", "nginx -s reload"):
            before = nginx_children(host)
            assert before, "nginx has no workers"
            host.check_output(reload)
            assert wait_for(lambda: nginx_children(host) and not nginx_children(host) & before, timeout=30), \
                f"{reload}: old workers {sorted(before)} are still there"
            assert main_pid(host, "nginx") == nginx_master, reload
            time.sleep(2)
        assert load_running(host, "reloads")
    finally:
        codes = stop_load(host, "reloads")
    assert main_pid(host, UWSGI) == master, "a reload keeps the master"
    assert len(codes) > 50, len(codes)
    assert set(codes) == {200}, statuses(codes)


def test_restarts_of_uwsgi_under_load_fail_no_request(host):
    # systemd holds the app's listening socket (uwsgi-flaskapp.socket): while
    # uWSGI restarts, connections wait in its queue, and the new master
    # answers them. The stop itself lets the requests in flight finish.
    assert host.service(UWSGI + ".socket").is_running, "the socket unit is not listening"
    start_load(host, "/api/notes", max_seconds=180, name="restarts")
    try:
        time.sleep(2)
        for restart in range(2):
            master = main_pid(host, UWSGI)
            host.check_output("systemctl restart %s", UWSGI)
            assert wait_for(lambda: main_pid(host, UWSGI) not in (0, master), timeout=60), \
                f"uWSGI did not restart (restart {restart + 1})"
            time.sleep(2)
        # Stopped outright, uWSGI is started again by the next connection.
        host.check_output("systemctl stop %s", UWSGI)
        assert wait_for(lambda: main_pid(host, UWSGI) != 0, timeout=30), "a connection did not start uWSGI"
        time.sleep(2)
        assert load_running(host, "restarts")
    finally:
        codes = stop_load(host, "restarts")
    assert len(codes) > 50, len(codes)
    assert set(codes) == {200}, statuses(codes)


def test_nginx_accepts_from_non_blocking_sockets(host):
    # The sockets come from systemd (nginx.socket). A blocking one leaves a
    # worker waiting in accept() when another worker took the connection it
    # was woken for, and the requests that worker holds stall until the next
    # connection arrives: seen as TLS handshakes and responses that never
    # came in bursts of requests after a quiet spell.
    flags = json.loads(host.check_output("python3 %s %s", client(host, "listening_flags"), str(main_pid(host, "nginx"))))
    assert len(flags) >= 2, f"nginx's master holds {len(flags)} listening sockets, not those of 80 and 443"
    blocking = [fd for fd, value in flags.items() if not value & os.O_NONBLOCK]
    assert not blocking, f"nginx's listening sockets {blocking} are blocking"


def test_restarts_of_nginx_under_load_fail_no_request(host):
    # systemd holds nginx's listening sockets (nginx.socket): between the old
    # master's exit and the new one's start, connections wait in their
    # queues instead of being refused. The stop (QUIT) lets the requests in
    # flight finish. What each restart took is recorded (.cache/measurements/).
    assert host.service("nginx.socket").is_running, "nginx's socket unit is not listening"
    start_load(host, "/api/notes", max_seconds=120, name="nginx-restart")
    took = []
    try:
        time.sleep(2)
        for restart in range(2):
            master = main_pid(host, "nginx")
            started = time.monotonic()
            host.check_output("systemctl restart nginx")  # returns once the new master runs
            took.append(time.monotonic() - started)
            assert main_pid(host, "nginx") not in (0, master), f"nginx did not restart (restart {restart + 1})"
            assert took[-1] < 5, f"restart {restart + 1} took {took[-1]:.1f} s"
            time.sleep(2)
        # Stopped outright, nginx is started again by the next connection.
        host.check_output("systemctl stop nginx")
        assert wait_for(lambda: main_pid(host, "nginx") != 0, timeout=30), "a connection did not start nginx"
        time.sleep(2)
        assert load_running(host, "nginx-restart")
    finally:
        codes = stop_load(host, "nginx-restart")
    MEASUREMENTS.mkdir(parents=True, exist_ok=True)
    (MEASUREMENTS / "nginx-restart-under-load.json").write_text(
        json.dumps({"requests": len(codes), "statuses": {str(c): n for c, n in statuses(codes).items()},
                    "restart_seconds": [round(t, 2) for t in took]}) + "\n")
    print(f"systemctl restart nginx under load: {statuses(codes)} of {len(codes)} requests, restarts took {took}")
    assert len(codes) > 50, len(codes)
    assert set(codes) == {200}, statuses(codes)
