"""Roles `flask_app` and `uwsgi`, seen on the converged host."""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from flaskops_testinfra import (assert_refused_by_the_role, client, files_state, main_pid,
                                on_primary_distro_only, put_file, run_converge, run_playbook, uwsgi_request, uwsgi_stats,
                                wait_for)

SOCKET = "/run/uwsgi/flaskapp/uwsgi.sock"
STATS = "/run/uwsgi/flaskapp/stats.sock"
UNIT = "uwsgi-flaskapp"
SAMPLE_APP = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "sample_app"


def stats(host) -> dict:
    return uwsgi_stats(host, STATS)


def env_value(host, name: str) -> str:
    for line in host.check_output("cat /etc/flaskops/flaskapp.env").splitlines():
        if line.startswith(name + "="):
            return json.loads(line.split("=", 1)[1])
    raise AssertionError(f"{name} not in the environment file")


def current_release(host) -> str:
    return host.check_output("readlink /srv/flaskapp/current")


def test_unit_enabled_and_running_as_the_app_user(host):
    service = host.service(UNIT)
    assert service.is_enabled and service.is_running
    pid = str(main_pid(host, UNIT))
    users = host.check_output("ps -o user= --ppid %s -p %s | sort -u", pid, pid).split()
    assert users == ["flaskapp"]
    assert host.check_output("systemctl show -p StatusText --value %s", UNIT) == "uWSGI is ready"


def test_app_user_has_no_login(host):
    user = host.user("flaskapp")
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/srv/flaskapp"
    assert not user.home.startswith("/var/www")


