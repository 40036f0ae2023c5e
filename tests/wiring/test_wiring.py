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
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ("base", "firewall", "postgres", "flask_app", "uwsgi", "workers", "nginx", "exporters", "prometheus",
         "backup_repository")
# Deployed only where the inventory has a `monitoring` group.
MONITORING_ROLES = {"exporters", "prometheus"}
# Deployed only where the inventory has a `backupservers` host.
BACKUP_ROLES = {"backup_repository"}
# The ansible-playbook of the Python that runs the tests (the project venv).
PLAYBOOK_COMMAND = str(Path(sys.executable).with_name("ansible-playbook"))
PASSWORD = "s3cret/with@odd:chars"
PROCESSES = 12
# Seconds one ansible-playbook run may take. Alone, a run takes seconds;
# `make test` runs these tests beside the scenarios with a small CPU share
# (scripts/molecule-all.sh beside_cgroup), where a run can take many times
# that while both scenarios keep the CPUs busy.
RUN_TIMEOUT = 900

# Each recorder prints {variable: value} for every variable named <role>_*,
# then publishes what the real role would.
_RECORDER = """---
- name: Record what the play passes the role
  ansible.builtin.debug:
    msg: "{{{{ dict(recorded | zip(lookup('ansible.builtin.vars', *recorded, wantlist=True))) }}}}"
  vars:
    recorded: "{{{{ lookup('ansible.builtin.varnames', '^{role}_', wantlist=True) | reject('in', ['{role}_published']) }}}}"
"""

# What flask_app's prepare step publishes, for a release that is not live:
# named flask_app_release (or "r1"; "r1-<host>" where the test sets
# wiring_release_per_host, as a branch that moved between hosts would),
# replacing "r0", from "repo@c1" (or what wiring_origin_per_host says).
_PREPARED = """
- name: Publish the release this run puts live
  ansible.builtin.set_fact:
    flask_app_built: >-
      {{ flask_app_built | default({}) | combine({flask_app_name: {
           'release': flask_app_release or ('r1-' ~ inventory_hostname if wiring_release_per_host | default(false) else 'r1'),
           'live': 'r0', 'environment': wiring_environment_changed | default(false), 'known': true,
           'origin': (wiring_origin_per_host | default({}))[inventory_hostname] | default('repo@c1'), 'new': true,
           'migrate': not flask_app_rollback and flask_app_init_command | length > 0}}) }}
"""
_FAILS_ON_REQUEST = """
- name: Fail where the test says (wiring_fail_uwsgi_on)
  ansible.builtin.fail:
    msg: the test makes uwsgi fail here
  when: inventory_hostname in wiring_fail_uwsgi_on | default([])
"""
# What the postgres role's pitr_identity publishes for a repository host.
_PITR_IDENTITY = """
- name: Publish what the repository host needs
  ansible.builtin.set_fact:
    postgres_pitr_published:
      stanza: "{{ postgres_pitr_stanza }}"
      data_dir: /var/lib/postgresql/15/main
      port: "{{ postgres_port | int }}"
      socket_dir: /var/run/postgresql
      client_key: ssh-ed25519 AAAApostgres postgres@{{ inventory_hostname }}
      host_key: ssh-ed25519 AAAAhost-{{ inventory_hostname }}
      version: "2.45"
      retention_full: "{{ postgres_pitr_retention_full | int }}"
      retention_diff: "{{ postgres_pitr_retention_diff | int }}"
      compress_type: "{{ postgres_pitr_compress_type }}"
      compress_level: "{{ postgres_pitr_compress_level }}"
      cipher_passphrase: "{{ postgres_pitr_cipher_passphrase }}"
      full_on_calendar: "{{ postgres_pitr_full_on_calendar }}"
      diff_on_calendar: "{{ postgres_pitr_diff_on_calendar }}"
      first_backup: "{{ postgres_pitr_first_backup | bool }}"
"""
# What the backup_repository role publishes (the real one reads the keys).
_REPOSITORY_IDENTITY = """---
- name: Publish the repository host's identity
  ansible.builtin.set_fact:
    backup_repository_published:
      user: "{{ backup_repository_user }}"
      client_key: ssh-ed25519 AAAArepository pgbackrest@{{ inventory_hostname }}
      host_key: ssh-ed25519 AAAAhost-{{ inventory_hostname }}
      version: "2.45"
"""
# Entry points recorded as <role>:<entry>, and what each then publishes.
ENTRY_POINTS = {
    "flask_app": {"migrate": ""},
    "nginx": {"upstream": ""},
    "backup_repository": {"stanza": ""},
    "postgres": {"pitr_identity": _PITR_IDENTITY, "dump": """
- name: Publish the dumps
  ansible.builtin.set_fact:
    postgres_dump_files: >-
      {{ postgres_dump_files | default({}) | combine(dict(postgres_dump_databases
         | zip(postgres_dump_databases | map('regex_replace', '^(.*)$', '/dumps/\\1-' ~ postgres_dump_label ~ '.dump')))) }}
"""},
}


@pytest.fixture(scope="session")
def collections(tmp_path_factory) -> Path:
    """A collections path where flaskops.stack has the real playbooks and recording roles."""
    root = tmp_path_factory.mktemp("collections")
    stack = root / "ansible_collections" / "flaskops" / "stack"
    stack.mkdir(parents=True)
    for shared in ("playbooks", "plugins", "meta", "sample_app"):
        (stack / shared).symlink_to(REPO / shared)
    for role in ROLES:
        real = REPO / "roles" / role
        tasks = stack / "roles" / role / "tasks"
        tasks.mkdir(parents=True)
        recorder = _RECORDER.format(role=role)
        for kept in ("defaults", "vars"):
            if (real / kept).is_dir():
                (tasks.parent / kept).symlink_to(real / kept)
        # The real input checks: the app play runs flask_app's before any app changes.
        for check in (real / "tasks").glob("validate*.yml"):
            (tasks / check.name).symlink_to(check)
        if (real / "tasks" / "publish.yml").is_file():
            (tasks / "publish.yml").symlink_to(real / "tasks" / "publish.yml")
            recorder += "\n- name: Publish\n  ansible.builtin.import_tasks: publish.yml\n"
        if role == "backup_repository":
            (tasks / "publish.yml").unlink()
            (tasks / "publish.yml").write_text(_REPOSITORY_IDENTITY)
        # uwsgi's main (the switch play) fails on the hosts a test names,
        # and its health check (after a switch back) passes.
        if role == "uwsgi":
            recorder += _FAILS_ON_REQUEST
            (tasks / "check.yml").write_text("---\n- name: Pass the health check\n  ansible.builtin.debug:\n"
                                             "    msg: the release answers\n")
        (tasks / "main.yml").write_text(recorder)
        # A deploy's steps: prepare records what the role gets (as main did)
        # and publishes what the real step would for a release not yet live;
        # switch publishes the layout; migrate and postgres' dump record
        # under <role>:<entry point>.
        if role == "flask_app":
            (tasks / "prepare.yml").write_text(recorder + _PREPARED)
            (tasks / "switch.yml").write_text("---\n- name: Publish\n  ansible.builtin.import_tasks: publish.yml\n")
        for entry in ENTRY_POINTS.get(role, ()):
            (tasks / f"{entry}.yml").write_text(_RECORDER.format(role=role).replace(
                "Record what the play passes the role", f"Record what the play passes the role at {entry}")
                + ENTRY_POINTS[role][entry])
        # Entry points that take an app off record the name they are given
        # (only that: an absent app has published nothing else).
        for removal in sorted((real / "tasks").glob("remove*.yml")):
            (tasks / removal.name).write_text(_RECORDER.format(role=role).replace(
                "Record what the play passes the role", "Record what the play passes the role to remove").replace(
                f"'^{role}_'", "'^(uwsgi_app_name|workers_app_name|nginx_site_name)$'"))
    gather_seed_facts(root)
    return root


