"""Helpers shared by the testinfra suites of every Molecule scenario.

A scenario's tests/conftest.py puts this directory on sys.path and imports
what it needs: `from flaskops_testinfra import http, run_converge`.
"""

from __future__ import annotations

from pathlib import Path

# Scripts the tests run inside a host with its python3 (host_clients/README.md).
HOST_CLIENTS = Path(__file__).resolve().parent / "host_clients"
# Where client() puts them on a host: persistent (not /tmp, a tmpfs that a
# restart of the host empties), readable by all, holding no secret.
HOST_CLIENTS_DIR = "/opt/flaskops-test-clients"
_clients_on: set[str] = set()


def client(host, name: str) -> str:
    """The path on host of host_clients/<name>.py, copied there (with the
    whole directory) on the first call for that host in this session."""
    import base64
    import io
    import tarfile

    key = host.backend.get_hostname()
    if key not in _clients_on:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for path in sorted(HOST_CLIENTS.glob("*.py")):
                tar.add(path, arcname=path.name)
        host.check_output("mkdir -p %s && printf %s %s | base64 -d | tar -xzf - -C %s --no-same-owner",
                          HOST_CLIENTS_DIR, "%s", base64.b64encode(archive.getvalue()).decode(), HOST_CLIENTS_DIR)
        _clients_on.add(key)
    return f"{HOST_CLIENTS_DIR}/{name}.py"


class Response:
    """What a request made from inside the host got back."""

    def __init__(self, raw: dict) -> None:
        self.status: int = raw["status"]
        # Every header line as sent, in order.
        self.header_lines: list[tuple[str, str]] = [tuple(pair) for pair in raw["headers"]]
        # Repeated headers are joined with ", " as HTTP allows.
        self.headers: dict[str, str] = {}
        for name, value in raw["headers"]:
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        self.body: str = raw["body"]


def http(host, url: str, method: str = "GET", headers: dict[str, str] | None = None, body: str = "",
         verify_tls: bool = False, body_size: int = 0) -> Response:
    """Make an HTTP(S) request from inside the host (no redirects followed).

    Traffic stays inside the host (its loopback) or the project's own containers.
    """
    import json

    out = host.check_output("python3 %s %s %s %s %s %s %s", client(host, "http_request"), method, url,
                            json.dumps(headers or {}), body, "1" if verify_tls else "0", str(body_size))
    return Response(json.loads(out))


def uwsgi_request(host, where: str, path: str = "/", method: str = "GET", headers: dict[str, str] | None = None,
                  body: str = "") -> Response:
    """Send one request over the uwsgi protocol to a uWSGI socket, from inside the host."""
    import json

    out = host.check_output("python3 %s %s %s %s %s %s", client(host, "uwsgi_request"), where, method, path,
                            json.dumps(headers or {}), body)
    return Response(json.loads(out))


def uwsgi_stats(host, socket_path: str) -> dict:
    """What uWSGI's stats server says (workers, their request counters...), read inside the host."""
    import json

    return json.loads(host.check_output("python3 %s %s", client(host, "uwsgi_stats"), socket_path))


def uwsgi_requests_served(host, socket_path: str) -> int:
    """Requests uWSGI's workers have answered so far (a worker counts one a
    moment after the client has its response)."""
    return sum(worker["requests"] for worker in uwsgi_stats(host, socket_path)["workers"])


def put_file(host, path: str, content: bytes) -> None:
    """Write a file inside the host from the controller (its directory is created)."""
    import base64

    host.check_output("mkdir -p %s && printf %s %s | base64 -d > %s", path.rsplit("/", 1)[0], "%s",
                      base64.b64encode(content).decode(), path)


def tls_handshake(host, low: str, high: str, ciphers: str = "ALL", port: int = 443) -> list[str]:
    """One handshake from inside the host with TLS versions low..high ("1.0".."1.3") and an OpenSSL cipher list."""
    import json

    return json.loads(host.check_output("python3 %s %s handshake %s %s %s", client(host, "tls_probe"), str(port),
                                        low, high, ciphers))


def tls_suites(host, auth: str, port: int = 443) -> dict[str, list[str]]:
    """Every TLS 1.2 suite the host's client can offer for a certificate of this
    kind ("auth-ecdsa" or "auth-rsa"), and anonymous ones, each tried alone."""
    import json

    return json.loads(host.check_output("python3 %s %s suites %s", client(host, "tls_probe"), str(port), auth))


# The distribution's PostgreSQL per Debian release.
POSTGRES_VERSIONS = {"12": "15", "13": "17"}


def postgres_version(host) -> str:
    """The PostgreSQL major version the host's Debian release ships."""
    return POSTGRES_VERSIONS[host.check_output("cut -d. -f1 /etc/debian_version")]


