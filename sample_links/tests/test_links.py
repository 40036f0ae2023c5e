"""sample_links against a real PostgreSQL: schema from migrations, API, health, config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

HERE = Path(__file__).resolve().parents[1]


def table_names(app) -> set[str]:
    from links import db

    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def test_the_schema_comes_from_the_migrations_only(fresh_app):
    from flask_migrate import upgrade
    from links import db

    # The factory creates nothing ...
    assert "links" not in table_names(fresh_app)
    with fresh_app.app_context():
        upgrade()
        head = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    # ... the upgrade does, up to the newest revision.
    assert "links" in table_names(fresh_app)
    assert head == "0002"


def test_flask_db_upgrade_runs_from_any_directory(environ, tmp_path):
    """The release's init command, as the flask_app role runs it (argv, env file loaded)."""
    from links import db  # noqa: F401  (the package is importable here)

    subprocess.run([sys.executable, "-c", "import psycopg"], check=True)
    env = dict(os.environ, **environ, PYTHONPATH=str(HERE))
    flask = Path(sys.executable).with_name("flask")
    for attempt in range(2):  # a second upgrade finds the schema at head and does nothing
        proc = subprocess.run([str(flask), "--app", "links:create_app", "db", "upgrade"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr


def test_a_link_posted_is_listed_back(app):
    client = app.test_client()
    resp = client.post("/api/links", json={"url": "https://example.com/a", "title": "A"})
    assert resp.status_code == 201
    assert resp.get_json()["title"] == "A"
    listed = client.get("/api/links")
    assert listed.headers["Cache-Control"] == "no-store"
    assert [link["url"] for link in listed.get_json()["links"]] == ["https://example.com/a"]
    assert b"https://example.com/a" in client.get("/").data


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://example.com/"}, "url"),
    ({"url": "https://example.com/" + "x" * 2000}, "url"),
    ({"url": "https://example.com/", "title": "t" * 201}, "title"),
    ({"title": "no url"}, "url"),
])
def test_bad_links_are_refused(app, body, field):
    resp = app.test_client().post("/api/links", json=body)
    assert resp.status_code == 400
    assert resp.get_json()["error"].startswith(field)


def test_health_asks_the_database(app, environ, closed_port):
    assert app.test_client().get("/healthz").get_json() == {"status": "ok", "app": "links"}
    from links import create_app

    down = dict(environ, DATABASE_URL=f"postgresql://links_test:x@127.0.0.1:{closed_port}/links_test",
                DATABASE_CONNECT_TIMEOUT="1")
    resp = create_app({"TESTING": True}, environ=down).test_client().get("/healthz")
    assert resp.status_code == 503


@pytest.mark.parametrize("missing", ["DATABASE_URL", "SECRET_KEY"])
def test_a_missing_setting_is_named(environ, missing):
    from links import ConfigError, create_app

    with pytest.raises(ConfigError, match=missing):
        create_app(environ={k: v for k, v in environ.items() if k != missing})


def test_static_files_come_from_assets_at_static(app):
    client = app.test_client()
    css = client.get("/static/links.css")
    assert css.status_code == 200 and b"font-family" in css.data
    assert (HERE / "links" / "assets" / "links.css").is_file()
    assert b"/static/links.css" in client.get("/").data


def test_whoami_echoes_the_greeting(app):
    data = app.test_client().get("/api/whoami").get_json()
    assert data["app"] == "links" and data["greeting"] == "hello from the tests"
