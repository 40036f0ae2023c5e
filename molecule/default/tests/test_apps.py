"""Two apps on one host (flaskops_apps): the sample app and sample_links.

Each answers by its own host name over HTTPS, keeps its data in its own
database, and cannot read the other's secrets or reach the other's
database; a bad entry for one fails before anything changes, and taking one
off leaves the other serving and its own data in place.
"""

import copy
import json
import os
import re
import time
from pathlib import Path

import pytest
from flaskops_testinfra import (BACKUP_TIMERS, client, http, main_pid, on_primary_distro_only, paused_and_resumed,
                                postgres_unit, run_converge, run_playbook, stopped_and_started, uwsgi_requests_served,
                                wait_for)

NAMES = {"flaskapp": "flaskapp.flaskops.test", "links": "links.flaskops.test"}
LINKS = f"https://{NAMES['links']}"
FLASKAPP = f"https://{NAMES['flaskapp']}"
LINKS_STATS = "/run/uwsgi/links/stats.sock"
BACKUPS = "/var/backups/postgresql"
RECOVER_PLAYBOOK = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "playbooks" / "recover.yml"


@pytest.fixture(scope="module", autouse=True)
def names_on_loopback(host):
    """The apps' names resolve to the host's own loopback (Docker rewrites /etc/hosts on restart)."""
    line = "127.0.0.1 " + " ".join(NAMES.values())
    host.check_output("grep -qxF %s /etc/hosts || echo %s >> /etc/hosts", line, line)


def psql(host, database: str, sql: str) -> str:
    return host.check_output("runuser -u postgres -- psql -XtAq -d %s -c %s", database, sql)


def add_link(host, url: str) -> None:
    resp = http(host, LINKS + "/api/links", "POST", {"Content-Type": "application/json"},
                json.dumps({"url": url, "title": "a link"}))
    assert resp.status == 201, resp.body


def env_value(host, app: str, name: str) -> str:
    line = host.check_output("grep ^%s= /etc/flaskops/%s.env", name, app)
    return json.loads(line.split("=", 1)[1])


def prints_links_password(result) -> bool:
    """Whether a run printed the links app's database password, which its
    flaskops_apps entry sets (made up on first use, kept in the scenario's
    ephemeral directory). A bool, so that a failed assertion does not print
    it either."""
    password = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "links-db-password").read_text().split()[0]
    return password in result.output


def scenario_apps(host) -> list[dict]:
    """The scenario's flaskops_apps, as its inventory writes it (templates unrendered)."""
    return copy.deepcopy(host.ansible.get_variables()["flaskops_apps"])


def test_each_app_answers_by_its_own_name_over_https(host):
    whoami = http(host, LINKS + "/api/whoami")
    assert whoami.status == 200, whoami.body
    # flask_app_env of the links entry, not of the other app.
    assert json.loads(whoami.body)["app"] == "links"
    assert json.loads(whoami.body)["greeting"] == "hello from links"
    health = http(host, FLASKAPP + "/health")
    assert health.status == 200 and json.loads(health.body) == {"status": "ok", "database": "up"}
    assert http(host, LINKS + "/healthz").status == 200
    # Each name reaches its own app only.
    assert http(host, FLASKAPP + "/api/whoami").status == 404
    assert http(host, LINKS + "/api/notes").status == 404


@pytest.mark.parametrize("app", sorted(NAMES))
def test_each_site_presents_its_own_certificate(host, app):
    der = bytes.fromhex(host.check_output("python3 %s %s", client(host, "peer_cert"), NAMES[app]))
    assert NAMES[app].encode() in der
    other = NAMES["links" if app == "flaskapp" else "flaskapp"]
    assert other.encode() not in der


def test_each_app_keeps_its_data_in_its_own_database(host):
    url = f"https://example.com/{time.time_ns()}"
    add_link(host, url)
    listed = http(host, LINKS + "/api/links")
    assert listed.status == 200
    assert url in listed.body
    assert psql(host, "links", f"SELECT count(*) FROM links WHERE url = '{url}'") == "1"
    # The table came from the app's migrations, into its own database only.
    assert psql(host, "links", "SELECT count(*) FROM alembic_version") == "1"
    assert psql(host, "flaskapp", "SELECT to_regclass('public.links') IS NULL") == "t"
    assert psql(host, "links", "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
                               "WHERE datname = current_database()") == "links"


def test_the_second_apps_static_files_come_from_nginx(host):
    time.sleep(1)
    before = uwsgi_requests_served(host, LINKS_STATS)
    for path in ("/static/links.css", "/robots.txt"):
        resp = http(host, LINKS + path)
        assert resp.status == 200, path
    time.sleep(1)
    assert uwsgi_requests_served(host, LINKS_STATS) == before
    # A page the app makes does move its counter.
    assert http(host, LINKS + "/api/links").status == 200
    assert wait_for(lambda: uwsgi_requests_served(host, LINKS_STATS) == before + 1, timeout=5)


def test_neither_app_can_read_the_others_environment(host):
    for app, other in (("links", "flaskapp"), ("flaskapp", "links")):
        assert host.run("runuser -u %s -- cat /etc/flaskops/%s.env", app, app).rc == 0
        denied = host.run("runuser -u %s -- cat /etc/flaskops/%s.env", app, other)
        assert denied.rc != 0 and "Permission denied" in denied.stderr, (app, other)


