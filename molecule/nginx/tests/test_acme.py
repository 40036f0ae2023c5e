"""ACME live: the role obtains, serves, renews and reissues a certificate from
an ACME server (Debian's pebble, run on the host for the test's duration).

pebble validates the http-01 challenge by fetching
http://<name>/.well-known/acme-challenge/<token> on port 80: the site's names
resolve to the host's loopback through /etc/hosts while the tests run.
"""

import json
import re
import shlex
import subprocess

import pytest
from flaskops_testinfra import main_pid, on_primary_distro_only, put_file, run_converge, wait_for

NAME = "shop.flaskops.test"
EXTRA_NAME = "www.shop.flaskops.test"
PEBBLE_DIR = "/tmp/flaskops-pebble"
HOSTS_LINE = f"127.0.0.1 {NAME} {EXTRA_NAME} # flaskops-acme-test"
RENEWAL = f"/etc/letsencrypt/renewal/{NAME}.conf"
# pebble keeps its accounts and orders in memory: certbot's records of an
# earlier pebble would point at accounts the new one does not know.
FORGET_CERTBOT_STATE = (f"rm -rf /etc/letsencrypt/accounts/127.0.0.1:14000 /etc/letsencrypt/live/{NAME} "
                        f"/etc/letsencrypt/archive/{NAME} {RENEWAL}")


def openssl(directory, *args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True, cwd=directory).stdout


