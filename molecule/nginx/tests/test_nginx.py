"""Role `nginx` in front of the sample app, seen through real HTTP(S) requests on the host."""

import json
import re
import shlex
import time

import pytest
from flaskops_testinfra import (assert_refused_by_the_role, files_state, http, main_pid, on_primary_distro_only,
                                put_file, run_converge, tls_suites)

HTTP = "http://127.0.0.1"
HTTPS = "https://127.0.0.1"
SITE = "/etc/nginx/sites-available/flaskapp.conf"
SECURITY_HEADERS = {
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "strict-transport-security": "max-age=31536000",
}


def unique(path: str) -> str:
    return f"{path}?t={time.time_ns()}"


def s_client(host, *args: str):
    """openssl s_client against the local HTTPS listener; returns the command result.

    Once h2 is negotiated nginx sends a binary SETTINGS frame, which s_client
    prints raw: only printable text is kept (the exit status is s_client's).
    """
    command = ("openssl s_client -connect 127.0.0.1:443 -servername localhost " + " ".join(map(shlex.quote, args))
               + " </dev/null 2>&1 | tr -cd '\\11\\12\\15\\40-\\176'")
    return host.run("bash -o pipefail -c %s", command)


def test_service_enabled_and_running(host):
    svc = host.service("nginx")
    assert svc.is_enabled and svc.is_running
    assert host.run("nginx -t").rc == 0


def test_workers_run_as_www_data_in_the_app_group(host):
    assert len(host.process.filter(comm="nginx", user="root")) == 1
    workers = host.process.filter(comm="nginx", user="www-data")
    assert workers
    groups = host.check_output("grep ^Groups: /proc/%s/status", str(workers[0].pid)).split()[1:]
    app_gid = host.check_output("getent group flaskapp | cut -d: -f3")
    assert app_gid in groups


def test_plain_http_redirects_to_https_keeping_path_and_query(host):
    resp = http(host, HTTP + "/some/page?x=1&y=2")
    assert resp.status == 301
    assert resp.headers["location"] == "https://127.0.0.1/some/page?x=1&y=2"


def test_tls_1_2_and_1_3_are_accepted(host):
    for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        result = s_client(host, flag)
        assert result.rc == 0, result.stdout
        assert f"Protocol  : {name}" in result.stdout or f"New, {name}" in result.stdout, result.stdout


def test_tls_1_1_is_refused_by_the_server(host):
    # The client is told to allow TLS 1.1 (security level 0): the refusal has
    # to come from nginx as a protocol_version alert.
    result = s_client(host, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert result.rc != 0
    assert "alert protocol version" in result.stdout, result.stdout


def test_h2_is_negotiated_by_alpn(host):
    result = s_client(host, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: h2" in result.stdout, result.stdout


@pytest.mark.parametrize("path, status", [("/api/info", 200), ("/no/such/page", 404), ("/static/nope.css", 404)])
def test_security_headers_on_every_response(host, path, status):
    resp = http(host, HTTPS + path)
    assert resp.status == status
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name, "").startswith(value), (name, resp.headers)
    assert "default-src 'self'" in resp.headers["content-security-policy"]


def test_server_header_has_no_version(host):
    assert http(host, HTTPS + "/robots.txt").headers["server"] == "nginx"


def test_static_file_with_cache_headers_and_gzip(host):
    resp = http(host, HTTPS + "/static/css/app.css", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200
    assert "text/css" in resp.headers["content-type"]
    # One Cache-Control header (nginx_static_expires: 30 days).
    assert [value for name, value in resp.header_lines if name == "cache-control"] == [
        "public, max-age=2592000, immutable"], resp.header_lines
    assert resp.headers.get("content-encoding") == "gzip"


def test_each_nginx_worker_may_open_twice_its_connections(host):
    connections = int(re.search(r"worker_connections (\d+);", host.check_output("nginx -T 2>/dev/null"))[1])
    workers = host.check_output("pgrep -u www-data -x nginx").split()
    assert workers
    for pid in workers:
        limits = host.file(f"/proc/{pid}/limits").content_string
        soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M)[1])
        assert soft >= 2 * connections, (pid, soft, connections)


def test_a_missing_static_file_is_not_cached_as_immutable(host):
    resp = http(host, HTTPS + "/static/css/no-such-file.css")
    assert resp.status == 404
    assert "immutable" not in resp.headers.get("cache-control", ""), resp.header_lines


@pytest.mark.parametrize("path, content_type", [("/favicon.ico", "image/"), ("/robots.txt", "text/plain")])
def test_favicon_and_robots_from_static(host, path, content_type):
    resp = http(host, HTTPS + path)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith(content_type)


