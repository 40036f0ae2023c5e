# Asks a uWSGI server for one path over the uwsgi protocol, as nginx does.
# argv: SOCKET (a path, or host:port) PATH STATUS TIMEOUT_SECONDS
#       [STATS_SOCKET RELEASE_FILE]; STATUS is the one status wanted (200)
#       or <N, any status below N.
# With a stats socket and a release file, first waits until every worker
# was spawned after the release file last changed: after a chain reload the
# answer then comes from the live release, not a worker still on the old one.
# Then tries until the answer's status is the one wanted; all within the
# time given. Prints the last status line (or error) and exits 0 on success,
# 1 otherwise.
import json
import os
import socket
import struct
import sys
import time

address, path, wanted, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
# "<N": any status below N; "N": exactly N.
below, exact = (int(wanted[1:]), 0) if wanted.startswith("<") else (0, int(wanted))
stats, release_file = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else ("", "")
deadline = time.monotonic() + timeout


def old_workers() -> list[str]:
    """The workers spawned before the release file changed (or why they cannot be read)."""
    since = int(os.stat(release_file).st_mtime)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(max(deadline - time.monotonic(), 1))
    with conn:
        conn.connect(stats)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return [f"worker {w['id']} (pid {w['pid']})" for w in json.loads(data)["workers"]
            if w.get("pid", 0) > 0 and w.get("status") != "cheap" and w.get("last_spawn", 0) < since]


if stats and release_file and os.path.exists(release_file):
    while True:
        try:
            left = old_workers()
        except (OSError, ValueError, KeyError) as exc:
            left = [f"stats unreadable ({type(exc).__name__}: {exc})"]
        if not left:
            break
        if time.monotonic() >= deadline:
            print(f"still on the release before {release_file} changed after {timeout:g} s: {', '.join(left)}")
            sys.exit(1)
        time.sleep(0.5)

env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path.split("?")[0],
       "QUERY_STRING": path.partition("?")[2], "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
       "SERVER_PORT": "80", "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1",
       "HTTP_USER_AGENT": "flaskops-health-check"}
body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                for k, v in ((k.encode(), v.encode()) for k, v in env.items()))
packet = struct.pack("<BHB", 0, len(body), 0) + body
said = "no answer"
while True:
    try:
        if address.startswith("/"):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(max(deadline - time.monotonic(), 1))
            conn.connect(address)
        else:
            host, port = address.rsplit(":", 1)
            conn = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                            timeout=max(deadline - time.monotonic(), 1))
        with conn:
            conn.sendall(packet)
            head = b""
            while b"\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
        said = head.split(b"\n", 1)[0].decode("latin-1").strip() or "connection closed without an answer"
        parts = said.split()
        if len(parts) > 1 and parts[1].isdigit() and (int(parts[1]) == exact or int(parts[1]) < below):
            print(f"GET {path}: {said}")
            sys.exit(0)
    except OSError as exc:
        said = f"{type(exc).__name__}: {exc}"
    if time.monotonic() >= deadline:
        print(f"GET {path} for {timeout:g} s, wanted {exact or f'a status below {below}'}: last answer {said}")
        sys.exit(1)
    time.sleep(1)