# Every inventory host of a test is this machine (local connection): its
# facts are gathered once for the session and handed to each run through a
# fact cache (smart gathering), instead of the setup module running for
# every host of every run.
FACT_SEED = "facts-seed.json"


def playbook_environment() -> dict[str, str]:
    """This process's environment without pytest's own variables: the
    facts of a run hold its environment, and a failing run's output would
    hold the test's id (PYTEST_CURRENT_TEST), and with it the message that
    a parametrized test looks for."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}


def gather_seed_facts(root: Path) -> None:
    cache = root / "seed-cache"
    playbook = root / "gather.yml"
    playbook.write_text("- name: Gather\n  hosts: seed\n  gather_facts: true\n  tasks: []\n")
    env = dict(playbook_environment(), ANSIBLE_CACHE_PLUGIN="ansible.builtin.jsonfile",
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache))
    proc = subprocess.run([PLAYBOOK_COMMAND, "-i", "seed,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook)],
                          capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # (The cache names its files <key prefix><host>; the file is kept as it is.)
    [seeded] = cache.glob("*seed")
    text = seeded.read_text()
    assert "_ansible_facts_gathered" in text and "ansible_processor_vcpus" in text, text[:500]
    (root / FACT_SEED).write_text(json.dumps({"prefix": seeded.name.removesuffix("seed"), "text": text}))


def passed(collections: Path, tmp_path: Path, groups: dict[str, dict[str, str]], extra: dict | None = None,
           playbook: str = "site", extra_vars: dict | None = None, tags: str = "all",
           fails: bool = False, skip_tags: str = "", limit: str = "", gather: bool = False) -> dict[str, dict]:
    """Run flaskops.stack.<playbook> on an inventory (groups maps group -> {host: private address}).

    Returns role -> host -> the variables the play passed that role there
    (host/app for a role's calls for apps after the first on that host). With
    fails, the run must fail: returns {"output": its output, "failures": the
    messages of its failed tasks}. The hosts the run targets (--limit) start
    with the session's facts; with gather, none does: the playbooks gather
    them, as on real hosts.
    """
    hosts = {name: {"flaskops_private_address": addr} for members in groups.values() for name, addr in members.items()}
    # An extra value of None leaves that variable out (to its role's default).
    all_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "postgres_app_password": PASSWORD, "uwsgi_processes": PROCESSES, **(extra or {})}
    inventory = {"all": {
        "vars": {name: value for name, value in all_vars.items() if value is not None},
        "hosts": hosts,
        "children": {group: {"hosts": {name: None for name in members}} for group, members in groups.items()},
    }}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = dict(playbook_environment(), ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1")
    if not gather:
        # Each run starts from the session's facts (FACT_SEED) for the hosts
        # it targets; hosts outside --limit get theirs from the task of
        # learn_addresses.yml that gathers them, as on real hosts.
        facts = tmp_path / "facts"
        shutil.rmtree(facts, ignore_errors=True)
        facts.mkdir()
        seed = json.loads((collections / FACT_SEED).read_text())
        for name in (limit.split(",") if limit else hosts):
            (facts / (seed["prefix"] + name)).write_text(seed["text"])
        env |= {"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
                "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts)}
    cmd = [PLAYBOOK_COMMAND, "--check", "-i", str(path), f"flaskops.stack.{playbook}",
           "-e", json.dumps(extra_vars or {}), "--tags", tags]
    cmd += ["--skip-tags", skip_tags] if skip_tags else []
    cmd += ["--limit", limit] if limit else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False, cwd=REPO)
    if fails:
        assert proc.returncode != 0, "the run passed"
        return {"output": proc.stdout + proc.stderr, "failures": failure_messages(json_report(proc.stdout))}
    assert proc.returncode == 0, "\n".join(line for line in proc.stdout.splitlines() if "\"msg\"" in line)[-3000:] + proc.stderr[-3000:]
    report = json_report(proc.stdout)
    got: dict[str, dict[str, dict]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            # What the playbooks themselves report (debug tasks), by task.
            if name.startswith("Report the dump taken before migrating app "):
                got.setdefault("reports", {})["migrate " + name.rsplit(" ", 1)[1]] = {
                    host: result["msg"] for host, result in task["hosts"].items() if not result.get("skipped")}
                continue
            if name.endswith(" : Record what the play passes the role to remove"):
                role = name.split(" : ")[0].removeprefix("flaskops.stack.") + ":remove"
            elif " : Record what the play passes the role at " in name:
                role = (name.split(" : ")[0].removeprefix("flaskops.stack.") + ":"
                        + name.rsplit(" at ", 1)[1])
            elif name.endswith(" : Record what the play passes the role"):
                role = name.split(" : ")[0].removeprefix("flaskops.stack.")
            else:
                continue
            for host, result in task["hosts"].items():
                # Roles called once per app are keyed host/app for apps after the first.
                if result.get("skipped"):
                    continue
                app = result["msg"].get(APP_NAME_OF.get(role.split(":")[0], ""), "")
                app = ",".join(app) if isinstance(app, list) else app
                # A drain and a return: one call each.
                app += "/" + result["msg"]["nginx_upstream_action"] if role == "nginx:upstream" else ""
                key = host if host not in got.setdefault(role, {}) else f"{host}/{app}"
                assert key not in got[role], f"{role} ran twice on {host} for {app or 'the host'}"
                got[role][key] = result["msg"]
    return got


def json_report(stdout: str) -> dict:
    """The JSON callback's report (other enabled callbacks, such as
    profile_tasks, may print around it)."""
    start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
    return json.JSONDecoder().raw_decode(stdout, start)[0]


def failure_messages(report: dict) -> str:
    """What the failed tasks of a run said (their msg, per host and loop
    item), one line each, whitespace folded: a message looked for here was
    rendered by a task, not quoted from a playbook's source in an error."""
    said = []
    for play in report["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                for item in [result, *result.get("results", [])]:
                    if isinstance(item, dict) and item.get("failed") and "msg" in item:
                        said.append(" ".join(str(item["msg"]).split()))
    return "\n".join(said)


# The variable that names the app a per-app role call is for.
APP_NAME_OF = {"flask_app": "flask_app_name", "uwsgi": "uwsgi_app_name", "workers": "workers_app_name",
               "nginx": "nginx_site_name",
               "postgres": "postgres_dump_databases"}


def pick(recorded: dict, *names: str) -> dict:
    """The recorded values of these variables (a missing one is None)."""
    return {name: recorded.get(name) for name in names}


# What the uwsgi role must be given, and the flask_app output each comes from.
UWSGI_FROM_FLASK_APP = {"uwsgi_app_name": "flask_app_name", "uwsgi_user": "flask_app_user",
                        "uwsgi_group": "flask_app_group", "uwsgi_virtualenv": "flask_app_venv_dir",
                        "uwsgi_pythonpath": "flask_app_current_dir", "uwsgi_module": "flask_app_module",
                        "uwsgi_chdir": "flask_app_state_dir", "uwsgi_env_file": "flask_app_env_file",
                        "uwsgi_release_file": "flask_app_release_file", "uwsgi_health_path": "flask_app_health_path",
                        "uwsgi_health_status": "flask_app_health_status"}
# What the workers role must be given, and the flask_app output each comes from.
WORKERS_FROM_FLASK_APP = {"workers_app_name": "flask_app_name", "workers_user": "flask_app_user",
                          "workers_group": "flask_app_group", "workers_current_dir": "flask_app_current_dir",
                          "workers_virtualenv": "flask_app_venv_dir", "workers_chdir": "flask_app_state_dir",
                          "workers_env_file": "flask_app_env_file"}
NGINX_WIRED = ("nginx_upstream_servers", "nginx_static_dir", "nginx_extra_groups", "nginx_site_name")
# A web host's firewall rules: nginx's ports from any address.
WEB_RULES = [{"name": "http", "port": 80, "sources": []}, {"name": "https", "port": 443, "sources": []}]


def test_all_in_one_uses_loopback_and_the_unix_socket(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    # This run gathers its facts (no session facts): the plays that read
    # them (vCPUs, memory, release) get them from the playbooks themselves.
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one}, gather=True)
    # The recorders' prepare says release r0 was live: site.yml dumps the
    # database and migrates once.
    # No `monitoring` group: no exporters, Prometheus or monitoring role;
    # no `backupservers` host: no repository host.
    assert set(got) - {"reports"} == set(ROLES) - MONITORING_ROLES - BACKUP_ROLES | {"flask_app:migrate", "postgres:dump"}
    assert got["postgres"]["host1"]["postgres_monitoring_role"] == ""
    assert got["nginx"]["host1"]["nginx_status"] is False
    assert pick(got["postgres"]["host1"], "postgres_app_databases", "postgres_listen_addresses",
                "postgres_app_connections") == {
        "postgres_app_databases": [{"name": "flaskapp", "user": "flaskapp", "password": PASSWORD,
                                    "client_addresses": ["127.0.0.1/32", "::1/128"]}],
        "postgres_listen_addresses": ["localhost"],
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
        "uwsgi_health_path": "", "uwsgi_health_status": 0,
    }
    assert pick(got["nginx"]["host1"], *NGINX_WIRED) == {
        "nginx_upstream_servers": [{"address": "unix:/run/uwsgi/flaskapp/uwsgi.sock"}],
        "nginx_static_dir": "/srv/flaskapp/current/app/static",
        "nginx_extra_groups": ["flaskapp"],
        "nginx_site_name": "flaskapp",
    }
    # One host: HTTP and HTTPS from anywhere, nothing else (the app's socket
    # and the database are local).
    assert got["firewall"]["host1"]["firewall_rules"] == WEB_RULES