def test_body_over_the_limit_gets_413(host):
    resp = http(host, HTTPS + "/api/notes", "POST", {"Content-Type": "application/json"}, body_size=2 * 1024 * 1024)
    assert resp.status == 413


@pytest.mark.parametrize("path", ["/.git/config", "/.env", "/static/.hidden"])
def test_hidden_paths_are_refused(host, path):
    assert http(host, HTTPS + path).status == 403


def test_app_sees_the_real_client_address_and_https(host):
    address = host.check_output("hostname -I").split()[0]
    resp = http(host, f"https://{address}/api/client", headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status == 200
    seen = json.loads(resp.body)
    # nginx appends the address it saw; the app trusts that one hop only.
    assert seen == {"remote_addr": address, "scheme": "https", "host": address}


def test_cached_page_misses_then_hits(host):
    path = unique("/api/info")
    assert http(host, HTTPS + path).headers["x-cache-status"] == "MISS"
    second = http(host, HTTPS + path)
    assert second.status == 200 and second.headers["x-cache-status"] == "HIT"


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer abc"}, {"Cookie": "session=abc"}])
def test_requests_with_credentials_never_hit_the_cache(host, headers):
    path = unique("/api/info")
    assert http(host, HTTPS + path).headers["x-cache-status"] == "MISS"
    for attempt in range(2):
        resp = http(host, HTTPS + path, headers=headers)
        assert resp.status == 200 and resp.headers["x-cache-status"] == "BYPASS"


def test_data_pages_are_not_cached(host):
    for attempt in range(2):
        assert http(host, HTTPS + "/api/notes").headers["x-cache-status"] == "MISS"


def test_app_down_stale_cache_serves_and_uncached_gets_502_then_recovers(host):
    path = unique("/api/info")
    assert http(host, HTTPS + path).status == 200
    time.sleep(6)  # the app lets /api/info be cached for 5 s
    # The socket too: while it listens, the next request would start uWSGI again.
    host.check_output("systemctl stop uwsgi-flaskapp.socket uwsgi-flaskapp.service")
    try:
        stale = http(host, HTTPS + path)
        assert stale.status == 200 and stale.headers["x-cache-status"] == "STALE"
        down = http(host, HTTPS + "/api/notes")
        assert down.status == 502
        assert "not reachable" in down.body
        assert down.headers["x-frame-options"] == "SAMEORIGIN"
        assert main_pid(host, "uwsgi-flaskapp") == 0, "uWSGI came back while the test needed it down"
    finally:
        host.check_output("systemctl start uwsgi-flaskapp.socket uwsgi-flaskapp.service")
    for page in ("/api/notes", "/", "/health"):
        assert http(host, HTTPS + page).status == 200


def test_site_logs_are_written_and_rotated(host):
    http(host, HTTPS + "/api/info")
    assert host.file("/var/log/nginx/flaskapp.access.log").size > 0
    plan = host.check_output("logrotate --debug /etc/logrotate.d/nginx 2>&1")
    assert "/var/log/nginx/flaskapp.access.log" in plan


def test_a_second_run_of_the_role_changes_nothing(host):
    # The scenario has no idempotence step (default and multinode have one,
    # through site.yml): the nginx role's second run, with this scenario's values.
    result = run_converge(host, {}, tags=["nginx"])
    assert result.returncode == 0 and result.changed == 0, result.failure_text or result.raw


def test_extra_directives_and_a_load_balanced_upstream_render_valid_and_serve(host):
    # (One run for both, and one to go back: each nginx run is a good part
    # of the scenario's time.)
    on_primary_distro_only()
    servers = [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock", "weight": 3},
               {"address": "127.0.0.1:3031", "weight": 1, "max_fails": 2, "fail_timeout": "5s"},
               {"address": "127.0.0.1:3032", "backup": True}]
    extra = {"nginx_http_extra_directives": ["server { listen 127.0.0.1:8099; return 204; }"],
             "nginx_site_extra_directives": ["location = /flaskops-extra { return 418; }"],
             "nginx_upstream_servers": servers}
    try:
        result = run_converge(host, extra, tags=["nginx"])
        assert result.returncode == 0, result.failure_text or result.raw
        # The extra directives reach the http block and the site.
        assert http(host, "http://127.0.0.1:8099/").status == 204
        assert http(host, HTTPS + "/flaskops-extra").status == 418
        assert http(host, HTTPS + "/health").status == 200
        site = host.file(SITE).content_string
        assert "least_conn;" in site and "backup;" in site and "weight=3" in site
        # Nothing listens on 3031: nginx marks it failed and the request is
        # answered by the socket (error -> next upstream).
        assert [http(host, HTTPS + "/api/notes").status for attempt in range(6)] == [200] * 6
    finally:
        assert run_converge(host, {}, tags=["nginx"]).returncode == 0
    assert http(host, HTTPS + "/flaskops-extra").status != 418
    assert "backup;" not in host.file(SITE).content_string


@pytest.mark.parametrize("variable, lines, live_file", [
    ("nginx_http_extra_directives", ["client_body_buffer_size huge;"], "/etc/nginx/nginx.conf"),
    ("nginx_site_extra_directives", ["client_body_buffer_size huge;"], SITE),
])
def test_a_bad_extra_directive_fails_and_live_config_keeps_serving(host, variable, lines, live_file):
    on_primary_distro_only()
    before = host.file(live_file).sha256sum
    master_before = host.file("/run/nginx.pid").content_string.strip()
    result = run_converge(host, {variable: lines}, tags=["nginx"], mitogen=True)
    assert result.returncode != 0
    assert "failed to validate" in result.failure_text and "invalid value" in result.failure_text, \
        result.failure_text
    assert host.file(live_file).sha256sum == before
    assert host.file("/run/nginx.pid").content_string.strip() == master_before
    assert http(host, HTTPS + "/api/info").status == 200


@pytest.mark.parametrize("variable, value, live_file", [
    ("nginx_client_max_body_size", "10MB", "/etc/nginx/nginx.conf"),
    ("nginx_uwsgi_read_timeout", "sixty", SITE),
])
def test_broken_value_fails_and_live_config_keeps_serving(host, variable, value, live_file):
    on_primary_distro_only()
    before = host.file(live_file).sha256sum
    master_before = host.file("/run/nginx.pid").content_string.strip()
    result = run_converge(host, {variable: value}, tags=["nginx"], mitogen=True)
    assert result.returncode != 0, "the play must fail on a value nginx rejects"
    directive = variable.removeprefix("nginx_")
    assert len(result.failures) == 1, result.raw
    assert "failed to validate" in result.failure_text
    assert f'"{directive}" directive invalid value' in result.failure_text, result.failure_text
    assert host.file(live_file).sha256sum == before, "the live file must keep its last good content"
    assert host.file("/run/nginx.pid").content_string.strip() == master_before, "nginx was not restarted"
    assert http(host, HTTPS + "/api/info").status == 200


@pytest.mark.parametrize("variable, value", [
    ("nginx_http_port", 70000),
    ("nginx_worker_connections", "many"),
    ("nginx_worker_rlimit_nofile", 1500),
    ("nginx_static_expires", "forever"),
    ("nginx_static_dir", "srv/static"),
    ("nginx_upstream_servers", [{"address": "http://app:8000"}]),
    ("nginx_tls_certificate_file", "/nonexistent/cert.pem"),
    ("nginx_cache_use_stale", ["error", "http_502"]),
    ("nginx_acme_server", "http://acme.example.com/directory"),
    ("nginx_acme_ca_bundle", "/nonexistent/acme-ca.pem"),
])
def test_bad_input_fails_before_any_change(host, variable, value):
    on_primary_distro_only()
    extra = {variable: value}
    if variable == "nginx_tls_certificate_file":
        extra["nginx_tls_source"] = "files"
    if variable.startswith("nginx_acme_"):
        extra |= {"nginx_tls_source": "acme", "nginx_acme_email": "ops@example.com"}
    files = [SITE, "/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/flaskapp.conf"]
    master, before = main_pid(host, "nginx"), files_state(host, files)
    result = run_converge(host, extra, tags=["nginx"], mitogen=True)
    assert_refused_by_the_role(result, "nginx", variable)
    assert main_pid(host, "nginx") == master
    assert files_state(host, files) == before


def test_acme_option_renders_a_valid_site_without_running_certbot(host):
    on_primary_distro_only()
    try:
        result = run_converge(host, {"nginx_tls_source": "acme", "nginx_acme_request": False}, tags=["nginx"])
        assert result.returncode == 0, result.failure_text or result.raw
        assert host.package("certbot").is_installed
        assert host.run("nginx -t").rc == 0
        # The http-01 challenge is answered over plain HTTP from the webroot,
        # everything else still redirects; HTTPS runs on the stand-in pair.
        host.check_output("mkdir -p /var/www/acme/.well-known/acme-challenge && "
                          "echo token-123 > /var/www/acme/.well-known/acme-challenge/token-123")
        challenge = http(host, HTTP + "/.well-known/acme-challenge/token-123")
        assert challenge.status == 200 and challenge.body.strip() == "token-123"
        assert http(host, HTTP + "/api/info").status == 301
        assert http(host, HTTPS + "/api/info").status == 200
    finally:
        host.run("rm -rf /var/www/acme/.well-known")
        assert run_converge(host, {}, tags=["nginx"]).returncode == 0
    assert "acme-challenge" not in host.file(SITE).content_string


OCSP_PORT = 8888


def make_rsa_ca_and_site_certificate(directory) -> dict[str, str]:
    """A test CA and an RSA certificate for localhost it signs, whose OCSP
    responder is http://127.0.0.1:8888 (openssl ocsp, run on the host). Made
    with the controller's openssl; returns the paths and the index line the
    responder needs."""
    import subprocess

    def openssl(*args: str) -> str:
        return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True, cwd=directory).stdout

    (directory / "site.ext").write_text(
        "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n"
        f"subjectAltName = DNS:localhost\nauthorityInfoAccess = OCSP;URI:http://127.0.0.1:{OCSP_PORT}\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=flaskops test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "site.key", "-out", "site.csr", "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", "site.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "0x1001",
            "-days", "1", "-extfile", "site.ext", "-out", "site.crt")
    end = openssl("x509", "-in", "site.crt", "-noout", "-enddate").strip().split("=", 1)[1]
    expiry = time.strftime("%y%m%d%H%M%SZ", time.strptime(end, "%b %d %H:%M:%S %Y %Z"))
    return {name: str(directory / name) for name in ("ca.crt", "ca.key", "site.crt", "site.key")} | {
        "index": f"V\t{expiry}\t\t1001\tunknown\t/CN=localhost\n"}


