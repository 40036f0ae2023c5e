"""Database model of the sample app."""

from __future__ import annotations

from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Float, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class Note(db.Model):  # type: ignore[name-defined]
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(500), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(),
        default=lambda: datetime.now(timezone.utc),
    )

    def to_dict(self) -> dict:
        return {"id": self.id, "body": self.body, "created_at": self.created_at.isoformat()}


class InitRun(db.Model):  # type: ignore[name-defined]
    """One run of `flask init-db`: which release ran it, where and when (deploys migrate once)."""

    __tablename__ = "init_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release: Mapped[str] = mapped_column(String(100), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    ran_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(),
        default=lambda: datetime.now(timezone.utc),
    )


class Job(db.Model):  # type: ignore[name-defined]
    """A unit of background work: queued through the API, done by `flask worker` (app/jobs.py)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(500), nullable=False)
    # Seconds the work takes (a stand-in for real work: a worker stopping
    # gracefully finishes it first).
    seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0, server_default="0")
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="queued", server_default="queued")
    result: Mapped[str | None] = mapped_column(String(500))
    # Which release and host did it (FLASKOPS_RELEASE, set by the launcher).
    release: Mapped[str | None] = mapped_column(String(100))
    host: Mapped[str | None] = mapped_column(String(255))
    queued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(),
        default=lambda: datetime.now(timezone.utc),
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "text": self.text, "seconds": self.seconds, "status": self.status,
            "result": self.result, "release": self.release, "host": self.host,
            "queued_at": self.queued_at.isoformat() if self.queued_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "done_at": self.done_at.isoformat() if self.done_at else None,
        }