def test_an_app_of_its_own_layout_reaches_uwsgi_and_nginx(collections, tmp_path):
    """Every flask_app setting that moves the app moves what uwsgi and nginx are given."""
    one = {"host1": "10.0.0.5"}
    layout = {"flask_app_name": "blog", "flask_app_user": "blogger", "flask_app_group": "writers",
              "flask_app_root": "/opt/apps/blog", "flask_app_module": "blog:create_app()",
              "flask_app_static_subdir": "blog/assets", "flask_app_state_dir": "/var/lib/blog",
              "flask_app_health_path": "/healthz", "flask_app_health_status": 204}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one}, layout)
    app = got["flask_app"]["host1"]
    # Each uwsgi and workers input is the flask_app output of the same meaning ...
    for wanted, source in UWSGI_FROM_FLASK_APP.items():
        assert got["uwsgi"]["host1"][wanted] == app[source], wanted
    for wanted, source in WORKERS_FROM_FLASK_APP.items():
        assert got["workers"]["host1"][wanted] == app[source], wanted
    # ... and those outputs follow the layout.
    assert pick(got["uwsgi"]["host1"], *UWSGI_FROM_FLASK_APP) == {
        "uwsgi_app_name": "blog", "uwsgi_user": "blogger", "uwsgi_group": "writers",
        "uwsgi_virtualenv": "/opt/apps/blog/current/venv", "uwsgi_pythonpath": "/opt/apps/blog/current",
        "uwsgi_module": "blog:create_app()", "uwsgi_chdir": "/var/lib/blog",
        "uwsgi_env_file": "/etc/flaskops/blog.env", "uwsgi_release_file": "/opt/apps/blog/current-release",
        "uwsgi_health_path": "/healthz", "uwsgi_health_status": 204,
    }
    assert pick(got["workers"]["host1"], *WORKERS_FROM_FLASK_APP) == {
        "workers_app_name": "blog", "workers_user": "blogger", "workers_group": "writers",
        "workers_current_dir": "/opt/apps/blog/current", "workers_virtualenv": "/opt/apps/blog/current/venv",
        "workers_chdir": "/var/lib/blog", "workers_env_file": "/etc/flaskops/blog.env",
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
    assert [entry["client_addresses"] for entry in db["postgres_app_databases"]] == [
        ["127.0.0.1/32", "::1/128", "10.0.0.21/32", "10.0.0.22/32"]]
    assert db["postgres_app_connections"] == 2 * PROCESSES
    for app, address in (("app1", "10.0.0.21"), ("app2", "10.0.0.22")):
        assert got["flask_app"][app]["flask_app_database_url"].endswith("@10.0.0.30:5432/flaskapp")
        assert got["uwsgi"][app]["uwsgi_socket"] == f"{address}:3031"
    assert pick(got["nginx"]["lb"], *NGINX_WIRED) == {
        "nginx_upstream_servers": [{"address": "10.0.0.21:3031"}, {"address": "10.0.0.22:3031"}],
        "nginx_static_dir": "", "nginx_extra_groups": [], "nginx_site_name": "flaskapp"}
    # Each tier accepts the one before it only: uWSGI from the web host,
    # PostgreSQL from the app hosts pg_hba admits.
    assert {host: recorded["firewall_rules"] for host, recorded in got["firewall"].items()} == {
        "lb": WEB_RULES,
        "app1": [{"name": "uwsgi flaskapp", "port": 3031, "sources": ["10.0.0.10"]}],
        "app2": [{"name": "uwsgi flaskapp", "port": 3031, "sources": ["10.0.0.10"]}],
        "db": [{"name": "postgresql flaskapp", "port": 5432, "sources": ["10.0.0.21/32", "10.0.0.22/32"]}],
    }


def test_monitoring_scrapes_every_host_on_its_private_address(collections, tmp_path):
    """Prometheus on the database host: the other hosts' exporters listen on
    their private addresses, open to it alone; its own on loopback. Each
    host's exporters get what its roles published."""
    got = passed(collections, tmp_path, {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21"},
                                         "dbservers": {"db": "10.0.0.30"}, "monitoring": {"db": "10.0.0.30"}})
    exporters = got["exporters"]
    assert {host: recorded["exporters_listen_address"] for host, recorded in exporters.items()} == {
        "lb": "10.0.0.10", "app1": "10.0.0.21", "db": "127.0.0.1"}
    assert pick(exporters["lb"], "exporters_nginx_status_url", "exporters_nginx_access_logs",
                "exporters_tls_certificates", "exporters_uwsgi_sockets", "exporters_postgres_role") == {
        "exporters_nginx_status_url": "http://127.0.0.1:8080/stub_status",
        "exporters_nginx_access_logs": ["/var/log/nginx/flaskapp.access.log"],
        "exporters_tls_certificates": {"flaskapp": "/etc/nginx/tls/flaskapp.selfsigned.crt"},
        "exporters_uwsgi_sockets": {}, "exporters_postgres_role": ""}
    assert pick(exporters["app1"], "exporters_nginx_status_url", "exporters_uwsgi_sockets",
                "exporters_pgbackrest_stanzas") == {
        "exporters_nginx_status_url": "", "exporters_uwsgi_sockets": {"flaskapp": "10.0.0.21:3031"},
        "exporters_pgbackrest_stanzas": []}
    assert pick(exporters["db"], "exporters_postgres_role", "exporters_postgres_socket_dir",
                "exporters_pgbackrest_stanzas", "exporters_nginx_access_logs") == {
        "exporters_postgres_role": "prometheus", "exporters_postgres_socket_dir": "/var/run/postgresql",
        "exporters_pgbackrest_stanzas": [{"stanza": "main", "max_age": 93600}], "exporters_nginx_access_logs": []}
    # nginx serves the stub_status page the exporter reads; the role the
    # exporter logs in as is the one the postgres role creates.
    assert got["nginx"]["lb"]["nginx_status"] is True
    assert got["postgres"]["db"]["postgres_monitoring_role"] == "prometheus"
    # Only the monitoring host may reach the exporters of the others.
    rules = {host: [rule for rule in recorded["firewall_rules"] if rule["port"] in (9100, 9113, 3903, 9187)]
             for host, recorded in got["firewall"].items()}
    assert rules == {
        "lb": [{"name": "node exporter", "port": 9100, "sources": ["10.0.0.30"]},
               {"name": "nginx exporter", "port": 9113, "sources": ["10.0.0.30"]},
               {"name": "mtail", "port": 3903, "sources": ["10.0.0.30"]}],
        "app1": [{"name": "node exporter", "port": 9100, "sources": ["10.0.0.30"]}],
        "db": []}
    assert set(got["prometheus"]) == {"db"}
    assert sorted(got["prometheus"]["db"]["prometheus_scrape_targets"], key=lambda t: (t["host"], t["job"])) == [
        {"job": "node", "address": "10.0.0.21:9100", "host": "app1"},
        {"job": "node", "address": "127.0.0.1:9100", "host": "db"},
        {"job": "postgres", "address": "127.0.0.1:9187", "host": "db"},
        {"job": "mtail", "address": "10.0.0.10:3903", "host": "lb"},
        {"job": "nginx", "address": "10.0.0.10:9113", "host": "lb"},
        {"job": "node", "address": "10.0.0.10:9100", "host": "lb"}]
    # A run limited to the monitoring host knows no other host's exporters:
    # Prometheus' configuration is left as it is rather than cut down.
    got = passed(collections, tmp_path, {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21"},
                                         "dbservers": {"db": "10.0.0.30"}, "monitoring": {"db": "10.0.0.30"}},
                 limit="db")
    assert set(got["exporters"]) == {"db"} and "prometheus" not in got


def test_a_backup_host_keeps_the_repository_and_each_end_lets_the_other_in(collections, tmp_path):
    """With a backupservers host: it gets the database host's address, data
    directory, key and the postgres role's backup policy; the database host
    gets its address and key; each firewall lets the other in on SSH."""
    got = passed(collections, tmp_path, {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21"},
                                         "dbservers": {"db": "10.0.0.30"}, "backupservers": {"backup": "10.0.0.40"}},
                 extra={"postgres_pitr_retention_full": 3})
    assert set(got["backup_repository"]) == {"backup"} and set(got["backup_repository:stanza"]) == {"backup"}
    assert pick(got["backup_repository"]["backup"], "backup_repository_stanza", "backup_repository_pg_host",
                "backup_repository_pg_path", "backup_repository_pg_client_key", "backup_repository_pg_host_key",
                "backup_repository_pg_version", "backup_repository_retention_full", "backup_repository_retention_diff",
                "backup_repository_compress_type", "backup_repository_full_on_calendar") == {
        "backup_repository_stanza": "main", "backup_repository_pg_host": "10.0.0.30",
        "backup_repository_pg_path": "/var/lib/postgresql/15/main",
        "backup_repository_pg_client_key": "ssh-ed25519 AAAApostgres postgres@db",
        "backup_repository_pg_host_key": "ssh-ed25519 AAAAhost-db", "backup_repository_pg_version": "2.45",
        "backup_repository_retention_full": 3, "backup_repository_retention_diff": 7,
        "backup_repository_compress_type": "zst", "backup_repository_full_on_calendar": "Sun *-*-* 01:30:00"}
    assert got["backup_repository:stanza"]["backup"]["backup_repository_first_backup"] is True
    assert pick(got["postgres"]["db"], "postgres_pitr_repo_host", "postgres_pitr_repo_host_user",
                "postgres_pitr_repo_host_key", "postgres_pitr_repo_client_key", "postgres_pitr_repo_version") == {
        "postgres_pitr_repo_host": "10.0.0.40", "postgres_pitr_repo_host_user": "pgbackrest",
        "postgres_pitr_repo_host_key": "ssh-ed25519 AAAAhost-backup",
        "postgres_pitr_repo_client_key": "ssh-ed25519 AAAArepository pgbackrest@backup",
        "postgres_pitr_repo_version": "2.45"}
    rules = {host: [rule for rule in recorded["firewall_rules"] if rule["name"] == "pgbackrest ssh"]
             for host, recorded in got["firewall"].items()}
    assert rules == {"lb": [], "app1": [], "db": [{"name": "pgbackrest ssh", "sources": ["10.0.0.40"], "port": 22}],
                     "backup": [{"name": "pgbackrest ssh", "sources": ["10.0.0.30"], "port": 22}]}


def test_a_backup_host_that_is_the_database_host_is_refused(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    failed = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one, "backupservers": one},
                    fails=True)
    assert "The backupservers group must hold one host at most" in failed["failures"], failed["output"][-2000:]


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
    assert got["postgres"]["a"]["postgres_app_databases"][0]["client_addresses"][2:] == ["10.0.0.2/32"]
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
    assert set(got) - {"reports"} == {"nginx"}
    assert pick(got["nginx"]["host1"], "nginx_upstream_servers", "nginx_extra_groups") == {
        "nginx_upstream_servers": [{"address": "unix:/run/uwsgi/blog/uwsgi.sock"}], "nginx_extra_groups": ["blog"]}


