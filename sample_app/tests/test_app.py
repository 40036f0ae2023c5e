"""Behaviour of the sample app against a real PostgreSQL server."""

from app import create_app
from app.models import Note, db


def test_health_reports_database_up(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "database": "up"}


def test_health_is_503_when_database_is_unreachable(closed_port):
    url = f"postgresql://nobody:nothing@127.0.0.1:{closed_port}/none"
    app = create_app({"TESTING": True}, environ={"SECRET_KEY": "s", "DATABASE_URL": url})
    resp = app.test_client().get("/health")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unavailable" and body["database"] == "down"
    assert "nothing" not in body["detail"], "the password must never appear in the health output"


def test_api_creates_and_lists_notes(client, app):
    resp = client.post("/api/notes", json={"body": "  first note  "})
    assert resp.status_code == 201
    created = resp.get_json()
    assert created["body"] == "first note"
    client.post("/api/notes", json={"body": "second note"})

    listed = client.get("/api/notes").get_json()["notes"]
    assert [n["body"] for n in listed] == ["second note", "first note"]
    with app.app_context():
        assert db.session.get(Note, created["id"]).body == "first note"


def test_api_rejects_invalid_notes(client):
    for payload in ({}, {"body": ""}, {"body": "   "}, {"body": 42}, {"body": "x" * 501}):
        resp = client.post("/api/notes", json=payload)
        assert resp.status_code == 400, payload
    assert client.get("/api/notes").get_json()["notes"] == []


def test_html_form_round_trip(client):
    resp = client.post("/notes", data={"body": "<b>from the form</b>"})
    assert resp.status_code == 303
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "&lt;b&gt;from the form&lt;/b&gt;" in html, "note bodies are escaped"
    assert "/static/css/app.css" in html


def test_html_form_rejects_empty_note(client):
    resp = client.post("/notes", data={"body": ""})
    assert resp.status_code == 400
    assert "1 to 500 characters" in resp.get_data(as_text=True)


def test_proxy_headers_from_one_trusted_hop(client):
    resp = client.get("/api/client", headers={
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "notes.example.org",
    }, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert resp.get_json() == {"remote_addr": "198.51.100.7", "scheme": "https", "host": "notes.example.org"}


def test_spoofed_forwarded_for_is_not_trusted(client):
    # The client sent its own X-Forwarded-For; nginx appended the real address.
    # With one trusted hop, only the address nginx added counts.
    resp = client.get("/api/client", headers={"X-Forwarded-For": "10.6.6.6, 203.0.113.9"},
                      environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert resp.get_json()["remote_addr"] == "203.0.113.9"


def test_no_trusted_proxy_ignores_forwarded_headers(database_url):
    environ = {"SECRET_KEY": "s", "DATABASE_URL": database_url, "TRUSTED_PROXIES": "0"}
    app = create_app({"TESTING": True}, environ=environ)
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    resp = app.test_client().get("/api/client", headers=forwarded, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert resp.get_json()["remote_addr"] == "127.0.0.1"
    assert resp.get_json()["scheme"] == "http"


def test_static_files_exist_and_are_served(client):
    for path, kind in (("/static/css/app.css", "text/css"), ("/static/js/app.js", "javascript"),
                       ("/static/robots.txt", "text/plain"), ("/static/favicon.ico", "icon")):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert kind in resp.content_type, (path, resp.content_type)


def test_init_db_command_is_idempotent(app):
    runner = app.test_cli_runner()
    for _attempt in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output


def test_init_db_records_each_run_with_its_release(app, monkeypatch):
    from app.models import InitRun

    runner = app.test_cli_runner()
    with app.app_context():
        before = db.session.query(InitRun).filter_by(release="v7").count()
    monkeypatch.setenv("FLASKOPS_RELEASE", "v7")
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "(release v7 on " in result.output
    with app.app_context():
        assert db.session.query(InitRun).filter_by(release="v7").count() == before + 1


def test_init_db_run_at_once_from_several_hosts_does_not_race(app):
    # What the role alone does on several app hosts: each runs init-db on the same
    # database at the same moment. The interleaving that breaks without the
    # schema lock is forced: each run waits, after it has looked for the
    # tables and before it creates them, until all three have looked. Without
    # the lock all three see no tables and two fail on CREATE TABLE; with it
    # the runs take turns, so the first waits in vain (the barrier times out)
    # and the others find the tables there.
    import threading

    from sqlalchemy import event

    from app.cli import create_schema

    parties = 3
    barrier, errors, to_create = threading.Barrier(parties, timeout=3), [], []

    def after_the_lookup(_metadata, _connection, tables=(), **_kw):
        to_create.append(len(tables))
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    def init():
        try:
            with app.app_context():
                create_schema()
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(exc)

    with app.app_context():
        db.drop_all()
    event.listen(db.metadata, "before_create", after_the_lookup)
    try:
        threads = [threading.Thread(target=init) for _thread in range(parties)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        event.remove(db.metadata, "before_create", after_the_lookup)
    assert errors == []
    # Exactly one run had tables to create: the others waited for it.
    assert sorted(to_create) == [0] * (parties - 1) + [len(db.metadata.tables)], to_create
    with app.app_context():
        assert db.session.query(Note).count() == 0


def test_data_pages_are_never_stored_by_a_cache(client):
    for path in ("/", "/api/notes", "/api/client", "/health"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store", path


def test_info_may_be_cached_for_a_few_seconds(client):
    response = client.get("/api/info")
    assert response.status_code == 200
    assert response.get_json()["app"] == "flaskops sample app"
    assert response.headers["Cache-Control"] == "public, max-age=5"


def test_diagnostics_are_off_unless_turned_on(client):
    assert client.get("/diag/sleep/0").status_code == 404
    assert client.get("/diag/grow/1").status_code == 404


def test_diagnostics_sleep_and_grow_when_turned_on(database_url):
    environ = {"SECRET_KEY": "s", "DATABASE_URL": database_url, "FLASKOPS_DIAGNOSTICS": "1"}
    client = create_app({"TESTING": True}, environ=environ).test_client()
    slept = client.get("/diag/sleep/0.2")
    assert slept.status_code == 200 and slept.get_json()["slept"] >= 0.2
    assert slept.headers["Cache-Control"] == "no-store"
    assert client.get("/diag/sleep/601").status_code == 400
    first = client.get("/diag/grow/2").get_json()["kept_mb"]
    assert client.get("/diag/grow/3").get_json()["kept_mb"] == first + 3
    assert client.get("/diag/grow/1025").status_code == 400
