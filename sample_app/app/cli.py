"""Command-line tasks: `flask --app wsgi init-db` creates the schema (idempotent)."""

from __future__ import annotations

import os
import socket

import click
from flask import Flask
from sqlalchemy import text

from .models import InitRun, db

# The playbooks run init-db once per deploy, on one app host; the flask_app
# role run alone on several hosts runs it on each at once. A
# transaction-scoped advisory lock makes those take turns: the one that
# waited then finds the tables the first one created (DDL is transactional
# in PostgreSQL) instead of failing on CREATE TABLE.
SCHEMA_LOCK_ID = 0x666C61736B  # "flask"


def create_schema() -> None:
    """Create the app's tables that do not exist yet; safe to run concurrently."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
        db.metadata.create_all(conn)


def register(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the app's tables if they do not exist yet, and record the run."""
        create_schema()
        # FLASKOPS_RELEASE: the release the flask_app role is migrating to.
        run = InitRun(release=os.environ.get("FLASKOPS_RELEASE", "unknown"), host=socket.gethostname())
        db.session.add(run)
        db.session.commit()
        click.echo(f"database schema is up to date (release {run.release} on {run.host})")