def make_api_certificate(directory) -> None:
    """A CA and the certificate of pebble's own HTTPS API (127.0.0.1), made on the controller."""
    openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "api-ca.key", "-out", "api-ca.pem", "-days", "2", "-subj", "/CN=flaskops pebble API CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "api.key",
            "-out", "api.csr", "-subj", "/CN=127.0.0.1")
    (directory / "api.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                                       "extendedKeyUsage = serverAuth\n")
    openssl(directory, "x509", "-req", "-in", "api.csr", "-CA", "api-ca.pem", "-CAkey", "api-ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "api.ext", "-out", "api.pem")


@pytest.fixture(scope="module")
def pebble(host, tmp_path_factory):
    """pebble on 127.0.0.1:14000 (ACME) and :15000 (management), validating on port 80.

    Yields the ACME variables for the role. Afterwards the site is converged
    back to its self-signed certificate.
    """
    on_primary_distro_only()
    directory = tmp_path_factory.mktemp("pebble")
    make_api_certificate(directory)
    host.check_output("apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=120 install -y -q "
                      "--no-install-recommends pebble curl")
    for name in ("api.pem", "api.key", "api-ca.pem"):
        put_file(host, f"{PEBBLE_DIR}/{name}", (directory / name).read_bytes())
    config = {"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
                         "certificate": f"{PEBBLE_DIR}/api.pem", "privateKey": f"{PEBBLE_DIR}/api.key",
                         "httpPort": 80, "tlsPort": 5001, "ocspResponderURL": "",
                         "externalAccountBindingRequired": False}}
    put_file(host, f"{PEBBLE_DIR}/pebble.json", json.dumps(config).encode())
    host.check_output(FORGET_CERTBOT_STATE)
    host.check_output(f"grep -q flaskops-acme-test /etc/hosts || echo {shlex.quote(HOSTS_LINE)} >> /etc/hosts")
    # Bounded: systemd stops it after 20 minutes whatever happens to the test.
    host.check_output("systemd-run --unit=flaskops-pebble --property=RuntimeMaxSec=1200 "
                      "--setenv=PEBBLE_VA_NOSLEEP=1 --setenv=PEBBLE_WFE_NONCEREJECT=0 "
                      f"/usr/bin/pebble -config {PEBBLE_DIR}/pebble.json")
    try:
        assert wait_for(lambda: host.run(f"curl -sf --cacert {PEBBLE_DIR}/api-ca.pem "
                                         "https://127.0.0.1:14000/dir").rc == 0, timeout=30), \
            host.run("journalctl -u flaskops-pebble --no-pager -n 30").stdout
        # The root pebble made at start: what the issued certificates chain to.
        host.check_output(f"curl -sf --cacert {PEBBLE_DIR}/api-ca.pem https://127.0.0.1:15000/roots/0 "
                          f"-o {PEBBLE_DIR}/root.pem")
        yield {"nginx_tls_source": "acme", "nginx_acme_email": "ops@flaskops.test",
               "nginx_acme_server": "https://127.0.0.1:14000/dir",
               "nginx_acme_ca_bundle": str(directory / "api-ca.pem")}
    finally:
        host.run("systemctl stop flaskops-pebble")
        host.run(FORGET_CERTBOT_STATE)
        host.run("grep -v flaskops-acme-test /etc/hosts > /tmp/hosts.flaskops && cat /tmp/hosts.flaskops > /etc/hosts")
        result = run_converge(host, {}, tags=["nginx"])
        assert result.returncode == 0, result.failure_text or result.raw


def served(host, name: str) -> dict:
    """The certificate the site serves for name (SNI), verified against pebble's root."""
    out = host.run("openssl s_client -connect 127.0.0.1:443 -servername %s -CAfile %s -verify_hostname %s "
                   "-verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial -ext subjectAltName "
                   "-ocsp_uri", name, f"{PEBBLE_DIR}/root.pem", name)
    assert out.rc == 0, f"no certificate for {name} that verifies: {out.stdout} {out.stderr}"
    return {"serial": re.search(r"serial=(\w+)", out.stdout).group(1),
            "names": sorted(re.findall(r"DNS:([^,\s]+)", out.stdout)),
            "ocsp": [line for line in out.stdout.splitlines() if line.startswith("http")]}


def https_status(host, name: str, path: str = "/api/info") -> int:
    out = host.check_output("curl -s -o /dev/null -w '%%{http_code}' --cacert %s --resolve %s:443:127.0.0.1 "
                            "https://%s%s", f"{PEBBLE_DIR}/root.pem", name, name, path)
    return int(out)


def site_vars(pebble: dict, *names: str) -> dict:
    return pebble | {"nginx_server_name": " ".join(names)}


def test_the_role_obtains_a_certificate_that_the_site_serves(host, pebble):
    result = run_converge(host, site_vars(pebble, NAME), tags=["nginx"])
    assert result.returncode == 0, result.failure_text or result.raw
    certificate = served(host, NAME)
    assert certificate["names"] == [NAME]
    assert https_status(host, NAME) == 200
    # pebble names no OCSP responder: stapling is off, and nginx has nothing
    # to warn about (a stapling directive would be "ignored" with a warning).
    assert certificate["ocsp"] == []
    check = host.run("nginx -t")
    assert check.rc == 0 and "stapling" not in check.stderr, check.stderr
    assert "ssl_stapling" not in host.check_output("nginx -T 2>/dev/null")
    # That a second run asks for nothing: test_adding_a_name_... (changed=0).


def test_a_renewal_by_certbot_timer_reloads_nginx(host, pebble):
    before, master = served(host, NAME), main_pid(host, "nginx")
    # Make the certificate due: certbot renews what expires within
    # renew_before_expiry; pebble's live for years.
    host.check_output(f"sed -i '1i renew_before_expiry = 36500 days' {RENEWAL}")
    try:
        # The unit certbot.timer starts, as the timer would.
        started = host.run("systemctl start certbot.service")
        assert started.rc == 0, host.run("journalctl -u certbot.service --no-pager -n 40").stdout
    finally:
        host.check_output(f"sed -i '/^renew_before_expiry = 36500 days$/d' {RENEWAL}")
    assert wait_for(lambda: served(host, NAME)["serial"] != before["serial"], timeout=15), \
        "nginx still serves the old certificate after the renewal"
    assert main_pid(host, "nginx") == master, "a renewal reloads nginx, it does not restart it"
    assert https_status(host, NAME) == 200


def test_adding_a_name_reissues_the_certificate_with_it(host, pebble):
    # Given in capitals: certbot and the CA hold it in lower case, and the
    # role's comparison must agree (else each run would ask again).
    names = (NAME, EXTRA_NAME.upper())
    before = served(host, NAME)
    result = run_converge(host, site_vars(pebble, *names), tags=["nginx"])
    # (On a failure, what certbot and pebble said: a failed challenge here
    # failed once in four fresh-clone runs, cause not yet known.)
    assert result.returncode == 0, (result.failure_text or result.raw) + host.run(
        "tail -n 80 /var/log/letsencrypt/letsencrypt.log; journalctl -u flaskops-pebble --no-pager -n 40").stdout
    certificate = served(host, EXTRA_NAME)
    assert certificate["names"] == sorted([NAME, EXTRA_NAME])
    assert certificate["serial"] != before["serial"]
    assert https_status(host, EXTRA_NAME) == 200
    again = run_converge(host, site_vars(pebble, *names), tags=["nginx"])
    assert again.returncode == 0 and again.changed == 0, again.failure_text or again.raw
