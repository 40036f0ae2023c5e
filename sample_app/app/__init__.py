"""flaskops.stack sample app: a small notes service backed by PostgreSQL.

Configuration comes from the environment (the flask_app role writes it into
the app's environment file):

DATABASE_URL      PostgreSQL URL, e.g. postgresql://notes:secret@127.0.0.1/notes
SECRET_KEY        required unless FLASK_DEBUG is on
TRUSTED_PROXIES   how many reverse proxies in front of the app set
                  X-Forwarded-For/-Proto/-Host (default 1: nginx); 0 trusts none
FLASKOPS_DIAGNOSTICS  1 registers the /diag/ endpoints of fault tests
                  (app/diagnostics.py); off unless set
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .models import db
from .pool import replace_connections_the_server_ended


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


def load_config(environ: Mapping[str, str]) -> dict[str, Any]:
    debug = _truthy(environ.get("FLASK_DEBUG"))
    secret = environ.get("SECRET_KEY", "")
    if not secret and not debug:
        raise ConfigError("SECRET_KEY is not set: refusing to start outside debug mode")
    database_url = environ.get("DATABASE_URL", "")
    if not database_url:
        raise ConfigError("DATABASE_URL is not set")
    try:
        hops = int(environ.get("TRUSTED_PROXIES", "1"))
    except ValueError as exc:
        raise ConfigError("TRUSTED_PROXIES must be a whole number") from exc
    if hops < 0:
        raise ConfigError("TRUSTED_PROXIES must not be negative")
    return {
        "DEBUG": debug,
        "SECRET_KEY": secret or "debug-only-insecure-key",
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            # No pool_pre_ping: app/pool.py replaces a connection the server
            # ended (a database restart) before a request gets it, without
            # a round trip.
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": int(environ.get("DATABASE_CONNECT_TIMEOUT", "3"))},
        },
        "TRUSTED_PROXIES": hops,
        "NOTE_MAX_LENGTH": 500,
        "DIAGNOSTICS": _truthy(environ.get("FLASKOPS_DIAGNOSTICS")),
    }


def create_app(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(load_config(os.environ if environ is None else environ))
    if overrides:
        app.config.update(overrides)

    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            replace_connections_the_server_ended(engine)

    from .routes import bp

    app.register_blueprint(bp)
    if app.config["DIAGNOSTICS"]:
        from .diagnostics import bp as diagnostics

        app.register_blueprint(diagnostics)

    from .cli import register
    from .jobs import register as register_jobs

    register(app)
    register_jobs(app)
    return app
