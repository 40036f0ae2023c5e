"""The app's one table. Its schema comes from migrations/versions/, never from this model."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from . import db


class Link(db.Model):  # type: ignore[name-defined]
    """A saved link."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    def as_dict(self) -> dict:
        """The link as the JSON API shows it."""
        return {"id": self.id, "url": self.url, "title": self.title, "created_at": self.created_at.isoformat()}
