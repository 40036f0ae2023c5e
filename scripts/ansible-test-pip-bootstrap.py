"""Give ansible-test --venv a pip bootstrap script without its download host.

ansible-test creates each test's virtualenv without pip and then runs a
"get-pip" script it downloads from ci-files.testing.ansible.com, caching it
at ~/.ansible/test/cache/get_pip_<version>.py. Where only PyPI is reachable
that download fails, and ansible-test says to save the script there by hand.
This writes an equivalent script at that path: it runs pip from the official
pip wheel of the same version (downloaded from PyPI; a wheel of pip can run
pip itself) to install what ansible-test asks for. Run with .venv's python.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

from ansible_test._internal.python_requirements import get_venv_packages

CACHE = Path.home() / ".ansible" / "test" / "cache"

SHIM = '''"""Stand-in for get-pip.py {version}, written by flaskops.stack scripts/ansible-test-pip-bootstrap.py."""
import runpy
import sys

WHEEL = {wheel!r}
# get-pip.py options that pip itself does not know.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.path.insert(0, WHEEL)
sys.argv = ["pip", "install", "--upgrade", "--force-reinstall", *args]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
'''


def main() -> None:
    python = types.SimpleNamespace(version="%d.%d" % sys.version_info[:2])
    version = get_venv_packages(python)["pip"]  # type: ignore[arg-type]
    script = CACHE / f"get_pip_{version.replace('.', '_')}.py"
    wheel = CACHE / f"pip-{version}-py3-none-any.whl"
    CACHE.mkdir(parents=True, exist_ok=True)
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--dest", str(CACHE), f"pip=={version}"], check=True)
    script.write_text(SHIM.format(version=version, wheel=str(wheel)))
    print(f"ansible-test pip {version} bootstrap: {script}")


if __name__ == "__main__":
    main()