@pytest.mark.parametrize("playbook, rollback", [("deploy", False), ("rollback", True)])
def test_deploy_and_rollback_pass_the_app_roles_what_site_does(collections, tmp_path, playbook, rollback):
    layout = {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
              "dbservers": {"db": "10.0.0.30"}}
    site = passed(collections, tmp_path, layout)
    got = passed(collections, tmp_path, layout, playbook=playbook)
    # Only the app hosts' roles run, each host once (one host at a time),
    # taken out of the upstream around its switch; a deploy also dumps the
    # database and migrates once, a rollback neither.
    assert set(got) - {"reports"} == {"flask_app", "uwsgi", "workers", "nginx:upstream"} | (
        set() if rollback else {"flask_app:migrate", "postgres:dump"})
    if not rollback:
        assert list(got["flask_app:migrate"]) == ["app1"]
        assert list(got["postgres:dump"]) == ["db"]
    assert got["uwsgi"] == site["uwsgi"]
    assert got["workers"] == site["workers"]
    for app in ("app1", "app2"):
        expected = dict(site["flask_app"][app], **({"flask_app_rollback": True} if rollback else {}))
        assert got["flask_app"][app] == expected


# A second app unlike the first: its own entry point, static dir, health
# path, names and sizing, and its own database password.
LINKS = {"name": "links", "flask_app_module": "links:create_app()", "flask_app_static_subdir": "links/assets",
         "flask_app_health_path": "/healthz", "nginx_server_name": "links.example.test", "uwsgi_processes": 3,
         "postgres_app_password": "links-pw", "flask_app_env": {"LINKS_GREETING": "hi"}}


