"""The links app's HTTP routes against a real PostgreSQL whose schema came from the migrations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "links" / "assets"


def test_a_link_posted_is_listed_back(client):
    resp = client.post("/api/links", json={"url": "https://example.com/a", "title": "  Example A "})
    assert resp.status_code == 201
    created = resp.get_json()
    assert created["url"] == "https://example.com/a" and created["title"] == "Example A"
    assert isinstance(created["id"], int) and created["created_at"]  # the database's default
    client.post("/api/links", json={"url": "http://example.com/b"})  # no title

    listed = client.get("/api/links")
    assert listed.status_code == 200
    assert listed.headers["Cache-Control"] == "no-store"
    links = listed.get_json()["links"]
    assert [(link["url"], link["title"]) for link in links] == [
        ("http://example.com/b", ""), ("https://example.com/a", "Example A")]
    assert links[1] == created


def test_the_page_lists_the_newest_fifty(client):
    for n in range(55):
        resp = client.post("/api/links", json={"url": f"https://example.com/{n}", "title": f"link <{n}>"})
        assert resp.status_code == 201
    assert [link["url"] for link in client.get("/api/links").get_json()["links"]] == [
        f"https://example.com/{n}" for n in range(54, 4, -1)]

    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<title>Links</title>" in html
    assert 'href="/static/links.css"' in html
    assert "link &lt;54&gt;" in html and "link &lt;5&gt;" in html  # escaped
    assert "link &lt;4&gt;" not in html
    assert html.count("<li>") == 50


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://example.com/"}, "url"),
    ({"url": "example.com"}, "url"),
    ({"url": "https://"}, "url"),
    ({"url": "https://example.com/" + "x" * 2000}, "url"),
    ({"url": 42}, "url"),
    ({"title": "no url"}, "url"),
    ({"url": "https://example.com/", "title": "t" * 201}, "title"),
    ({"url": "https://example.com/", "title": ["not", "text"]}, "title"),
    (["https://example.com/"], "the body"),
])
def test_bad_links_are_refused(client, body, field):
    resp = client.post("/api/links", json=body)
    assert resp.status_code == 400
    assert resp.get_json()["error"].startswith(field)
    assert client.get("/api/links").get_json()["links"] == []


def test_a_body_that_is_not_json_is_refused(client):
    resp = client.post("/api/links", data="url=https://example.com/", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_the_longest_url_and_title_are_accepted(client):
    url = "https://example.com/" + "x" * (2000 - len("https://example.com/"))
    resp = client.post("/api/links", json={"url": url, "title": "t" * 200})
    assert resp.status_code == 201
    assert resp.get_json()["url"] == url


def test_health_answers_after_asking_the_database(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "app": "links"}
    assert resp.headers["Cache-Control"] == "no-store"


def test_health_is_503_without_the_database(environ, closed_port):
    from links import create_app

    down = dict(environ, DATABASE_URL=f"postgresql://links_test:x@127.0.0.1:{closed_port}/links_test",
                DATABASE_CONNECT_TIMEOUT="2")
    resp = create_app({"TESTING": True}, environ=down).test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["status"] == "unavailable" and resp.get_json()["app"] == "links"


def test_health_is_503_with_wrong_credentials(environ, database_url):
    from links import create_app

    wrong = dict(environ, DATABASE_URL=database_url.replace(":test-password-not-secret@", ":wrong@"))
    resp = create_app({"TESTING": True}, environ=wrong).test_client().get("/healthz")
    assert resp.status_code == 503


def test_static_files_come_from_assets_at_static(client, app):
    assert Path(app.static_folder) == ASSETS
    for name in ("links.css", "robots.txt", "favicon.ico"):
        resp = client.get(f"/static/{name}")
        assert resp.status_code == 200, name
        assert resp.data == (ASSETS / name).read_bytes()
    assert client.get("/static/links.css").mimetype == "text/css"
    # Nothing comes from a static/ directory: the app has none.
    assert not (ASSETS.parent / "static").exists()
    assert client.get("/static/missing.css").status_code == 404


def test_whoami_echoes_the_greeting(client, monkeypatch):
    monkeypatch.setenv("LINKS_GREETING", "hello from the tests")
    resp = client.get("/api/whoami")
    assert resp.status_code == 200
    assert resp.get_json() == {"app": "links", "pid": os.getpid(), "greeting": "hello from the tests"}
    monkeypatch.delenv("LINKS_GREETING")
    assert client.get("/api/whoami").get_json()["greeting"] == ""
