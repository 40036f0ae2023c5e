"""Test bed only: keep the code Python compiles from Ansible's module payloads.

Stock Ansible sends each module to the host as a zip (AnsiballZ) that Python
imports with zipimport, which cannot write bytecode: every module run
compiles Ansible's module library (ansible.module_utils) from source again.
This hook, loaded by flaskops-testbed-zipcache.pth on Molecule's hosts, and
by controller-python for the modules the containers scenario runs on the
controller itself, keeps each compiled file in CACHE_DIR
(FLASKOPS_TESTBED_ZIPCACHE_DIR when set) under the hash of its path inside the
zip, its source and the interpreter's bytecode tag, and loads it from there
the next time. The code is what compile() gave for that very source, with
the file name of this run's zip put back, so a module behaves as without the
hook (as with a .pyc, warnings that compiling raises show the first time
only); only the compiling is saved. A cache file that does not hold a code
object is ignored and written again.

Only root writes the cache (modules run as root unless a task becomes
another user, who then reads it or compiles as before); files that are not
inside an Ansible payload zip are compiled as Python always does.
"""

import _imp
import marshal
import os
import sys
import zipimport

CACHE_DIR = os.environ.get("FLASKOPS_TESTBED_ZIPCACHE_DIR") or "/var/cache/flaskops-testbed-zipimport"
# AnsiballZ names its zip ansible_<module>_payload.zip.
PAYLOAD = "_payload.zip" + os.sep
_compile_source = zipimport._compile_source  # pylint: disable=protected-access


def _key(inner: str, source: bytes) -> str:
    import hashlib  # pylint: disable=import-outside-toplevel

    digest = hashlib.sha256()
    for part in (sys.implementation.cache_tag, str(sys.flags.optimize), inner):
        digest.update(part.encode() + b"\0")
    digest.update(source)
    return digest.hexdigest()


def _store(path: str, code) -> None:
    if os.geteuid() != 0:
        return
    partial = f"{path}.{os.getpid()}"
    try:
        os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
        with open(partial, "wb") as out:
            out.write(marshal.dumps(code))
        os.replace(partial, path)
    except OSError:
        try:
            os.unlink(partial)
        except OSError:
            pass


def _load(path: str, pathname: str):
    """The code kept at path under this run's file name, or None."""
    try:
        with open(path, "rb") as cached:
            code = marshal.loads(cached.read())
        # (TypeError unless code is a code object.)
        _imp._fix_co_filename(code, pathname)  # pylint: disable=protected-access
        return code
    except Exception:  # pylint: disable=broad-except
        # Missing, cut short, not code: compiled again and kept.
        return None


def compile_source(pathname: str, source: bytes):
    """zipimport's _compile_source, through the cache for payload files."""
    if PAYLOAD not in pathname:
        return _compile_source(pathname, source)
    path = os.path.join(CACHE_DIR, _key(pathname.split(PAYLOAD, 1)[1], source))
    code = _load(path, pathname)
    if code is None:
        code = _compile_source(pathname, source)
        _store(path, code)
    return code


zipimport._compile_source = compile_source  # pylint: disable=protected-access