def test_socket_is_660_and_owned_by_the_app_group(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert sock.mode == 0o660
    assert sock.group == "flaskapp"


def test_stats_socket_lists_the_configured_workers(host):
    data = stats(host)
    assert len(data["workers"]) == 3
    assert all(w["status"] in ("idle", "busy") for w in data["workers"])


def test_page_and_health_over_the_uwsgi_socket(host):
    page = uwsgi_request(host, SOCKET, "/")
    assert page.status == 200 and "<html" in page.body.lower()
    health = uwsgi_request(host, SOCKET, "/health")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok", "database": "up"}


def test_records_round_trip_through_postgresql(host):
    marker = f"note-{time.time_ns()}"
    created = uwsgi_request(host, SOCKET, "/api/notes", "POST", {"Content-Type": "application/json"},
                            json.dumps({"body": marker}))
    assert created.status == 201, created.body
    listed = uwsgi_request(host, SOCKET, "/api/notes")
    assert marker in listed.body


def test_environment_file_and_code_permissions(host):
    env = host.file("/etc/flaskops/flaskapp.env")
    assert env.user == "root" and env.group == "flaskapp" and env.mode == 0o640
    assert len(env_value(host, "SECRET_KEY")) >= 32
    release = current_release(host)
    # The app user reads its code but cannot change it.
    assert host.run("runuser -u flaskapp -- test -r %s/wsgi.py", release).rc == 0
    assert host.run("runuser -u flaskapp -- test -w %s/wsgi.py", release).rc != 0
    assert host.run("runuser -u flaskapp -- touch %s/new-file", release).rc != 0
    assert host.run("runuser -u flaskapp -- test -w %s/venv/bin", release).rc != 0


def test_a_second_run_changes_nothing_keeps_the_secret_key_and_never_prints_it(host):
    # The scenario has no idempotence step: this is the role's second run.
    before = env_value(host, "SECRET_KEY")
    result = run_converge(host, {}, tags=["flask_app"])
    assert result.returncode == 0 and result.changed == 0, result.failure_text or result.raw
    assert env_value(host, "SECRET_KEY") == before
    assert before not in result.output, "the secret key is in the playbook's output"


def test_systemctl_reload_is_graceful_and_reports_ready(host):
    pid, restarts = main_pid(host, UNIT), host.check_output("systemctl show -p NRestarts --value %s", UNIT)
    host.check_output("systemctl reload %s", UNIT)
    assert wait_for(lambda: host.check_output("systemctl show -p StatusText --value %s", UNIT) == "uWSGI is ready"
                    and uwsgi_request(host, SOCKET, "/health").status == 200)
    assert main_pid(host, UNIT) == pid
    assert host.check_output("systemctl show -p NRestarts --value %s", UNIT) == restarts


LOAD_INTERVAL = 0.02


def test_new_release_switches_current_without_a_failed_request_and_rolls_back(host):
    first = current_release(host)
    source = Path(tempfile.mkdtemp(prefix="flaskops-release2-"))
    try:
        shutil.copytree(SAMPLE_APP, source / "app", ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        index = source / "app" / "app" / "templates" / "base.html"
        index.write_text(index.read_text().replace("</h1>", " (release two)</h1>", 1))
        assert "(release two)" in index.read_text()

        host.run("rm -f /tmp/load.stop /tmp/load.json")
        # At most 50 requests a second (LOAD_INTERVAL): dozens inside every
        # worker's replacement, without taking the cores the deploy needs.
        host.check_output("nohup python3 %s %s /tmp/load.json /tmp/load.stop %s >/dev/null 2>&1 &",
                          client(host, "uwsgi_load"), SOCKET, str(LOAD_INTERVAL))
        result = run_converge(host, {"flask_app_source_path": str(source / "app")}, tags=["flask_app"])
        assert result.returncode == 0, result.failure_text or result.raw
        second = current_release(host)
        assert second != first
        assert wait_for(lambda: "(release two)" in uwsgi_request(host, SOCKET, "/").body, timeout=60)
        host.check_output("touch /tmp/load.stop")
        assert wait_for(lambda: host.file("/tmp/load.json").exists, timeout=40)
        codes = json.loads(host.check_output("cat /tmp/load.json"))
        assert len(codes) > 20
        assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}

        result = run_converge(host, {"flask_app_source_path": str(source / "app"), "flask_app_rollback": True},
                              tags=["flask_app"])
        assert result.returncode == 0, result.failure_text or result.raw
        assert current_release(host) == first
        assert wait_for(lambda: "(release two)" not in uwsgi_request(host, SOCKET, "/").body, timeout=60)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    # The default source is the first release again: nothing to build.
    result = run_converge(host, {}, tags=["flask_app"])
    assert result.returncode == 0 and current_release(host) == first


def test_kill_9_of_the_master_is_followed_by_a_restart_within_10s(host):
    pid = main_pid(host, UNIT)
    host.check_output("kill -9 %s", str(pid))
    started = time.monotonic()
    assert wait_for(lambda: main_pid(host, UNIT) not in (0, pid) and uwsgi_request(host, SOCKET, "/health").status == 200,
                    timeout=10, step=0.2)
    assert time.monotonic() - started <= 10


def test_unit_hardening_exposure(host):
    out = host.check_output("systemd-analyze security %s --no-pager 2>&1 | tail -n 1", UNIT)
    # "→ Overall exposure level for uwsgi-flaskapp.service: 2.1 OK"
    level = float(out.split(":")[1].split()[0])
    assert level < 4.0, out


def test_a_value_uwsgi_rejects_fails_and_the_server_keeps_running(host):
    on_primary_distro_only()
    ini, pid = host.file("/etc/uwsgi/flaskapp.ini").sha256sum, main_pid(host, UNIT)
    result = run_converge(host, {"uwsgi_options": {"harakirii": 5}}, tags=["uwsgi"])
    assert result.returncode != 0
    assert "unknown config directive: harakirii" in result.failure_text
    assert host.file("/etc/uwsgi/flaskapp.ini").sha256sum == ini
    assert main_pid(host, UNIT) == pid


@pytest.mark.parametrize("bad, role, variable", [
    ({"uwsgi_socket": "tcp://10.0.0.1:3031"}, "uwsgi", "uwsgi_socket"),
    ({"uwsgi_socket": "10.0.0.1:70000"}, "uwsgi", "uwsgi_socket"),
    # systemd's socket unit takes an address, not a name.
    ({"uwsgi_socket": "app1.internal:3031"}, "uwsgi", "uwsgi_socket"),
    # uWSGI would remove the socket systemd holds when it exits.
    ({"uwsgi_options": {"vacuum": True}}, "uwsgi", "uwsgi_options"),
    ({"flask_app_database_ca_certificate": "not a certificate"}, "flask_app", "flask_app_database_ca_certificate"),
    ({"uwsgi_processes": -1}, "uwsgi", "uwsgi_processes"),
    ({"uwsgi_threads": 0}, "uwsgi", "uwsgi_threads"),
    ({"flask_app_module": "wsgi"}, "flask_app", "flask_app_module"),
    ({"flask_app_health_path": "health"}, "flask_app", "flask_app_health_path"),
    ({"flask_app_health_status": 42}, "flask_app", "flask_app_health_status"),
    ({"flask_app_build_command": "make assets"}, "flask_app", "flask_app_build_command"),
    ({"flask_app_root": "srv/app"}, "flask_app", "flask_app_root"),
    ({"flask_app_source_type": "svn"}, "flask_app", "flask_app_source_type"),
    ({"flask_app_database_url": "not a url"}, "flask_app", "flask_app_database_url"),
    ({"flask_app_switch_release": "../state"}, "flask_app", "flask_app_switch_release"),
])
def test_bad_input_fails_before_any_change(host, bad, role, variable):
    on_primary_distro_only()
    files = ["/etc/uwsgi/flaskapp.ini", "/etc/systemd/system/uwsgi-flaskapp.service", "/etc/flaskops/flaskapp.env",
             "/srv/flaskapp/current"]
    pid, before = main_pid(host, UNIT), files_state(host, files)
    # The role under test alone: its checks come before its first change.
    result = run_converge(host, bad, tags=[role], mitogen=True)
    assert_refused_by_the_role(result, role, variable)
    assert main_pid(host, UNIT) == pid
    assert files_state(host, files) == before


# --- Release sources, venv sharing and pruning (the defaults no other test
# reaches). Each deploys with tags=flask_app and checks what uWSGI serves.

RELEASES = "/srv/flaskapp/releases"
PLAYBOOKS = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "playbooks"


def release_marker(host, release_dir: str) -> dict:
    return json.loads(host.check_output("cat %s/.flaskops-release.json", release_dir))


def served_title(host) -> str:
    return uwsgi_request(host, SOCKET, "/").body


def marked_copy(destination: Path, marker: str) -> Path:
    """The sample app copied to destination, its page title marked."""
    shutil.copytree(SAMPLE_APP, destination, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "tests"))
    page = destination / "app" / "templates" / "base.html"
    page.write_text(page.read_text().replace("</h1>", f" {marker}</h1>", 1))
    assert marker in page.read_text()
    return destination


