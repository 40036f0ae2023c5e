"""The stack over five hosts, driven from the lb host inside the private network.

lb runs nginx, app1 and app2 run the app under uWSGI on TCP, db runs
PostgreSQL. Load stays inside the project's own containers.
"""

import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flaskops_testinfra import (assert_refused_by_the_role, client, http, load_running, main_pid, paused_and_resumed,
                                postgres_unit, prometheus_targets_scraped_now, run_playbook, start_load, statuses,
                                stop_load, stopped_and_started, uwsgi_request, uwsgi_requests_served, wait_for)

SITE = "https://127.0.0.1"
STATS = "/run/uwsgi/flaskapp/stats.sock"
PLAYBOOKS = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "playbooks"


def address(node) -> str:
    return node.check_output("hostname -I").split()[0]


def links_by_name(lb) -> str:
    """The links site's URL on lb, its name pointed at lb's own nginx (/etc/hosts)."""
    lb.check_output("grep -qx '127.0.0.1 links.flaskops.test' /etc/hosts || echo '127.0.0.1 links.flaskops.test' >> /etc/hosts")
    return "https://links.flaskops.test"


def test_uwsgi_listens_on_the_private_address_only(nodes):
    for name in ("app1", "app2"):
        node = nodes[name]
        sockets = node.check_output("ss -Hltn 'sport = :3031'")
        assert f"{address(node)}:3031" in sockets, sockets
        assert "0.0.0.0:3031" not in sockets and "*:3031" not in sockets


def test_requests_are_spread_over_both_app_hosts(nodes):
    def served() -> dict[str, int]:
        return {name: uwsgi_requests_served(nodes[name], STATS) for name in ("app1", "app2")}

    before = served()
    for attempt in range(20):
        assert http(nodes["lb"], SITE + "/api/notes").status == 200
    assert wait_for(lambda: sum(served().values()) - sum(before.values()) == 20, timeout=5)
    after = served()
    for name in ("app1", "app2"):
        assert after[name] - before[name] >= 5, (before, after)


def test_a_record_written_through_one_app_host_is_read_through_the_other(nodes):
    body = f"multinode {time.time_ns()}"
    resp = http(nodes["lb"], SITE + "/api/notes", "POST", {"Content-Type": "application/json"},
                json.dumps({"body": body}))
    assert resp.status == 201
    # Every app host reads the same database: ask each one directly.
    for name in ("app1", "app2"):
        node = nodes[name]
        listed = uwsgi_request(node, f"{address(node)}:3031", "/api/notes")
        assert body in listed.body, name


def test_each_service_of_the_second_release_comes_back_after_a_restart_with_the_data(nodes):
    """lb, app2 and db run the other Debian release (molecule.yml): each of
    their services restarts into a stack that serves both apps and keeps
    what was written before."""
    lb = nodes["lb"]
    links_url = links_by_name(lb)
    body = f"before the restarts {time.time_ns()}"
    assert http(lb, SITE + "/api/notes", "POST", {"Content-Type": "application/json"},
                json.dumps({"body": body})).status == 201
    app2 = nodes["app2"]
    # app2's own sockets, asked directly: through lb, app1 would answer for flaskapp.
    direct = {"uwsgi-flaskapp": (f"{address(app2)}:3031", "/health"), "uwsgi-links": (f"{address(app2)}:3032", "/healthz")}
    for name, unit in (("db", postgres_unit(nodes["db"])), ("app2", "uwsgi-flaskapp"), ("app2", "uwsgi-links"),
                       ("lb", "nginx")):
        nodes[name].check_output("systemctl restart %s", unit)
        assert wait_for(lambda: (http(lb, SITE + "/health").status == 200
                                 and http(lb, links_url + "/healthz").status == 200), timeout=30), \
            f"the apps did not answer again after {unit} restarted on {name}"
        if unit in direct:
            assert wait_for(lambda: uwsgi_request(app2, *direct[unit]).status == 200, timeout=30), unit
        assert nodes[name].service(unit).is_running, unit
    assert body in http(lb, SITE + "/api/notes").body


def test_site_keeps_answering_with_one_app_host_down(nodes):
    # The socket too: while it listens, a request would start uWSGI again.
    app1 = nodes["app1"]
    app1.check_output("systemctl stop uwsgi-flaskapp.socket uwsgi-flaskapp.service")
    try:
        codes = [http(nodes["lb"], SITE + "/api/notes").status for attempt in range(12)]
        assert codes == [200] * 12
        assert main_pid(app1, "uwsgi-flaskapp") == 0, "app1 came back while the test needed it down"
        assert not app1.socket(f"tcp://{address(app1)}:3031").is_listening
    finally:
        app1.check_output("systemctl start uwsgi-flaskapp.socket uwsgi-flaskapp.service")
    assert wait_for(lambda: nodes["app1"].service("uwsgi-flaskapp").is_running, timeout=20)


def pg_probe(node, db_address: str, app: str = "flaskapp", tls: bool = True) -> str:
    """The server's first answer to app's role logging in to app's database
    from node, over TLS (unverified) or, with tls=False, in the clear."""
    return node.check_output("python3 %s %s %s %s %s", client(node, "pg_probe"), db_address, app, app,
                             "tls" if tls else "plain")


