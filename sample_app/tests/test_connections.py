"""How the app uses its pooled PostgreSQL connections (app/pool.py, routes.py)."""

import time

import psycopg
import pytest
from sqlalchemy import event, select

from app.models import Note, db
from app.routes import outside_a_transaction


def end_every_other_session(database_url: str) -> int:
    """What a database restart does to the app's pooled connections: the
    server ends their sessions (FATAL 57P01) and closes their sockets.
    Returns how many sessions it ended, once they are gone."""
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with psycopg.connect(database_url, autocommit=True) as admin:
        ended = admin.execute(f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) {others}").fetchone()[0]
        deadline = time.monotonic() + 10
        while admin.execute(f"SELECT count(*) {others}").fetchone()[0]:
            assert time.monotonic() < deadline, "the ended sessions are still there after 10 s"
            time.sleep(0.05)
    return ended


def test_a_connection_the_server_ended_is_replaced_before_a_request_gets_it(client, database_url):
    assert client.post("/api/notes", json={"body": "before the restart"}).status_code == 201
    assert client.get("/api/notes").status_code == 200
    assert end_every_other_session(database_url) >= 1, "the app held no connection to end"
    # Each of these gets a pooled connection whose session the server ended.
    assert client.get("/api/notes").get_json()["notes"][0]["body"] == "before the restart"
    assert end_every_other_session(database_url) >= 1
    assert client.get("/health").status_code == 200
    assert end_every_other_session(database_url) >= 1
    assert client.post("/api/notes", json={"body": "after the restart"}).status_code == 201


class Wire:
    """What the app sends to PostgreSQL: libpq's trace of every connection the
    app's pool opens from now on (the pool is emptied first)."""

    def __init__(self, app, directory) -> None:
        self.path = directory / "wire.trace"
        self.file = self.path.open("w")
        with app.app_context():
            self.engine = db.engine
        event.listen(self.engine, "connect", self.trace)
        self.engine.dispose()

    def trace(self, dbapi_connection, _record) -> None:
        dbapi_connection.pgconn.trace(self.file.fileno())

    def sent(self) -> list[str]:
        """The messages sent so far, each as its type and start ("Query \"BEGIN\"")."""
        self.file.flush()
        rows = (line.split("\t", 3) for line in self.path.read_text().splitlines())
        return [" ".join(row[3].split()) for row in rows if len(row) > 3 and row[1] == "F"]

    def round_trips(self) -> int:
        """Each simple query, and each Sync ending an extended-protocol query,
        waits for the server's answer."""
        return sum(1 for message in self.sent() if message.startswith(("Query", "Sync")))

    def close(self) -> None:
        event.remove(self.engine, "connect", self.trace)
        self.engine.dispose()
        self.file.close()


@pytest.fixture()
def wire(app, tmp_path):
    traced = Wire(app, tmp_path)
    yield traced
    traced.close()


def test_a_page_that_only_reads_costs_one_round_trip(client, wire):
    job = client.post("/api/jobs", json={"text": "x"}).get_json()["id"]
    for path in ("/", "/api/notes", f"/api/jobs/{job}", "/health"):
        assert client.get(path).status_code == 200, path  # the connection is open from here on
        before, trips = len(wire.sent()), wire.round_trips()
        assert client.get(path).status_code == 200, path
        assert wire.round_trips() - trips == 1, (path, wire.sent()[before:])
        assert not [message for message in wire.sent()[before:] if message.startswith('Query "BEGIN')], path


def began_and_committed(sent: list[str], table: str) -> bool:
    """The INSERT into table went between a BEGIN and a COMMIT."""
    insert = next(i for i, message in enumerate(sent) if f"INSERT INTO {table}" in message)
    return (any(message.startswith('Query "BEGIN') for message in sent[:insert])
            and 'Query "COMMIT"' in sent[insert:])


def test_writes_keep_their_transaction(client, wire):
    # The first POST on a new connection; the others on the one reads have
    # used just before.
    for read, post in ((None, lambda: client.post("/api/notes", json={"body": "in a transaction"})),
                       ("/api/notes", lambda: client.post("/api/notes", json={"body": "after a read"})),
                       ("/", lambda: client.post("/notes", data={"body": "from the form"}))):
        if read:
            assert client.get(read).status_code == 200
        before = len(wire.sent())
        assert post().status_code in (201, 303)
        assert began_and_committed(wire.sent()[before:], "notes"), wire.sent()[before:]


def test_a_write_after_reads_in_the_same_app_context_has_its_transaction(app, wire):
    # A CLI command or a test holds one app context, and so one session,
    # across what would be several requests.
    with app.app_context():
        with outside_a_transaction():
            db.session.scalars(select(Note)).all()
        before = len(wire.sent())
        db.session.add(Note(body="after reads in the same context"))
        db.session.commit()
        assert began_and_committed(wire.sent()[before:], "notes"), wire.sent()[before:]


def test_reads_inside_an_open_transaction_stay_in_it(app):
    with app.app_context():
        db.session.add(Note(body="not committed yet"))
        db.session.flush()
        with outside_a_transaction():
            seen = db.session.scalars(select(Note.body)).all()
        db.session.commit()
        assert "not committed yet" in seen
        db.session.close()
        assert db.session.scalars(select(Note.body)).all() == ["not committed yet"]
