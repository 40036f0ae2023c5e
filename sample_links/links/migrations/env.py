"""Alembic environment for sample_links, run by Flask-Migrate (`flask db upgrade`).

The migrations run while holding a PostgreSQL advisory lock, so app hosts
that upgrade at the same time take turns: the second finds the schema at
head and does nothing.
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import text

config = context.config
if config.config_file_name:
    fileConfig(config.config_file_name)
logger = logging.getLogger("alembic.env")

# Any fixed number: every upgrade of this app's database takes the same lock.
MIGRATION_LOCK = 7_004_221


def run_migrations_offline():
    context.configure(url=current_app.extensions["migrate"].db.engine.url.render_as_string(hide_password=False),
                      target_metadata=current_app.extensions["migrate"].db.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = current_app.extensions["migrate"].db.engine
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=current_app.extensions["migrate"].db.metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
