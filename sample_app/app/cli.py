"""Command-line tasks: `flask --app wsgi init-db` creates the schema (idempotent)."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import text

from .models import db

# Several app hosts run init-db at once when a release goes live on all of
# them. A transaction-scoped advisory lock makes them take turns: the one
# that waited then finds the tables the first one created (DDL is
# transactional in PostgreSQL) instead of failing on CREATE TABLE.
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
        """Create the app's tables if they do not exist yet."""
        create_schema()
        click.echo("database schema is up to date")