def test_database_admits_the_app_hosts_and_its_firewall_drops_the_load_balancer(nodes):
    db = address(nodes["db"])
    for name in ("app1", "app2"):
        assert pg_probe(nodes[name], db) == "R", name
        # In the clear, pg_hba has no line for them: only hostssl admits other hosts.
        plain = pg_probe(nodes[name], db, tls=False)
        assert plain.startswith("E:") and "no encryption" in plain, plain
    # The load balancer is no app host: the database host's firewall drops
    # its packets before PostgreSQL sees them (pg_hba has no line for it
    # either: test_each_apps_role_is_admitted_only_from_its_own_hosts).
    assert pg_probe(nodes["lb"], db) == "connect:TimeoutError"
    # The database is not on any other address than loopback and the private one.
    listening = nodes["db"].check_output("ss -Hltn 'sport = :5432'")
    assert "0.0.0.0:5432" not in listening and "*:5432" not in listening, listening


def reachable(address: str, port: int) -> bool:
    """Whether a TCP connection from this machine (the test bed's Docker host,
    on the private network but in no inventory group) gets through."""
    import socket

    try:
        socket.create_connection((address, port), timeout=3).close()
        return True
    except OSError:
        return False


def test_from_outside_the_inventory_only_the_load_balancers_http_ports_answer(nodes):
    # Every port the stack listens on beyond loopback, host by host: the
    # exporters of the hosts Prometheus (on db) scrapes from afar too.
    # SSH on db and backup: let through between the two only.
    listened = {"lb": [80, 443, 9100, 9113, 3903], "app1": [3031, 9100], "app2": [3031, 3032, 9100], "db": [5432, 22],
                "backup": [9100, 22]}
    for name, ports in listened.items():
        for port in ports:
            assert nodes[name].socket(f"tcp://{address(nodes[name])}:{port}").is_listening or name == "lb", \
                f"nothing listens on {name}:{port}: the check below would prove nothing"
    # All at once: each dropped port waits out the whole timeout.
    with ThreadPoolExecutor(max_workers=16) as pool:
        tried = {(name, port): pool.submit(reachable, address(nodes[name]), port)
                 for name, ports in listened.items() for port in ports}
    answered = {name: [port for port in ports if tried[name, port].result()] for name, ports in listened.items()}
    assert answered == {"lb": [80, 443], "app1": [], "app2": [], "db": [], "backup": []}
    # The web host reaches the app hosts' uWSGI: the site answers through both.
    assert http(nodes["lb"], SITE + "/health").status == 200


def test_prometheus_on_the_database_host_scrapes_every_host_over_the_private_network(nodes):
    """Every exporter answers Prometheus (db) through its host's firewall, on
    the host's private address; the database host's own on loopback. The
    load balancer, no monitoring host, is dropped by the same firewalls."""
    db = nodes["db"]
    want = {("lb", "node"), ("lb", "nginx"), ("lb", "mtail"), ("app1", "node"), ("app2", "node"),
            ("db", "node"), ("db", "postgres"), ("db", "prometheus"), ("backup", "node")}
    # Each as the next scrape finds it: the last one may predate a change.
    targets = prometheus_targets_scraped_now(db)
    assert {(t["labels"]["host"].rsplit("-", 1)[1], t["labels"]["job"]) for t in targets} == want
    assert [t["scrapeUrl"] for t in targets if t["health"] != "up"] == []
    for target in targets:
        name = target["labels"]["host"].rsplit("-", 1)[1]
        expected = "127.0.0.1" if name == "db" else address(nodes[name])
        assert target["scrapeUrl"].startswith(f"http://{expected}:"), target["scrapeUrl"]
    # The same port from the load balancer: dropped.
    probe = "import socket; socket.create_connection(('%s', 9100), timeout=3); print('open')"
    refused = nodes["lb"].run("python3 -c %s", probe % address(nodes["app1"]))
    assert "open" not in refused.stdout and "timed out" in refused.stderr, refused.stdout + refused.stderr


def test_the_firewall_comes_off_when_disabled_and_back_after_a_deleted_table(nodes):
    app1 = nodes["app1"]
    site = str(PLAYBOOKS / "site.yml")
    try:
        off = run_playbook(app1, site, {"firewall_enabled": False}, tags=["firewall"])
        assert off.returncode == 0 and off.changed > 0, off.failure_text or off.raw
        assert app1.run("nft list table inet flaskops").rc != 0, "the table is still loaded"
        assert not app1.file("/etc/systemd/system/flaskops-firewall.service").exists
        assert reachable(address(app1), 3031), "with the table gone, uWSGI's port should answer"
        on = run_playbook(app1, site, {}, tags=["firewall"])
        assert on.returncode == 0 and on.changed > 0, on.failure_text or on.raw
        assert not reachable(address(app1), 3031)
        # The rollback timer of a run that could not reconnect deletes the
        # table (so may an operator); the rule file is unchanged, and the
        # next run loads it again all the same.
        app1.check_output("nft delete table inet flaskops")
        again = run_playbook(app1, site, {}, tags=["firewall"])
        assert again.returncode == 0 and again.changed > 0, again.failure_text or again.raw
    finally:
        app1.run("systemctl restart flaskops-firewall.service")
    assert "policy drop" in app1.check_output("nft list chain inet flaskops input")
    assert not reachable(address(app1), 3031)
    # Each run disarmed its rollback timer once it got in again.
    assert "flaskops-firewall-rollback" not in app1.check_output("systemctl list-timers --all --no-legend")


