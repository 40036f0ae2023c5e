"""HTTP routes of sample_links."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, jsonify, render_template_string, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import db
from .models import Link

bp = Blueprint("links", __name__)

URL_MAX = 2000
TITLE_MAX = 200

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Links</title>
<link rel="stylesheet" href="{{ url_for('static', filename='links.css') }}"></head>
<body><h1>Links</h1><ul>
{% for link in links %}<li><a href="{{ link.url }}" rel="nofollow">{{ link.title or link.url }}</a></li>{% endfor %}
</ul></body></html>
"""


def _newest(limit: int = 50) -> list[Link]:
    return db.session.execute(db.select(Link).order_by(Link.id.desc()).limit(limit)).scalars().all()


@bp.get("/")
def index():
    return render_template_string(PAGE, links=_newest())


@bp.get("/api/links")
def list_links():
    resp = jsonify({"links": [link.as_dict() for link in _newest()]})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/api/links")
def add_link():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify({"error": "send a JSON object"}), 400
    url, title = data.get("url"), data.get("title", "")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > URL_MAX:
        return jsonify({"error": f"url must be an http(s) URL of at most {URL_MAX} characters"}), 400
    if not isinstance(title, str) or len(title) > TITLE_MAX:
        return jsonify({"error": f"title must be text of at most {TITLE_MAX} characters"}), 400
    link = Link(url=url, title=title)
    db.session.add(link)
    db.session.commit()
    return jsonify(link.as_dict()), 201


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify({"status": "unavailable", "app": "links"}), 503
    return jsonify({"status": "ok", "app": "links"})


@bp.get("/api/whoami")
def whoami():
    return jsonify({"app": "links", "pid": os.getpid(), "greeting": current_app.config["GREETING"]})
