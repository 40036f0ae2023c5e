"""Monitoring on the all-in-one host (the `monitoring` group): Prometheus
scrapes every exporter, the collector's metrics match what the host says,
alerts fire when what they guard breaks and clear when it is mended, and
nothing but nginx listens on a public address.

Prometheus is asked through its HTTP API from inside the host (it listens
on loopback). The scenario runs scrapes and rules every 2 s, with
prometheus_alert_down_for at 10 s (molecule.yml).
"""

import json
import os
import subprocess
import time
import urllib.parse
from pathlib import Path

from flaskops_testinfra import (assert_refused_by_the_role, http, on_primary_distro_only, postgres_unit,
                                prometheus_targets_scraped_now, put_file, run_converge, wait_for)

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
JOBS = {"prometheus", "node", "nginx", "postgres", "mtail"}
COLLECTOR_CONFIG = "/etc/flaskops/metrics.json"
HERE = Path(__file__).resolve().parent
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])


def api(host, path: str) -> dict:
    resp = http(host, PROMETHEUS + path)
    assert resp.status == 200, resp.body
    return json.loads(resp.body)["data"]


def query(host, expr: str) -> list[dict]:
    return api(host, "/api/v1/query?query=" + urllib.parse.quote(expr))["result"]


def firing(host, name: str) -> list[dict]:
    return [alert for alert in api(host, "/api/v1/alerts")["alerts"]
            if alert["labels"]["alertname"] == name and alert["state"] == "firing"]


def in_alertmanager(host, name: str) -> list[dict]:
    resp = http(host, ALERTMANAGER + "/api/v2/alerts")
    assert resp.status == 200, resp.body
    return [alert for alert in json.loads(resp.body) if alert["labels"]["alertname"] == name]


def test_every_scrape_target_is_up(host):
    targets = prometheus_targets_scraped_now(host, PROMETHEUS, timeout=30)
    assert {t["labels"]["job"] for t in targets} == JOBS
    assert [t for t in targets if t["health"] != "up"] == []
    # Every series carries the inventory name of its host.
    hosts = {r["metric"]["host"] for r in query(host, "up")}
    assert hosts == {host.backend.get_hostname()}


def test_the_collector_reports_what_the_host_says(host):
    host.check_output("systemctl start flaskops-metrics.service")
    # Each app's socket and the backlog of its socket unit (ss reads the kernel).
    for app in ("flaskapp", "links"):
        backlog = host.check_output("ss -Hxl src /run/uwsgi/%s/uwsgi.sock | awk '{print $4}'", app)
        assert wait_for(lambda: [r["value"][1] for r in query(host, f'flaskops_uwsgi_listen_queue_max{{app="{app}"}}')]
                        == [backlog], timeout=30), (app, backlog)
    # The newest backup's end, as pgBackRest reports it.
    info = json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=main --output=json info"))
    newest = max(backup["timestamp"]["stop"] for backup in info[0]["backup"])
    assert wait_for(lambda: [r["value"][1] for r in query(host, "flaskops_pgbackrest_backup_newest_seconds")]
                    == [str(newest)], timeout=30)
    # Each site's certificate expiry, as openssl reads it.
    for site in ("flaskapp", "links"):
        path = host.check_output("nginx -T 2>/dev/null | awk '/ssl_certificate / && /%s/ {print $2}' | tr -d ';' | head -1", site)
        not_after = host.check_output("date -d \"$(openssl x509 -noout -enddate -in %s | cut -d= -f2)\" +%%s", path)
        result = query(host, f'flaskops_tls_certificate_not_after_seconds{{site="{site}"}}')
        assert [r["value"][1] for r in result] == [not_after], (site, result)


def test_responses_are_counted_by_status(host):
    def missing() -> float:
        out = host.check_output("python3 -c %s", "import urllib.request;print(urllib.request.urlopen("
                                "'http://127.0.0.1:3903/metrics').read().decode())")
        return sum(float(line.rsplit(" ", 1)[1]) for line in out.splitlines()
                   if line.startswith("flaskops_nginx_responses_total{") and 'status="404"' in line
                   and "flaskapp.access.log" in line)
    before = missing()
    for attempt in range(3):
        assert http(host, f"https://127.0.0.1/no-such-page-{attempt}-{time.time_ns()}").status == 404
    assert wait_for(lambda: missing() == before + 3, timeout=15), (before, missing())


