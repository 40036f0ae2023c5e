"""playbooks/containers.yml on the test bed's Docker engine, seen from the
Docker host (the controller): HTTPS through nginx's container to the app's
and PostgreSQL's, the images and containers as Docker reports them, and
deploys, rollbacks and bad values run against the live stack.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from flaskops_testinfra import HOST_CLIENTS, run_playbook, statuses, wait_for

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PLAYBOOK = str(PROJECT / "playbooks" / "containers.yml")
# Some re-runs go through Mitogen's strategy (mitogen=True, see
# run_playbook): those that bad values stop, the one that brings back the
# database container, the last of the settings test. Every other run stays
# stock, as users run it.


@pytest.fixture(scope="module")
def v(host) -> dict:
    """The scenario's inventory variables of the Docker host."""
    return host.ansible.get_variables()


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


# The scenario's second app (molecule.yml): the sample app under another
# name, with its own server name and database.
SECOND = "containerapp2"
SERVER_NAMES = {SECOND: "second.localhost"}


def app_dir(v: dict, app: str) -> Path:
    """flask_app_container_dir of an app (the inventory's value names it by flask_app_name)."""
    return Path(v["flask_app_container_dir"].replace("{{ flask_app_name }}", app))


def app_containers(v: dict, app: str = "") -> list[dict]:
    """The app's containers (running or not), inspected (default: the first app)."""
    ids = docker("ps", "-aq", "--filter", f"label=io.flaskops.app={app or v['flask_app_name']}").split()
    return [inspect(i) for i in ids]


