"""Command-line tasks: `flask --app wsgi init-db` creates the schema (idempotent)."""

from __future__ import annotations

import click
from flask import Flask

from .models import db


def register(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the app's tables if they do not exist yet."""
        db.create_all()
        click.echo("database schema is up to date")
