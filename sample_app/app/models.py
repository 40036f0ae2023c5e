"""Database model of the sample app."""

from __future__ import annotations

from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, String, func
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