def live_app_container(v: dict, app: str = "") -> dict:
    found = [c for c in app_containers(v, app) if c["State"]["Running"]]
    assert len(found) == 1, f"one running container of the app expected, got {[c['Name'] for c in found]}"
    return found[0]


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the published port on 127.0.0.1, the certificate checked for the server name."""

    server_name = "localhost"

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)


def https(v: dict, path: str, method: str = "GET", body: dict | None = None, app: str = "",
          timeout: float = 30) -> tuple[int, dict, str]:
    """A request to an app's site (default: the first app's) by its server name."""
    app = app or v["flask_app_name"]
    name = SERVER_NAMES.get(app, "localhost")
    ctx = ssl.create_default_context(cafile=f"{v['nginx_container_dir']}/tls/{app}.selfsigned.crt")
    conn = _Connection(name, int(v["nginx_container_https_port"]), timeout=timeout, context=ctx)
    conn.server_name = name
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    out = (resp.status, {k.lower(): val for k, val in resp.getheaders()}, resp.read().decode())
    conn.close()
    return out


def post_note(v: dict, app: str = "") -> str:
    text = f"containers {uuid.uuid4()}"
    status, headers, body = https(v, "/api/notes", "POST", {"body": text}, app=app)
    assert status == 201, (headers, body)
    return text


def notes(v: dict, app: str = "") -> list[str]:
    status, headers, body = https(v, "/api/notes", app=app)
    assert status == 200, (headers, body)
    return [n["body"] for n in json.loads(body)["notes"]]


def healthy(name: str) -> bool:
    return healthy_state(inspect(name)["State"])


def healthy_state(state: dict) -> bool:
    """Running, and healthy by its health check if it has one."""
    return state["Running"] and state.get("Health", {}).get("Status", "healthy") == "healthy"


def site_conf(v: dict, app: str) -> Path:
    """An app's site in nginx's container, as the Docker host keeps it."""
    return Path(v["nginx_container_dir"], "conf.d", f"{app}.conf")


def secrets(v: dict) -> dict[str, str]:
    """Every secret the stack holds, as the Docker host keeps it."""
    found = {
        "superuser password": Path(v["postgres_container_dir"], "superuser-password").read_text().strip(),
        "app database password": (EPHEMERAL / "app-db-password").read_text().split()[0],
        f"{SECOND} database password": (EPHEMERAL / "app2-db-password").read_text().split()[0],
    }
    for app in (v["flask_app_name"], SECOND):
        for line in (app_dir(v, app) / "secrets" / "app.env").read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.split("=", 1)
                if name in ("SECRET_KEY", "DATABASE_URL"):
                    found[f"{app} {name}"] = json.loads(value)
    return found


def test_https_through_nginx_to_the_app_and_database(v):
    status, headers, body = https(v, "/health")
    assert (status, json.loads(body)["database"]) == (200, "up"), headers
    text = post_note(v)
    assert text in notes(v)


def test_each_app_has_its_own_site_container_image_and_database(v):
    """The second app: its site by its server name, its own container of
    its own image, healthy, and its own database (a note written to one
    app is not in the other's)."""
    status, headers, body = https(v, "/health", app=SECOND)
    assert (status, json.loads(body)["database"]) == (200, "up"), headers
    second = live_app_container(v, SECOND)
    assert second["Config"]["Image"] == f"flaskops/{SECOND}:{second['Config']['Labels']['io.flaskops.release']}"
    assert second["State"]["Health"]["Status"] == "healthy"
    assert second["Id"] != live_app_container(v)["Id"]
    first_text, second_text = post_note(v), post_note(v, SECOND)
    assert (first_text in notes(v), second_text in notes(v)) == (True, False)
    assert (first_text in notes(v, SECOND), second_text in notes(v, SECOND)) == (False, True)
    # A name no site claims goes to the default server, the first app's:
    # its certificate (checked with that app's alone) and its notes.
    ctx = ssl.create_default_context(cafile=f"{v['nginx_container_dir']}/tls/{v['flask_app_name']}.selfsigned.crt")
    ctx.check_hostname = False
    conn = _Connection("unknown.localhost", int(v["nginx_container_https_port"]), timeout=30, context=ctx)
    conn.server_name = "unknown.localhost"
    conn.request("GET", "/api/notes")
    resp = conn.getresponse()
    assert resp.status == 200
    assert first_text in [n["body"] for n in json.loads(resp.read())["notes"]]


def job(v: dict, job_id: int) -> dict:
    status, headers, body = https(v, f"/api/jobs/{job_id}")
    assert status == 200, (headers, body)
    return json.loads(body)


def queue_job(v: dict, text: str, seconds: float = 0) -> int:
    status, headers, body = https(v, "/api/jobs", "POST", {"text": text, "seconds": seconds})
    assert status == 202, (headers, body)
    return json.loads(body)["id"]


def test_the_worker_runs_the_live_release_in_its_own_container(v):
    """The first app's queue worker (workers_processes): a container of the
    live release's image, as the image's user, doing the jobs queued
    through the API; a stop lets the job in hand finish first."""
    name = f"{v['flask_app_name']}-worker-queue"
    worker, live = inspect(name), live_app_container(v)
    release = live["Config"]["Labels"]["io.flaskops.release"]
    assert (worker["State"]["Running"], worker["Config"]["Image"]) == (True, live["Config"]["Image"])
    # Its stop signal and time (molecule.yml), which the restart below uses.
    assert (worker["Config"].get("StopSignal"), worker["Config"].get("StopTimeout")) == ("SIGTERM", 20)
    uids = docker("exec", name, "sh", "-c", "grep -h '^Uid:' /proc/1/status").split()[1:]
    assert uids == ["10001"] * 4, uids
    done = queue_job(v, "in a container")
    assert wait_for(lambda: job(v, done)["status"] == "done", timeout=30), job(v, done)
    assert (job(v, done)["result"], job(v, done)["release"]) == ("IN A CONTAINER", release)
    # Docker stops it with its stop signal and gives it its stop_timeout.
    # (A job's row is locked, not marked, while a worker holds it: the
    # worker's log says when it starts.)
    held = queue_job(v, "held through a restart", 12)
    started = f"worker: job {held} started"
    assert wait_for(lambda: started in docker("logs", name), timeout=20, step=0.2), job(v, held)
    docker("restart", name)
    assert job(v, held)["status"] == "done", "the restart did not wait for the job in hand"
    assert wait_for(lambda: inspect(name)["State"]["Running"], timeout=20)


def test_http_is_redirected_to_https(v):
    conn = http.client.HTTPConnection("127.0.0.1", int(v["nginx_container_http_port"]), timeout=10)
    conn.request("GET", "/api/notes?x=1")
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://127.0.0.1:{v['nginx_container_https_port']}/api/notes?x=1"


def test_static_files_come_from_nginx(v):
    # With the app's container paused, nginx alone answers.
    app = live_app_container(v)["Id"]
    docker("pause", app)
    try:
        status, headers, body = https(v, "/static/robots.txt")
    finally:
        docker("unpause", app)
        # Docker calls a paused container unhealthy until its next check.
        assert wait_for(lambda: healthy(app), timeout=60)
    assert status == 200
    assert body == (PROJECT / "sample_app" / "app" / "static" / "robots.txt").read_text()
    assert "immutable" in headers["cache-control"]


def test_app_image_tagged_by_release_healthy_unprivileged_without_compiler(v):
    app = live_app_container(v)
    release = app["Config"]["Labels"]["io.flaskops.release"]
    assert app["Config"]["Image"] == f"flaskops/{v['flask_app_name']}:{release}"
    assert inspect(app["Config"]["Image"])["Config"]["Labels"]["io.flaskops.release"] == release
    # The image's own health check, as Docker ran it.
    assert inspect(app["Config"]["Image"])["Config"]["Healthcheck"]["Test"][0] == "CMD"
    # (Read until a check has ended: one that overran its timeout on a busy
    # machine ends the log with a failure while the container stays healthy;
    # a check that never passes fails here.)
    assert wait_for(lambda: (state := inspect(app["Id"])["State"])["Health"]["Status"] == "healthy"
                    and state["Health"]["Log"][-1]["ExitCode"] == 0, timeout=60), inspect(app["Id"])["State"]["Health"]
    # uWSGI's master (PID 1) and its workers run as the image's user.
    uids = [line for line in docker("exec", app["Id"], "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status").split("\n")
            if line]
    assert uids and all(line.split()[1:] == ["10001"] * 4 for line in uids), uids
    found = docker("run", "--rm", "--entrypoint", "sh", app["Config"]["Image"], "-c",
                   "for c in gcc cc c++ g++ clang make; do command -v $c; done; true")
    assert found.strip() == "", f"a compiler in the runtime image: {found}"


def test_no_secret_in_images_inspect_or_history(v):
    apps = [live_app_container(v, app) for app in (v["flask_app_name"], SECOND)]
    seen = {}
    for app in apps:
        image = app["Config"]["Image"]
        seen[f"docker history {image}"] = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
        seen[f"image inspect {image}"] = docker("image", "inspect", image)
    for name in [*(app["Name"].lstrip("/") for app in apps), f"{v['flask_app_name']}-worker-queue",
                 v["postgres_container_name"], v["nginx_container_name"]]:
        seen[f"inspect {name}"] = docker("inspect", name)
    leaks = [f"{secret} in {where}" for secret, value in secrets(v).items() for where, text in seen.items()
             if value in text]
    assert leaks == []
    # The files they come from: for the container's user alone.
    for path, uid in [(app_dir(v, v["flask_app_name"]) / "secrets" / "app.env", 10001),
                      (app_dir(v, SECOND) / "secrets" / "app.env", 10001),
                      (Path(v["postgres_container_dir"], "superuser-password"), 999)]:
        st = path.stat()
        assert (oct(st.st_mode & 0o777), st.st_uid) == ("0o600", uid), path


def test_data_kept_across_restarts_and_a_new_database_container(host, v):
    """Each container restarted (nginx first: it must find the app again
    by itself), then a new container of the server on the same volume."""
    texts = {app: post_note(v, app) for app in (v["flask_app_name"], SECOND)}
    apps = [live_app_container(v, app)["Name"].lstrip("/") for app in texts]
    for name in [v["nginx_container_name"], v["postgres_container_name"], *apps]:
        docker("restart", name)
    assert wait_for(lambda: all(healthy(name) for name in [v["postgres_container_name"], *apps]), timeout=90)
    assert wait_for(lambda: all(text in notes(v, app) for app, text in texts.items()), timeout=30)
    # The first app's container back on another address (a sleeper started
    # while it is down takes the next one): nginx finds it by its name,
    # without a reload.
    net = v["flaskops_containers_network"]
    before = inspect(apps[0])["NetworkSettings"]["Networks"][net]["IPAddress"]
    docker("stop", apps[0])
    sleeper = docker("run", "-d", "--rm", "--network", net, "--entrypoint", "sleep", inspect(apps[0])["Config"]["Image"],
                     "300").strip()
    try:
        docker("start", apps[0])
        assert inspect(apps[0])["NetworkSettings"]["Networks"][net]["IPAddress"] != before
        assert wait_for(lambda: healthy(apps[0]), timeout=60)
        assert wait_for(lambda: texts[v["flask_app_name"]] in notes(v), timeout=15)
    finally:
        docker("rm", "--force", sleeper)
    # A new container of the server: the data lives on the named volume.
    docker("rm", "--force", v["postgres_container_name"])
    result = run_playbook(host, PLAYBOOK, {}, mitogen=True)
    assert result.returncode == 0, result.failure_text
    assert all(text in notes(v, app) for app, text in texts.items())


# At most one short request starts every 50 ms: enough to meet every switch
# and container stop of a deploy, which take seconds, without taking the
# cores the deploy needs (the suite runs two scenarios on 2 cores, and the
# load's CPU, the client's, nginx's and uWSGI's, grows with its rate).
SHORT_LOAD_INTERVAL = 0.05


def _load(name: str, port: int, path: str, interval: float = 0.0) -> subprocess.Popen:
    out, stop = EPHEMERAL / f"{name}.json", EPHEMERAL / f"{name}.stop"
    for file in (out, stop):
        file.unlink(missing_ok=True)
    return subprocess.Popen([sys.executable, str(HOST_CLIENTS / "https_load.py"), str(out), str(stop), path,
                             "900", str(interval), str(port)])


# How long the request held across the switch takes: longer than the time
# from the new container's health to nginx's reload and, were nothing to
# wait for it, to the old container's stop (the tasks between them run
# `nginx -t` in containers of the nginx image, and take far longer on a
# machine that runs two scenarios at once); within what nginx's drain waits for
# (nginx_container_drain_timeout, 60 s) and what the old uWSGI gives its
# requests when it stops (uwsgi_worker_reload_mercy, 60 s).
HELD_SECONDS = 45


def _hold_a_request_across_the_switch(v: dict, held: dict, done: threading.Event) -> None:
    """Once the first app has a second container and it is healthy, while
    nginx's site still names the live one (nginx switches after), one
    request of HELD_SECONDS to the live container. Through nginx's reload
    it stays with the old configuration's worker, which nginx's drain
    waits for before the old container stops; uWSGI's graceful stop would
    finish it too. Either way it must end 200: with neither, it ends 502."""
    app = v["flask_app_name"]
    site = site_conf(v, app)
    try:
        live = live_app_container(v, app)
        while not done.is_set():
            others = [c for c in app_containers(v, app) if c["Id"] != live["Id"]]
            if any(healthy_state(c["State"]) for c in others):
                held["site named the live container"] = live["Name"].lstrip("/") in site.read_text()
                held["sent"] = time.time()
                held["status"] = https(v, f"/diag/sleep/{HELD_SECONDS}", timeout=HELD_SECONDS + 30)[0]
                held["ended"] = time.time()
                return
            time.sleep(0.5)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        held["error"] = repr(exc)


def _under_load(host, v, extra_vars: dict):
    """Run the playbook with extra_vars under two loads: short requests one
    after another (SHORT_LOAD_INTERVAL apart at least), and requests that
    take 3 s, so that some are in flight on the live container when nginx
    switches and that container stops; and one request sent to the live
    container before nginx's switch that lasts past it."""
    port = int(v["nginx_container_https_port"])
    loads = {"short": _load("deploy-short", port, "/api/notes", SHORT_LOAD_INTERVAL),
             "slow": _load("deploy-slow", port, "/diag/sleep/3")}
    held: dict = {}
    done = threading.Event()
    holder = threading.Thread(target=_hold_a_request_across_the_switch, args=(v, held, done), daemon=True)
    try:
        time.sleep(4)
        holder.start()
        result = run_playbook(host, PLAYBOOK, extra_vars)
        time.sleep(2)
        ended = [kind for kind, proc in loads.items() if proc.poll() is not None]
    finally:
        done.set()
        if holder.ident:
            holder.join(timeout=HELD_SECONDS + 40)
        for kind, proc in loads.items():
            (EPHEMERAL / f"deploy-{kind}.stop").touch()
            proc.wait(timeout=60)
    assert result.returncode == 0, result.failure_text
    assert ended == [], f"the load ended before the play did: {ended}"
    codes = {kind: json.loads((EPHEMERAL / f"deploy-{kind}.json").read_text()) for kind in loads}
    assert {kind: statuses(c) for kind, c in codes.items() if set(c) != {200}} == {}
    assert len(codes["short"]) > 50 and len(codes["slow"]) > 5, {kind: len(c) for kind, c in codes.items()}
    # Sent while nginx's site named the old container, and still in flight
    # when the new site file was written (nginx reloads right after).
    switched = site_conf(v, v["flask_app_name"]).stat().st_mtime
    assert (held.get("site named the live container"), held.get("status"), held.get("ended", 0) > switched) == \
        (True, 200, True), f"the request held across the switch: {held or 'never sent'}, site written at {switched}"
    assert [s for s, value in secrets(v).items() if value in result.output] == []
    return result


def _kept(v: dict, app: str) -> tuple:
    """What a run that leaves an app as it is must not touch: its
    containers (its workers' too) and its nginx site."""
    workers = docker("ps", "-aq", "--no-trunc", "--filter", f"label=io.flaskops.worker={app}").split()
    return [c["Id"] for c in app_containers(v, app)], sorted(workers), site_conf(v, app).read_text()


def _only_on(v: dict, app: str, release: str) -> None:
    """The app runs release in one container, and no other container."""
    after = live_app_container(v, app)
    assert after["Config"]["Labels"]["io.flaskops.release"] == release, app
    assert [c["Name"] for c in app_containers(v, app)] == [after["Name"]], f"another container of {app} is left"


def test_deploy_and_rollback_by_release_id_under_load(host, v):
    """A new release of both apps (a deploy), then, app by app
    (flaskops_deploy_apps), the release before it by id (a rollback from
    its kept image): no request fails, one container of each app stays,
    and the app left out keeps its containers, workers, site and database
    password, even when the inventory has another one for it. (Both apps
    deploy the sample app: their releases share ids.)"""
    app = v["flask_app_name"]
    old = live_app_container(v)["Config"]["Labels"]["io.flaskops.release"]
    new = f"r{uuid.uuid4().hex[:8]}"
    _under_load(host, v, {"flask_app_release": new})
    for each in (app, SECOND):
        _only_on(v, each, new)
    # The worker moved to the release too.
    assert inspect(f"{app}-worker-queue")["Config"]["Labels"]["io.flaskops.release"] == new

    # The first app back, under load; the second left out, with another
    # password in the inventory (its file), which must not reach its role.
    kept = _kept(v, SECOND)
    password_file = EPHEMERAL / "app2-db-password"
    password = password_file.read_text()
    password_file.write_text(uuid.uuid4().hex + "\n")
    try:
        _under_load(host, v, {"flaskops_deploy_apps": app, "flask_app_rollback": True, "flask_app_rollback_release": old})
    finally:
        password_file.write_text(password)
    _only_on(v, app, old)
    assert inspect(f"{app}-worker-queue")["Config"]["Labels"]["io.flaskops.release"] == old
    assert _kept(v, SECOND) == kept
    # Restarted, the second app logs in again with the password it has.
    docker("restart", live_app_container(v, SECOND)["Id"])
    assert wait_for(lambda: healthy(live_app_container(v, SECOND)["Id"]), timeout=60)
    post_note(v, SECOND)

    # The second app back too (every task of this run ran stock above),
    # the first (with its worker) left out.
    kept = _kept(v, app)
    result = run_playbook(host, PLAYBOOK, {"flaskops_deploy_apps": SECOND, "flask_app_rollback": True,
                                           "flask_app_rollback_release": old}, mitogen=True)
    assert result.returncode == 0, result.failure_text
    _only_on(v, SECOND, old)
    assert _kept(v, app) == kept
    assert https(v, "/health")[0] == 200
    # Both images are kept: either release can be rolled back to.
    for release in (old, new):
        docker("image", "inspect", f"flaskops/{app}:{release}")


def test_a_changed_setting_goes_live_like_a_release(host, v):
    """Another uwsgi.ini is another container, put live by nginx: no request
    fails, and the old container goes. (The next runs put the scenario's
    setting back.)"""
    before = live_app_container(v)
    _under_load(host, v, {"uwsgi_processes": 3})
    after = live_app_container(v)
    assert after["Name"] != before["Name"]
    assert after["Config"]["Labels"]["io.flaskops.release"] == before["Config"]["Labels"]["io.flaskops.release"]
    # uWSGI's master is PID 1 there: its children are the workers.
    workers = docker("exec", after["Id"], "python3", "-c",
                     "import os; print(sum(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == '1'"
                     " for p in os.listdir('/proc') if p.isdigit()))")
    assert workers.strip() == "3"


def pg_show(v: dict, *settings: str) -> list[str]:
    """What the running server says of these settings (as its superuser,
    over its local socket)."""
    query = "; ".join(f"SHOW {s}" for s in settings) + "; SELECT pg_postmaster_start_time()"
    return docker("exec", "--user", "postgres", v["postgres_container_name"],
                  "psql", "--no-psqlrc", "-Atc", query).split("\n")[:len(settings) + 1]


def test_changed_settings_are_what_nginx_and_postgres_run_with(host, v):
    """An http-level nginx setting (nginx.conf from the role's template)
    reaches the running nginx by a reload; PostgreSQL's settings (its
    template's files) reach the server: work_mem by a reload (the server
    keeps running), max_connections by a restart. Then back, the data kept."""
    # 2 KB: the note is short, the rest a field the app does not read.
    big = {"body": "a note", "padding": "x" * 2000}
    work_mem, max_connections, started = pg_show(v, "work_mem", "max_connections")
    more = str(int(max_connections) + 3)
    text = post_note(v)
    # (work_mem's default follows max_connections below its cap: pinned
    # while max_connections changes.)
    steps = [({"nginx_client_max_body_size": "1k", "postgres_settings": {"work_mem": "7MB"}}, 413, ["7MB", max_connections], False),
             ({"postgres_max_connections": int(more), "postgres_work_mem": work_mem}, 201, [work_mem, more], True),
             ({}, 201, [work_mem, max_connections], True)]
    # The last run (back to the scenario's values) reloads and restarts
    # what the first two did with stock Ansible: it goes through Mitogen.
    for step, (extra, wanted, settings, restarts) in enumerate(steps):
        result = run_playbook(host, PLAYBOOK, extra, mitogen=step == len(steps) - 1)
        assert result.returncode == 0, result.failure_text
        status, headers, body = https(v, "/api/notes", "POST", big)
        assert status == wanted, (extra, headers, body)
        now = pg_show(v, "work_mem", "max_connections")
        assert (now[:2], now[2] != started) == (settings, restarts), extra
        started = now[2]
    assert text in notes(v)


def test_pg_hba_is_the_roles(v):
    """The role's pg_hba.conf, not the image's: the superuser only over the
    local socket, the app's role only from the containers' network (the
    HTTPS test shows it is let in from there)."""
    superuser = Path(v["postgres_container_dir"], "superuser-password").read_text().strip()
    app_password = (EPHEMERAL / "app-db-password").read_text().split()[0]
    for user, password, database in [("postgres", superuser, "postgres"),
                                     (v["flask_app_name"], app_password, v["flask_app_name"])]:
        # (The password from this process's environment: not in an argv a
        # failed assertion would print.)
        out = subprocess.run(["docker", "exec", "--env", "PGPASSWORD", v["postgres_container_name"],
                              "psql", "--no-psqlrc", "--host", "127.0.0.1", "--username", user, "--dbname", database,
                              "-Atc", "SELECT 1"], capture_output=True, text=True, check=False,
                             env={**os.environ, "PGPASSWORD": password})
        refused = out.returncode != 0 and "no pg_hba.conf entry" in out.stderr
        assert refused, f"{user} logged in over TCP from 127.0.0.1 ({out.returncode}: {out.stderr.strip()})"


def test_a_rollback_to_a_release_without_image_fails_first(host, v):
    """A release id that has no image, and one id for several apps (a
    release belongs to one app), are refused before any change."""
    live = [live_app_container(v, app)["Id"] for app in (v["flask_app_name"], SECOND)]
    for extra, named in [({"flaskops_deploy_apps": v["flask_app_name"]}, "no image"),
                         ({}, "flaskops_deploy_apps")]:
        result = run_playbook(host, PLAYBOOK, {"flask_app_rollback": True, "flask_app_rollback_release": "no-such-release",
                                               **extra})
        assert result.returncode != 0
        assert "flask_app_rollback_release" in result.failure_text and named in result.failure_text, result.failure_text
        assert [live_app_container(v, app)["Id"] for app in (v["flask_app_name"], SECOND)] == live


@pytest.mark.parametrize("bad", [{"uwsgi_options": {"no-such-option": "1"}},
                                 {"nginx_site_extra_directives": ["no_such_directive on;"]},
                                 {"postgres_settings": {"work_mem": "lots"}},
                                 {"postgres_hba_entries": [{"database": "all", "user": "all", "address": "10.0.0.0/33"}]}],
                         ids=["uwsgi", "nginx", "postgres", "pg_hba"])
def test_a_bad_value_leaves_the_live_config(host, v, bad):
    apps = (v["flask_app_name"], SECOND)
    files = [*(Path(v["uwsgi_container_dir"], app, "uwsgi.ini") for app in apps),
             *(site_conf(v, app) for app in apps),
             *sorted(Path(v["postgres_container_dir"], "config").rglob("*.conf"))]
    before = [f.read_text() for f in files]
    live = [live_app_container(v, app)["Id"] for app in apps]
    server = inspect(v["postgres_container_name"])["State"]["StartedAt"]
    result = run_playbook(host, PLAYBOOK, bad, mitogen=True)
    assert result.returncode != 0
    assert any("failed to validate" in f for f in result.failures), result.failure_text
    assert [f.read_text() for f in files] == before
    assert [live_app_container(v, app)["Id"] for app in apps] == live
    assert inspect(v["postgres_container_name"])["State"]["StartedAt"] == server
    assert https(v, "/health")[0] == 200


def test_check_mode_on_the_converged_host_changes_nothing(host, v):
    """Last: the tests before it leave the stack converged (the settings
    test ends on the scenario's values, and a run that fails changes
    nothing: the bad-value test shows it), so a change reported here is
    one a real run would make."""
    result = run_playbook(host, PLAYBOOK, {}, check=True)
    assert result.returncode == 0, result.failure_text
    assert result.changed == 0, result.output[-3000:]