@pytest.mark.parametrize("bad, variable", [
    ({"firewall_extra_rules": [{"name": "metrics", "port": 9100, "sources": ["monitoring.example"]}]},
     "firewall_rules/firewall_extra_rules sources"),
    ({"firewall_extra_rules": [{"name": "metrics", "port": 70000}]}, "firewall_extra_rules"),
    ({"firewall_ssh_sources": ["10.0.0.0/8", "any"]}, "firewall_ssh_sources"),
], ids=["source", "port", "ssh-source"])
def test_bad_firewall_settings_are_refused_before_anything_changes(nodes, bad, variable):
    result = run_playbook(nodes["app1"], str(PLAYBOOKS / "site.yml"), bad, tags=["firewall"])
    assert_refused_by_the_role(result, "firewall", variable)


def test_the_second_app_runs_on_its_own_host_only(nodes):
    app2 = nodes["app2"]
    assert app2.service("uwsgi-links").is_running
    sockets = app2.check_output("ss -Hltn 'sport = :3032'")
    assert f"{address(app2)}:3032" in sockets, sockets
    assert not nodes["app1"].file("/etc/systemd/system/uwsgi-links.service").exists
    assert nodes["app1"].check_output("ss -Hltn 'sport = :3032'") == ""


def test_the_second_app_answers_through_the_load_balancer_by_name(nodes):
    lb = nodes["lb"]
    links_url = links_by_name(lb)
    whoami = http(lb, links_url + "/api/whoami")
    assert whoami.status == 200 and json.loads(whoami.body)["app"] == "links", whoami.body
    # Its static files are not on the load balancer's disk: the app serves them.
    assert http(lb, links_url + "/static/links.css").status == 200
    # Any other name is the sample app's (the default server).
    assert http(lb, SITE + "/api/whoami").status == 404


def test_each_apps_role_is_admitted_only_from_its_own_hosts(nodes):
    db = address(nodes["db"])
    assert pg_probe(nodes["app2"], db, "links") == "R"
    refused = pg_probe(nodes["app1"], db, "links")
    assert refused.startswith("E:") and f'host "{address(nodes["app1"])}", user "links"' in refused, refused


APP_ENV = "/etc/flaskops/flaskapp.env"


def pg_connect(node, variant: str, *extra: str) -> str:
    """What libpq (the app's psycopg) says connecting with the app's DATABASE_URL, or a variant of it."""
    return node.check_output("/srv/flaskapp/current/venv/bin/python %s %s %s %s", client(node, "pg_connect"),
                             APP_ENV, variant, " ".join(extra))


