"""The schema comes only from the migrations, through the release's init command, and upgrades take turns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

APP_DIR = Path(__file__).resolve().parents[1]  # what the release directory holds
# The flask_app role runs the init command as <venv>/bin/<argv[0]> argv[1:], in the release directory.
INIT_COMMAND = ["flask", "--app", "links:create_app", "db", "upgrade"]


def head_revision() -> str:
    from links import MIGRATIONS_DIR

    return ScriptDirectory(MIGRATIONS_DIR).get_current_head()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def alembic_versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def init_command(environ: dict[str, str], cwd: Path, pythonpath: str | None = None) -> subprocess.Popen:
    """The release's init command as the role runs it: the venv's flask, the app's environment only."""
    env = dict(environ, PATH=os.environ.get("PATH", "/usr/bin:/bin"))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv = [str(Path(sys.executable).with_name(INIT_COMMAND[0])), *INIT_COMMAND[1:]]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_schema_comes_from_the_migrations_only(fresh_app, empty_db):
    from flask_migrate import upgrade
    from links import db

    # Neither the factory nor a request creates a table ...
    assert fresh_app.test_client().get("/healthz").status_code == 200
    assert "links" not in tables(empty_db)
    with fresh_app.app_context():
        upgrade()
        columns = {col["name"]: col for col in inspect(db.engine).get_columns("links")}
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    # ... the upgrade does, to the newest revision.
    assert "links" in tables(empty_db)
    assert version == head_revision() == "0002"
    assert set(columns) == {"id", "url", "title", "created_at"}
    assert columns["url"]["nullable"] is False
    assert str(columns["created_at"]["type"]) == "TIMESTAMP"
    assert columns["created_at"]["type"].timezone is True
    assert "now()" in columns["created_at"]["default"]


def test_the_init_command_upgrades_from_the_release_directory(environ, empty_db):
    """cwd = the release directory, no PYTHONPATH: as roles/flask_app/tasks/build.yml runs it."""
    first = finished(init_command(environ, APP_DIR))
    assert first.returncode == 0, first.stderr
    assert "Running upgrade  -> 0001" in first.stderr and "0001 -> 0002" in first.stderr
    assert alembic_versions(empty_db) == [head_revision()]
    assert "links" in tables(empty_db)
    # Again, as the next release's init command: nothing left to do, and no error.
    again = finished(init_command(environ, APP_DIR))
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr
    assert alembic_versions(empty_db) == [head_revision()]


def test_the_init_command_finds_its_migrations_from_any_directory(environ, empty_db, tmp_path):
    done = finished(init_command(environ, tmp_path, pythonpath=str(APP_DIR)))
    assert done.returncode == 0, done.stderr
    assert alembic_versions(empty_db) == [head_revision()]


def _advisory_waiters(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0]


def test_hosts_upgrading_at_once_take_turns_on_the_advisory_lock(environ, empty_db):
    from links import MIGRATION_LOCK_KEY

    with psycopg.connect(empty_db, autocommit=True) as holder:
        # Another host's upgrade in progress.
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        procs = [init_command(environ, APP_DIR), init_command(environ, APP_DIR)]
        try:
            deadline = time.monotonic() + 60
            while (_advisory_waiters(holder) < 2 and time.monotonic() < deadline
                   and all(proc.poll() is None for proc in procs)):
                time.sleep(0.1)
            # Both wait for the lock instead of running the migrations.
            assert _advisory_waiters(holder) == 2
            assert all(proc.poll() is None for proc in procs)
            assert "links" not in tables(empty_db)
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        results = [finished(proc) for proc in procs]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    # One of them ran the migrations; the other found the schema at head.
    assert sorted("Running upgrade" in r.stderr for r in results) == [False, True]
    assert alembic_versions(empty_db) == [head_revision()]


def test_the_lock_is_released_after_an_upgrade(app, empty_db):
    from links import MIGRATION_LOCK_KEY

    assert app  # upgraded in this process, on a pooled connection
    with psycopg.connect(empty_db, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()[0] is True
        other.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
