"""The test bed's cache of code compiled from Ansible's module payloads
(molecule/shared/zipimport-cache), on the Python of each Debian release the
scenarios run: mounted as on Molecule's hosts into a container of the test
bed's image, the hook must give each import the code of the source in the
zip it comes from, under that zip's file name.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "molecule" / "shared" / "zipimport-cache"
RELEASES = sorted({os.environ.get("FLASKOPS_DISTRO") or "bookworm", os.environ.get("FLASKOPS_SECOND_DISTRO") or "trixie"})

# Runs in the container, as root; prints what it saw as JSON.
PROBE = r'''
import json, os, subprocess, sys, zipfile
CACHE = "/var/cache/flaskops-testbed-zipimport"
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

def payload(name, value, zip_name="ansible_probe_payload.zip"):
    os.makedirs(f"/probe/{name}", mode=0o755)
    path = f"/probe/{name}/{zip_name}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("probe/__init__.py", "")
        z.writestr("probe/mod.py", f"VALUE = {value!r}\ndef fail():\n    raise RuntimeError('here')\n")
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
import flaskops_testbed_zipcache as hook
source = b"VALUE = 'one'\ndef fail():\n    raise RuntimeError('here')\n"
entry = os.path.join(CACHE, hook._key("probe/mod.py", source))
seen["entry_there"] = os.path.exists(entry)
with open(entry, "wb") as out:
    import marshal
    out.write(marshal.dumps(compile(source.replace(b"'one'", b"'cached'"), "/elsewhere/mod.py", "exec")))
seen["again"] = run(payload("again", "one"))
seen["changed"] = run(payload("changed", "two"))
seen["nobody"] = run(payload("nobody", "three"), user=65534)
seen["other_zip"] = run(payload("other", "four", zip_name="library.zip"))
print(json.dumps(seen))
'''


@pytest.mark.parametrize("release", RELEASES)
def test_the_cache_gives_the_code_of_the_source_in_the_zip(release):
    target = "/usr/lib/python3/dist-packages/"
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none",
         "-v", f"{HOOK / 'flaskops_testbed_zipcache.py'}:{target}flaskops_testbed_zipcache.py:ro",
         "-v", f"{HOOK / 'flaskops-testbed-zipcache.pth'}:{target}flaskops-testbed-zipcache.pth:ro",
         f"flaskops/debian:{release}", "python3", "-c", PROBE],
        capture_output=True, text=True, timeout=120, check=False)
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
    # A user other than root reads the cache but does not write it.
    assert seen["nobody"]["value"] == "three" and seen["nobody"]["cached"] == seen["changed"]["cached"], seen["nobody"]
    # A zip that is not a module payload is left to Python.
    assert seen["other_zip"]["value"] == "four" and seen["other_zip"]["cached"] == seen["changed"]["cached"], seen
