"""Role `nginx`, seen through real HTTP requests on the converged host."""

import pytest
from flaskops_testinfra import http, run_converge

BASE = "http://127.0.0.1"


def test_service_enabled_and_running(host):
    svc = host.service("nginx")
    assert svc.is_enabled
    assert svc.is_running


def test_workers_run_as_www_data(host):
    masters = host.process.filter(comm="nginx", user="root")
    workers = host.process.filter(comm="nginx", user="www-data")
    assert len(masters) == 1
    assert len(workers) >= 1


def test_configuration_is_valid(host):
    assert host.run("nginx -t").rc == 0


def test_listens_on_http(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_server_header_hides_version(host):
    assert http(host, BASE + "/static/robots.txt").headers["server"] == "nginx"


def test_default_site_is_gone_and_app_path_reaches_uwsgi_upstream(host):
    # Nothing listens on the uWSGI socket in this scenario: the app path must
    # answer from our upstream with the role's error page, never Debian's
    # "Welcome to nginx" default site.
    resp = http(host, BASE + "/")
    assert resp.status == 502
    assert "not reachable" in resp.body
    assert "Welcome to nginx" not in resp.body
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    log = host.file("/var/log/nginx/flaskapp.error.log").content_string
    assert "/run/uwsgi/flaskapp.sock" in log


def test_static_file_with_cache_headers(host):
    resp = http(host, BASE + "/static/css/app.css")
    assert resp.status == 200
    assert "text/css" in resp.headers["content-type"]
    assert "public, immutable" in resp.headers["cache-control"]
    assert "expires" in resp.headers
    assert "flaskops.stack sample app" in resp.body


def test_static_text_is_gzipped(host):
    resp = http(host, BASE + "/static/css/app.css", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200
    assert resp.headers.get("content-encoding") == "gzip"


@pytest.mark.parametrize("path, content_type", [("/favicon.ico", "image/"), ("/robots.txt", "text/plain")])
def test_favicon_and_robots_from_static(host, path, content_type):
    resp = http(host, BASE + path)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith(content_type)


def test_static_missing_file_is_404(host):
    assert http(host, BASE + "/static/nope.css").status == 404


@pytest.mark.parametrize("variable, value, live_file", [
    ("nginx_client_max_body_size", "10MB", "/etc/nginx/nginx.conf"),
    ("nginx_uwsgi_read_timeout", "sixty", "/etc/nginx/sites-available/flaskapp.conf"),
])
def test_broken_value_fails_and_live_config_keeps_serving(host, variable, value, live_file):
    before = host.file(live_file).sha256sum
    master_before = host.file("/run/nginx.pid").content_string.strip()

    result = run_converge(host, {variable: value})

    assert result.returncode != 0, "the play must fail on a value nginx rejects"
    # The failed task is the validated write, and nginx's message names the
    # directive it refused.
    directive = variable.removeprefix("nginx_")
    assert len(result.failures) == 1, result.raw
    assert "checked" in result.failure_text and "failed to validate" in result.failure_text
    assert f'"{directive}" directive invalid value' in result.failure_text, result.failure_text
    assert host.file(live_file).sha256sum == before, "the live file must keep its last good content"
    assert host.file("/run/nginx.pid").content_string.strip() == master_before, "nginx was not restarted"
    assert host.run("nginx -t").rc == 0
    assert http(host, BASE + "/static/robots.txt").status == 200


@pytest.mark.parametrize("variable, value", [
    ("nginx_http_port", 70000),
    ("nginx_worker_connections", "many"),
    ("nginx_static_dir", "srv/static"),
    ("nginx_upstream_servers", [{"address": "http://app:8000"}]),
])
def test_bad_input_fails_before_any_change(host, variable, value):
    before = host.file("/etc/nginx/sites-available/flaskapp.conf").sha256sum
    result = run_converge(host, {variable: value})
    assert result.returncode != 0
    assert result.changed == 0, "nothing may change on the host"
    assert len(result.failures) == 1, result.raw
    assert variable in result.failure_text, result.failure_text
    assert host.file("/etc/nginx/sites-available/flaskapp.conf").sha256sum == before
