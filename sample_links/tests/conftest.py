"""Fixtures for the links app's tests: a real, throwaway PostgreSQL server.

If TEST_DATABASE_URL is set, the tests use that database. Otherwise a
temporary cluster is created with the server binaries found on this machine
(Debian's `postgresql` package; scripts/test-sample-app.sh installs it), on a
free port of 127.0.0.1, with a password-protected role, and removed after the
session. When run as root the cluster runs as the `postgres` system user,
because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DB_USER = "links_test"
DB_PASSWORD = "test-password-not-secret"
DB_NAME = "links_test"


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package "
                "(scripts/test-sample-app.sh does) or set TEST_DATABASE_URL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TempCluster:
    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.as_root = os.geteuid() == 0
        self.tmp = Path(tempfile.mkdtemp(prefix="flaskops-pg-"))
        self.datadir = self.tmp / "data"
        self.port = _free_port()
        if self.as_root:
            shutil.chown(self.tmp, "postgres", "postgres")
        self.tmp.chmod(0o700)

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.tmp, **kwargs)

    def start(self) -> str:
        pwfile = self.tmp / "pw"
        pwfile.write_text(DB_PASSWORD + "\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        self.run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", DB_USER,
                 "--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=scram-sha-256")
        pwfile.unlink()
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "30",
                 "-l", str(self.tmp / "server.log"), "start",
                 "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.tmp}")
        url = f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port}/postgres"
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        return f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port}/{DB_NAME}"

    def stop(self) -> None:
        try:
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    cluster = TempCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture()
def empty_db(database_url) -> str:
    """The database as a fresh host's is before its first upgrade: neither the app's table nor Alembic's."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS links, alembic_version")
    return database_url


@pytest.fixture()
def environ(database_url) -> dict[str, str]:
    """The app's environment, as the flask_app role's env file holds it."""
    return {"SECRET_KEY": "test-secret", "DATABASE_URL": database_url, "TRUSTED_PROXIES": "1"}


@pytest.fixture()
def fresh_app(environ, empty_db):
    """The app on an empty database: no migration has run yet."""
    from links import create_app, db

    application = create_app({"TESTING": True}, environ=environ)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture()
def app(fresh_app):
    """The app on a database its real migrations brought to head (what the release's init command does)."""
    from flask_migrate import upgrade

    with fresh_app.app_context():
        upgrade()
    return fresh_app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    port = _free_port()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
        port = _free_port()
    pytest.fail("could not find a closed port")
