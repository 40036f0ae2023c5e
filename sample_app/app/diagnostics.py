"""Diagnostic endpoints for fault tests: registered only when the environment
sets FLASKOPS_DIAGNOSTICS=1 (the flask_app role's `flask_app_diagnostics`).
Never turn them on where untrusted clients can reach the app: they let a
client hold a worker busy or make it grow.

GET /diag/sleep/<seconds>   holds the worker for that long (at most 600 s),
                            to test harakiri and requests in flight
GET /diag/grow/<megabytes>  keeps that much memory in the worker (at most
                            1024 MB), to test reload-on-rss
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, jsonify

bp = Blueprint("diag", __name__, url_prefix="/diag")

MAX_SLEEP_S = 600
MAX_GROW_MB = 1024
# Memory a worker was asked to keep; it lives until the worker is replaced.
_kept: list[bytes] = []

NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/sleep/<float:seconds>")
@bp.get("/sleep/<int:seconds>")
def sleep(seconds: float):
    if seconds > MAX_SLEEP_S:
        return jsonify(error=f"at most {MAX_SLEEP_S} seconds"), 400, NO_STORE
    started = time.monotonic()
    time.sleep(seconds)
    return jsonify(slept=round(time.monotonic() - started, 3), pid=os.getpid()), NO_STORE


@bp.get("/grow/<int:megabytes>")
def grow(megabytes: int):
    if megabytes > MAX_GROW_MB:
        return jsonify(error=f"at most {MAX_GROW_MB} MB"), 400, NO_STORE
    # Written bytes, so the pages are resident (a zero-filled allocation may not be).
    _kept.append(b"\x01" * (megabytes * 1024 * 1024))
    return jsonify(kept_mb=sum(len(b) for b in _kept) // (1024 * 1024), pid=os.getpid()), NO_STORE
