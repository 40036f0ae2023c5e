"""The links app's configuration from the environment, and its entry point as uWSGI and the role load it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from links import ConfigError, create_app, load_config, sqlalchemy_url

APP_DIR = Path(__file__).resolve().parents[1]
GOOD = {"SECRET_KEY": "s", "DATABASE_URL": "postgresql://links:pw@127.0.0.1:5432/links"}


@pytest.mark.parametrize("missing", ["DATABASE_URL", "SECRET_KEY"])
def test_a_missing_setting_is_named(missing):
    environ = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        create_app(environ=environ)
    with pytest.raises(ConfigError, match=missing):
        create_app(environ=dict(environ, **{missing: ""}))


@pytest.mark.parametrize("name, value", [
    ("DATABASE_URL", "sqlite:///links.db"),
    ("DATABASE_URL", "mysql://links@db/links"),
    ("TRUSTED_PROXIES", "one"),
    ("TRUSTED_PROXIES", "-1"),
    ("DATABASE_CONNECT_TIMEOUT", "soon"),
])
def test_a_wrong_setting_is_named(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config(dict(GOOD, **{name: value}))


def test_debug_mode_needs_no_secret_key():
    config = load_config({"DATABASE_URL": GOOD["DATABASE_URL"], "FLASK_DEBUG": "1"})
    assert config["DEBUG"] is True and config["SECRET_KEY"]


def test_defaults():
    config = load_config(GOOD)
    assert config["DEBUG"] is False
    assert config["TRUSTED_PROXIES"] == 1
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://links:pw@127.0.0.1:5432/links"
    assert load_config(dict(GOOD, TRUSTED_PROXIES="0"))["TRUSTED_PROXIES"] == 0


@pytest.mark.parametrize("url, expected", [
    ("postgresql://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
    ("postgres://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
    ("postgresql+psycopg://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
])
def test_urls_use_the_psycopg3_driver(url, expected):
    assert sqlalchemy_url(url) == expected


def test_the_factory_does_not_touch_the_database():
    # Nothing listens there: creating the app must still work (uWSGI and the
    # role's entry point check load it before the database is needed).
    app = create_app(environ=dict(GOOD, DATABASE_URL="postgresql://links:pw@127.0.0.1:1/links"))
    assert app.name == "links"
    assert "migrate" in app.extensions
    assert Path(app.extensions["migrate"].directory).is_absolute()


def test_the_entry_point_loads_as_the_role_checks_it(tmp_path):
    """roles/flask_app/tasks/entry_point.yml: import the module, evaluate the call, from another directory."""
    check = (
        "import importlib, sys\n"
        "module, _, call = sys.argv[1].partition(':')\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "app = eval('importlib.import_module(module).' + call, {'importlib': importlib, 'module': module})\n"
        "assert callable(app), type(app)\n"
        "print(app.static_folder)\n"
    )
    env = {"PATH": "/usr/bin:/bin", **GOOD}
    done = subprocess.run([sys.executable, "-c", check, "links:create_app()", str(APP_DIR)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(APP_DIR / "links" / "assets")
