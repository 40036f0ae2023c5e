"""HTTP routes of the links app: an HTML list, a JSON API, health, whoami."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, jsonify, render_template_string, request
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from . import db
from .models import Link

bp = Blueprint("links", __name__)

URL_MAX = 2000
TITLE_MAX = 200
NEWEST = 50

# Responses that change with the data must not be kept by a cache in front of
# the app (nginx's uwsgi_cache honours this header).
NO_STORE = {"Cache-Control": "no-store"}

# One small page: no templates/ directory, unlike the first sample app.
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Links</title>
<link rel="stylesheet" href="{{ url_for('static', filename='links.css') }}">
<link rel="icon" href="{{ url_for('static', filename='favicon.ico') }}">
</head>
<body>
<h1>Links</h1>
<ul>
{% for link in links %}  <li><a href="{{ link.url }}" rel="nofollow noopener">{{ link.title or link.url }}</a></li>
{% else %}  <li class="empty">No links yet.</li>
{% endfor %}</ul>
</body>
</html>
"""


def _newest(limit: int = NEWEST) -> list[Link]:
    return list(db.session.scalars(select(Link).order_by(Link.id.desc()).limit(limit)))


def _bad_request(message: str):
    return jsonify(error=message), 400, NO_STORE


@bp.get("/")
def index():
    """The newest links as an HTML page."""
    return render_template_string(PAGE, links=_newest()), NO_STORE


@bp.get("/api/links")
def list_links():
    """The newest links as JSON, newest first."""
    return jsonify(links=[link.as_dict() for link in _newest()]), NO_STORE


@bp.post("/api/links")
def add_link():
    """Save a link: JSON {"url": "http(s)://...", "title": "..."}."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return _bad_request("the body must be a JSON object with 'url' and optionally 'title'")
    url = data.get("url")
    if (not isinstance(url, str) or not url.startswith(("http://", "https://"))
            or url in ("http://", "https://") or len(url) > URL_MAX):
        return _bad_request(f"url must be an http:// or https:// URL of at most {URL_MAX} characters")
    title = data.get("title")
    if title is None:
        title = ""
    if not isinstance(title, str) or len(title) > TITLE_MAX:
        return _bad_request(f"title must be a string of at most {TITLE_MAX} characters")
    link = Link(url=url, title=title.strip())
    db.session.add(link)
    db.session.commit()
    return jsonify(link.as_dict()), 201, NO_STORE


@bp.get("/healthz")
def healthz():
    """200 once the database answers a query, 503 while it does not."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        said = str(getattr(exc, "orig", None) or exc).strip()
        reason = said.splitlines()[0] if said else type(exc).__name__
        current_app.logger.warning("health check: database unreachable: %s", reason)
        return jsonify(status="unavailable", app="links", database="down"), 503, NO_STORE
    return jsonify(status="ok", app="links"), NO_STORE


@bp.get("/api/whoami")
def whoami():
    """Which app and worker answered, and the environment's LINKS_GREETING."""
    return jsonify(app="links", pid=os.getpid(), greeting=os.environ.get("LINKS_GREETING", "")), NO_STORE
