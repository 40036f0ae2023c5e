"""The test bed's cache of code compiled from Ansible's module payloads
(molecule/shared/zipimport-cache), on the Python of each Debian release the
scenarios run: mounted as on Molecule's hosts into a container of the test
bed's image, the hook must give each import the code of the source in the
zip it comes from, under that zip's file name. On the controller,
controller-python (the containers scenario's module interpreter) loads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "molecule" / "shared" / "zipimport-cache"
CACHE = "/var/cache/flaskops-testbed-zipimport"
RELEASES = sorted({os.environ.get("FLASKOPS_DISTRO") or "bookworm", os.environ.get("FLASKOPS_SECOND_DISTRO") or "trixie"})

# Runs in the container, as root; prints what it saw as JSON.
PROBE = r'''
import json, marshal, os, subprocess, sys, zipfile
import flaskops_testbed_zipcache as hook  # (the .pth has loaded it already)
CACHE = hook.CACHE_DIR
RUN = """
import sys, traceback
sys.path.insert(0, sys.argv[1])
import probe.mod
try:
    probe.mod.fail()
except RuntimeError as exc:
    where = traceback.extract_tb(exc.__traceback__)[-1].filename
print(probe.mod.VALUE, where)
"""

def module(value):
    return f"VALUE = {value!r}\ndef fail():\n    raise RuntimeError('here')\n".encode()

def entry(value):
    """The cache file of probe/mod.py with that value."""
    return os.path.join(CACHE, hook._key("probe/mod.py", module(value)))

def payload(name, value, zip_name="ansible_probe_payload.zip"):
    os.makedirs(f"/probe/{name}", mode=0o755)
    path = f"/probe/{name}/{zip_name}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("probe/__init__.py", "")
        z.writestr("probe/mod.py", module(value))
    os.chmod(path, 0o644)
    return path

def run(path, user=None):
    command = [sys.executable, "-c", RUN, path]
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    value, where = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    return {"value": value, "where": where, "cached": sorted(os.listdir(CACHE)) if os.path.isdir(CACHE) else []}

os.makedirs("/probe", mode=0o755)
seen = {"first": run(payload("first", "one"))}
# Replace what the cache holds for probe/mod.py of "one" with other code:
# the next import of that very source must get it.
seen["entry_there"] = os.path.exists(entry("one"))
with open(entry("one"), "wb") as out:
    out.write(marshal.dumps(compile(module("cached"), "/elsewhere/mod.py", "exec")))
seen["again"] = run(payload("again", "one"))
seen["changed"] = run(payload("changed", "two"))
# A cache file that holds no code (None here) is compiled again and rewritten.
with open(entry("two"), "wb") as out:
    out.write(marshal.dumps(None))
seen["not_code"] = run(payload("not_code", "two"))
with open(entry("two"), "rb") as kept:
    seen["rewritten"] = type(marshal.loads(kept.read())).__name__
# Others may write into the directory here: only the hook's check of the
# user keeps them from writing the cache.
os.chmod(CACHE, 0o777)
seen["nobody"] = run(payload("nobody", "three"), user=65534)
os.chmod(CACHE, 0o755)
seen["other_zip"] = run(payload("other", "four", zip_name="library.zip"))
print(json.dumps(seen))
'''


def stat_module_run(host: str, *options: str, **env: str) -> None:
    """One ansible.builtin.stat module run on host with this checkout's
    ansible-core and ansible.cfg (options and env for the connection)."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "all", "-i", f"{host},", *options,
         "-m", "ansible.builtin.stat", "-a", "path=/"],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), **env))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def mounts() -> list[str]:
    """docker run's arguments that mount the hook as on Molecule's hosts."""
    target = "/usr/lib/python3/dist-packages/"
    return [argument for name in ("flaskops_testbed_zipcache.py", "flaskops-testbed-zipcache.pth")
            for argument in ("-v", f"{HOOK / name}:{target}{name}:ro")]


@pytest.mark.parametrize("release", RELEASES)
def test_the_cache_gives_the_code_of_the_source_in_the_zip(release):
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", *mounts(), f"flaskops/debian:{release}",
                           "python3", "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    first = seen["first"]
    # Compiled from the zip and kept: the package and the module.
    assert first["value"] == "one" and first["where"] == "/probe/first/ansible_probe_payload.zip/probe/mod.py", first
    assert len(first["cached"]) == 2 and seen["entry_there"], seen
    # The same source in another run's zip comes from the cache, under that zip's name.
    assert seen["again"]["value"] == "cached", seen["again"]
    assert seen["again"]["where"] == "/probe/again/ansible_probe_payload.zip/probe/mod.py", seen["again"]
    # Another source at that path is compiled again, not taken from the cache.
    assert seen["changed"]["value"] == "two" and len(seen["changed"]["cached"]) == 3, seen["changed"]
    # A cache file without code is compiled again and kept.
    assert seen["not_code"]["value"] == "two" and seen["rewritten"] == "code", seen
    # A user other than root reads the cache but does not write it.
    assert seen["nobody"]["value"] == "three" and seen["nobody"]["cached"] == seen["changed"]["cached"], seen["nobody"]
    # A zip that is not a module payload is left to Python.
    assert seen["other_zip"]["value"] == "four" and seen["other_zip"]["cached"] == seen["changed"]["cached"], seen


@pytest.mark.parametrize("release", RELEASES)
def test_ansible_modules_run_from_the_cache_the_run_before_filled(release):
    """The payloads of this checkout's ansible-core go through the hook: a
    module run over the Docker connection (pipelined, as the scenarios'
    runs are over SSH; how a payload reaches the host's Python does not
    change what it imports) fills the cache, and the same module run again
    adds nothing to it."""
    name = f"flaskops-testbed-zipcache-{release}-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", *mounts(),
                    f"flaskops/debian:{release}", "sleep", "300"], check=True, capture_output=True, timeout=60)
    try:
        def stat_run() -> list[str]:
            stat_module_run(name, "-c", "community.docker.docker", ANSIBLE_PIPELINING="true")
            listing = subprocess.run(["docker", "exec", name, "sh", "-c", f"ls -A {CACHE} 2>/dev/null || true"],
                                     capture_output=True, text=True, timeout=30, check=True)
            return listing.stdout.split()
        first = stat_run()
        # What ansible.module_utils.basic imports alone is more than that.
        assert len(first) >= 20, first
        assert stat_run() == first
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


def test_modules_on_the_controller_run_from_the_cache_through_controller_python(tmp_path):
    """The containers scenario's host is the controller itself (a local
    connection) and its modules' interpreter is controller-python: the venv's
    Python with the hook loaded first. A module run fills the cache (here a
    directory of this test's), and the same run again adds nothing."""
    cache = tmp_path / "cache"

    def stat_run() -> list[str]:
        stat_module_run("localhost", "-c", "local", "-e", f"ansible_python_interpreter={HOOK / 'controller-python'}",
                        FLASKOPS_TESTBED_ZIPCACHE_DIR=str(cache))
        return sorted(entry.name for entry in cache.iterdir()) if cache.is_dir() else []
    first = stat_run()
    # What ansible.module_utils.basic imports alone is more than that.
    assert len(first) >= 20, first
    assert stat_run() == first
