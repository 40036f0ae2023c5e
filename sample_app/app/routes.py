"""HTTP routes of the sample app."""

from __future__ import annotations

from contextlib import contextmanager
from functools import wraps

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from .models import Job, Note, db

bp = Blueprint("main", __name__)

# Responses that change with the data or the client must not be kept by a
# cache in front of the app (nginx's uwsgi_cache honours this header).
NO_STORE = {"Cache-Control": "no-store"}


@contextmanager
def outside_a_transaction():
    """The statements inside run without a transaction.

    Each read here is one SELECT, which PostgreSQL runs atomically by itself.
    Inside a transaction it would cost two more round trips (BEGIN before it,
    ROLLBACK when the session ends) and nothing else. Only for reads: each
    statement commits on its own. At the end the session gives its
    connection back to the pool, which resets it, so nothing after it in the
    request can write outside a transaction by mistake. Reads inside a
    transaction that is already open stay in it.
    """
    if db.session().in_transaction():
        yield
        return
    db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield
    finally:
        db.session.close()


def reads_only(view):
    """A view that only reads: it runs outside_a_transaction()."""
    @wraps(view)
    def run(*args, **kwargs):
        with outside_a_transaction():
            return view(*args, **kwargs)
    return run


def _validated_body(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    body = raw.strip()
    if not body or len(body) > current_app.config["NOTE_MAX_LENGTH"]:
        return None
    return body


def _recent_notes(limit: int = 50) -> list[Note]:
    return list(db.session.scalars(select(Note).order_by(Note.id.desc()).limit(limit)))


@bp.get("/")
@reads_only
def index():
    return render_template("index.html", notes=_recent_notes()), NO_STORE


@bp.post("/notes")
def create_note_form():
    body = _validated_body(request.form.get("body"))
    if body is None:
        return render_template("index.html", notes=_recent_notes(), error="A note needs 1 to 500 characters."), 400
    db.session.add(Note(body=body))
    db.session.commit()
    return redirect(url_for("main.index"), code=303)


@bp.get("/api/notes")
@reads_only
def list_notes():
    return jsonify(notes=[note.to_dict() for note in _recent_notes()]), NO_STORE


@bp.post("/api/notes")
def create_note():
    payload = request.get_json(silent=True) or {}
    body = _validated_body(payload.get("body"))
    if body is None:
        return jsonify(error="'body' must be a string of 1 to 500 characters"), 400
    note = Note(body=body)
    db.session.add(note)
    db.session.commit()
    return jsonify(note.to_dict()), 201


@bp.post("/api/jobs")
def queue_job():
    """Queue a job for the workers (app/jobs.py): 202 and where to look for it."""
    payload = request.get_json(silent=True) or {}
    text_ = _validated_body(payload.get("text"))
    seconds = payload.get("seconds", 0)
    if text_ is None or not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 60:
        return jsonify(error="'text' must be a string of 1 to 500 characters, 'seconds' a number from 0 to 60"), 400
    job = Job(text=text_, seconds=float(seconds))
    db.session.add(job)
    db.session.commit()
    return jsonify(job.to_dict()), 202, {"Location": url_for("main.show_job", job_id=job.id)}


@bp.get("/api/jobs/<int:job_id>")
@reads_only
def show_job(job_id: int):
    job = db.session.get(Job, job_id)
    if job is None:
        return jsonify(error="no such job"), 404, NO_STORE
    return jsonify(job.to_dict()), NO_STORE


@bp.get("/api/client")
def client_info():
    """What the app sees of the client, after the proxy headers are applied."""
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, host=request.host), NO_STORE


@bp.get("/api/info")
def info():
    """About the app: the same for every client, so a cache may keep it a few seconds."""
    return jsonify(app="flaskops sample app", notes_max_length=current_app.config["NOTE_MAX_LENGTH"]), {
        "Cache-Control": "public, max-age=5"}


@bp.get("/health")
def health():
    try:
        with outside_a_transaction():
            db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        said = str(getattr(exc, "orig", None) or exc).strip()
        reason = said.splitlines()[0] if said else type(exc).__name__
        current_app.logger.warning("health check: database unreachable: %s", reason)
        return jsonify(status="unavailable", database="down", detail=reason), 503, NO_STORE
    return jsonify(status="ok", database="up"), NO_STORE