def test_the_apps_database_link_is_tls_and_verifies_the_server_by_name(nodes):
    app1, db = nodes["app1"], nodes["db"]
    # The URL the app has asks libpq to verify the server with the CA the
    # postgres role made (the password around it is left out here).
    assert app1.check_output("grep -o 'sslmode=[^\"]*' %s", APP_ENV) == (
        "sslmode=verify-full&sslrootcert=/etc/flaskops/flaskapp-database-ca.pem")
    assert "BEGIN CERTIFICATE" in app1.file("/etc/flaskops/flaskapp-database-ca.pem").content_string
    # The app's own sessions (uWSGI workers, the queue worker) are TLS.
    assert http(nodes["lb"], SITE + "/api/notes").status == 200
    sessions = psql(db, "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                        "WHERE a.datname = 'flaskapp' AND a.client_addr IS NOT NULL")
    assert sessions and set(sessions) == {"t"}, sessions
    # libpq with the app's URL: TLS 1.2 or newer, the server verified.
    ok = pg_connect(app1, "as-is")
    assert re.fullmatch(r"ok True TLSv1\.[23]", ok), ok
    # In the clear, pg_hba refuses; another CA, or a name the certificate
    # does not hold, fails verification with libpq's own words.
    plain = pg_connect(app1, "plain")
    assert plain.startswith("error:") and "no encryption" in plain, plain
    app1.check_output("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                      "-subj /CN=another-ca -keyout /tmp/another-ca.key -out /tmp/another-ca.pem 2>/dev/null")
    wrong_ca = pg_connect(app1, "wrong-ca", "/tmp/another-ca.pem")
    assert wrong_ca.startswith("error:") and "certificate verify failed" in wrong_ca, wrong_ca
    wrong_name = pg_connect(app1, "wrong-name")
    assert wrong_name.startswith("error:") and "does not match host name" in wrong_name, wrong_name


def current_release(node, app: str = "flaskapp") -> str:
    return node.check_output("readlink /srv/%s/current", app)


def psql(db, query: str, database: str = "flaskapp") -> list[str]:
    """The rows of a query on the database host, one line each."""
    return db.check_output("runuser -u postgres -- psql -X -A -t -d %s -c %s", database, query).splitlines()


def column_copy(destination: Path) -> Path:
    """The sample app with a migration that adds notes.length, a column its
    code reads and writes: served before the migration ran, every request for
    the notes would fail. The old code ignores the column (expand, then contract)."""
    shutil.copytree(PLAYBOOKS.parent / "sample_app", destination,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "tests"))
    patches = {
        "app/models.py": (
            '    def to_dict(self) -> dict:\n'
            '        return {"id": self.id, "body": self.body, "created_at": self.created_at.isoformat()}\n',
            '    length: Mapped[int | None] = mapped_column(Integer, nullable=True)\n\n'
            '    def to_dict(self) -> dict:\n'
            '        return {"id": self.id, "body": self.body, "created_at": self.created_at.isoformat(),\n'
            '                "length": self.length}\n'),
        "app/cli.py": ("        db.metadata.create_all(conn)\n",
                       "        db.metadata.create_all(conn)\n"
                       "        conn.execute(text('ALTER TABLE notes ADD COLUMN IF NOT EXISTS length integer'))\n"),
        "app/routes.py": ("note = Note(body=body)", "note = Note(body=body, length=len(body))"),
    }
    for name, (old, new) in patches.items():
        path = destination / name
        assert old in path.read_text(), f"{name} no longer has what the test patches"
        path.write_text(path.read_text().replace(old, new, 1))
    return destination


WORKER = "flaskapp-worker-queue"


def queue_job(lb, text: str, seconds: float = 0) -> int:
    resp = http(lb, SITE + "/api/jobs", "POST", {"Content-Type": "application/json"},
                json.dumps({"text": text, "seconds": seconds}))
    assert resp.status == 202, resp.body
    return json.loads(resp.body)["id"]


def job(lb, job_id: int) -> dict:
    return json.loads(http(lb, SITE + f"/api/jobs/{job_id}").body)


def done_job(lb, job_id: int, timeout: float = 30) -> dict:
    assert wait_for(lambda: job(lb, job_id)["status"] == "done", timeout=timeout), job(lb, job_id)
    return job(lb, job_id)


def worker_taking(nodes, job_id: int, timeout: float = 20) -> str:
    """The app host whose worker started the job (its journal says so)."""
    found: list[str] = []

    def started() -> bool:
        found[:] = [name for name in ("app1", "app2") if nodes[name].run(
            "journalctl -u %s -o cat --no-pager | grep -qx 'worker: job %s started'", WORKER, str(job_id)).rc == 0]
        return bool(found)

    assert wait_for(started, timeout=timeout, step=0.2), f"no worker started job {job_id}"
    return found[0]


def test_workers_share_the_queue_and_finish_or_hand_back_the_job_they_hold(nodes):
    lb = nodes["lb"]
    releases = {name: current_release(nodes[name]).rsplit("/", 1)[1] for name in ("app1", "app2")}
    # Jobs queued through the API are done by the workers of both app hosts,
    # each on the live release of its host.
    # The first job holds its worker 6 s: a later one must go to the other
    # host's (both poll; which one wins a job is otherwise a matter of chance).
    ids = [queue_job(lb, f"job {n}", 6 if n == 0 else 0.3) for n in range(8)]
    done = [done_job(lb, job_id) for job_id in ids]
    assert all(d["result"] == f"JOB {n}" for n, d in enumerate(done)), done
    hosts = {d["host"].rsplit("-", 1)[1] for d in done}
    assert hosts == {"app1", "app2"}, done
    assert all(d["release"] == releases[d["host"].rsplit("-", 1)[1]] for d in done), (releases, done)
    # A stop (a restart here, as a release switch does) lets the job in hand
    # finish first: done by the worker that held it.
    held = queue_job(lb, "held through a restart", 4)
    name = worker_taking(nodes, held)
    node = nodes[name]
    before = main_pid(node, WORKER)
    node.check_output("systemctl restart %s", WORKER)
    assert job(lb, held)["status"] == "done", "the restart did not wait for the job in hand"
    assert done_job(lb, held)["host"].endswith(name) and main_pid(node, WORKER) != before
    # kill -9: the worker comes back, and the job it held (its row lock gone
    # with its connection) is done by a worker after all.
    lost = queue_job(lb, "held through kill -9", 4)
    name = worker_taking(nodes, lost)
    node = nodes[name]
    restarts = int(node.check_output("systemctl show -P NRestarts %s", WORKER))
    node.check_output("kill -9 %s", str(main_pid(node, WORKER)))
    assert wait_for(lambda: int(node.check_output("systemctl show -P NRestarts %s", WORKER)) == restarts + 1
                    and node.service(WORKER).is_running, timeout=15), node.check_output("systemctl status %s || true", WORKER)
    assert done_job(lb, lost, timeout=40)["result"] == "HELD THROUGH KILL -9"


def test_the_scheduled_purge_runs_from_its_timer_and_logs_under_the_apps_name(nodes):
    app1, db = nodes["app1"], nodes["db"]
    timer = app1.check_output("systemctl show -P ActiveState flaskapp-job-purge.timer")
    assert timer == "active", timer
    old, recent = (psql(db, "INSERT INTO jobs (text, seconds, status, done_at) VALUES"
                            f" ('{text}', 0, 'done', now() - interval '{days} days') RETURNING id")[0]
                   for text, days in (("purged", 30), ("kept", 1)))
    # What the timer starts at its time, started now; its journal from here.
    since = app1.check_output("date +%s.%N")
    app1.check_output("systemctl start flaskapp-job-purge.service")
    assert psql(db, f"SELECT id FROM jobs WHERE id IN ({old}, {recent})") == [recent]

    def logged() -> str:
        return app1.check_output("journalctl -t flaskapp FLASKOPS_JOB=purge --since @%s -o cat --no-pager", since)

    # journald may write the line a moment after the job ended on a busy host.
    assert wait_for(lambda: "purge-jobs: deleted" in logged(), timeout=10), logged()


def test_workers_and_jobs_run_in_the_sandbox_of_the_apps_uwsgi(nodes):
    app1 = nodes["app1"]

    def exposed(unit: str) -> tuple[set[str], str]:
        """The settings systemd-analyze security finds open (its lines marked ✗), and the overall score."""
        report = app1.check_output("systemd-analyze security --no-pager %s", unit).splitlines()
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", report[-1])
        assert score, report[-1]
        return {line.split()[1] for line in report if line.startswith("✗")}, score[1]

    # The same settings open, but for the one uWSGI needs to notify systemd
    # (Type=notify): the score is no worse.
    uwsgi_open, uwsgi_score = exposed("uwsgi-flaskapp.service")
    for unit in (f"{WORKER}.service", "flaskapp-job-purge.service"):
        unit_open, unit_score = exposed(unit)
        assert unit_open == uwsgi_open - {"NotifyAccess="} and float(unit_score) <= float(uwsgi_score), (
            unit, unit_open ^ uwsgi_open, unit_score, uwsgi_score)
    assert app1.check_output("ps -o user= -p %s", str(main_pid(app1, WORKER))) == "flaskapp"


def test_a_worker_that_does_not_stay_up_fails_the_run_and_one_no_longer_listed_goes(nodes):
    app1 = nodes["app1"]
    site = str(PLAYBOOKS / "site.yml")
    broken = run_playbook(app1, site, {
        "workers_processes": [{"name": "queue", "command": ["flask", "--app", "wsgi", "no-such-command"]}],
        # Flask loads the whole app before it says the command is unknown: on a
        # busy host that can outlast the default 2 s a worker must stay up.
        "workers_settle_seconds": 8, "workers_start_timeout": 12}, tags=["workers"])
    assert broken.returncode != 0
    assert "flaskapp-worker-queue.service" in broken.failure_text, broken.failure_text
    assert "No such command 'no-such-command'" in broken.failure_text, broken.failure_text
    # Workers and jobs the app no longer lists are stopped, their units gone.
    units = [f"/etc/systemd/system/{WORKER}.service", "/etc/systemd/system/flaskapp-job-purge.timer",
             "/etc/systemd/system/flaskapp-job-purge.service"]
    emptied = run_playbook(app1, site, {"workers_processes": [], "workers_jobs": []}, tags=["workers"])
    assert emptied.returncode == 0, emptied.failure_text or emptied.raw
    assert not any(app1.file(unit).exists for unit in units)
    assert app1.run("pgrep -u flaskapp -f 'flask --app wsgi'").rc == 1
    assert "flaskapp-job-purge.timer" not in app1.check_output("systemctl list-timers --all --no-pager")
    # --check --diff reports the units it would write and start, and writes none.
    checked = run_playbook(app1, site, {}, tags=["workers"], check=True)
    assert checked.returncode == 0 and checked.changed > 0, checked.failure_text or checked.raw
    assert not any(app1.file(unit).exists for unit in units)
    # The next run with the app's own list puts them back (as the converge
    # did with stock Ansible: docs/testbed.md).
    mended = run_playbook(app1, site, {}, tags=["workers"], mitogen=True)
    assert mended.returncode == 0, mended.failure_text or mended.raw
    assert app1.service(WORKER).is_running and app1.service("flaskapp-job-purge.timer").is_running


@pytest.mark.parametrize("bad", [
    {"workers_jobs": [{"name": "purge", "command": ["flask", "purge-jobs"], "on_calendar": "every other tuesday"}]},
    {"workers_processes": [{"name": "queue", "command": ["flask", "worker"], "stop_signal": "SIGSTOP"}]},
], ids=["calendar", "stop-signal"])
def test_bad_workers_settings_are_refused_before_anything_changes(nodes, bad):
    result = run_playbook(nodes["app1"], str(PLAYBOOKS / "site.yml"), bad, tags=["workers"])
    assert_refused_by_the_role(result, "workers", next(iter(bad)))


# The load on lb while a deploy runs: at most 20 requests a second (each a
# new TLS connection, through nginx, uWSGI and PostgreSQL), dozens inside
# every drain, switch and return, which take seconds each, without taking
# the cores the deploy needs (the suite runs two scenarios on 2 cores, and
# the load's CPU grows with its rate); bounded at 10 minutes.
LOAD_INTERVAL = 0.05


def test_deploy_and_rollback_of_one_app_under_load_fail_no_request_and_leave_the_other(nodes, tmp_path):
    lb = nodes["lb"]
    first = {name: current_release(nodes[name]) for name in ("app1", "app2")}
    links = current_release(nodes["app2"], "links")
    # The load goes to flaskapp, the app that rolls; links stays as it is.
    start_load(lb, max_seconds=600, interval=LOAD_INTERVAL)
    started = time.monotonic()
    try:
        # A release whose migration adds a column its code uses.
        deployed = run_playbook(None, str(PLAYBOOKS / "deploy.yml"), {
            "flask_app_source_path": str(column_copy(tmp_path / "column")), "flask_app_release": "multinode-2",
            "flaskops_deploy_apps": "flaskapp"})
        assert deployed.returncode == 0, deployed.failure_text or deployed.raw
        for name in ("app1", "app2"):
            assert current_release(nodes[name]).endswith("/multinode-2"), name
        assert current_release(nodes["app2"], "links") == links
        # The new code writes and reads the column its migration added.
        created = http(lb, SITE + "/api/notes", "POST", {"Content-Type": "application/json"},
                       json.dumps({"body": "sized"}))
        assert created.status == 201 and json.loads(created.body)["length"] == 5, created.body
        # The workers moved with the release: a job queued now is done by it.
        assert done_job(lb, queue_job(lb, "after the deploy"))["release"] == "multinode-2"
        # The migrations ran once, on one app host (the sample app's init-db
        # records each run), after a dump of the database that the run reported.
        assert psql(nodes["db"], "SELECT host FROM init_runs WHERE release = 'multinode-2'") == ["flaskops-multinode-app1"]
        reported = deployed.messages["Report the dump taken before migrating app flaskapp"]
        dump = re.fullmatch(r"app flaskapp: database flaskapp dumped to (\S+) on flaskops-multinode-db"
                            r" before migrating to release multinode-2", reported[0])
        assert len(reported) == 1 and dump, reported
        assert nodes["db"].file(dump[1]).size > 0, dump[1]
        # Back by name, as releases.yml lists it (both hosts built the same
        # name; the nginx scenario goes two releases back by name).
        rolled_back = run_playbook(None, str(PLAYBOOKS / "rollback.yml"), {
            "flaskops_deploy_apps": "flaskapp", "flask_app_rollback_release": first["app1"].rsplit("/", 1)[1]})
        assert rolled_back.returncode == 0, rolled_back.failure_text or rolled_back.raw
        for name in ("app1", "app2"):
            assert current_release(nodes[name]) == first[name], name
        assert current_release(nodes["app2"], "links") == links
        assert done_job(lb, queue_job(lb, "after the rollback"))["release"] == first["app1"].rsplit("/", 1)[1]
        # The old code, back, serves beside the column it does not know.
        notes = json.loads(http(lb, SITE + "/api/notes").body)["notes"]
        assert notes and "length" not in notes[0], notes[:1]
        assert psql(nodes["db"], "SELECT column_name FROM information_schema.columns"
                                 " WHERE table_name = 'notes' AND column_name = 'length'") == ["length"]
        # The load ran through the whole roll: it has not stopped on its own.
        assert load_running(lb), "the load loop ended before the rollback did"
    finally:
        codes = stop_load(lb)
    # What the roll measured, kept for the record (.cache/measurements/).
    record = PLAYBOOKS.parent / ".cache" / "measurements" / "multinode-deploy-under-load.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"requests": len(codes), "statuses": {str(c): n for c, n in statuses(codes).items()},
                                  "seconds": round(time.monotonic() - started, 1),
                                  "interval": LOAD_INTERVAL}) + "\n")
    assert len(codes) > 100, len(codes)
    assert set(codes) == {200}, statuses(codes)


