"""Role `base`, seen on the converged host."""

import os
import re
from pathlib import Path

import pytest
from flaskops_testinfra import assert_refused_by_the_role, files_state, on_primary_distro_only, run_converge

STORE = "/etc/ssl/certs/ca-certificates.crt"
PEM = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")


def _expected_cas():
    files = [os.environ.get("FLASKOPS_EXTRA_CA_FILE", ""),
             os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "test-ca.pem")]
    certs = []
    for f in filter(None, files):
        certs += PEM.findall(Path(f).read_text())
    return certs


@pytest.mark.parametrize("pkg", ["acl", "ca-certificates", "python3-apt"])
def test_packages_installed(host, pkg):
    assert host.package(pkg).is_installed


def test_every_extra_ca_is_trusted_by_the_system_store(host):
    expected = _expected_cas()
    assert expected, "the scenario always hands at least its own test CA"
    installed = host.file("/usr/local/share/ca-certificates/flaskops").listdir()
    assert len(installed) == len(set(expected))
    for name in installed:
        # A self-signed CA verifies against a store only if the store holds it.
        result = host.run("openssl verify -CAfile %s /usr/local/share/ca-certificates/flaskops/%s", STORE, name)
        assert result.rc == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr


def test_a_foreign_ca_is_not_trusted(host):
    host.check_output("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=foreign -days 1 "
                      "-keyout /tmp/foreign.key -out /tmp/foreign.pem 2>/dev/null")
    result = host.run("openssl verify -CAfile %s /tmp/foreign.pem", STORE)
    assert result.rc != 0


def test_pip_uses_the_system_store(host):
    conf = host.file("/etc/pip.conf")
    assert conf.mode == 0o644 and conf.user == "root"
    # What pip itself reads: its config parser sees the cert option.
    value = host.check_output(
        "python3 -c \"import configparser; c = configparser.ConfigParser(); c.read('/etc/pip.conf'); "
        "print(c['global']['cert'])\"")
    assert value == STORE
    assert host.file(value).exists


@pytest.mark.parametrize("bad, variable", [
    ({"base_apt_cache_valid_time": -1}, "base_apt_cache_valid_time"),
    ({"base_apt_cache_valid_time": "daily"}, "base_apt_cache_valid_time"),
    ({"base_ca_certificates_files": ["/nonexistent/extra-ca.pem"]}, "base_ca_certificates_files"),
    ({"base_pip_use_system_ca": "maybe"}, "base_pip_use_system_ca"),
    ({"base_extra_packages": {"name": "curl"}}, "base_extra_packages"),
])
def test_bad_input_fails_before_any_change(host, bad, variable):
    # base runs no service of its own: what it must leave alone are its files.
    on_primary_distro_only()
    files = [STORE, "/etc/pip.conf", *(f"/usr/local/share/ca-certificates/flaskops/{name}"
                                       for name in host.file("/usr/local/share/ca-certificates/flaskops").listdir())]
    before = files_state(host, files)
    result = run_converge(host, bad, mitogen=True)
    assert_refused_by_the_role(result, "base", variable)
    assert files_state(host, files) == before