def test_neither_app_can_reach_the_others_database(host):
    for app, other in (("links", "flaskapp"), ("flaskapp", "links")):
        url = env_value(host, app, "DATABASE_URL")
        password = re.match(r"postgresql://[^:]+:([^@]+)@", url).group(1)
        own = host.run("PGPASSWORD=%s psql -XtAq -h 127.0.0.1 -U %s -d %s -c 'SELECT 1'", password, app, app)
        assert own.rc == 0 and own.stdout.strip() == "1", own.stderr
        other_db = host.run("PGPASSWORD=%s psql -XtAq -h 127.0.0.1 -U %s -d %s -c 'SELECT 1'", password, app, other)
        assert other_db.rc != 0 and "no pg_hba.conf entry" in other_db.stderr, (app, other, other_db.stderr)


def test_a_bad_value_for_one_app_fails_before_any_change(host):
    on_primary_distro_only()
    apps = scenario_apps(host)
    links = next(app for app in apps if app["name"] == "links")
    links["flask_app_init_command"] = "flask db upgrade"  # a string, not an argv list
    result = run_converge(host, {"flaskops_apps": apps}, mitogen=True)
    assert result.returncode != 0 and result.reported, result.raw
    assert "flask_app_init_command" in result.failure_text, result.failure_text
    assert result.changed == 0, result.raw
    assert http(host, FLASKAPP + "/health").status == 200
    assert http(host, LINKS + "/healthz").status == 200


def test_an_app_taken_off_leaves_the_other_serving_and_its_data_kept(host):
    on_primary_distro_only()
    url = f"https://example.com/kept-{time.time_ns()}"
    add_link(host, url)
    apps = scenario_apps(host)
    next(app for app in apps if app["name"] == "links")["state"] = "absent"
    dumps = f"ls -1 {BACKUPS}/links"
    dumped_before = set(host.check_output(dumps).split()) if host.file(f"{BACKUPS}/links").exists else set()
    removed = run_converge(host, {"flaskops_apps": apps}, tags=["postgres", "uwsgi", "nginx"])
    try:
        assert removed.returncode == 0, removed.failure_text or removed.raw
        # The plays loop over the apps' names: an entry (and the password in
        # it) is not a loop item, so not in the JSON callback's output.
        assert not prints_links_password(removed), "site.yml printed the links app's password"
        assert not host.file("/etc/systemd/system/uwsgi-links.service").exists
        assert not host.file("/etc/systemd/system/uwsgi-links.socket").exists
        assert not host.service("uwsgi-links").is_running
        assert not host.service("uwsgi-links.socket").is_running
        assert not host.socket("unix:///run/uwsgi/links/uwsgi.sock").is_listening
        assert not host.file("/etc/nginx/sites-enabled/links.conf").exists
        # The name now falls to the default server: the other app, which does
        # not know the path.
        assert http(host, LINKS + "/api/whoami").status == 404
        assert http(host, FLASKAPP + "/health").status == 200
        # Its data, release and environment stay.
        assert psql(host, "links", f"SELECT count(*) FROM links WHERE url = '{url}'") == "1"
        assert host.file("/srv/links/current").is_symlink
        assert host.file("/etc/flaskops/links.env").exists
        # The backups still dump its database.
        host.check_output("systemctl start flaskops-postgres-backup.service")
        assert set(host.check_output(dumps).split()) - dumped_before, "no new dump of the kept links database"
    finally:
        # Every task of it ran with stock Ansible before: the converge made
        # the app's units and site, and the run above reloaded PostgreSQL
        # and nginx for its pg_hba lines and site (docs/testbed.md).
        restored = run_converge(host, {}, tags=["postgres", "uwsgi", "nginx"], mitogen=True)
    assert restored.returncode == 0, restored.failure_text or restored.raw
    assert not prints_links_password(restored), "site.yml printed the links app's password"
    assert wait_for(lambda: http(host, LINKS + "/healthz").status == 200, timeout=30)
    assert url in http(host, LINKS + "/api/links").body


def test_recovery_to_a_moment_is_what_the_apps_serve(host):
    """recover.yml on the whole stack: a link added before a moment is served
    after recovering to it, one added after is not, the apps' uWSGI were
    stopped for it and serve again, and so were the backup timers. (Back to
    the latest change: the postgres scenario.)"""
    on_primary_distro_only()
    run = time.time_ns()
    before, after = f"https://example.com/before-{run}", f"https://example.com/after-{run}"
    add_link(host, before)
    moment = psql(host, "postgres", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    time.sleep(0.5)
    add_link(host, after)
    pids = {app: main_pid(host, f"uwsgi-{app}") for app in NAMES}
    timers = {timer: stopped_and_started(host, timer) for timer in BACKUP_TIMERS}

    result = run_playbook(host, str(RECOVER_PLAYBOOK), {"postgres_recover_target": moment})
    assert result.returncode == 0, result.failure_text or result.raw
    assert not prints_links_password(result), "recover.yml printed the links app's password"
    # No scheduled backup could start during the recovery: the timers were
    # stopped before the server was, and started again after it was.
    server = stopped_and_started(host, postgres_unit(host))
    assert [timer for timer, seen in timers.items() if not paused_and_resumed(host, timer, seen, server)] == []
    assert wait_for(lambda: http(host, LINKS + "/healthz").status == 200, timeout=30)
    served = http(host, LINKS + "/api/links").body
    assert before in served and after not in served
    assert http(host, FLASKAPP + "/health").status == 200
    for app, pid in pids.items():
        assert main_pid(host, f"uwsgi-{app}") not in (0, pid), f"uwsgi-{app} was not stopped and started again"
    host.check_output("rm -rf /var/lib/postgresql/*/main.before-recovery-*")