def test_two_apps_on_one_host_each_get_their_own_everything(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, LINKS]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps, "uwsgi_threads": 2})
    first, second = "host1", "host1/links"
    assert got["flask_app"][first]["flask_app_name"] == "flaskapp"
    assert pick(got["flask_app"][second], "flask_app_name", "flask_app_module", "flask_app_static_subdir",
                "flask_app_health_path", "flask_app_env") == {
        "flask_app_name": "links", "flask_app_module": "links:create_app()", "flask_app_static_subdir": "links/assets",
        "flask_app_health_path": "/healthz", "flask_app_env": {"LINKS_GREETING": "hi"}}
    # What the first app does not set stays the inventory's or the role's.
    assert got["flask_app"][first]["flask_app_module"] == "wsgi:application"
    assert got["flask_app"][first]["flask_app_env"] == {}
    assert got["flask_app"][second]["flask_app_database_url"] == (
        "postgresql://links:links-pw@127.0.0.1:5432/links")
    assert got["flask_app"][first]["flask_app_database_url"] == (
        "postgresql://flaskapp:s3cret/with%40odd%3Achars@127.0.0.1:5432/flaskapp")
    # uWSGI: each app its own unit, published layout and sizing; the
    # inventory's uwsgi_threads reaches both.
    assert pick(got["uwsgi"][second], "uwsgi_app_name", "uwsgi_user", "uwsgi_module", "uwsgi_processes",
                "uwsgi_threads", "uwsgi_health_path", "uwsgi_socket") == {
        "uwsgi_app_name": "links", "uwsgi_user": "links", "uwsgi_module": "links:create_app()",
        "uwsgi_processes": 3, "uwsgi_threads": 2, "uwsgi_health_path": "/healthz", "uwsgi_socket": ""}
    assert pick(got["uwsgi"][first], "uwsgi_processes", "uwsgi_threads") == {
        "uwsgi_processes": PROCESSES, "uwsgi_threads": 2}
    # nginx: a site per app, by server name; only the first is the default
    # (and its site is written last).
    sites = {recorded["nginx_site_name"]: recorded for recorded in got["nginx"].values()}
    assert list(sites) == ["links", "flaskapp"]
    for name, server_name, default, static in (
            ("flaskapp", "flaskapp.example.test", True, "/srv/flaskapp/current/app/static"),
            ("links", "links.example.test", False, "/srv/links/current/links/assets")):
        assert pick(sites[name], "nginx_site_name", "nginx_server_name", "nginx_default_server",
                    "nginx_static_dir", "nginx_upstream_servers", "nginx_extra_groups") == {
            "nginx_site_name": name, "nginx_server_name": server_name, "nginx_default_server": default,
            "nginx_static_dir": static, "nginx_upstream_servers": [{"address": f"unix:/run/uwsgi/{name}/uwsgi.sock"}],
            "nginx_extra_groups": [name]}
    # PostgreSQL: a database, role and password per app; connections for both.
    assert got["postgres"]["host1"]["postgres_app_databases"] == [
        {"name": "flaskapp", "user": "flaskapp", "password": PASSWORD, "client_addresses": ["127.0.0.1/32", "::1/128"]},
        {"name": "links", "user": "links", "password": "links-pw", "client_addresses": ["127.0.0.1/32", "::1/128"]}]
    assert got["postgres"]["host1"]["postgres_app_connections"] == (PROCESSES + 3) * 2
    assert got["postgres"]["host1"]["postgres_kept_databases"] == []


def test_the_default_server_is_the_app_named_by_flaskops_default_app(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, LINKS]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps, "flaskops_default_app": "links"}, tags="nginx")
    sites = {recorded["nginx_site_name"]: recorded for recorded in got["nginx"].values()}
    assert list(sites) == ["flaskapp", "links"]
    assert sites["flaskapp"]["nginx_default_server"] is False
    assert sites["links"]["nginx_default_server"] is True