def postgres_unit(host) -> str:
    """The systemd unit of the host's main PostgreSQL cluster."""
    return f"postgresql@{postgres_version(host)}-main"


def main_pid(host, unit: str) -> int:
    """The main PID systemd has for a unit (0 when it has none)."""
    return int(host.check_output("systemctl show -p MainPID --value %s", unit))


# The timers of a database host's scheduled backups, its repository on its own
# disk: its dumps, pgBackRest's full and differential backups.
BACKUP_TIMERS = ["flaskops-postgres-backup.timer", "flaskops-pgbackrest-backup@full.timer",
                 "flaskops-pgbackrest-backup@diff.timer"]


def stopped_and_started(host, unit: str) -> tuple[int, int]:
    """When unit last became inactive and last became active (CLOCK_MONOTONIC, us; 0: never)."""
    shown = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show -p InactiveEnterTimestampMonotonic -p ActiveEnterTimestampMonotonic %s", unit).splitlines())
    return int(shown["InactiveEnterTimestampMonotonic"]), int(shown["ActiveEnterTimestampMonotonic"])


def paused_and_resumed(host, unit: str, before: tuple[int, int], around: tuple[int, int] | None = None) -> bool:
    """unit, seen at before (stopped_and_started), stopped since and started again, and is active;
    with around (another unit's stopped_and_started), stopped before that unit stopped and
    started after it started."""
    stopped, started = stopped_and_started(host, unit)
    ordered = around is None or (stopped <= around[0] and started >= around[1])
    return stopped > before[1] and started > stopped and ordered and host.service(unit).is_running


def start_load(host, path: str = "/api/notes", max_seconds: int = 420, name: str = "load",
               interval: float = 0.0) -> None:
    """Start the load loop in the background inside host (see stop_load);
    with an interval, at most one request starts per interval seconds."""
    host.run("rm -f /tmp/%s.stop /tmp/%s.json", name, name)
    host.check_output("nohup python3 %s /tmp/%s.json /tmp/%s.stop %s %s %s >/dev/null 2>&1 &",
                      client(host, "https_load"), name, name, path, str(max_seconds), str(interval))


def load_running(host, name: str = "load") -> bool:
    """True while the loop has not ended (it writes its statuses when it ends)."""
    return not host.file(f"/tmp/{name}.json").exists


def stop_load(host, name: str = "load") -> list[int]:
    """Stop the loop and return the status of every request it made."""
    import json

    host.run("touch /tmp/%s.stop", name)
    assert wait_for(lambda: host.file(f"/tmp/{name}.json").exists, timeout=60), "the load loop did not stop"
    return json.loads(host.check_output("cat /tmp/%s.json", name))


def statuses(codes: list[int]) -> dict[int, int]:
    """How many requests got each status."""
    return {code: codes.count(code) for code in sorted(set(codes))}


def prometheus_targets_scraped_now(host, url: str = "http://127.0.0.1:9090", timeout: float = 60) -> list[dict]:
    """Prometheus' targets (on host, its API at url) as the first scrape of
    each after this call finds them, not as an earlier one did."""
    import datetime
    import json

    now = datetime.datetime.fromisoformat(host.check_output("date -u +%Y-%m-%dT%H:%M:%S.%6NZ"))

    def targets() -> list[dict]:
        found = json.loads(http(host, url + "/api/v1/targets").body)["data"]["activeTargets"]
        return found if all(datetime.datetime.fromisoformat(t["lastScrape"]) > now for t in found) else []

    assert wait_for(targets, timeout=timeout), "Prometheus did not scrape every target again"
    return targets()


def wait_for(predicate, timeout: float = 30, step: float | None = None) -> bool:
    """Poll predicate until it is true; a predicate whose command fails counts as not yet.

    step: seconds between polls, as many as fit before the deadline (for
    waits that time something, or predicates that compare one poll with
    the last). Without it, polls start 0.5 s apart and the gap grows by
    half each time up to 2 s, the last one cut to end at the deadline,
    where it polls once more: most predicates start a process on a host
    (a command over SSH, often a Python), so a long wait (an alert, a
    timer) polled twice a second takes CPU the scenario run beside it could
    use, while a condition met in its first seconds is seen about as soon.
    """
    import http.client
    import ssl
    import subprocess
    import time

    def ready() -> bool:
        try:
            return bool(predicate())
        # A failed check_output or assert; a request refused, reset or timed
        # out, a TLS handshake or an HTTP reply cut short, while a service
        # restarts; a failed `docker` command.
        except (AssertionError, ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException,
                subprocess.SubprocessError):
            return False
        # ssh itself failing while a host restarts: testinfra's SSH backend
        # raises a RuntimeError when ssh exits 255. Its subclasses
        # NotImplementedError and RecursionError are mistakes.
        except (NotImplementedError, RecursionError):
            raise
        except RuntimeError:
            return False

    deadline = time.monotonic() + timeout
    gap = 0.5
    while time.monotonic() < deadline:
        if ready():
            return True
        if step is not None:
            time.sleep(step)
        else:
            time.sleep(max(0.0, min(gap, deadline - time.monotonic())))
            gap = min(gap * 1.5, 2.0)
    # Without a step, one last look at the deadline: the gap that ended on
    # it has not polled.
    return step is None and ready()


