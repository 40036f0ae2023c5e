"""Alembic environment of the links app, run by Flask-Migrate (`flask --app links:create_app db upgrade`).

The migrations run while this connection holds a PostgreSQL session advisory
lock (links.MIGRATION_LOCK_KEY): app hosts that upgrade the same database at
once take turns, and the one that waited finds the schema at head and does
nothing, instead of failing on a table the other one just created.
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import text

from links import MIGRATION_LOCK_KEY

config = context.config
if config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

migrate_ext = current_app.extensions["migrate"]
target_metadata = migrate_ext.db.metadata


def _skip_empty_autogenerate(_context, _revision, directives):
    """`flask db migrate` writes no revision when the models and the schema agree."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("no changes in the schema detected")


def run_migrations_offline():
    """`flask db upgrade --sql`: print the SQL instead of running it."""
    context.configure(url=migrate_ext.db.engine.url.render_as_string(hide_password=False),
                      target_metadata=target_metadata, literal_binds=True, **migrate_ext.configure_args)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run the migrations on one connection, under the advisory lock."""
    conf_args = dict(migrate_ext.configure_args)
    conf_args.setdefault("process_revision_directives", _skip_empty_autogenerate)
    with migrate_ext.db.engine.connect() as connection:
        # A session lock, taken and released outside the migration's own
        # transaction; it waits for as long as another host holds it.
        logger.info("waiting for the migration lock %d", MIGRATION_LOCK_KEY)
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata, **conf_args)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            _unlock(connection)


def _unlock(connection):
    """Release the migration lock; a connection that cannot is closed for good, which releases it too."""
    try:
        # After a failed migration its transaction is rolled back first.
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
    except Exception:  # pylint: disable=broad-exception-caught
        # Whatever went wrong here, the migration's own error (if any) matters more.
        logger.warning("could not release the migration lock: closing the connection instead", exc_info=True)
        connection.invalidate()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
