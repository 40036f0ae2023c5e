"""Role `postgres`, seen on the converged host: logins, settings, backups, restore."""

import json
import os
import re
import time
from pathlib import Path

import pytest
from flaskops_testinfra import (BACKUP_TIMERS, assert_refused_by_the_role, files_state, main_pid,
                                on_primary_distro_only, paused_and_resumed, postgres_unit, postgres_version,
                                run_converge, run_playbook, stopped_and_started, wait_for)

EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
RESTORE_PLAYBOOK = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "playbooks" / "restore.yml"
RECOVER_PLAYBOOK = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "playbooks" / "recover.yml"
PITR = "runuser -u postgres -- pgbackrest --stanza=main"


def app_password() -> str:
    return (EPHEMERAL / "app-db-password").read_text().split()[0]


def as_postgres(host, sql: str, db: str = "postgres") -> str:
    """Run SQL as the superuser over the local socket (peer)."""
    return host.check_output("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d %s -c %s", db, sql)


def over_tcp(host, user: str, password: str | None, sql: str = "SELECT current_user", db: str = "flaskapp"):
    """Log in over TCP on 127.0.0.1 the way the app does (-w: never prompt)."""
    prefix = "env PGPASSWORD=%s " if password is not None else "env -u PGPASSWORD "
    args = [password] if password is not None else []
    return host.run(prefix + "psql -X -At -w -h 127.0.0.1 -U %s -d %s -c %s", *args, user, db, sql)


def app_sql(host, sql: str) -> str:
    """Run SQL as the app role over TCP; it must succeed."""
    result = over_tcp(host, "flaskapp", app_password(), sql)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def reloads_logged(host) -> int:
    log = f"/var/log/postgresql/postgresql-{postgres_version(host)}-main.log"
    return int(host.check_output("grep -c 'received SIGHUP' %s || true", log) or 0)


def test_server_enabled_and_running(host):
    assert host.service(postgres_unit(host)).is_running
    assert host.service(postgres_unit(host)).is_enabled
    assert host.service("postgresql").is_enabled
    assert as_postgres(host, "SHOW server_version_num")[:2] == postgres_version(host)


def test_listens_on_loopback_only(host):
    listening = host.check_output("ss -ltnH 'sport = :5432' | awk '{print $4}'").split()
    assert listening, "nothing listens on 5432"
    for address in listening:
        assert address.rsplit(":", 1)[0] in ("127.0.0.1", "[::1]"), listening


def test_app_role_logs_in_over_tcp_with_its_password(host):
    result = over_tcp(host, "flaskapp", app_password())
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "flaskapp"


@pytest.mark.parametrize("password", [None, "not-the-password"])
def test_app_role_is_refused_without_its_password(host, password):
    result = over_tcp(host, "flaskapp", password)
    assert result.rc != 0
    assert "no password supplied" in result.stderr or "password authentication failed" in result.stderr


def test_superuser_login_over_tcp_is_refused(host):
    result = over_tcp(host, "postgres", "anything", db="postgres")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr


def test_app_role_reaches_only_its_own_database(host):
    result = over_tcp(host, "flaskapp", app_password(), db="reports")
    assert result.rc != 0 and "no pg_hba.conf entry" in result.stderr