def test_a_release_from_a_git_repository(host, tmp_path):
    on_primary_distro_only()
    repo = "/tmp/flaskops-git-source"
    source = marked_copy(tmp_path / "app", "(from git)")
    host.check_output("rm -rf %s", repo)
    for path in sorted(source.rglob("*")):
        if path.is_file():
            put_file(host, f"{repo}/{path.relative_to(source)}", path.read_bytes())
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q git >/dev/null 2>&1 || "
                      "(apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q git)")
    host.check_output("cd %s && git init -q -b main && git add -A && "
                      "git -c user.name=test -c user.email=test@example.invalid commit -q -m release", repo)
    commit = host.check_output("git -C %s rev-parse HEAD", repo)

    result = run_converge(host, {"flask_app_source_type": "git", "flask_app_git_repo": f"file://{repo}",
                                 "flask_app_git_version": "main"}, tags=["flask_app"])
    assert result.returncode == 0, result.failure_text or result.raw
    assert current_release(host) == f"{RELEASES}/{commit[:12]}"
    assert release_marker(host, current_release(host))["origin"] == f"file://{repo}@{commit}"
    assert wait_for(lambda: "(from git)" in served_title(host), timeout=60)


def pack(source: Path, archive: Path, top: str) -> None:
    """source packed into archive (a .tar.gz or a .zip, by its name) under the directory top."""
    import tarfile
    import zipfile

    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as packed:
            for path in sorted(source.rglob("*")):
                packed.write(path, f"{top}/{path.relative_to(source)}")
    else:
        with tarfile.open(archive, "w:gz") as packed:
            packed.add(source, arcname=top)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_release_from_an_archive_with_its_top_directory_stripped(host, tmp_path, kind):
    """unzip, which the role installs for a .zip, has no option to strip
    directories: the role moves the content up itself."""
    on_primary_distro_only()
    import hashlib

    marker = f"(from a {kind})"
    source = marked_copy(tmp_path / "flaskapp-1.0", marker)
    archive = tmp_path / f"flaskapp-1.0.{kind}"
    pack(source, archive, "flaskapp-1.0")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    result = run_converge(host, {"flask_app_source_type": "archive", "flask_app_archive": str(archive),
                                 "flask_app_archive_strip_components": 1}, tags=["flask_app"])
    assert result.returncode == 0, result.failure_text or result.raw
    assert current_release(host) == f"{RELEASES}/{digest[:12]}"
    assert host.file(f"{current_release(host)}/wsgi.py").exists, "the top directory was not stripped"
    assert wait_for(lambda: marker in served_title(host), timeout=60)