def test_two_apps_split_over_the_app_hosts(collections, tmp_path):
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test", "hosts": ["app1"]},
            dict(LINKS, hosts=["app2"])]
    got = passed(collections, tmp_path, {"webservers": {"lb": "10.0.0.10"},
                                         "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
                                         "dbservers": {"db": "10.0.0.30"}}, {"flaskops_apps": apps})
    # Each app only on its own host, on its own port.
    assert {key: value["flask_app_name"] for key, value in got["flask_app"].items()} == {
        "app1": "flaskapp", "app2": "links"}
    assert got["uwsgi"]["app1"]["uwsgi_socket"] == "10.0.0.21:3031"
    assert got["uwsgi"]["app2"]["uwsgi_socket"] == "10.0.0.22:3032"
    # An app's unit is taken off the app hosts its `hosts` leave out (where
    # it was moved from; a no-op where it never ran).
    assert {key: value["uwsgi_app_name"] for key, value in got["uwsgi:remove"].items()} == {
        "app1": "links", "app2": "flaskapp"}
    assert {key: value["workers_app_name"] for key, value in got["workers:remove"].items()} == {
        "app1": "links", "app2": "flaskapp"}
    sites = {recorded["nginx_site_name"]: recorded for recorded in got["nginx"].values()}
    assert sites["flaskapp"]["nginx_upstream_servers"] == [{"address": "10.0.0.21:3031"}]
    assert sites["links"]["nginx_upstream_servers"] == [{"address": "10.0.0.22:3032"}]
    assert sites["links"]["nginx_static_dir"] == ""
    # Each app's role may log in only from that app's host.
    assert [(entry["name"], entry["client_addresses"][2:]) for entry in got["postgres"]["db"]["postgres_app_databases"]
            ] == [("flaskapp", ["10.0.0.21/32"]), ("links", ["10.0.0.22/32"])]
    assert got["postgres"]["db"]["postgres_app_connections"] == max(PROCESSES + 3, 20)
    # Each app's ports are open to its own peers only.
    assert {host: recorded["firewall_rules"] for host, recorded in got["firewall"].items()} == {
        "lb": WEB_RULES,
        "app1": [{"name": "uwsgi flaskapp", "port": 3031, "sources": ["10.0.0.10"]}],
        "app2": [{"name": "uwsgi links", "port": 3032, "sources": ["10.0.0.10"]}],
        "db": [{"name": "postgresql flaskapp", "port": 5432, "sources": ["10.0.0.21/32"]},
               {"name": "postgresql links", "port": 5432, "sources": ["10.0.0.22/32"]}],
    }


def test_each_app_migrates_once_on_one_of_its_hosts_after_a_dump_of_its_database(collections, tmp_path):
    layout = {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
              "dbservers": {"db": "10.0.0.30"}}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test", "flask_app_release": "v2"},
            dict(LINKS, hosts=["app2"], flask_app_release="l7"),
            {"name": "quiet", "nginx_server_name": "quiet.example.test", "flask_app_init_command": [],
             "postgres_app_password": "x"}]
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps}, playbook="deploy")
    # flaskapp runs on both app hosts and migrates on the first only; an app
    # without an init command neither migrates nor is dumped.
    assert {key: value["flask_app_name"] for key, value in got["flask_app:migrate"].items()} == {
        "app1": "flaskapp", "app2": "links"}
    assert {key: (value["postgres_dump_databases"], value["postgres_dump_label"])
            for key, value in got["postgres:dump"].items()} == {
        "db": (["flaskapp"], "before-v2"), "db/links": (["links"], "before-l7")}
    # Each migration's report names the dump of its own database.
    assert got["reports"]["migrate flaskapp"] == {
        "app1": "app flaskapp: database flaskapp dumped to /dumps/flaskapp-before-v2.dump on db"
                " before migrating to release v2"}
    assert got["reports"]["migrate links"] == {
        "app2": "app links: database links dumped to /dumps/links-before-l7.dump on db before migrating to release l7"}

    off = passed(collections, tmp_path, layout, {"flaskops_apps": apps, "flaskops_migration_dump": False},
                 playbook="deploy")
    assert "postgres:dump" not in off
    assert off["reports"]["migrate links"] == {
        "app2": "app links: no dump before migrating (flaskops_migration_dump is false)"}
    assert sorted(value["flask_app_name"] for value in off["flask_app:migrate"].values()) == ["flaskapp", "links"]

    # A --limit that leaves the database host out: no dump, so no migration.
    limited = passed(collections, tmp_path, layout, {"flaskops_apps": apps}, playbook="deploy", limit="lb,app1,app2",
                     fails=True)
    text = " ".join(limited["output"].split())
    # app1 (flaskapp) and app2 (links) each stop; which one Ansible runs
    # first, and so reports before the run ends, varies.
    assert re.search(r"app (flaskapp|links): no dump of database \1 before migrating to release (v2|l7): the database"
                     r" host db is not in this run \(--limit\?\)", text), text[-3000:]
    assert "Record what the play passes the role at migrate" not in text

    # Hosts that built different releases of one app: nothing is dumped or migrated.
    apart = passed(collections, tmp_path, layout, {"flaskops_apps": apps[:1] + [dict(apps[2], flask_app_release="")],
                                                   "wiring_release_per_host": True}, playbook="deploy", fails=True)
    text = " ".join(apart["output"].split())
    assert "app quiet: its hosts built different releases (app1 r1-app1 repo@c1, app2 r1-app2 repo@c1)" in text, \
        text[-3000:]
    assert "Record what the play passes the role at" not in text
    # One name (flask_app_release), two commits.
    apart = passed(collections, tmp_path, layout, {"flaskops_apps": apps[:1],
                                                   "wiring_origin_per_host": {"app1": "repo@c1", "app2": "repo@c2"}},
                   playbook="deploy", fails=True)
    text = " ".join(apart["output"].split())
    assert "app flaskapp: its hosts built different releases (app1 v2 repo@c1, app2 v2 repo@c2)" in text, text[-3000:]


