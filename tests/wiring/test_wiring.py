"""What the real playbooks pass each role, for several inventory layouts.

The plays of playbooks/ (site.yml, deploy.yml, rollback.yml) run as they are,
in check mode, against inventories of local-connection hosts; only the roles'
tasks are replaced: the test builds a stand-in `flaskops.stack` collection whose
playbooks/ is this checkout's and whose roles keep their real defaults, vars
and publish tasks (the contract between them) but, instead of their work,
record every variable of their own prefix as the role sees it. So a value a
role publishes and another does not receive, or that site.yml drops,
misspells or wires wrongly, fails here, and nothing on this machine changes.
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

# Each recorder prints {variable: value} for every variable named <role>_*,
# then publishes what the real role would.
_RECORDER = """---
- name: Record what the play passes the role
  ansible.builtin.debug:
    msg: "{{{{ dict(recorded | zip(lookup('ansible.builtin.vars', *recorded, wantlist=True))) }}}}"
  vars:
    recorded: "{{{{ lookup('ansible.builtin.varnames', '^{role}_', wantlist=True) | reject('in', ['{role}_published']) }}}}"
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
        real = REPO / "roles" / role
        tasks = stack / "roles" / role / "tasks"
        tasks.mkdir(parents=True)
        recorder = _RECORDER.format(role=role)
        for kept in ("defaults", "vars"):
            if (real / kept).is_dir():
                (tasks.parent / kept).symlink_to(real / kept)
        if (real / "tasks" / "publish.yml").is_file():
            (tasks / "publish.yml").symlink_to(real / "tasks" / "publish.yml")
            recorder += "\n- name: Publish\n  ansible.builtin.import_tasks: publish.yml\n"
        (tasks / "main.yml").write_text(recorder)
    return root


def passed(collections: Path, tmp_path: Path, groups: dict[str, dict[str, str]], extra: dict | None = None,
           playbook: str = "site", extra_vars: dict | None = None, tags: str = "all") -> dict[str, dict[str, dict]]:
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
           "-e", json.dumps(extra_vars or {}), "--tags", tags]
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


def pick(recorded: dict, *names: str) -> dict:
    """The recorded values of these variables (a missing one is None)."""
    return {name: recorded.get(name) for name in names}


# What the uwsgi role must be given, and the flask_app output each comes from.
UWSGI_FROM_FLASK_APP = {"uwsgi_app_name": "flask_app_name", "uwsgi_user": "flask_app_user",
                        "uwsgi_group": "flask_app_group", "uwsgi_virtualenv": "flask_app_venv_dir",
                        "uwsgi_pythonpath": "flask_app_current_dir", "uwsgi_module": "flask_app_module",
                        "uwsgi_chdir": "flask_app_state_dir", "uwsgi_env_file": "flask_app_env_file",
                        "uwsgi_release_file": "flask_app_release_file", "uwsgi_health_path": "flask_app_health_path"}
NGINX_WIRED = ("nginx_upstream_servers", "nginx_static_dir", "nginx_extra_groups", "nginx_site_name")


