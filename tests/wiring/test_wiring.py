"""What playbooks/site.yml wires into the roles for each inventory layout.

Runs tests/wiring/show_wiring.yml against inventories of local-connection
hosts (no role runs, nothing on this machine changes) and checks the values
each host would get.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
PASSWORD = "s3cret/with@odd:chars"
PROCESSES = 12


def wiring(tmp_path: Path, groups: dict[str, dict[str, str]], extra: dict | None = None) -> dict[str, dict]:
    """Run show_wiring.yml on an inventory: groups maps group -> {host: private address}."""
    hosts = {name: {"flaskops_private_address": addr} for members in groups.values() for name, addr in members.items()}
    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "postgres_app_password": PASSWORD, "uwsgi_processes": PROCESSES, **(extra or {})},
        "hosts": hosts,
        "children": {group: {"hosts": {name: None for name in members}} for group, members in groups.items()},
    }}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", str(path), str(HERE / "show_wiring.yml")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Other enabled callbacks (profile_tasks) may print around the JSON document.
    start = 0 if proc.stdout.startswith("{") else proc.stdout.index("\n{") + 1
    report = json.JSONDecoder().raw_decode(proc.stdout, start)[0]
    shown = report["plays"][-1]["tasks"][0]["hosts"]
    return {host: result["msg"] for host, result in shown.items()}


def test_all_in_one_uses_loopback_and_the_unix_socket(tmp_path):
    one = {"host1": "10.0.0.5"}
    got = wiring(tmp_path, {"webservers": one, "appservers": one, "dbservers": one})["host1"]
    assert got["postgres_listen_addresses"] == ["localhost"]
    assert got["postgres_app_client_addresses"] == ["127.0.0.1/32", "::1/128"]
    assert got["flask_app_database_url"] == "postgresql://flaskapp:s3cret/with%40odd%3Achars@127.0.0.1:5432/flaskapp"
    assert got["uwsgi_socket"] == ""
    assert got["nginx_upstream_servers"] == [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock"}]
    assert got["nginx_static_dir"] == "/srv/flaskapp/current/app/static"
    assert got["nginx_extra_groups"] == ["flaskapp"]
    assert got["postgres_app_connections"] == 20  # 12 processes x 1 thread, raised to the floor of 20


def test_split_hosts_talk_over_their_private_addresses(tmp_path):
    got = wiring(tmp_path, {"webservers": {"lb": "10.0.0.10"},
                            "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
                            "dbservers": {"db": "10.0.0.30"}})
    assert got["db"]["postgres_listen_addresses"] == ["localhost", "10.0.0.30"]
    assert got["db"]["postgres_app_client_addresses"] == ["127.0.0.1/32", "::1/128", "10.0.0.21/32", "10.0.0.22/32"]
    assert got["db"]["postgres_app_connections"] == 2 * PROCESSES
    for app, address in (("app1", "10.0.0.21"), ("app2", "10.0.0.22")):
        assert got[app]["flask_app_database_url"].endswith("@10.0.0.30:5432/flaskapp")
        assert got[app]["uwsgi_socket"] == f"{address}:3031"
    assert got["lb"]["nginx_upstream_servers"] == [{"address": "10.0.0.21:3031"}, {"address": "10.0.0.22:3031"}]
    assert got["lb"]["nginx_static_dir"] == ""
    assert got["lb"]["nginx_extra_groups"] == []


def test_a_web_and_app_host_keeps_its_socket_beside_a_remote_app_host(tmp_path):
    got = wiring(tmp_path, {"webservers": {"a": "10.0.0.1"}, "appservers": {"a": "10.0.0.1", "b": "10.0.0.2"},
                            "dbservers": {"a": "10.0.0.1"}})
    assert got["a"]["uwsgi_socket"] == ""
    assert got["b"]["uwsgi_socket"] == "10.0.0.2:3031"
    assert got["a"]["nginx_upstream_servers"] == [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock"},
                                                  {"address": "10.0.0.2:3031"}]
    assert got["a"]["nginx_extra_groups"] == ["flaskapp"]
    assert got["a"]["postgres_listen_addresses"] == ["localhost", "10.0.0.1"]
    assert got["a"]["postgres_app_client_addresses"][2:] == ["10.0.0.2/32"]
    assert got["a"]["flask_app_database_url"].endswith("@127.0.0.1:5432/flaskapp")
    assert got["b"]["flask_app_database_url"].endswith("@10.0.0.1:5432/flaskapp")


def test_flaskops_overrides_replace_wired_values(tmp_path):
    url = "postgresql://app:pw@db.internal:6432/app"
    got = wiring(tmp_path, {"webservers": {"web": "10.0.0.10"}, "appservers": {"app": "10.0.0.20"}},
                 {"flaskops_database_url": url, "flaskops_uwsgi_port": 4040})
    assert got["app"]["flask_app_database_url"] == url
    assert got["app"]["uwsgi_socket"] == "10.0.0.20:4040"
    assert got["web"]["nginx_upstream_servers"] == [{"address": "10.0.0.20:4040"}]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