def test_releases_with_the_same_requirements_share_one_venv(host):
    on_primary_distro_only()
    releases = host.check_output("ls -1 %s", RELEASES).split()
    assert len(releases) >= 3, releases
    venvs = {host.check_output("readlink -f %s/%s/venv", RELEASES, release) for release in releases}
    assert len(venvs) == 1, venvs
    assert host.check_output("ls -1 /srv/flaskapp/venvs").split() == [Path(venvs.pop()).name]
    # Built once, with the first release: older than every later release.
    built = int(host.check_output("stat -c %s /srv/flaskapp/venvs/*/.complete", "%Y"))
    newest = max(int(host.check_output("stat -c %%Y %s/%s/.flaskops-release.json", RELEASES, r)) for r in releases)
    assert built < newest


def test_old_releases_are_pruned_but_the_live_one_stays(host):
    on_primary_distro_only()

    def by_age() -> list[str]:
        out = host.check_output("stat -c '%%Y %%n' %s/*/.flaskops-release.json | sort -n", RELEASES)
        return [line.split()[1].rsplit("/", 1)[0] for line in out.splitlines()]

    before = by_age()
    assert len(before) >= 3, before
    # Back to the first release (the default source; already built, so it
    # stays the oldest), keeping only one more: the newest.
    result = run_converge(host, {"flask_app_keep_releases": 1}, tags=["flask_app"])
    assert result.returncode == 0, result.failure_text or result.raw
    live = current_release(host)
    assert live == before[0]
    assert sorted(by_age()) == sorted({live, before[-1]}), (before, by_age())
    assert wait_for(lambda: "(from" not in served_title(host), timeout=60)
    # The shared venv stays: the remaining releases use it.
    assert host.file(f"{live}/venv/bin/python").exists


def test_a_rollback_by_name_goes_two_releases_back_and_releases_yml_lists_them(host):
    on_primary_distro_only()
    first = current_release(host)
    # Two more releases of the same source (the venv is shared: no download).
    for name in ("named-1", "named-2"):
        result = run_converge(host, {"flask_app_release": name}, tags=["flask_app"])
        assert result.returncode == 0, result.failure_text or result.raw
    assert current_release(host) == f"{RELEASES}/named-2"
    # A name that is not a release on the host: refused, nothing moves.
    result = run_converge(host, {"flask_app_rollback": True, "flask_app_rollback_release": "named-9"},
                          tags=["flask_app"])
    assert result.returncode != 0
    assert "flask_app_rollback_release: named-9 is not a complete release of app flaskapp" in result.failure_text
    assert "named-1, named-2" in result.failure_text, result.failure_text
    assert current_release(host) == f"{RELEASES}/named-2"
    # Two releases back, by name.
    result = run_converge(host, {"flask_app_rollback": True, "flask_app_rollback_release": first.rsplit("/", 1)[1]},
                          tags=["flask_app"])
    assert result.returncode == 0, result.failure_text or result.raw
    assert current_release(host) == first
    assert wait_for(lambda: uwsgi_request(host, SOCKET, "/health").status == 200, timeout=60)
    # The listing: oldest first, the live one marked.
    listed = run_playbook(host, str(PLAYBOOKS / "releases.yml"), {})
    assert listed.returncode == 0 and listed.changed == 0, listed.failure_text or listed.raw
    shown = [msgs for task, msgs in listed.messages.items() if task.endswith("Show the releases of app flaskapp")]
    assert len(shown) == 1 and len(shown[0]) == 1, listed.messages
    releases = shown[0][0]
    assert releases[-2:] == ["named-1", "named-2"], releases
    assert first.rsplit("/", 1)[1] + " (live)" in releases, releases


