"""The sample app's job queue: a PostgreSQL table, taken with FOR UPDATE SKIP LOCKED.

`flask --app wsgi worker` runs one consumer: it takes the oldest queued job
that no other consumer holds, does it (the text upper-cased, after the
job's `seconds`), and records the result with the release and host that
did it. Several consumers, on one host or many, never take the same job.
The job's row stays locked until its result is committed: a consumer that
dies (kill -9) leaves it queued for the next one. SIGTERM (or SIGINT) lets
the job in hand finish, then the worker exits.

`flask --app wsgi purge-jobs` deletes jobs done more than --days days ago
(the workers role runs it from a systemd timer).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import datetime, timedelta, timezone

import click
from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from .models import Job, db


class Stop:
    """Set by SIGTERM/SIGINT: the worker stops once the job in hand is done."""

    def __init__(self) -> None:
        self.requested = ""

    def __call__(self, signum: int, _frame: object) -> None:
        # Only a flag: writing here could interrupt a write in progress.
        self.requested = signal.Signals(signum).name


def take_one(release: str, host: str) -> Job | None:
    """Take, do and record the oldest queued job no other consumer holds."""
    job = db.session.scalars(
        select(Job).where(Job.status == "queued").order_by(Job.id).limit(1).with_for_update(skip_locked=True)
    ).first()
    if job is None:
        db.session.rollback()
        return None
    # The row stays locked by this transaction until the result is in.
    job.status, job.started_at, job.release, job.host = "running", datetime.now(timezone.utc), release, host
    db.session.flush()
    click.echo(f"worker: job {job.id} started")
    time.sleep(job.seconds)
    job.result = job.text.upper()
    job.status, job.done_at = "done", datetime.now(timezone.utc)
    db.session.commit()
    return job


def register(app: Flask) -> None:
    @app.cli.command("worker")
    @click.option("--poll", default=0.5, show_default=True, help="Seconds between looks at an empty queue.")
    def worker(poll: float) -> None:
        """Consume the job queue until SIGTERM."""
        stop = Stop()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        release = os.environ.get("FLASKOPS_RELEASE", "unknown")
        host = socket.gethostname()
        click.echo(f"worker: consuming jobs (release {release} on {host})")
        while not stop.requested:
            try:
                job = take_one(release, host)
            except OperationalError as exc:
                # The database restarting: try again shortly.
                db.session.rollback()
                click.echo(f"worker: database unavailable: {str(exc.orig or exc).strip().splitlines()[0]}", err=True)
                job = None
            if job is not None:
                click.echo(f"worker: job {job.id} done")
            elif not stop.requested:
                time.sleep(poll)
        click.echo(f"worker: stopped on {stop.requested} (no job in hand)")

    @app.cli.command("purge-jobs")
    @click.option("--days", default=7, show_default=True, type=click.IntRange(min=0),
                  help="Delete jobs done more than this many days ago.")
    def purge_jobs(days: int) -> None:
        """Delete old finished jobs."""
        cutoff = datetime.now(timezone.utc) - timedelta(days=days)
        deleted = db.session.execute(delete(Job).where(Job.status == "done", Job.done_at < cutoff)).rowcount
        db.session.commit()
        click.echo(f"purge-jobs: deleted {deleted} jobs done before {cutoff.isoformat(timespec='seconds')}")