class PlayResult:
    """Outcome of an ansible-playbook run: exit code and what each failed task said."""

    def __init__(self, returncode: int, failures: list[str], changed: int, raw: str, output: str = "",
                 failed_tasks: list[str] | None = None, reported: bool = True,
                 messages: dict[str, list] | None = None) -> None:
        self.returncode = returncode
        # Each task's `msg` on each host, by the task's full name (debug output).
        self.messages = messages or {}
        # "task name: message" per failed task (or the whole output of a run
        # that printed no JSON report).
        self.failures = failures
        # The full names ("role : task") of the tasks that failed.
        self.failed_tasks = failed_tasks or []
        # False when the run printed no JSON report (it crashed).
        self.reported = reported
        self.changed = changed
        self.raw = raw
        # Everything the run printed (raw is its tail, for assertion messages).
        self.output = output

    @property
    def failure_text(self) -> str:
        return "\n".join(self.failures)


def run_converge(host, extra_vars: dict, tags: list[str] | None = None, mitogen: bool = False) -> PlayResult:
    """Run the scenario's converge playbook again on this host with extra vars.

    For tests that a bad value fails the play, or that a change is applied
    the way it should be (reload or restart). tags limits the run to the
    roles under test (the converge playbooks tag each role with its name).
    mitogen: as run_playbook's.
    """
    import os

    return run_playbook(host, os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"), extra_vars,
                        tags, mitogen=mitogen)


def mitogen_engine(inventory_file: str) -> tuple[dict, list[str]]:
    """Environment and arguments that run ansible-playbook under Mitogen's linear strategy.

    Most of a playbook run's CPU goes into starting a Python on the host for
    every module and compiling Ansible's module library there again; Mitogen
    keeps one interpreter per host for the whole run. It replaces the local
    connection, and the Docker one only when it is named by its short name:
    so this writes mitogen-connections.yml into the scenario's ephemeral
    directory, an inventory source read after Molecule's that names the
    connection `docker` (the same plugin under stock Ansible) for the
    test bed's hosts, which Molecule reaches over SSH through `docker exec`
    (.config/molecule/config.yml): Mitogen then starts its one Python per
    host with one `docker exec`.
    """
    import ansible_mitogen
    import yaml

    hosts: dict[str, dict] = {}
    with open(inventory_file, encoding="utf-8") as inventory:
        groups = [g for g in yaml.safe_load(inventory).values() if isinstance(g, dict)]
    for group in groups:
        for name, hostvars in (group.get("hosts") or {}).items():
            if (hostvars or {}).get("ansible_connection") in ("ssh", "community.docker.docker"):
                # With the interpreter named: Mitogen otherwise tries
                # python3.13 and python3.12 (a `docker exec` each, both
                # missing on Debian 12) again for every task.
                hosts[name] = {"ansible_connection": "docker", "ansible_python_interpreter": "/usr/bin/python3"}
    override = Path(inventory_file).parent.parent / "mitogen-connections.yml"
    override.write_text(yaml.safe_dump({"all": {"hosts": hosts}}), encoding="utf-8")
    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return ({"ANSIBLE_STRATEGY_PLUGINS": str(strategies), "ANSIBLE_STRATEGY": "mitogen_linear"},
            ["-i", str(override)])


