"""The job queue (app/jobs.py) against a real PostgreSQL server."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from app.jobs import take_one
from app.models import Job, db

APP_DIR = Path(__file__).resolve().parents[1]


def test_a_job_queued_through_the_api_is_done_by_a_consumer(client, app):
    resp = client.post("/api/jobs", json={"text": "hello queue"})
    assert resp.status_code == 202
    queued = resp.get_json()
    assert queued["status"] == "queued" and resp.headers["Location"].endswith(f"/api/jobs/{queued['id']}")
    with app.app_context():
        assert take_one("r9", "host-a").id == queued["id"]
    done = client.get(f"/api/jobs/{queued['id']}").get_json()
    assert (done["status"], done["result"], done["release"], done["host"]) == ("done", "HELLO QUEUE", "r9", "host-a")


def test_the_api_refuses_a_job_without_text_or_with_bad_seconds(client):
    for payload in ({}, {"text": ""}, {"text": "x", "seconds": "3"}, {"text": "x", "seconds": 61}, {"text": "x", "seconds": True}):
        assert client.post("/api/jobs", json=payload).status_code == 400, payload
    assert client.get("/api/jobs/999999999").status_code == 404


def test_two_consumers_never_take_the_same_job(app):
    # One consumer holds a slow job; a second one at the same time skips it
    # and takes the next one instead of waiting for the lock.
    with app.app_context():
        slow, quick = Job(text="slow", seconds=2), Job(text="quick")
        db.session.add_all([slow, quick])
        db.session.commit()
        ids = (slow.id, quick.id)
    taken: dict[str, int] = {}

    def consume(name: str) -> None:
        with app.app_context():
            job = take_one(name, name)
            taken[name] = job.id if job else 0

    first = threading.Thread(target=consume, args=("a",))
    first.start()
    time.sleep(0.5)
    started = time.monotonic()
    consume("b")
    assert time.monotonic() - started < 1.5, "the second consumer waited for the first one's lock"
    first.join()
    assert taken == {"a": ids[0], "b": ids[1]}


def test_purge_deletes_only_jobs_done_before_the_cutoff(app):
    now = datetime.now(timezone.utc)
    with app.app_context():
        old = Job(text="old", status="done", done_at=now - timedelta(days=10))
        recent = Job(text="recent", status="done", done_at=now - timedelta(days=1))
        waiting = Job(text="waiting")
        db.session.add_all([old, recent, waiting])
        db.session.commit()
        ids = (old.id, recent.id, waiting.id)
    result = app.test_cli_runner().invoke(args=["purge-jobs", "--days", "7"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert [db.session.get(Job, i) is not None for i in ids] == [False, True, True]


def test_the_worker_finishes_the_job_in_hand_on_sigterm(app, database_url):
    with app.app_context():
        job = Job(text="in hand", seconds=2)
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "s", "FLASKOPS_RELEASE": "r5"}
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--poll", "0.1"],
                              cwd=APP_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        for line in worker.stdout:
            if f"job {job_id} started" in line or time.monotonic() > deadline:
                break
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    with app.app_context():
        done = db.session.get(Job, job_id)
        assert (done.status, done.result, done.release) == ("done", "IN HAND", "r5")