def test_a_command_started_from_the_live_link_keeps_its_release_when_the_link_moves(nodes):
    """The launcher of workers and jobs resolves the link once: a process
    that imports code after a switch imports its own release's code."""
    app1 = nodes["app1"]
    live = current_release(app1)
    # Another release to move the link to: a copy of the live one.
    other, link = "/srv/flaskapp/state/test-release", "/srv/flaskapp/state/test-current"
    app1.check_output("rm -rf %s && cp -a %s %s && ln -sfn %s %s", other, live, other, live, link)
    unit = f"flaskops-test-launcher-{time.time_ns()}"
    # Imports the app's code only after the link has moved (the flag file
    # says so; a fixed sleep raced a busy host), and says where the link
    # pointed then: elsewhere, or the check proves nothing.
    flag = "/srv/flaskapp/state/test-link-moved"
    app1.check_output("rm -f %s", flag)
    app1.check_output("systemd-run --quiet --unit %s --uid flaskapp --gid flaskapp /usr/local/sbin/flaskops-run-release"
                      " %s %s python3 -c %s", unit, link, f"{link}/venv",
                      f"import time, os; end = time.monotonic() + 120\n"
                      f"while not os.path.exists('{flag}') and time.monotonic() < end: time.sleep(0.1)\n"
                      f"moved = os.readlink('{link}'); import app.jobs\n"
                      "print(os.environ['FLASKOPS_RELEASE'], app.jobs.__file__, moved)")
    # The link moves once the launcher has resolved it: when python3 runs in
    # its place (exec). A fixed wait would race a busy host.
    assert wait_for(lambda: app1.check_output("cat /proc/%s/comm", str(main_pid(app1, unit))) == "python3",
                    timeout=10, step=0.1), app1.check_output("systemctl status %s || true", unit)
    app1.check_output("ln -sfn %s %s.new && mv -T %s.new %s && touch %s", other, link, link, link, flag)
    assert wait_for(lambda: app1.run("systemctl is-active --quiet %s", unit).rc != 0, timeout=60)
    said = app1.check_output("journalctl -u %s -o cat --no-pager | grep jobs.py", unit).split()
    app1.run("rm -rf %s %s %s; systemctl reset-failed %s", link, other, flag, unit)
    assert said == [live.rsplit("/", 1)[1], f"{live}/app/jobs.py", other], (said, live, other)