def test_app_role_owns_its_database_and_is_not_privileged(host):
    row = as_postgres(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'flaskapp'")
    assert row == "flaskapp"
    flags = as_postgres(host, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'flaskapp'")
    assert flags == "f|f|f"


def test_passwords_are_stored_as_scram(host):
    rows = as_postgres(host, "SELECT rolname || ' ' || left(rolpassword, 14) FROM pg_authid "
                             "WHERE rolname IN ('flaskapp', 'reporter') ORDER BY 1").splitlines()
    assert rows == ["flaskapp SCRAM-SHA-256$", "reporter SCRAM-SHA-256$"]


def test_live_hba_rules_have_no_trust_and_no_catch_all(host):
    rules = as_postgres(host, "SELECT type, auth_method, coalesce(address, '-'), coalesce(netmask, '-'), "
                              "coalesce(error, '-') FROM pg_hba_file_rules").splitlines()
    assert rules
    for rule in rules:
        kind, method, address, netmask, error = rule.split("|")
        assert error == "-", rule
        assert method in ("peer", "scram-sha-256"), rule
        assert netmask not in ("0.0.0.0", "::"), rule
        assert address not in ("all", "samehost", "samenet"), rule


def test_further_role_database_and_extension(host):
    assert as_postgres(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'reports'") == "reporter"
    assert as_postgres(host, "SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'", db="flaskapp") == "pgcrypto"


def test_memory_settings_follow_the_hosts_memory(host):
    mem_mb = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) // 1024
    settings = dict(line.split("|") for line in as_postgres(
        host, "SELECT name, pg_size_bytes(current_setting(name)) FROM unnest(ARRAY["
              "'shared_buffers', 'effective_cache_size', 'maintenance_work_mem', 'work_mem']) AS name").splitlines())
    mib = 1024 * 1024
    assert int(settings["shared_buffers"]) == min(mem_mb // 4, 8192) * mib
    assert int(settings["effective_cache_size"]) == mem_mb * 3 // 4 * mib
    assert int(settings["maintenance_work_mem"]) == min(max(mem_mb // 16, 64), 2048) * mib
    assert int(settings["work_mem"]) == min(max(mem_mb * 3 // 4 // (60 * 3), 4), 64) * mib
    assert as_postgres(host, "SHOW max_connections") == "60"
    assert as_postgres(host, "SHOW password_encryption") == "scram-sha-256"


def test_no_setting_is_waiting_for_a_restart(host):
    assert as_postgres(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_config_changes_reload_or_restart_never_both(host):
    on_primary_distro_only()
    pid, reloads = main_pid(host, postgres_unit(host)), reloads_logged(host)

    # A setting a reload applies: the server keeps running, one reload.
    result = run_converge(host, {"postgres_settings": {"log_min_duration_statement": 250}})
    assert result.returncode == 0, result.failure_text or result.raw
    assert main_pid(host, postgres_unit(host)) == pid
    assert reloads_logged(host) == reloads + 1
    assert as_postgres(host, "SHOW log_min_duration_statement") == "250ms"

    # A setting read at start only: a restart, and no reload on top.
    result = run_converge(host, {"postgres_app_connections": 50, "postgres_settings": {"log_min_duration_statement": 250}})
    assert result.returncode == 0, result.failure_text or result.raw
    assert main_pid(host, postgres_unit(host)) != pid
    assert reloads_logged(host) == reloads + 1
    assert as_postgres(host, "SHOW max_connections") == "70"
    pid = main_pid(host, postgres_unit(host))

    # Both files change at once: one restart applies both.
    result = run_converge(host, {})
    assert result.returncode == 0, result.failure_text or result.raw
    assert main_pid(host, postgres_unit(host)) != pid
    assert reloads_logged(host) == reloads + 1
    assert as_postgres(host, "SHOW max_connections") == "60"
    assert as_postgres(host, "SHOW log_min_duration_statement") == "-1"


def test_a_value_postgres_rejects_fails_and_the_server_keeps_its_config(host):
    on_primary_distro_only()
    live = f"/etc/postgresql/{postgres_version(host)}/main/conf.d/60-flaskops-reload.conf"
    before, pid = host.file(live).sha256sum, main_pid(host, postgres_unit(host))
    result = run_converge(host, {"postgres_settings": {"log_min_duration_statement": "soon"}}, tags=["postgres"],
                          mitogen=True)
    assert result.returncode != 0
    assert 'invalid value for parameter "log_min_duration_statement"' in result.failure_text
    assert host.file(live).sha256sum == before
    assert main_pid(host, postgres_unit(host)) == pid
    assert over_tcp(host, "flaskapp", app_password()).rc == 0


@pytest.mark.parametrize("bad, says", [
    # 99 passes the role's own pattern for a level; pgBackRest refuses it.
    ({"postgres_pitr_compress_level": "99"}, "compress-level"),
    # The repository was made without encryption: a passphrase cannot open it.
    ({"postgres_pitr_cipher_passphrase": "not-the-repository's"}, '"code":99'),
])
def test_a_value_pgbackrest_rejects_fails_and_its_live_config_stays(host, bad, says):
    on_primary_distro_only()
    live = "/etc/pgbackrest/pgbackrest.conf"
    before = host.file(live).sha256sum
    result = run_converge(host, bad, tags=["postgres"], mitogen=True)
    assert result.returncode != 0
    assert says in result.failure_text, result.failure_text
    assert host.file(live).sha256sum == before
    assert json.loads(host.check_output(f"{PITR} --output=json info"))[0]["status"]["code"] == 0


def test_a_pg_hba_line_postgres_rejects_fails_and_the_live_rules_stay(host):
    # 10.0.0.300 passes the role's own pattern for an address; only the
    # throw-away server that checks the candidate pg_hba.conf rejects it
    # (PostgreSQL reads it as a host name, which cannot take a CIDR mask).
    on_primary_distro_only()
    live = f"/etc/postgresql/{postgres_version(host)}/main/pg_hba.conf"
    before, pid = host.file(live).sha256sum, main_pid(host, postgres_unit(host))
    entry = {"database": "flaskapp", "user": "flaskapp", "address": "10.0.0.300"}
    result = run_converge(host, {"postgres_hba_entries": [entry]}, tags=["postgres"], mitogen=True)
    assert result.returncode != 0
    assert result.failed_tasks == ["flaskops.stack.postgres : Write pg_hba.conf (checked by a throw-away server "
                                   "before it goes live)"], result.failures
    assert '"10.0.0.300/32"' in result.failure_text and "could not load pg_hba.conf" in result.failure_text, \
        result.failure_text
    assert host.file(live).sha256sum == before
    assert main_pid(host, postgres_unit(host)) == pid
    assert as_postgres(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"
    assert over_tcp(host, "flaskapp", app_password()).rc == 0


@pytest.mark.parametrize("bad, variable", [
    ({"postgres_app_password": ""}, "postgres_app_password"),
    ({"postgres_version": "11"}, "postgres_version"),
    ({"postgres_shared_buffers": "-1MB"}, "postgres_shared_buffers"),
    ({"postgres_app_client_addresses": ["0.0.0.0/0"]}, "postgres_app_client_addresses"),
    ({"postgres_port": 70000}, "postgres_port"),
    ({"postgres_backup_dir": "backups"}, "postgres_backup_dir"),
    ({"postgres_pitr_repo_path": "pgbackrest"}, "postgres_pitr_repo_path"),
    ({"postgres_pitr_retention_full": 0}, "postgres_pitr_retention_full"),
])
def test_bad_input_fails_before_any_change(host, bad, variable):
    on_primary_distro_only()
    conf = f"/etc/postgresql/{postgres_version(host)}/main"
    files = [f"{conf}/pg_hba.conf", f"{conf}/conf.d/50-flaskops-restart.conf", f"{conf}/conf.d/60-flaskops-reload.conf",
             "/etc/systemd/system/flaskops-postgres-backup.service",
             "/etc/systemd/system/flaskops-postgres-backup.timer", "/etc/pgbackrest/pgbackrest.conf"]
    pid, before = main_pid(host, postgres_unit(host)), files_state(host, files)
    result = run_converge(host, bad, tags=["postgres"], mitogen=True)
    assert_refused_by_the_role(result, "postgres", variable)
    assert main_pid(host, postgres_unit(host)) == pid
    assert files_state(host, files) == before


def newest_dump(host) -> str:
    return host.check_output("ls -1t /var/backups/postgresql/flaskapp/flaskapp-*.dump | head -n 1")


def test_backup_timer_is_active(host):
    timer = host.service("flaskops-postgres-backup.timer")
    assert timer.is_running and timer.is_enabled
    backups = host.file("/var/backups/postgresql")
    assert backups.user == "postgres" and backups.mode == 0o750


def test_a_backup_run_writes_dumps_pg_restore_reads(host):
    host.check_output("systemctl start flaskops-postgres-backup.service")
    for db in ("flaskapp", "reports"):
        dump = host.check_output("ls -1t /var/backups/postgresql/%s/%s-*.dump | head -n 1", db, db)
        listing = host.check_output("runuser -u postgres -- pg_restore --list %s", dump)
        assert f"dbname: {db}" in listing


def test_backups_keep_only_the_newest(host):
    for run in range(4):
        host.check_output("systemctl start flaskops-postgres-backup.service")
    dumps = host.check_output("ls -1 /var/backups/postgresql/flaskapp").split()
    assert len(dumps) == 3, dumps
    assert all(re.fullmatch(r"flaskapp-\d{8}T\d{6}Z\.dump", d) for d in dumps), dumps


def test_restore_round_trip(host):
    app_sql(host, "CREATE TABLE IF NOT EXISTS kept (body text); TRUNCATE kept; "
            "INSERT INTO kept VALUES ('alpha'), ('beta')")
    host.check_output("systemctl start flaskops-postgres-backup.service")
    dump = newest_dump(host)
    app_sql(host, "DROP TABLE kept")
    assert over_tcp(host, "flaskapp", app_password(), "SELECT count(*) FROM kept").rc != 0

    result = run_playbook(host, str(RESTORE_PLAYBOOK), {"postgres_restore_dump": Path(dump).name})
    assert result.returncode == 0, result.failure_text or result.raw

    assert app_sql(host, "SELECT string_agg(body, ',' ORDER BY body) FROM kept") == "alpha,beta"
    assert as_postgres(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'kept'", db="flaskapp") == "flaskapp"
    # The database that was replaced is kept, not dropped.
    kept = as_postgres(host, "SELECT datname FROM pg_database WHERE datname LIKE 'flaskapp_before_restore_%'")
    assert kept


def test_restore_refuses_an_unreadable_dump(host):
    host.check_output("echo 'not a dump' > /var/backups/postgresql/flaskapp/broken.dump")
    try:
        result = run_playbook(host, str(RESTORE_PLAYBOOK), {"postgres_restore_dump": "broken.dump"})
    finally:
        host.check_output("rm -f /var/backups/postgresql/flaskapp/broken.dump")
    assert result.returncode != 0
    assert "No usable dump" in result.failure_text
    assert over_tcp(host, "flaskapp", app_password(), "SELECT count(*) FROM kept").stdout.strip() == "2"


def test_restore_without_a_name_takes_the_newest_dump(host):
    # Two dumps a second apart (their names carry the time): the older one
    # holds "older-<run>", the newer one "newer-<run>" (<run> tells this
    # test's dumps from those of an earlier run still kept).
    run = time.time_ns()
    app_sql(host, "CREATE TABLE IF NOT EXISTS picked (body text); TRUNCATE picked; "
                  f"INSERT INTO picked VALUES ('older-{run}')")
    host.check_output("systemctl start flaskops-postgres-backup.service")
    time.sleep(1.1)
    app_sql(host, f"TRUNCATE picked; INSERT INTO picked VALUES ('newer-{run}')")
    host.check_output("systemctl start flaskops-postgres-backup.service")
    newest = newest_dump(host)
    app_sql(host, "DROP TABLE picked")

    result = run_playbook(host, str(RESTORE_PLAYBOOK), {})
    assert result.returncode == 0, result.failure_text or result.raw
    assert app_sql(host, "SELECT string_agg(body, ',') FROM picked") == f"newer-{run}"
    assert Path(newest).name in result.output, f"the run does not name {newest}"


def timeline(host) -> int:
    """The timeline the server writes WAL on (1 until a recovery promotes it)."""
    return int(as_postgres(host, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)


def pitr_rows(host) -> str:
    return as_postgres(host, "SELECT string_agg(n::text, ',' ORDER BY n) FROM pitr_notes", db="reports")


def test_wal_goes_into_the_repository_as_the_server_writes_it(host):
    """archive_command hands each WAL segment to pgBackRest: a segment the
    server switches away from is in the repository within seconds."""
    def counts() -> tuple[int, int]:
        return tuple(map(int, as_postgres(host, "SELECT archived_count, failed_count FROM pg_stat_archiver").split("|")))

    archived, failed = counts()
    segment = as_postgres(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    as_postgres(host, "CREATE TABLE IF NOT EXISTS wal_probe (n int); INSERT INTO wal_probe VALUES (1); SELECT pg_switch_wal()",
                db="reports")
    in_repo = f"ls /var/lib/pgbackrest/archive/main/*/{segment[:16]}/{segment}-* >/dev/null 2>&1"
    assert wait_for(lambda: host.run(in_repo).rc == 0, timeout=30), f"{segment} did not reach the repository"
    # The segment is in the repository while archive_command still runs;
    # the server counts it once the command has returned success.
    assert wait_for(lambda: counts()[0] > archived, timeout=30), f"archived, failed: {archived}, {failed} before, {counts()} after"
    assert counts()[1] == failed, f"archived, failed: {archived}, {failed} before, {counts()} after"


def test_scheduled_backups_and_the_first_full_one(host):
    for kind in ("full", "diff"):
        timer = host.service(f"flaskops-pgbackrest-backup@{kind}.timer")
        assert timer.is_running and timer.is_enabled, kind
    info = json.loads(host.check_output(f"{PITR} --output=json info"))[0]
    assert info["status"]["code"] == 0, info["status"]
    assert any(backup["type"] == "full" for backup in info["backup"]), info["backup"]
    # A differential backup through the timer's unit (its sandbox) works too.
    host.check_output("systemctl start flaskops-pgbackrest-backup@diff.service")
    info = json.loads(host.check_output(f"{PITR} --output=json info"))[0]
    assert info["backup"][-1]["type"] == "diff", info["backup"][-1]


def test_recovery_to_a_moment_then_back_to_the_latest_change(host):
    """Rows written, a moment T noted, more rows, a newer backup, a table
    dropped by mistake: recovering to T brings back the table and only the
    rows before T (from the backup before T, not the newer one); recovering
    to the latest change of the timeline before brings back the later rows
    (and the drop, which came last)."""
    as_postgres(host, "DROP TABLE IF EXISTS pitr_notes; DROP TABLE IF EXISTS pitr_precious; "
                      "CREATE TABLE pitr_notes (n int); INSERT INTO pitr_notes VALUES (1), (2), (3); "
                      "CREATE TABLE pitr_precious AS SELECT 'keep me'::text AS body", db="reports")
    moment = as_postgres(host, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    time.sleep(0.5)
    as_postgres(host, "INSERT INTO pitr_notes VALUES (4), (5), (6)", db="reports")
    host.check_output("systemctl start flaskops-pgbackrest-backup@full.service")
    as_postgres(host, "DROP TABLE pitr_precious", db="reports")
    before = timeline(host)

    result = run_playbook(host, str(RECOVER_PLAYBOOK), {"postgres_recover_target": moment})
    assert result.returncode == 0, result.failure_text or result.raw
    assert pitr_rows(host) == "1,2,3"
    assert as_postgres(host, "SELECT body FROM pitr_precious", db="reports") == "keep me"
    assert timeline(host) > before
    # Its report says how to go back.
    assert f"postgres_recover_timeline={before} recovers to where it was" in result.output, result.output[-2000:]
    # The data directory it replaced is kept, and the server takes writes.
    data = f"/var/lib/postgresql/{postgres_version(host)}/main"
    assert host.check_output("ls -d %s.before-recovery-* | wc -l", data) != "0"
    as_postgres(host, "INSERT INTO pitr_notes VALUES (100)", db="reports")
    # A backup on the new timeline (the timers go on): it cannot be the
    # start of a recovery along the timeline before.
    host.check_output("systemctl start flaskops-pgbackrest-backup@diff.service")

    result = run_playbook(host, str(RECOVER_PLAYBOOK), {"postgres_recover_timeline": str(before)})
    assert result.returncode == 0, result.failure_text or result.raw
    assert pitr_rows(host) == "1,2,3,4,5,6"
    assert as_postgres(host, "SELECT count(*) FROM pg_tables WHERE tablename = 'pitr_precious'", db="reports") == "0"
    host.check_output("rm -rf %s.before-recovery-*", data)


@pytest.mark.parametrize("target, message", [
    ("the day before yesterday", "postgres_recover_target must be 'latest' or a moment"),
    ("2001-01-01 00:00:00+00", "postgres_recover_target 2001-01-01 00:00:00+00 is outside"),
])
def test_recovery_refuses_a_target_it_cannot_reach_before_stopping(host, target, message):
    pid = main_pid(host, postgres_unit(host))
    result = run_playbook(host, str(RECOVER_PLAYBOOK), {"postgres_recover_target": target})
    assert result.returncode != 0
    assert message in result.failure_text, result.failure_text
    assert main_pid(host, postgres_unit(host)) == pid


def test_a_recovery_that_fails_leaves_the_server_on_its_data(host):
    """A timeline the archive does not have passes the checks, but the server
    cannot recover along it: the run fails, and the server is back on the
    data directory it had, with what it held, and its backup timers, stopped
    for the attempt, run again."""
    as_postgres(host, "CREATE TABLE IF NOT EXISTS pitr_kept (body text); TRUNCATE pitr_kept; "
                      "INSERT INTO pitr_kept VALUES ('still here')", db="reports")
    data = f"/var/lib/postgresql/{postgres_version(host)}/main"
    timers = {timer: stopped_and_started(host, timer) for timer in BACKUP_TIMERS}
    result = run_playbook(host, str(RECOVER_PLAYBOOK), {"postgres_recover_timeline": "99"})
    assert result.returncode != 0
    assert "The server runs on the data directory as it was" in result.failure_text, result.failure_text
    server = stopped_and_started(host, postgres_unit(host))
    assert [timer for timer, seen in timers.items() if not paused_and_resumed(host, timer, seen, server)] == []
    assert host.service(postgres_unit(host)).is_running
    assert as_postgres(host, "SELECT body FROM pitr_kept", db="reports") == "still here"
    assert host.check_output("ls -d %s.failed-recovery-* | wc -l", data) != "0"
    host.check_output("rm -rf %s.failed-recovery-*", data)