def test_a_files_certificate_with_an_rsa_key_is_served_stapled_with_strong_suites_only(host, tmp_path):
    # nginx_tls_source: files with an issuer chain: the given RSA pair is
    # served, OCSP stapling is on (the response comes from a responder on
    # the host), and over TLS 1.2 only ECDHE-RSA with AEAD is agreed.
    on_primary_distro_only()
    pki = make_rsa_ca_and_site_certificate(tmp_path)
    for name in ("ca.crt", "ca.key"):
        put_file(host, f"/tmp/flaskops-ocsp/{name}", open(pki[name], "rb").read())
    put_file(host, "/tmp/flaskops-ocsp/index.txt", pki["index"].encode())
    responder = host.check_output(
        "nohup timeout 300 openssl ocsp -index /tmp/flaskops-ocsp/index.txt -port %s -CA /tmp/flaskops-ocsp/ca.crt "
        "-rsigner /tmp/flaskops-ocsp/ca.crt -rkey /tmp/flaskops-ocsp/ca.key -ignore_err "
        ">/tmp/flaskops-ocsp/responder.log 2>&1 & echo $!", str(OCSP_PORT))
    try:
        result = run_converge(host, {"nginx_tls_source": "files", "nginx_tls_certificate_file": pki["site.crt"],
                                     "nginx_tls_key_file": pki["site.key"], "nginx_tls_chain_file": pki["ca.crt"]},
                              tags=["nginx"])
        assert result.returncode == 0, result.failure_text or result.raw
        # nginx asks the responder on the first handshake and staples the
        # answer from then on.
        stapled = ""
        for _attempt in range(10):
            stapled = s_client(host, "-status", "-CAfile", "/tmp/flaskops-ocsp/ca.crt", "-verify_return_error").stdout
            if "OCSP Response Status: successful" in stapled:
                break
            time.sleep(1)
        assert "OCSP Response Status: successful" in stapled and "Cert Status: good" in stapled, stapled
        assert "Verify return code: 0 (ok)" in stapled and "CN = flaskops test CA" in stapled, stapled
        suites = tls_suites(host, "auth-rsa")
        assert {"ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-SHA", "AES256-SHA256"} <= set(suites)
        assert not [s for s, r in suites.items() if r[0] == "client-cannot"], suites
        agreed = {suite for suite, result in suites.items() if result[0] == "ok"}
        assert agreed == {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                          "ECDHE-RSA-CHACHA20-POLY1305"}, sorted(agreed)
    finally:
        host.run("kill %s", responder)
        assert run_converge(host, {}, tags=["nginx"]).returncode == 0
    # Back on the self-signed ECDSA pair, without stapling.
    assert "OCSP response: no response sent" in s_client(host, "-status").stdout


def test_with_https_off_the_site_is_served_over_plain_http(host):
    on_primary_distro_only()
    try:
        result = run_converge(host, {"nginx_https": False}, tags=["nginx"])
        assert result.returncode == 0, result.failure_text or result.raw
        resp = http(host, HTTP + "/api/info")
        assert resp.status == 200, (resp.status, resp.headers)
        assert "strict-transport-security" not in resp.headers
        assert resp.headers["x-frame-options"] == "SAMEORIGIN"
        assert http(host, HTTP + "/static/css/app.css").status == 200
        assert host.check_output("ss -Hltn 'sport = :%s'", "443") == "", "something still listens on 443"
    finally:
        assert run_converge(host, {}, tags=["nginx"]).returncode == 0
    assert http(host, HTTP + "/api/info").status == 301
    assert http(host, HTTPS + "/api/info").status == 200