def test_a_deploy_leaves_a_server_marked_down_by_hand_and_never_leaves_none_up(nodes):
    """An operator takes app2 out by hand (maintenance): the nginx role's
    upstream step, as a deploy runs it, does not return it, and refuses to
    drain app1 as well."""
    lb, upstream = nodes["lb"], "/usr/local/sbin/flaskops-nginx-upstream"
    site = "/etc/nginx/sites-available/flaskapp.conf"
    step = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "upstream.yml")
    app1, app2 = (f"{address(nodes[name])}:3031" for name in ("app1", "app2"))
    before = lb.check_output("sha256sum %s", site)
    assert lb.check_output("%s drain flaskapp %s 5", upstream, app2).startswith(f"drained: {app2}")
    try:
        kept = run_playbook(None, step, {"multinode_upstream_action": "return", "multinode_upstream_address": app2})
        assert kept.returncode == 0 and kept.changed == 0, kept.failure_text or kept.raw
        assert lb.check_output("grep 'server %s ' %s", app2, site).endswith(" down;")
        refused = run_playbook(None, step, {"multinode_upstream_action": "drain", "multinode_upstream_address": app1})
        assert refused.returncode != 0
        assert f"refused: draining {app1} would leave site flaskapp no server up" in refused.failure_text, \
            refused.failure_text
        # The site as the operator left it: app1 up and taking every request.
        assert "down;" not in lb.check_output("grep 'server %s ' %s", app1, site)
        for _request in range(5):
            assert http(lb, f"{SITE}/health").status == 200
    finally:
        returned = lb.check_output("%s return flaskapp %s", upstream, app2)
    assert returned.startswith(f"returned: {app2}"), returned
    assert lb.check_output("sha256sum %s", site) == before
    assert not lb.run("ls %s.*", site).stdout.strip(), "a candidate file was left beside the site"