def test_the_alert_rules_pass_their_unit_tests(host, tmp_path):
    """The rules as the role renders them with its defaults, under promtool
    test rules on the host (tests/alerts_test.yml)."""
    on_primary_distro_only()
    rendered = tmp_path / "alerts.yml"
    subprocess.run(["ansible", "localhost", "-c", "local", "-m", "ansible.builtin.template",
                    "-a", f"src={PROJECT}/roles/prometheus/templates/flaskops-alerts.yml.j2 dest={rendered}",
                    "-e", f"@{PROJECT}/roles/prometheus/defaults/main.yml"],
                   check=True, capture_output=True, text=True)
    put_file(host, "/tmp/promtool/alerts.yml", rendered.read_bytes())
    put_file(host, "/tmp/promtool/alerts_test.yml",
             (HERE / "alerts_test.yml").read_text().replace("[RULES]", "[alerts.yml]").encode())
    result = host.run("cd /tmp/promtool && promtool test rules alerts_test.yml")
    assert result.rc == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_stopping_postgresql_fires_its_alert_and_starting_it_clears_it(host):
    """The alert fires after its `for`, reaches Alertmanager, and clears."""
    unit = postgres_unit(host)
    assert not firing(host, "PostgresqlDown")
    host.check_output("systemctl stop %s", unit)
    try:
        started = time.monotonic()
        # 10 s of `for`, a scrape and a rule run of 2 s each, and slack.
        assert wait_for(lambda: firing(host, "PostgresqlDown"), timeout=60)
        assert time.monotonic() - started >= 10
        assert wait_for(lambda: in_alertmanager(host, "PostgresqlDown"), timeout=30)
    finally:
        host.check_output("systemctl start %s", unit)
    assert wait_for(lambda: not firing(host, "PostgresqlDown") and not api(host, "/api/v1/alerts")["alerts"],
                    timeout=60), api(host, "/api/v1/alerts")
    assert wait_for(lambda: http(host, "https://127.0.0.1/health").status == 200, timeout=30)


def test_a_collector_that_stops_running_fires_its_alert(host):
    """With its timer stopped the collector's files stay, served with their
    last values: the alert sees their age (three runs of 10 s here, then
    10 s of `for`) and clears once the collector runs again."""
    def kinds_firing() -> set[str]:
        return {alert["labels"]["kind"] for alert in firing(host, "MetricsCollectorFailing")}

    assert not kinds_firing()
    host.check_output("systemctl stop flaskops-metrics.timer")
    try:
        # The collector's last run: the files' age counts from it.
        last_run = max(int(t) for t in
                       host.check_output("stat -c %Y /var/lib/prometheus/node-exporter/flaskops_*.prom").split())
        assert wait_for(lambda: kinds_firing() == {"uwsgi", "pgbackrest", "tls"}, timeout=90), kinds_firing()
        assert int(host.check_output("date +%s")) - last_run > 30
    finally:
        host.check_output("systemctl start flaskops-metrics.timer")
    assert wait_for(lambda: not firing(host, "MetricsCollectorFailing"), timeout=60)


def test_a_backup_older_than_its_schedule_fires_the_backup_alert(host):
    """The host's newest backup is minutes old; a schedule that allows one
    second makes it too old. (The collector's configuration is edited and
    put back: the clock cannot be moved on a container.)"""
    assert not firing(host, "BackupTooOld")
    host.check_output("cp %s /tmp/metrics.json.orig", COLLECTOR_CONFIG)
    config = json.loads(host.check_output("cat %s", COLLECTOR_CONFIG))
    config["pgbackrest"][0]["max_age"] = 1
    try:
        put_file(host, COLLECTOR_CONFIG, json.dumps(config).encode())
        host.check_output("systemctl start flaskops-metrics.service")
        assert wait_for(lambda: firing(host, "BackupTooOld"), timeout=45)
    finally:
        host.check_output("cp /tmp/metrics.json.orig %s && systemctl start flaskops-metrics.service", COLLECTOR_CONFIG)
    assert wait_for(lambda: not firing(host, "BackupTooOld"), timeout=45)


def test_nothing_but_nginx_listens_on_a_public_address(host):
    public = []
    for line in host.check_output("ss -HtulnpO").splitlines():
        fields = line.split()
        address = fields[4].rsplit(":", 1)[0].strip("[]").split("%")[0]
        if address.startswith("127.") or address == "::1":
            continue
        if '"nginx"' not in line:
            public.append(line)
    assert public == []


NODE_EXPORTER_SETTINGS = "/etc/default/prometheus-node-exporter"


def test_an_exporter_left_on_old_settings_is_restarted_onto_its_own(host):
    """A run that failed before its handlers leaves an exporter listening
    where its old file said, while the file is already right: the next run
    finds it by its socket and restarts it."""
    on_primary_distro_only()
    set_here, elsewhere = "127.0.0.1:9100", "127.0.0.1:9109"
    original = host.file(NODE_EXPORTER_SETTINGS).content
    moved = original.replace(set_here.encode() + b" ", elsewhere.encode() + b" ")
    assert moved != original
    try:
        put_file(host, NODE_EXPORTER_SETTINGS, moved)
        host.check_output("systemctl restart prometheus-node-exporter")
        assert wait_for(lambda: host.socket(f"tcp://{elsewhere}").is_listening)
        put_file(host, NODE_EXPORTER_SETTINGS, original)
        result = run_converge(host, {}, tags=["monitoring"])
        assert result.returncode == 0, result.failure_text or result.raw
        assert host.socket(f"tcp://{set_here}").is_listening and not host.socket(f"tcp://{elsewhere}").is_listening
    finally:
        put_file(host, NODE_EXPORTER_SETTINGS, original)
        if not host.socket(f"tcp://{set_here}").is_listening:
            host.check_output("systemctl restart prometheus-node-exporter")


def test_bad_monitoring_input_is_refused_before_any_change(host):
    on_primary_distro_only()
    result = run_converge(host, {"prometheus_listen_address": "0.0.0.0"}, tags=["monitoring"], mitogen=True)
    assert_refused_by_the_role(result, "prometheus", "prometheus_listen_address")
    result = run_converge(host, {"exporters_collect_interval": "often"}, tags=["monitoring"], mitogen=True)
    assert_refused_by_the_role(result, "exporters", "exporters_collect_interval")