# --- The contract between flask_app and uwsgi, seen on the running app ---------

def app_processes(host) -> list[int]:
    """The uWSGI master and its workers (every process of the app user)."""
    return [int(pid) for pid in host.check_output("pgrep -u flaskapp").split()]


def environ(host, pid: int) -> dict[str, str]:
    raw = host.check_output("tr '\\0' '\\n' < /proc/%s/environ", str(pid))
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def test_a_changed_environment_reaches_every_uwsgi_process(host):
    on_primary_distro_only()
    value = f"probe-{time.time_ns()}"
    result = run_converge(host, {"flask_app_env": {"FLASKOPS_PROBE": value}}, tags=["flask_app", "uwsgi"])
    assert result.returncode == 0, result.failure_text or result.raw
    pids = app_processes(host)
    assert len(pids) == 1 + stats(host)["workers"].__len__(), pids
    assert {pid: environ(host, pid).get("FLASKOPS_PROBE") for pid in pids} == {pid: value for pid in pids}
    # And back: the variable leaves every process again.
    result = run_converge(host, {}, tags=["flask_app", "uwsgi"])
    assert result.returncode == 0, result.failure_text or result.raw
    assert all("FLASKOPS_PROBE" not in environ(host, pid) for pid in app_processes(host))
    assert uwsgi_request(host, SOCKET, "/health").status == 200


def test_an_entry_point_that_does_not_load_fails_naming_the_app_and_the_live_release_serves(host):
    on_primary_distro_only()
    files = ["/etc/uwsgi/flaskapp.ini", "/etc/systemd/system/uwsgi-flaskapp.service", "/srv/flaskapp/current"]
    pid, before = main_pid(host, UNIT), files_state(host, files)
    result = run_converge(host, {"flask_app_module": "wsgi:no_such_app"}, tags=["flask_app", "uwsgi"])
    assert result.returncode != 0
    assert "app flaskapp" in result.failure_text and "no_such_app" in result.failure_text, result.failure_text
    assert "AttributeError" in result.failure_text, result.failure_text
    assert files_state(host, files) == before
    assert main_pid(host, UNIT) == pid
    assert uwsgi_request(host, SOCKET, "/health").status == 200


def test_an_app_that_does_not_answer_fails_the_play_with_its_journal(host):
    on_primary_distro_only()
    # A database URL the app cannot use: it starts, but /health answers 503
    # (for 10 s, not the default 60: the failure is the same, sooner).
    result = run_converge(host, {"flask_app_database_url": "postgresql://flaskapp:wrong@127.0.0.1:1/flaskapp",
                                 "uwsgi_health_timeout": 10},
                          tags=["flask_app", "uwsgi"])
    try:
        assert result.returncode != 0
        # (The probe's own failure is rescued; the play stops at the role's report.)
        assert result.failed_tasks[-1] == "flaskops.stack.uwsgi : Fail for app flaskapp", result.failures
        assert "app flaskapp does not answer" in result.failure_text and "503" in result.failure_text
        # The unit's journal, quoted: the app's own log line.
        assert "health check: database unreachable" in result.failure_text, result.failure_text
    finally:
        result = run_converge(host, {}, tags=["flask_app", "uwsgi"])
    assert result.returncode == 0, result.failure_text or result.raw
    assert uwsgi_request(host, SOCKET, "/health").status == 200