def test_a_deploy_takes_each_app_host_out_of_the_upstreams_around_its_switch(collections, tmp_path):
    layout = {"webservers": {"lb1": "10.0.0.10", "lb2": "10.0.0.11"},
              "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"}, "dbservers": {"db": "10.0.0.30"}}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, dict(LINKS, hosts=["app2"])]
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps}, playbook="deploy")
    calls = {key: pick(value, "nginx_upstream_action", "nginx_site_name", "nginx_upstream_address", "nginx_upstream_hosts")
             for key, value in got["nginx:upstream"].items()}
    # flaskapp runs on both app hosts: each leaves both load balancers'
    # upstream and comes back. links runs on app2 alone: it stays in.
    assert calls == {
        "app1": {"nginx_upstream_action": "drain", "nginx_site_name": "flaskapp",
                 "nginx_upstream_address": "10.0.0.21:3031", "nginx_upstream_hosts": ["lb1", "lb2"]},
        "app1/flaskapp/return": {"nginx_upstream_action": "return", "nginx_site_name": "flaskapp",
                                 "nginx_upstream_address": "10.0.0.21:3031", "nginx_upstream_hosts": ["lb1", "lb2"]},
        "app2": {"nginx_upstream_action": "drain", "nginx_site_name": "flaskapp",
                 "nginx_upstream_address": "10.0.0.22:3031", "nginx_upstream_hosts": ["lb1", "lb2"]},
        "app2/flaskapp/return": {"nginx_upstream_action": "return", "nginx_site_name": "flaskapp",
                                 "nginx_upstream_address": "10.0.0.22:3031", "nginx_upstream_hosts": ["lb1", "lb2"]},
    }
    # Every app host at once (site.yml; or a batch of all of them) leaves
    # none to take the traffic: nothing is drained, as with
    # flaskops_deploy_drain false.
    for playbook, extra in (("site", {}), ("deploy", {"flaskops_deploy_serial": 2}), ("deploy", {"flaskops_deploy_drain": False})):
        assert "nginx:upstream" not in passed(collections, tmp_path, layout, {"flaskops_apps": apps},
                                              playbook=playbook, extra_vars=extra), (playbook, extra)
    # Nor is a host whose release and environment stay (the recorder's live
    # release is r0); its return runs, for a mark a stopped run left.
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps}, playbook="deploy",
                 extra_vars={"flask_app_release": "r0"})
    assert {key: value["nginx_upstream_action"] for key, value in got["nginx:upstream"].items()} == {
        "app1": "return", "app2": "return"}
    # The same release with a changed environment restarts uWSGI: drained.
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps},
                 playbook="deploy", extra_vars={"flask_app_release": "r0", "wiring_environment_changed": True})
    assert sorted(got["nginx:upstream"]) == ["app1", "app1/flaskapp/return", "app2", "app2/flaskapp/return"]


def test_a_host_that_fails_its_switch_stops_the_later_batches(collections, tmp_path):
    layout = {"webservers": {"lb": "10.0.0.10"}, "dbservers": {"db": "10.0.0.30"},
              "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22", "app3": "10.0.0.23"}}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}]
    # Batches of two: app1 fails beside app2, which finishes; app3 is not switched.
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps, "wiring_fail_uwsgi_on": ["app1"]},
                 playbook="deploy", extra_vars={"flaskops_deploy_serial": 2}, fails=True)
    text = " ".join(got["output"].split())
    assert "app1 failed earlier in this roll: app3 stays on the release it has" in text, text[-3000:]
    # app1's own failure: switched back, and why.
    assert ('"app flaskapp: release r1 failed on app1; the host is back on release r0, which answers.",'
            ' "the test makes uwsgi fail here"') in text, text[-3000:]


@pytest.mark.parametrize("playbook, selection", [("deploy", "links"), ("rollback", ["links"]), ("site", "links")])
def test_deploy_and_rollback_roll_only_the_apps_named(collections, tmp_path, playbook, selection):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, LINKS]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps}, playbook=playbook, extra_vars={"flaskops_deploy_apps": selection})
    rolled = sorted(recorded["flask_app_name"] for recorded in got["flask_app"].values())
    # site.yml converges every app whatever flaskops_deploy_apps says.
    assert rolled == (["flaskapp", "links"] if playbook == "site" else ["links"])
    assert sorted(recorded["uwsgi_app_name"] for recorded in got["uwsgi"].values()) == rolled
    # Neither app is taken off: flaskapp is only left alone.
    assert "uwsgi:remove" not in got and "workers:remove" not in got


@pytest.mark.parametrize("selection", ["blog", "", ["flaskapp", "gone"]])
def test_deploy_of_an_unknown_app_fails_before_any_change(collections, tmp_path, selection):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, dict(LINKS, state="absent")]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps}, playbook="deploy", extra_vars={"flaskops_deploy_apps": selection},
                 fails=True)
    assert "flaskops_deploy_apps must name apps of flaskops_apps that are not absent (flaskapp)" in " ".join(
        got["output"].split())
    assert "Record what the play passes the role" not in got["output"]


def test_a_rollback_to_a_named_release_goes_with_one_app(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    groups = {"webservers": one, "appservers": one, "dbservers": one}
    apps = {"flaskops_apps": [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, LINKS]}
    got = passed(collections, tmp_path, groups, apps, playbook="rollback",
                 extra_vars={"flask_app_rollback_release": "v1.2", "flaskops_deploy_apps": "links"})
    assert [(recorded["flask_app_name"], recorded["flask_app_rollback_release"])
            for recorded in got["flask_app"].values()] == [("links", "v1.2")]
    refused = passed(collections, tmp_path, groups, apps, playbook="rollback",
                     extra_vars={"flask_app_rollback_release": "v1.2"}, fails=True)
    assert ("flask_app_rollback_release names a release of one app: name that app with flaskops_deploy_apps "
            "(this run would roll flaskapp, links)") in " ".join(refused["output"].split())
    assert "Record what the play passes the role" not in refused["output"]


def test_a_rollback_release_that_is_not_a_directory_name_fails_before_any_change(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one}, playbook="rollback",
                 extra_vars={"flask_app_rollback_release": "../state"}, fails=True)
    assert ("flask_app_rollback_release must be a release's directory name (letters, digits, . _ + -), "
            "got '../state'") in " ".join(got["output"].split())
    assert "Record what the play passes the role" not in got["output"]


def test_an_absent_app_is_taken_off_and_its_database_kept_out_of_pg_hba_but_backed_up(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "flaskapp.example.test"}, dict(LINKS, state="absent")]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps})
    # The present app is deployed as before, the absent one not at all ...
    assert list(got["flask_app"]) == list(got["uwsgi"]) == list(got["nginx"]) == ["host1"]
    assert got["nginx"]["host1"]["nginx_site_name"] == "flaskapp"
    # ... its unit and site are taken off ...
    assert got["uwsgi:remove"]["host1"]["uwsgi_app_name"] == "links"
    assert got["workers:remove"]["host1"]["workers_app_name"] == "links"
    assert got["nginx:remove"]["host1"]["nginx_site_name"] == "links"
    # ... and its role may no longer log in (its database is not dropped).
    assert [entry["name"] for entry in got["postgres"]["host1"]["postgres_app_databases"]] == ["flaskapp"]
    assert got["postgres"]["host1"]["postgres_app_connections"] == 20
    # Its data stays, so the backups still dump it.
    assert got["postgres"]["host1"]["postgres_kept_databases"] == ["links"]


