"""The app refuses configurations it cannot run safely with."""

import pytest

from app import ConfigError, create_app, sqlalchemy_url

URL = "postgresql://u:p@127.0.0.1:5432/db"


def test_refuses_to_start_without_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(environ={"DATABASE_URL": URL})


def test_debug_mode_starts_without_secret_key():
    app = create_app(environ={"DATABASE_URL": URL, "FLASK_DEBUG": "1"})
    assert app.debug is True
    assert app.config["SECRET_KEY"]


def test_requires_database_url():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app(environ={"SECRET_KEY": "x"})


@pytest.mark.parametrize("value", ["two", "-1"])
def test_rejects_bad_trusted_proxies(value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        create_app(environ={"SECRET_KEY": "x", "DATABASE_URL": URL, "TRUSTED_PROXIES": value})


@pytest.mark.parametrize("given, expected", [
    ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
])
def test_database_url_uses_psycopg3(given, expected):
    assert sqlalchemy_url(given) == expected


def test_wsgi_module_exposes_application(monkeypatch, database_url):
    import importlib
    import sys

    monkeypatch.setenv("SECRET_KEY", "from-env")
    monkeypatch.setenv("DATABASE_URL", database_url)
    sys.modules.pop("wsgi", None)
    wsgi = importlib.import_module("wsgi")
    assert wsgi.application.config["SECRET_KEY"] == "from-env"
    assert callable(wsgi.application.wsgi_app)
