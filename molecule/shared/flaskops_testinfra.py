"""Helpers shared by the testinfra suites of every Molecule scenario.

A scenario's tests/conftest.py puts this directory on sys.path and imports
what it needs: `from flaskops_testinfra import wait_until, ...`.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.5, what: str = "condition") -> T:
    """Call `check` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s (last result: {last!r})")


def unit_property(host, unit: str, prop: str) -> str:
    """One property of a systemd unit, as `systemctl show` reports it."""
    return host.check_output("systemctl show --property=%s --value %s", prop, unit).strip()


def http(host, url: str, *curl_args: str) -> tuple[int, dict[str, str], str]:
    """Make an HTTP request from inside the host with curl.

    Returns (status, headers with lower-case names, body). Traffic stays
    inside the host (its loopback) or the project's own containers.
    """
    marker = "__FLASKOPS_STATUS__"
    cmd = ["curl", "-sS", "-D", "-", "-o", "/dev/stdout", "-w", f"\n{marker}%{{http_code}}", *curl_args, url]
    out = host.check_output(" ".join(_quote(a) for a in cmd))
    head_body, _, status = out.rpartition(marker)
    raw_headers, _, body = head_body.partition("\r\n\r\n")
    headers = {}
    for line in raw_headers.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers, body.rstrip("\n")


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