BROKEN_LOG = "/srv/flaskapp/state/broken-release-requests.log"


def broken_copy(destination: Path) -> Path:
    """The sample app, loading (slowly: 3 s a worker, so that a chain reload
    onto it takes a while) and migrating as ever, but answering 503 to every
    request; it notes who sent each one in BROKEN_LOG (the state dir)."""
    shutil.copytree(PLAYBOOKS.parent / "sample_app", destination,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "tests"))
    wsgi = destination / "wsgi.py"
    wsgi.write_text(wsgi.read_text() + """
__import__("time").sleep(3)


def _broken(environ, start_response):
    import os

    with open(os.path.join(os.environ["FLASKOPS_STATE_DIR"], "broken-release-requests.log"), "a") as log:
        # nginx adds X-Forwarded-For; the health check comes straight to the socket.
        log.write(environ.get("HTTP_USER_AGENT", "-") + " via " + environ.get("HTTP_X_FORWARDED_FOR", "no proxy") + "\\n")
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"this release is broken\\n"]


application.wsgi_app = _broken
""")
    return destination


def test_a_release_that_fails_its_health_check_gets_no_request_and_is_switched_back(nodes, tmp_path):
    lb = nodes["lb"]
    live = {name: current_release(nodes[name]) for name in ("app1", "app2")}
    nodes["app1"].check_output("rm -f %s", BROKEN_LOG)
    # A name no earlier run left on the hosts: this source is built.
    broken = f"broken-health-{int(time.time())}"
    start_load(lb, max_seconds=600, interval=LOAD_INTERVAL)
    try:
        failed = run_playbook(None, str(PLAYBOOKS / "deploy.yml"), {
            "flask_app_source_path": str(broken_copy(tmp_path / "broken")), "flask_app_release": broken,
            # Time for the chain reload (two workers, 3 s each and their
            # imports) on a busy host, so that the check sees the 503.
            "flaskops_deploy_apps": "flaskapp", "uwsgi_health_timeout": 45,
            # Old releases are pruned as the new one goes live: not the one to go back to.
            "flask_app_keep_releases": 1})
        assert failed.returncode != 0, failed.raw
        text = " ".join(failed.failure_text.split())
        assert (f"app flaskapp: release {broken} failed on flaskops-multinode-app1; " in text
                and f"the host is back on release {live['app1'].rsplit('/', 1)[1]}, which answers." in text), text
        assert "503 Service Unavailable" in text, text
        # app1 went back, app2 was never switched.
        assert {name: current_release(nodes[name]) for name in ("app1", "app2")} == live
        assert load_running(lb), "the load loop ended before the deploy did"
    finally:
        codes = stop_load(lb)
    assert len(codes) > 50, len(codes)
    assert set(codes) == {200}, statuses(codes)
    # The broken release was asked by the health check only: nginx (which
    # would retry a 503 elsewhere and hide it from clients) never sent it one.
    asked = nodes["app1"].check_output("cat %s", BROKEN_LOG).splitlines()
    assert asked and set(asked) == {"flaskops-health-check via no proxy"}, sorted(set(asked))
    # app1 is back in the load balancer's upstream: it takes requests again.
    assert "down;" not in lb.check_output("cat /etc/nginx/sites-available/flaskapp.conf")
    before = uwsgi_requests_served(nodes["app1"], STATS)
    for _request in range(20):
        assert http(lb, f"{SITE}/health").status == 200
    assert wait_for(lambda: uwsgi_requests_served(nodes["app1"], STATS) > before, timeout=10)


def test_a_failed_migration_switches_no_host_and_its_dump_restores(nodes):
    live = {name: current_release(nodes[name]) for name in ("app1", "app2")}
    db = nodes["db"]
    psql(db, "INSERT INTO notes (body) VALUES ('written before the failed migration')")
    failed = run_playbook(None, str(PLAYBOOKS / "deploy.yml"), {
        "flask_app_release": "bad-migration", "flaskops_deploy_apps": "flaskapp",
        "flask_app_init_command": ["python3", "-c", "import sys; sys.exit('the migration broke')"]})
    assert failed.returncode != 0, failed.raw
    text = " ".join(failed.failure_text.split())
    assert ("app flaskapp: the init command of release bad-migration failed on flaskops-multinode-app1; no host"
            " switched to it") in text, text
    assert "the migration broke" in text, text
    # Built on both hosts, live on neither.
    for name in ("app1", "app2"):
        assert nodes[name].file("/srv/flaskapp/releases/bad-migration/.flaskops-release.json").exists, name
        assert current_release(nodes[name]) == live[name], name
    restore = re.search(r"playbooks/restore.yml -e postgres_restore_database=flaskapp -e postgres_restore_dump=(/\S+?\.dump)", text)
    assert restore and db.file(restore[1]).exists, text
    # What a migration that broke half-way leaves behind is undone by the restore.
    psql(db, "INSERT INTO notes (body) VALUES ('written by the broken migration')")
    restored = run_playbook(None, str(PLAYBOOKS / "restore.yml"),
                            {"postgres_restore_database": "flaskapp", "postgres_restore_dump": restore[1]})
    assert restored.returncode == 0, restored.failure_text or restored.raw
    bodies = psql(db, "SELECT body FROM notes WHERE body LIKE 'written %'")
    assert "written before the failed migration" in bodies and "written by the broken migration" not in bodies, bodies
    lb = nodes["lb"]
    assert wait_for(lambda: http(lb, f"{SITE}/health").status == 200, timeout=30)