@pytest.mark.parametrize("apps, message", [
    ([{"name": "flaskapp"}, dict(LINKS, flask_app_modul="x:y")], "flaskops_apps[links]: each app needs"),
    ([{"name": "flaskapp"}, dict(LINKS, flask_app_modul="x:y")], "Unknown: flask_app_modul"),
    ([{"name": "flaskapp"}, dict(LINKS, name="flaskapp")], "flaskops_apps[flaskapp]: each app needs a unique"),
    ([{"name": "Flask App"}], "flaskops_apps[Flask App]"),
    ([{"name": "flaskapp"}, {"flask_app_module": "x:y"}], "flaskops_apps[1]: each app needs a unique `name`"),
    (["links"], "flaskops_apps[0]: each app needs a unique `name`"),
    ([{"name": "flaskapp"}, dict(LINKS, state="gone")], "`state` present or absent"),
    ([{"name": "my-app", "nginx_server_name": "a.test"}, dict(LINKS, name="my_app")], "would share a site or database name"),
    ([{"name": "flaskapp", "nginx_server_name": "a.test", "port": 3032}, LINKS], "or a uWSGI port (3032, 3032;"),
    ([dict(LINKS, state="absent")], "flaskops_default_app must name an app of flaskops_apps that is not absent"),
    ([{"name": "flaskapp"}, dict(LINKS, hosts=["elsewhere"])], "lists hosts of the appservers group (host1)"),
    ([{"name": "flaskapp", "nginx_server_name": "links.example.test"}, LINKS],
     "share a name (links.example.test)"),
    ([{"name": "flaskapp", "nginx_server_name": "a.test"}, {k: v for k, v in LINKS.items() if k != "postgres_app_password"}],
     "flaskops_apps[links]: set its postgres_app_password"),
])
def test_a_wrong_app_entry_fails_before_any_change_naming_it(collections, tmp_path, apps, message):
    one = {"host1": "10.0.0.5"}
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps}, fails=True)
    assert message in got["failures"], got["failures"] or got["output"][-3000:]
    # Nothing ran: the check is in the first play, before any role.
    assert "Record what the play passes the role" not in got["output"]


@pytest.mark.parametrize(("bad", "message"), [
    ({"uwsgi_processes": 0}, "uwsgi_processes must be a whole number from 1 to 1024, got 0"),
    ({"uwsgi_options": "master = false"}, "uwsgi_options must be a mapping"),
])
def test_a_bad_uwsgi_value_of_the_second_app_fails_before_the_first_is_deployed(
        collections, tmp_path, bad, message):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "a.test"}, dict(LINKS, **bad)]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps}, fails=True)
    assert message in got["failures"], got["failures"]
    # The app servers' play stopped in its checks: no app role ran there.
    for role in ("flask_app", "uwsgi"):
        assert f"flaskops.stack.{role} : Record what the play passes the role" not in got["output"], role


def test_a_host_wide_layout_setting_is_refused_with_several_apps(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "a.test"}, LINKS]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps, "flask_app_root": "/opt/app"}, fails=True)
    assert "With several apps, flask_app_root would apply to every app alike" in " ".join(got["output"].split())


def test_skipping_the_app_tag_still_wires_uwsgi_and_nginx(collections, tmp_path):
    one = {"host1": "10.0.0.5"}
    apps = [{"name": "flaskapp", "nginx_server_name": "a.test"}, LINKS]
    got = passed(collections, tmp_path, {"webservers": one, "appservers": one, "dbservers": one},
                 {"flaskops_apps": apps}, skip_tags="app")
    assert "flask_app" not in got
    assert {recorded["uwsgi_module"] for recorded in got["uwsgi"].values()} == {"wsgi:application",
                                                                                "links:create_app()"}
    assert {recorded["nginx_static_dir"] for recorded in got["nginx"].values()} == {
        "/srv/flaskapp/current/app/static", "/srv/links/current/links/assets"}


def test_the_database_alone_still_counts_every_app_hosts_connections(collections, tmp_path):
    layout = {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
              "dbservers": {"db": "10.0.0.30"}}
    apps = [{"name": "flaskapp"}, dict(LINKS, hosts=["app2"])]
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps}, limit="db")
    assert set(got) - {"reports"} == {"base", "firewall", "postgres"}
    # The database host alone still admits every app's hosts through its firewall.
    assert got["firewall"]["db"]["firewall_rules"] == [
        {"name": "postgresql flaskapp", "port": 5432, "sources": ["10.0.0.21/32", "10.0.0.22/32"]},
        {"name": "postgresql links", "port": 5432, "sources": ["10.0.0.22/32"]}]
    # flaskapp on both hosts, links (3 processes) on app2; 1 thread each.
    assert got["postgres"]["db"]["postgres_app_connections"] == 2 * PROCESSES + 3


def test_the_connection_budget_sizes_default_workers_as_the_uwsgi_role_does(collections, tmp_path):
    """Without uwsgi_processes, each app's workers come from its host's vCPUs and
    workload (filter uwsgi_processes), for the hosts outside --limit too."""
    layout = {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21", "app2": "10.0.0.22"},
              "dbservers": {"db": "10.0.0.30"}}
    io_app = {"name": "links", "hosts": ["app2"], "nginx_server_name": "b.test", "postgres_app_password": "x2",
              "uwsgi_workload": "io", "uwsgi_threads": 2}
    apps = [{"name": "flaskapp", "nginx_server_name": "a.test"}, io_app]
    got = passed(collections, tmp_path, layout, {"flaskops_apps": apps,
                                                 "uwsgi_processes": None}, limit="db")
    vcpus = os.cpu_count()
    # flaskapp ("cpu": 2 per vCPU, 1 thread) on both hosts, links ("io": 4 per vCPU, 2 threads) on app2.
    expected = 2 * (2 * vcpus) + 4 * vcpus * 2
    assert got["postgres"]["db"]["postgres_app_connections"] == max(expected, 20)


def test_the_per_app_keys_are_the_ones_the_plays_pass(collections):
    """flaskops_app_keys (roles/flaskops) lists what an entry may set; flaskops_app_vars passes exactly those."""
    wiring = yaml.safe_load((REPO / "playbooks/roles/flaskops/vars/main.yml").read_text())["flaskops_app_keys"]
    passed_vars = yaml.safe_load((REPO / "playbooks/roles/flaskops_app_vars/vars/main.yml").read_text())
    for role in ("flask_app", "uwsgi", "nginx"):
        through_filter = {name for name, value in passed_vars.items()
                          if f"app_var('{name}'," in str(value) and name.startswith(role)}
        assert through_filter == set(wiring[role]), role


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("tls", [True, False])
def test_apps_on_other_hosts_verify_the_database_with_its_ca(collections, tmp_path, tls):
    # The postgres role publishes its CA as postgres_tls_ca_certificate on
    # the database host (set here in the inventory, as its play would).
    layout = {"webservers": {"lb": "10.0.0.10"}, "appservers": {"app1": "10.0.0.21", "db": "10.0.0.30"},
              "dbservers": {"db": "10.0.0.30"}}
    got = passed(collections, tmp_path, layout, {"postgres_tls_ca_certificate": PEM, "postgres_tls": tls})
    # app1 reaches the database over the network; db itself over loopback.
    assert got["flask_app"]["app1"]["flask_app_database_ca_certificate"] == (PEM if tls else "")
    assert got["flask_app"]["db"]["flask_app_database_ca_certificate"] == ""
    assert got["flask_app"]["db"]["flask_app_database_url"].endswith("@127.0.0.1:5432/flaskapp")