def test_all_in_one_uses_loopback_and_the_unix_socket(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one})
    assert set(got) == set(ROLES)
    assert pick(got["postgres"]["host1"], "postgres_app_password", "postgres_listen_addresses",
                "postgres_app_client_addresses", "postgres_app_connections") == {
        "postgres_app_password": PASSWORD,
        "postgres_listen_addresses": ["localhost"],
        "postgres_app_client_addresses": ["127.0.0.1/32", "::1/128"],
        "postgres_app_connections": 20,  # 12 processes x 1 thread, raised to the floor of 20
    }
    assert got["flask_app"]["host1"]["flask_app_database_url"] == (
        "postgresql://flaskapp:s3cret/with%40odd%3Achars@127.0.0.1:5432/flaskapp")
    assert pick(got["uwsgi"]["host1"], "uwsgi_processes", "uwsgi_socket", *UWSGI_FROM_FLASK_APP) == {
        "uwsgi_processes": PROCESSES, "uwsgi_socket": "",
        "uwsgi_app_name": "flaskapp", "uwsgi_user": "flaskapp", "uwsgi_group": "flaskapp",
        "uwsgi_virtualenv": "/srv/flaskapp/current/venv", "uwsgi_pythonpath": "/srv/flaskapp/current",
        "uwsgi_module": "wsgi:application", "uwsgi_chdir": "/srv/flaskapp/state",
        "uwsgi_env_file": "/etc/flaskops/flaskapp.env", "uwsgi_release_file": "/srv/flaskapp/current-release",
        "uwsgi_health_path": "",
    }
    assert pick(got["nginx"]["host1"], *NGINX_WIRED) == {
        "nginx_upstream_servers": [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock"}],
        "nginx_static_dir": "/srv/flaskapp/current/app/static",
        "nginx_extra_groups": ["flaskapp"],
        "nginx_site_name": "flaskapp",
    }


def test_an_app_of_its_own_layout_reaches_uwsgi_and_nginx(collections, tmp_path):
    """Every flask_app setting that moves the app moves what uwsgi and nginx are given."""
    one = {"host1": "10.0.0.5"}
    layout = {"flask_app_name": "blog", "flask_app_user": "blogger", "flask_app_group": "writers",
              "flask_app_root": "/opt/apps/blog", "flask_app_module": "blog:create_app()",
              "flask_app_static_subdir": "blog/assets", "flask_app_state_dir": "/var/lib/blog",
              "flask_app_health_path": "/healthz"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one}, layout)
    app = got["flask_app"]["host1"]
    # Each uwsgi input is the flask_app output of the same meaning ...
    for wanted, source in UWSGI_FROM_FLASK_APP.items():
        assert got["uwsgi"]["host1"][wanted] == app[source], wanted
    # ... and those outputs follow the layout.
    assert pick(got["uwsgi"]["host1"], *UWSGI_FROM_FLASK_APP) == {
        "uwsgi_app_name": "blog", "uwsgi_user": "blogger", "uwsgi_group": "writers",
        "uwsgi_virtualenv": "/opt/apps/blog/current/venv", "uwsgi_pythonpath": "/opt/apps/blog/current",
        "uwsgi_module": "blog:create_app()", "uwsgi_chdir": "/var/lib/blog",
        "uwsgi_env_file": "/etc/flaskops/blog.env", "uwsgi_release_file": "/opt/apps/blog/current-release",
        "uwsgi_health_path": "/healthz",
    }
    assert pick(got["nginx"]["host1"], *NGINX_WIRED) == {
        "nginx_upstream_servers": [{"address": "unix:/run/uwsgi/blog/uwsgi.sock"}],
        "nginx_static_dir": "/opt/apps/blog/current/blog/assets",
        "nginx_extra_groups": ["writers"],
        "nginx_site_name": "blog",
    }


def test_a_socket_path_set_for_uwsgi_is_the_one_nginx_uses(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_uwsgi_socket": "/run/uwsgi/flaskapp/app.sock", "flask_app_static_subdir": ""})
    assert got["uwsgi"]["host1"]["uwsgi_socket"] == "/run/uwsgi/flaskapp/app.sock"
    assert got["nginx"]["host1"]["nginx_upstream_servers"] == [{"address": "unix:/run/uwsgi/flaskapp/app.sock"}]
    assert got["nginx"]["host1"]["nginx_static_dir"] == ""


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
    assert pick(got["nginx"]["lb"], *NGINX_WIRED) == {
        "nginx_upstream_servers": [{"address": "10.0.0.21:3031"}, {"address": "10.0.0.22:3031"}],
        "nginx_static_dir": "", "nginx_extra_groups": [], "nginx_site_name": "flaskapp"}


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
                 {"flaskops_database_url": url, "flaskops_uwsgi_port": 4040, "flaskops_site_name": "shop"})
    assert "postgres" not in got
    assert got["flask_app"]["app"]["flask_app_database_url"] == url
    assert got["uwsgi"]["app"]["uwsgi_socket"] == "10.0.0.20:4040"
    assert got["nginx"]["web"]["nginx_upstream_servers"] == [{"address": "10.0.0.20:4040"}]
    assert got["nginx"]["web"]["nginx_site_name"] == "shop"


def test_nginx_alone_still_finds_the_app_it_serves(collections, tmp_path):
    """--tags nginx skips the app roles' work, not what they publish."""
    one = {"host1": "10.0.0.5"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flask_app_name": "blog"}, tags="nginx")
    assert set(got) == {"nginx"}
    assert pick(got["nginx"]["host1"], "nginx_upstream_servers", "nginx_extra_groups") == {
        "nginx_upstream_servers": [{"address": "unix:/run/uwsgi/blog/uwsgi.sock"}], "nginx_extra_groups": ["blog"]}


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