def pgbackrest_info(node, user: str) -> dict:
    """The stanza as `pgbackrest info` on this host reports it."""
    return json.loads(node.check_output("runuser -u %s -- pgbackrest --stanza=main --output=json info", user))[0]


def test_a_passphrase_the_repository_host_cannot_use_leaves_both_ends_as_they_were(nodes):
    """The repository on backup was made without encryption: its check
    refuses the candidate configuration, and neither backup's nor db's live
    pgBackRest file changes."""
    db, backup = nodes["db"], nodes["backup"]
    live = "/etc/pgbackrest/pgbackrest.conf"
    before = {name: nodes[name].file(live).sha256sum for name in ("db", "backup")}
    result = run_playbook(None, str(PLAYBOOKS / "site.yml"), {"postgres_pitr_cipher_passphrase": "not-the-repository's"},
                          tags=["postgres"])
    assert result.returncode != 0
    assert "flaskops.stack.backup_repository : Write pgBackRest's configuration (checked by pgBackRest before it goes live)" \
        in result.failed_tasks, result.failures
    assert '"code":99' in result.failure_text, result.failure_text
    assert {name: nodes[name].file(live).sha256sum for name in ("db", "backup")} == before
    assert pgbackrest_info(backup, "pgbackrest")["status"]["code"] == 0
    db.check_output("runuser -u postgres -- pgbackrest --stanza=main check")


def test_a_lost_data_directory_comes_back_from_the_repository_on_the_backup_host(nodes):
    """The repository is on backup, not db: db's WAL reaches it over SSH, and
    after db's data directory is destroyed recover.yml brings the rows back
    from it, the apps serve again, a backup of the new timeline is taken
    there, and the backup timers of both hosts were stopped meanwhile.
    (Last in the file: it restarts the database.)"""
    db, backup = nodes["db"], nodes["backup"]
    before = pgbackrest_info(backup, "pgbackrest")
    assert before["status"]["code"] == 0 and len(before["backup"]) >= 1, before["status"]
    # db reads the same repository, through backup; and keeps none of its own.
    assert pgbackrest_info(db, "postgres")["backup"] == before["backup"]
    assert not db.file("/var/lib/pgbackrest/archive").exists
    assert backup.file("/var/lib/pgbackrest/archive/main").is_directory
    # The backup age db's collector reports for the BackupTooOld alert is
    # the repository's, read through backup.
    db.check_output("systemctl start flaskops-metrics.service")
    metrics = db.check_output("cat /var/lib/prometheus/node-exporter/flaskops_pgbackrest.prom")
    newest = max(b["timestamp"]["stop"] for b in before["backup"])
    assert f'flaskops_pgbackrest_backup_newest_seconds{{stanza="main"}} {newest}\n' in metrics + "\n", metrics
    assert 'flaskops_collector_success{kind="pgbackrest"} 1' in metrics, metrics

    token = f"kept-{time.time_ns()}"
    psql(db, "CREATE TABLE IF NOT EXISTS backup_probe (token text)")
    psql(db, f"INSERT INTO backup_probe VALUES ('{token}')")
    # The segment with the row, switched and waited for on backup.
    db.check_output("runuser -u postgres -- pgbackrest --stanza=main check")
    data_dir = db.check_output("runuser -u postgres -- psql -X -A -t -c 'SHOW data_directory'")
    unit = postgres_unit(db)
    db.check_output("systemctl stop %s && rm -rf %s", unit, data_dir)
    assert not db.file(data_dir).exists

    timers = {(node, timer): stopped_and_started(nodes[node], timer)
              for node, timer in [("db", "flaskops-postgres-backup.timer"),
                                  ("backup", "flaskops-pgbackrest-backup@full.timer"),
                                  ("backup", "flaskops-pgbackrest-backup@diff.timer")]}

    result = run_playbook(None, str(PLAYBOOKS / "recover.yml"), {})
    assert result.returncode == 0, result.failure_text or result.raw
    # No scheduled backup could start during the recovery, on either host.
    assert [key for key, seen in timers.items() if not paused_and_resumed(nodes[key[0]], key[1], seen)] == []
    assert psql(db, f"SELECT token FROM backup_probe WHERE token = '{token}'") == [token]
    assert wait_for(lambda: http(nodes["lb"], SITE + "/health").status == 200, timeout=30)
    after = pgbackrest_info(backup, "pgbackrest")
    assert len(after["backup"]) == len(before["backup"]) + 1 and after["backup"][-1]["type"] == "incr", after["backup"]
