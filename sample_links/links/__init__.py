"""links: the flaskops.stack second sample app, a small bookmark list, unlike the first in its layout.

- an app factory, no WSGI module: uWSGI loads `links:create_app()`;
- the schema only from Alembic migrations (links/migrations/, through
  Flask-Migrate): the release's init command is
  `flask --app links:create_app db upgrade`, never `create_all()`;
- static files in links/assets/, served at /static/ (by Flask here, by nginx
  in front of it);
- health at /healthz.

Configuration comes from the environment (the flask_app role writes it into
the app's environment file):

DATABASE_URL      PostgreSQL URL (required), e.g. postgresql://links:secret@127.0.0.1/links
SECRET_KEY        required unless FLASK_DEBUG is on
TRUSTED_PROXIES   how many reverse proxies in front of the app set
                  X-Forwarded-For/-Proto/-Host (default 1: nginx); 0 trusts none
FLASK_DEBUG       1 for Flask's debug mode (never in production)
LINKS_GREETING    a harmless value GET /api/whoami echoes (tests read it)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from werkzeug.middleware.proxy_fix import ProxyFix

db = SQLAlchemy()
migrate = Migrate()

# Absolute, so `flask db upgrade` finds the migrations from any working directory.
MIGRATIONS_DIR = str(Path(__file__).resolve().parent / "migrations")

# The key of the PostgreSQL advisory lock migrations/env.py holds while it
# upgrades: hosts that upgrade the same database at once take turns.
MIGRATION_LOCK_KEY = 0x6C696E6B73  # "links"

_POSTGRESQL_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")


class ConfigError(RuntimeError):
    """The environment does not hold a configuration the app can run with."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def sqlalchemy_url(url: str) -> str:
    """Point a plain postgresql:// URL at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _whole_number(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(environ.get(name, str(default)))
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def load_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The app's settings from the environment; a ConfigError names the variable that is wrong."""
    debug = _truthy(environ.get("FLASK_DEBUG"))
    secret = environ.get("SECRET_KEY", "")
    if not secret and not debug:
        raise ConfigError("SECRET_KEY is not set: refusing to start outside debug mode")
    database_url = environ.get("DATABASE_URL", "")
    if not database_url:
        raise ConfigError("DATABASE_URL is not set")
    if not database_url.startswith(_POSTGRESQL_PREFIXES):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    return {
        "DEBUG": debug,
        "SECRET_KEY": secret or "debug-only-insecure-key",
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            # A connection that died with a database restart is replaced
            # instead of failing the next request.
            "pool_pre_ping": True,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": _whole_number(environ, "DATABASE_CONNECT_TIMEOUT", 3)},
        },
        "TRUSTED_PROXIES": _whole_number(environ, "TRUSTED_PROXIES", 1),
    }


def create_app(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    """The app factory: `links:create_app()` for uWSGI, `links:create_app` for the flask command."""
    app = Flask(__name__, static_folder="assets", static_url_path="/static")
    app.config.update(load_config(os.environ if environ is None else environ))
    if overrides:
        app.config.update(overrides)

    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    db.init_app(app)
    # No create_all(): the schema comes from the migrations only (`flask db upgrade`).
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)

    # Imported here: the views import `db` from this module.
    from .views import bp  # pylint: disable=import-outside-toplevel

    app.register_blueprint(bp)
    return app