def test_the_health_check_wants_the_status_the_app_names(host):
    on_primary_distro_only()
    pid = main_pid(host, UNIT)
    # /health answers 200: asked for exactly that, the run passes, changing
    # nothing (the uwsgi role's second run: the scenario has no idempotence step).
    result = run_converge(host, {"flask_app_health_status": 200}, tags=["uwsgi"])
    assert result.returncode == 0 and result.changed == 0, result.failure_text or result.raw
    # Asked for 204, the same answer fails the run, naming what it got.
    result = run_converge(host, {"flask_app_health_status": 204, "uwsgi_health_timeout": 3}, tags=["uwsgi"])
    assert result.returncode != 0
    text = " ".join(result.failure_text.split())
    assert "app flaskapp does not answer" in text and "wanted 204: last answer HTTP/1.1 200 OK" in text, text
    assert main_pid(host, UNIT) == pid


def mount_options(host, pid: int, path: str) -> set[str]:
    """Options of the mount that holds path, as process pid sees the filesystem."""
    best, options = "", set()
    for line in host.check_output("cat /proc/%s/mountinfo", str(pid)).splitlines():
        fields = line.split()
        point = fields[4]
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, options = point, set(fields[5].split(","))
    return options


def test_the_app_writes_to_its_state_dir_and_nowhere_in_its_code(host):
    """The filesystem as the running uWSGI master sees it (its mount namespace)."""
    pid = main_pid(host, UNIT)
    assert host.check_output("systemctl show -p WorkingDirectory --value %s", UNIT) == "/srv/flaskapp/state"
    assert environ(host, pid)["FLASKOPS_STATE_DIR"] == "/srv/flaskapp/state"
    state = host.file("/srv/flaskapp/state")
    assert (state.user, state.group, state.mode) == ("flaskapp", "flaskapp", 0o750)
    assert "rw" in mount_options(host, pid, "/srv/flaskapp/state/logs")
    release = host.check_output("readlink -f /srv/flaskapp/current")
    for path in (release + "/app", "/srv/flaskapp/venvs", "/etc/flaskops", "/srv/flaskapp"):
        assert "ro" in mount_options(host, pid, path), path


def test_a_requirement_without_a_wheel_is_built_from_source(host):
    # docopt 0.6.2 is published as a source distribution only
    # (flask_app_venv_packages in converge.yml).
    venv = "/srv/flaskapp/current/venv/bin/python3"
    assert host.check_output("%s -c 'import docopt; print(docopt.__version__)'", venv) == "0.6.2"
    # Pure Python: it built without a compiler, which the host has not (pip
    # came without the build tools it recommends).
    assert [tool for tool in ("cc", "gcc", "g++", "make") if host.exists(tool)] == []
    assert not host.package("python3-dev").is_installed and not host.package("build-essential").is_installed
    on_primary_distro_only()
    # Wheels only: the build fails, naming the switch, and nothing goes live.
    current = current_release(host)
    result = run_converge(host, {"flask_app_pip_source_builds": False, "flask_app_release": "wheels-only",
                                 "flask_app_venv_packages": ["docopt==0.6.2", "six==1.17.0"]}, tags=["flask_app"])
    host.check_output("rm -rf %s/wheels-only", RELEASES)
    assert result.returncode != 0
    assert "flask_app_pip_source_builds" in result.failure_text and "docopt" in result.failure_text, \
        result.failure_text
    assert current_release(host) == current


def test_a_build_command_runs_as_the_app_user_before_the_release_goes_live(host, tmp_path):
    on_primary_distro_only()
    first = current_release(host)
    source = marked_copy(tmp_path / "app", "(built)")
    build = ["python3", "-c", "import os, pwd; open('build-stamp', 'w').write(pwd.getpwuid(os.getuid()).pw_name)"]
    result = run_converge(host, {"flask_app_source_path": str(source), "flask_app_build_command": build},
                          tags=["flask_app", "uwsgi"])
    try:
        assert result.returncode == 0, result.failure_text or result.raw
        assert current_release(host) != first
        stamp = host.file("/srv/flaskapp/current/build-stamp")
        assert stamp.content_string == "flaskapp"
        # Read-only again once built: root's, not the app's.
        assert (stamp.user, stamp.mode) == ("root", 0o644)
        assert host.file("/srv/flaskapp/current/").user == "root"
        assert wait_for(lambda: "(built)" in served_title(host), timeout=60)
    finally:
        result = run_converge(host, {}, tags=["flask_app", "uwsgi"])
    assert result.returncode == 0 and current_release(host) == first