def run_playbook(host, playbook: str, extra_vars: dict, tags: list[str] | None = None,
                 check: bool = False, mitogen: bool = False) -> PlayResult:
    """Run a playbook against this host (None: every host) through Molecule's inventory.

    The json stdout callback gives each failed task's message and stderr
    unwrapped, whatever the terminal.

    mitogen: run it under Mitogen's strategy (mitogen_engine()), to save
    CPU, where every task the run reaches has already run with stock
    Ansible before it in the scenario (docs/testbed.md): mostly runs that
    bad input stops at the roles' checks or at a candidate config's
    validation. FLASKOPS_TEST_STOCK_RERUNS=1 runs them with stock Ansible
    too.
    """
    import json
    import os
    import subprocess

    # The inventory's directory, as Molecule's own runs use it: it also
    # holds the scenario's own hosts file (provisioner.inventory.hosts).
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    mitogen = mitogen and os.environ.get("FLASKOPS_TEST_STOCK_RERUNS") != "1"
    engine_env, engine_args = mitogen_engine(os.environ["MOLECULE_INVENTORY_FILE"]) if mitogen else ({}, [])
    cmd = ["ansible-playbook", "-i", inventory, *engine_args, playbook, "-e", json.dumps(extra_vars)]
    if host is not None:
        cmd += ["--limit", host.backend.get_hostname()]
    if check:
        cmd += ["--check", "--diff"]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1", **engine_env)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    failures, failed_tasks, reported, messages = [], [], True, {}
    # Other enabled callbacks (profile_tasks) may print around the JSON document.
    start = 0 if proc.stdout.startswith("{") else proc.stdout.find("\n{") + 1
    try:
        report = json.JSONDecoder().raw_decode(proc.stdout, start)[0]
    except ValueError:
        report, reported = {"plays": []}, False
        failures.append(proc.stdout + proc.stderr)
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                if "msg" in result:
                    messages.setdefault(task["task"]["name"], []).append(result["msg"])
                if result.get("failed"):
                    # A loop reports its failed items' messages per item.
                    items = [r for r in result.get("results", []) if r.get("failed")]
                    said = [f"{r.get('msg', '')} {r.get('stderr', '')}" for r in items] or \
                        [f"{result.get('msg', '')} {result.get('stderr', '')}"]
                    failures.append("{}: {}".format(task["task"]["name"], " | ".join(said)))
                    failed_tasks.append(task["task"]["name"])
    changed = sum(stats.get("changed", 0) for stats in report.get("stats", {}).values())
    return PlayResult(proc.returncode, failures, changed, proc.stdout[-3000:] + proc.stderr[-3000:],
                      proc.stdout + proc.stderr, failed_tasks, reported, messages)


def role_checks(role: str) -> list[str]:
    """Patterns of the full names of the tasks with which a role checks its
    input before it changes anything: its argument spec validation, the tasks
    of its tasks/validate*.yml and the "Check ..." tasks of its tasks/main.yml
    (a templated part of a name, such as an app's name, matches any text)."""
    import glob
    import os
    import re

    import yaml

    tasks = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "roles", role, "tasks")
    names = {"Validating arguments against arg spec 'main'"}
    checks = [(os.path.basename(path), lambda _n: True) for path in sorted(glob.glob(os.path.join(tasks, "validate*.yml")))]
    for name, keep in checks + [("main.yml", lambda n: n.startswith("Check "))]:
        with open(os.path.join(tasks, name), encoding="utf-8") as f:
            names |= {t["name"] for t in yaml.safe_load(f) or [] if "name" in t and keep(t["name"])}
    return [".+".join(map(re.escape, re.split(r"\{\{.*?\}\}", f"flaskops.stack.{role} : {name}")))
            for name in sorted(names)]


def assert_refused_by_the_role(result: PlayResult, role: str, variable: str) -> None:
    """A converge with bad input failed in one of the role's own checks,
    with a message naming the variable, before anything changed."""
    import re

    assert result.reported, f"the play crashed instead of failing a check: {result.raw}"
    assert result.returncode != 0, "the play must fail"
    assert len(result.failed_tasks) == 1, result.failures
    # Argument spec validation names its task after the spec's short description too.
    task = re.sub(r"(arg spec 'main') - .*", r"\1", result.failed_tasks[0], flags=re.S)
    assert any(re.fullmatch(pattern, task) for pattern in role_checks(role)), \
        f"the failure did not come from a check of the {role} role: {result.failures}"
    assert variable in result.failure_text, result.failure_text
    assert result.changed == 0, "nothing may change on the host"


def files_state(host, paths: list[str]) -> dict[str, str]:
    """sha256 (or the link target, or "absent") of each path on the host."""
    state = {}
    for path in paths:
        f = host.file(path)
        state[path] = f.linked_to if f.is_symlink else f.sha256sum if f.exists else "absent"
    return state


def on_primary_distro_only() -> None:
    """Skip a slow test that does not depend on the Debian release on the matrix's other releases.

    Re-converging with bad input proves the role's checks, which are the same
    on every release; scripts/molecule-all.sh names the release every
    scenario runs on (FLASKOPS_PRIMARY_DISTRO) and the release of this run
    (FLASKOPS_DISTRO), and such tests run on the first only.
    """
    import os

    import pytest

    primary = os.environ.get("FLASKOPS_PRIMARY_DISTRO")
    distro = os.environ.get("FLASKOPS_DISTRO")
    if primary and distro and distro != primary:
        pytest.skip(f"release-independent; proven on {primary}")
