"""What the real playbooks pass each role, for several inventory layouts.

The plays of playbooks/ (site.yml, deploy.yml, rollback.yml) run as they are,
in check mode, against inventories of local-connection hosts; only the roles
are replaced: the test builds a stand-in `flaskops.stack` collection whose
playbooks/ is this checkout's and whose roles each record the variables of
their own prefix that the play hands them (inventory, play and role vars:
no role defaults, since a recorder has none). So a value site.yml drops,
misspells or wires wrongly fails here, and nothing on this machine changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ("base", "postgres", "flask_app", "uwsgi", "nginx")
# The ansible-playbook of the Python that runs the tests (the project venv).
PLAYBOOK_COMMAND = str(Path(sys.executable).with_name("ansible-playbook"))
PASSWORD = "s3cret/with@odd:chars"
PROCESSES = 12

# Each recorder prints {variable: value} for every variable named <role>_*.
_RECORDER = """---
- name: Record what the play passes the role
  ansible.builtin.debug:
    msg: "{{{{ dict(recorded | zip(lookup('ansible.builtin.vars', *recorded, wantlist=True))) }}}}"
  vars:
    recorded: "{{{{ lookup('ansible.builtin.varnames', '^{role}_', wantlist=True) }}}}"
"""


@pytest.fixture(scope="session")
def collections(tmp_path_factory) -> Path:
    """A collections path where flaskops.stack has the real playbooks and recording roles."""
    root = tmp_path_factory.mktemp("collections")
    stack = root / "ansible_collections" / "flaskops" / "stack"
    stack.mkdir(parents=True)
    for shared in ("playbooks", "plugins", "meta"):
        (stack / shared).symlink_to(REPO / shared)
    for role in ROLES:
        tasks = stack / "roles" / role / "tasks"
        tasks.mkdir(parents=True)
        (tasks / "main.yml").write_text(_RECORDER.format(role=role))
    return root


def passed(collections: Path, tmp_path: Path, groups: dict[str, dict[str, str]], extra: dict | None = None,
           playbook: str = "site", extra_vars: dict | None = None) -> dict[str, dict[str, dict]]:
    """Run flaskops.stack.<playbook> on an inventory (groups maps group -> {host: private address}).

    Returns role -> host -> the variables the play passed that role there.
    """
    hosts = {name: {"flaskops_private_address": addr} for members in groups.values() for name, addr in members.items()}
    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "postgres_app_password": PASSWORD, "uwsgi_processes": PROCESSES, **(extra or {})},
        "hosts": hosts,
        "children": {group: {"hosts": {name: None for name in members}} for group, members in groups.items()},
    }}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1")
    cmd = [PLAYBOOK_COMMAND, "--check", "-i", str(path), f"flaskops.stack.{playbook}",
           "-e", json.dumps(extra_vars or {})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Other enabled callbacks (profile_tasks) may print around the JSON document.
    start = 0 if proc.stdout.startswith("{") else proc.stdout.index("\n{") + 1
    report = json.JSONDecoder().raw_decode(proc.stdout, start)[0]
    got: dict[str, dict[str, dict]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            if not name.endswith(" : Record what the play passes the role"):
                continue
            role = name.split(" : ")[0].removeprefix("flaskops.stack.")
            for host, result in task["hosts"].items():
                assert host not in got.setdefault(role, {}), f"{role} ran twice on {host}"
                got[role][host] = result["msg"]
    return got


def test_all_in_one_uses_loopback_and_the_unix_socket(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one})
    assert got["base"] == {"host1": {}}
    assert got["postgres"]["host1"] == {
        "postgres_app_password": PASSWORD,
        "postgres_listen_addresses": ["localhost"],
        "postgres_app_client_addresses": ["127.0.0.1/32", "::1/128"],
        "postgres_app_connections": 20,  # 12 processes x 1 thread, raised to the floor of 20
    }
    assert got["flask_app"]["host1"] == {
        "flask_app_database_url": "postgresql://flaskapp:s3cret/with%40odd%3Achars@127.0.0.1:5432/flaskapp"}
    assert got["uwsgi"]["host1"] == {"uwsgi_processes": PROCESSES, "uwsgi_socket": ""}
    assert got["nginx"]["host1"] == {
        "nginx_upstream_servers": [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock"}],
        "nginx_static_dir": "/srv/flaskapp/current/app/static",
        "nginx_extra_groups": ["flaskapp"],
    }


def test_split_hosts_talk_over_their_private_addresses(collections, tmp_path):
    got = passed(collections, tmp_path, {"webservers": {"lb": "10.0.0.10"},
                                         "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
                                         "dbservers": {"db": "10.0.0.30"}})
    assert set(got["base"]) == {"lb", "app1", "app2", "db"}
    assert set(got["postgres"]) == {"db"} and set(got["nginx"]) == {"lb"}
    assert set(got["flask_app"]) == set(got["uwsgi"]) == {"app1", "app2"}
    db = got["postgres"]["db"]
    assert db["postgres_listen_addresses"] == ["localhost", "10.0.0.30"]
    assert db["postgres_app_client_addresses"] == ["127.0.0.1/32", "::1/128", "10.0.0.21/32", "10.0.0.22/32"]
    assert db["postgres_app_connections"] == 2 * PROCESSES
    for app, address in (("app1", "10.0.0.21"), ("app2", "10.0.0.22")):
        assert got["flask_app"][app]["flask_app_database_url"].endswith("@10.0.0.30:5432/flaskapp")
        assert got["uwsgi"][app]["uwsgi_socket"] == f"{address}:3031"
    assert got["nginx"]["lb"] == {"nginx_upstream_servers": [{"address": "10.0.0.21:3031"},
                                                             {"address": "10.0.0.22:3031"}],
                                  "nginx_static_dir": "", "nginx_extra_groups": []}


def test_a_web_and_app_host_keeps_its_socket_beside_a_remote_app_host(collections, tmp_path):
    got = passed(collections, tmp_path, {"webservers": {"a": "10.0.0.1"},
                                         "appservers": {"a": "10.0.0.1", "b": "10.0.0.2"},
                                         "dbservers": {"a": "10.0.0.1"}})
    assert got["uwsgi"]["a"]["uwsgi_socket"] == ""
    assert got["uwsgi"]["b"]["uwsgi_socket"] == "10.0.0.2:3031"
    assert got["nginx"]["a"]["nginx_upstream_servers"] == [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock"},
                                                           {"address": "10.0.0.2:3031"}]
    assert got["nginx"]["a"]["nginx_extra_groups"] == ["flaskapp"]
    assert got["postgres"]["a"]["postgres_listen_addresses"] == ["localhost", "10.0.0.1"]
    assert got["postgres"]["a"]["postgres_app_client_addresses"][2:] == ["10.0.0.2/32"]
    assert got["flask_app"]["a"]["flask_app_database_url"].endswith("@127.0.0.1:5432/flaskapp")
    assert got["flask_app"]["b"]["flask_app_database_url"].endswith("@10.0.0.1:5432/flaskapp")


def test_flaskops_overrides_replace_wired_values(collections, tmp_path):
    url = "postgresql://app:pw@db.internal:6432/app"
    got = passed(collections, tmp_path, {"webservers": {"web": "10.0.0.10"}, "appservers": {"app": "10.0.0.20"}},
                 {"flaskops_database_url": url, "flaskops_uwsgi_port": 4040})
    assert "postgres" not in got
    assert got["flask_app"]["app"]["flask_app_database_url"] == url
    assert got["uwsgi"]["app"]["uwsgi_socket"] == "10.0.0.20:4040"
    assert got["nginx"]["web"]["nginx_upstream_servers"] == [{"address": "10.0.0.20:4040"}]


@pytest.mark.parametrize("playbook, rollback", [("deploy", False), ("rollback", True)])
def test_deploy_and_rollback_pass_the_app_roles_what_site_does(collections, tmp_path, playbook, rollback):
    layout = {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
              "dbservers": {"db": "10.0.0.30"}}
    site = passed(collections, tmp_path, layout)
    got = passed(collections, tmp_path, layout, playbook=playbook)
    # Only the app hosts' roles run, each host once (one host at a time).
    assert set(got) == {"flask_app", "uwsgi"}
    assert got["uwsgi"] == site["uwsgi"]
    for app in ("app1", "app2"):
        expected = dict(site["flask_app"][app], **({"flask_app_rollback": True} if rollback else {}))
        assert got["flask_app"][app] == expected


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
